// NetAbuser: see NetAbuser.server.

import KernelCore
import ServerRuntime

final class Abuser: ProgramImplementation {
  func run() -> UInt {
    let net = Required.net
    var mac = [UInt8](repeating: 0, count: 6)
    _ = mac.withUnsafeMutableBytes { try? net.macAddress(address: $0) }
    var frame = mac + mac + [0x88, 0xB5]
    while frame.count < 1514 { frame.append(UInt8(truncatingIfNeeded: frame.count)) }
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1514, alignment: 4)
    defer { buffer.deallocate() }
    // A 1,514-byte frame (looped back by the card) into a 4-byte buffer: refused, not cut.
    _ = frame.withUnsafeBytes { try? net.send(frame: $0) }
    let small = (try? net.receive(frame: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<4]))) ?? 99
    // Without `faults on` the fault command does nothing.
    _ = try? net.fault()
    // Slots never lent: refused.
    var released: UInt = 0
    for slot: UInt in [0, 63, 64, 0xFFFF, 0x8000_0000, 0xFFFF_FFFF] {
      released += (try? net.releaseSlot(slot: slot)) ?? 0
    }
    // Still working: the next frame comes back whole.
    _ = frame.withUnsafeBytes { try? net.send(frame: $0) }
    let after = (try? net.receive(frame: buffer)) ?? 0
    let same = after == frame.count && buffer[1513] == frame[1513]
    let line: KernelMessage = "@@ABUSE small=\(small) released=\(released) after=\(after) same=\(same)"
    line.withBytes { _ = try? Required.console.write(text: UnsafeRawBufferPointer($0)) }
    return 0
  }
}

func start() -> Program {
  Program.export(Abuser())!
}
