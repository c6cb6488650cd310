// NetAbuser: see NetAbuser.server.

import KernelCore
import ServerRuntime

func say(_ message: KernelMessage) {
  message.withBytes { _ = try? Required.console.write(text: UnsafeRawBufferPointer($0)) }
}

final class Abuser: ProgramImplementation {
  let net = Required.net
  var frame: [UInt8] = []

  func sendOne() { _ = frame.withUnsafeBytes { try? net.send(frame: $0) } }

  /// The driver's drop counter, from its counters text.
  func drops() -> Int {
    let text = UnsafeMutableRawBufferPointer.allocate(byteCount: 512, alignment: 1)
    defer { text.deallocate() }
    let count = (try? net.counters(text: text)) ?? 0
    let bytes = Array(text[0..<count])
    let key = Array("drops ".utf8)
    guard
      let start = (0..<max(0, bytes.count - key.count)).first(where: {
        Array(bytes[$0..<($0 + key.count)]) == key
      })
    else { return -1 }
    var value = 0
    var index = start + key.count
    while index < bytes.count, bytes[index] >= 48, bytes[index] <= 57 {
      value = value * 10 + Int(bytes[index] - 48)
      index += 1
    }
    return value
  }

  func run() -> UInt {
    var mac = [UInt8](repeating: 0, count: 6)
    _ = mac.withUnsafeMutableBytes { try? net.macAddress(address: $0) }
    frame = mac + mac + [0x88, 0xB5]
    while frame.count < 1514 { frame.append(UInt8(truncatingIfNeeded: frame.count)) }
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1514, alignment: 4)
    defer { buffer.deallocate() }
    // A 1,514-byte frame (looped back by the card) into a 4-byte buffer: refused, not cut.
    sendOne()
    let small = (try? net.receive(frame: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<4]))) ?? 99
    // Without `faults on` the fault command does nothing.
    _ = try? net.fault()
    // Still working: the next frame comes back whole.
    sendOne()
    let after = (try? net.receive(frame: buffer)) ?? 0
    let same = after == frame.count && buffer[1513] == frame[1513]
    say("@@ABUSE small=\(small) after=\(after) same=\(same)")
    ports(buffer)
    return 0
  }

  /// Ports: each holds only what was lent to it, and what it held comes back when it goes.
  func ports(_ buffer: UnsafeMutableRawBufferPointer) {
    guard let first = (try? net.openPort()) ?? nil, let second = (try? net.openPort()) ?? nil else {
      return say("@@PORTS opened=false")
    }
    // The receive slots are read-only to a port's holder.
    let slots = (try? first.receiveSlots()) ?? nil
    let writable = slots.map { (try? Required.memory.map(memory: $0, writable: 1)) ?? 0 } ?? 1
    let readable = slots.map { (try? Required.memory.map(memory: $0, writable: 0)) ?? 0 } ?? 0
    // The first port takes a frame; the second cannot give its slot back, nor forged ones.
    sendOne()
    let word = (try? first.receive()) ?? 0
    var stolen: UInt = 0
    for slot: UInt in [word >> 16, 0, 63, 64, 0xFFFF, 0x8000_0000, 0xFFFF_FFFF] {
      stolen += (try? second.release(slot: slot)) ?? 0
    }
    // A port holds at most 32: the first takes 31 more, then gets 0 at once.
    for _ in 0..<31 {
      sendOne()
      _ = try? first.receive()
    }
    sendOne()
    let overLimit = (try? first.receive()) ?? 99
    // At most 8 ports.
    var more: [FramePort] = []
    for _ in 0..<8 { if let port = (try? net.openPort()) ?? nil { more.append(port) } }
    for port in more { _ = port.release() }
    // The second port takes the other 32 slots: every slot is lent, so a frame now waits
    // in the card's ring (C mode) and is not dropped; it is taken once a slot comes back.
    for _ in 0..<32 {
      sendOne()
      _ = try? second.receive()
    }
    let dropsFull = drops()
    sendOne()
    let droppedWhenFull = drops() - dropsFull
    // The first port goes holding 32 slots: they come back (the waiting frame takes one),
    // so the next frame is kept too.
    _ = first.release()
    try? Required.clock.sleep(milliseconds: 50)
    let dropsBefore = drops()
    sendOne()
    let droppedAfterClose = drops() - dropsBefore
    if droppedAfterClose == 0 { _ = try? net.receive(frame: buffer) }
    _ = second.release()
    say(
      "@@PORTS writable=\(writable != 0) readable=\(readable != 0) stolen=\(stolen) overLimit=\(overLimit) extraPorts=\(more.count) droppedWhenFull=\(droppedWhenFull) droppedAfterClose=\(droppedAfterClose)"
    )
  }
}

func start() -> Program {
  Program.export(Abuser())!
}
