// FrameEcho: see FrameEcho.server. Prints `@@ECHO ready` and, at the end, `@@ECHO
// echoed=N` with the driver's counters.

import KernelCore
import ServerRuntime

func say(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}

final class Echo: ProgramImplementation {
  func run() -> UInt {
    let frame = UnsafeMutableRawBufferPointer.allocate(byteCount: 1514, alignment: 4)
    defer { frame.deallocate() }
    var mac = [UInt8](repeating: 0, count: 6)
    _ = mac.withUnsafeMutableBytes { try? Required.net.macAddress(address: $0) }
    // HELLO to everyone: the peer learns the address and that the echo is listening.
    let hello: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF] + mac + [0x88, 0xB5] + Array("HELLO".utf8)
    _ = hello.withUnsafeBytes { try? Required.net.send(frame: $0) }
    say("@@ECHO ready")
    var echoed = 0
    while true {
      guard let length = try? Required.net.receive(frame: frame), length >= 14 else { continue }
      guard frame[12] == 0x88, frame[13] == 0xB5 else { continue }
      if length >= 18 && frame[14] == UInt8(ascii: "S") && frame[15] == UInt8(ascii: "T")
        && frame[16] == UInt8(ascii: "O") && frame[17] == UInt8(ascii: "P")
      {
        break
      }
      for index in 0..<6 {
        frame[index] = frame[6 + index]  // back to the sender
        frame[6 + index] = mac[index]
      }
      _ = try? Required.net.send(frame: UnsafeRawBufferPointer(rebasing: frame[0..<length]))
      echoed += 1
    }
    let text = UnsafeMutableRawBufferPointer.allocate(byteCount: 512, alignment: 1)
    defer { text.deallocate() }
    let count = (try? Required.net.counters(text: text)) ?? 0
    say(
      "@@ECHO echoed=\(echoed) \(text: UnsafeBufferPointer(rebasing: text.bindMemory(to: UInt8.self)[0..<count]))"
    )
    return 0
  }
}

func start() -> Program {
  Program.export(Echo())!
}
