// FrameEcho: see FrameEcho.server. Prints `@@ECHO ready` and, at the end, `@@ECHO
// echoed=N` with the driver's counters.

import KernelCore
import ServerRuntime

func say(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}

final class Echo: ProgramImplementation {
  private var net = Required.net
  private var mac = [UInt8](repeating: 0, count: 6)

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
    let frame = UnsafeMutableRawBufferPointer.allocate(byteCount: 1514, alignment: 4)
    defer { frame.deallocate() }
    hello()
    say("@@ECHO ready")
    var echoed = 0
    var restarts = 0
    func command(_ word: StaticString) -> Bool {
      let bytes = UnsafeBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount)
      return bytes.enumerated().allSatisfy { frame[14 + $0.offset] == $0.element }
    }
    func swapAddresses() {
      for index in 0..<6 {
        frame[index] = frame[6 + index]  // back to the sender
        frame[6 + index] = mac[index]
      }
    }
    while true {
      let length: Int
      do throws(CallError) {
        length = try net.receive(frame: frame)
      } catch {
        // The driver failed under this call: go on with its restarted instance.
        guard error == .serverUnavailable, rebind() else { break }
        restarts += 1
        hello()
        say("@@ECHO driver restarted; ready again")
        continue
      }
      if length >= 34, frame[12] == 0x08, frame[13] == 0x00 {
        // IPv4: back with its checksums filled in by the device (the peer sends them zero).
        swapAddresses()
        _ = try? net.sendWithChecksums(frame: UnsafeRawBufferPointer(rebasing: frame[0..<length]))
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
      _ = try? net.send(frame: UnsafeRawBufferPointer(rebasing: frame[0..<length]))
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
