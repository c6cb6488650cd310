// FrameEcho: see FrameEcho.server. Prints `@@ECHO ready` and, at the end, `@@ECHO
// echoed=N` with the driver's counters. With the setting `passing shared` it takes frames
// in the driver's receive slots and sends from its send slots (mapped here), copying each
// frame once, from one slot to the other; else frames are copied in and out with calls.

import KernelCore
import ServerRuntime

func say(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}

final class Echo: ProgramImplementation {
  private var net = Required.net
  private var mac = [UInt8](repeating: 0, count: 6)
  /// Shared passing: a port of the driver's, its receive slots (read-only) and its send
  /// slots as mapped here (nil: copies).
  private var port: FramePort?
  private var receiveSlots: UnsafeRawPointer?
  private var sendSlots: UnsafeMutableRawPointer?
  private var sharing = false

  /// Opens a port and maps its slots (again after a restart: the new driver has new ones);
  /// whether that worked.
  private func openPort() -> Bool {
    guard let opened = (try? net.openPort()) ?? nil, let receive = (try? opened.receiveSlots()) ?? nil,
      let send = try? opened.sendSlots(),
      let receiveAddress = try? Required.memory.map(memory: receive, writable: 0), receiveAddress != 0,
      let sendAddress = try? Required.memory.map(memory: send, writable: 1), sendAddress != 0
    else { return false }
    // The mappings hold the memory; these references are not needed any more.
    _ = receive.release()
    _ = send.release()
    _ = port?.release()
    port = opened
    receiveSlots = UnsafeRawPointer(bitPattern: receiveAddress)
    sendSlots = UnsafeMutableRawPointer(bitPattern: sendAddress)
    return true
  }

  /// HELLO to everyone: the peer learns the address and that the echo is listening.
  private func hello() {
    _ = mac.withUnsafeMutableBytes { try? net.macAddress(address: $0) }
    let frame: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF] + mac + [0x88, 0xB5] + Array("HELLO".utf8)
    _ = frame.withUnsafeBytes { try? net.send(frame: $0) }
  }

  /// After the driver failed: waits (up to two seconds) for its restarted instance and
  /// switches to it; whether it came.
  private func rebind() -> Bool {
    for _ in 0..<200 {
      if let handle = try? Required.supervision.rebind(reference: UInt(net.handle)), handle != 0 {
        _ = net.release()
        net = NetworkDevice(handle: UInt32(handle))
        return true
      }
      try? Required.clock.sleep(milliseconds: 10)
    }
    return false
  }

  func run() -> UInt {
    let own = UnsafeMutableRawBufferPointer.allocate(byteCount: 1514, alignment: 4)
    defer { own.deallocate() }
    var frame = own
    sharing =
      setting(
        "passing", { name, value throws(CallError) in try Required.settings.value(name: name, value: value) })
      == Array("shared".utf8)
    if sharing && !openPort() {
      say("@@ECHO the driver's slots could not be mapped")
      return 1
    }
    var slot = 0
    hello()
    say("@@ECHO ready")
    var echoed = 0
    var restarts = 0
    func command(_ word: StaticString) -> Bool {
      let bytes = UnsafeBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount)
      return bytes.enumerated().allSatisfy { frame[14 + $0.offset] == $0.element }
    }
    func send(_ frame: UnsafeMutableRawBufferPointer, _ length: Int, checksums: Bool) {
      if sharing {
        _ = try? port!.send(slot: 0, length: UInt(length), checksums: checksums ? 1 : 0)
      } else if checksums {
        _ = try? net.sendWithChecksums(frame: UnsafeRawBufferPointer(rebasing: frame[0..<length]))
      } else {
        _ = try? net.send(frame: UnsafeRawBufferPointer(rebasing: frame[0..<length]))
      }
    }
    func swapAddresses() {
      for index in 0..<6 {
        frame[index] = frame[6 + index]  // back to the sender
        frame[6 + index] = mac[index]
      }
    }
    while true {
      var length: Int
      do throws(CallError) {
        if sharing {
          let word = try port!.receive()
          slot = Int(word >> 16)
          length = Int(word & 0xFFFF)
          guard slot < 64, length <= 1514 else { continue }
          // The one copy: from the received frame's slot into send slot 0.
          frame = UnsafeMutableRawBufferPointer(start: sendSlots!, count: 1514)
          frame.baseAddress!.copyMemory(from: receiveSlots! + slot * 2048, byteCount: length)
          _ = try? port!.release(slot: UInt(slot))
        } else {
          length = try net.receive(frame: frame)
        }
      } catch {
        // The driver failed under this call: go on with its restarted instance.
        guard error == .serverUnavailable, rebind() else { break }
        restarts += 1
        if sharing && !openPort() { break }
        hello()
        say("@@ECHO driver restarted; ready again")
        continue
      }
      if length >= 34, frame[12] == 0x08, frame[13] == 0x00 {
        // IPv4: back with its checksums filled in by the device (the peer sends them zero).
        swapAddresses()
        send(frame, length, checksums: true)
        echoed += 1
        continue
      }
      guard length >= 19, frame[12] == 0x88, frame[13] == 0xB5 else { continue }
      if command("STOP") { break }
      if command("PROMISC") {
        _ = try? net.setReceiveFilter(promiscuous: 1, allMulticast: 1)
        // Echoed below once the card takes everything: the peer waits for it.
      }
      if command("MULTICAST") {
        // Take frames to the all-hosts group 01:00:5e:00:00:01 (and nothing else multicast).
        let groups: [UInt8] = [0x01, 0x00, 0x5E, 0x00, 0x00, 0x01]
        _ = groups.withUnsafeBytes { try? net.setMulticastList(addresses: $0) }
      }
      if command("SLOW") {
        try? Required.clock.sleep(milliseconds: 300)  // frames pile up meanwhile
        continue
      }
      if command("FAULT") {
        _ = try? net.fault()  // the driver faults; the next receive finds it failed
        continue
      }
      swapAddresses()
      send(frame, length, checksums: false)
      echoed += 1
    }
    let text = UnsafeMutableRawBufferPointer.allocate(byteCount: 512, alignment: 1)
    defer { text.deallocate() }
    let count = (try? net.counters(text: text)) ?? 0
    say(
      "@@ECHO echoed=\(echoed) restarts=\(restarts) \(text: UnsafeBufferPointer(rebasing: text.bindMemory(to: UInt8.self)[0..<count]))"
    )
    return 0
  }
}

func start() -> Program {
  Program.export(Echo())!
}
