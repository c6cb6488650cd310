// FrameSink: see FrameSink.server. Each method touches the 14 header bytes of every frame
// it is given, no more, so the figures compare how frames travel, not what is done with them.

import KernelCore
import ServerRuntime

final class Sink: FrameSinkImplementation {
  /// The shared memory, once `share` mapped it.
  private var shared: UnsafeRawPointer?
  private var sharedSize = 0

  private func headerSum(_ bytes: UnsafeRawPointer, _ length: Int) -> UInt {
    var sum: UInt = 0
    for index in 0..<min(14, length) { sum &+= UInt(bytes.load(fromByteOffset: index, as: UInt8.self)) }
    return sum
  }

  func take(frame: UnsafeRawBufferPointer) -> UInt {
    guard let base = frame.baseAddress else { return 0 }
    return headerSum(base, frame.count)
  }

  func takeBatch(frames: UnsafeRawBufferPointer) -> UInt {
    var offset = 0
    var count: UInt = 0
    var sum: UInt = 0
    while offset + 2 <= frames.count {
      let length = Int(frames[offset]) | Int(frames[offset + 1]) << 8
      guard length > 0, offset + 2 + length <= frames.count else { break }
      sum &+= headerSum(frames.baseAddress! + offset + 2, length)
      count += 1
      offset += 2 + length
    }
    _ = sum  // computed as a layer would, not needed for the answer
    return count
  }

  func share(memory: Memory) -> UInt {
    guard shared == nil, let size = try? memory.size(),
      let address = try? Required.memory.map(memory: memory, writable: 0), address != 0
    else { return 0 }
    shared = UnsafeRawPointer(bitPattern: address)
    sharedSize = Int(size)
    return 1
  }

  func takeShared(offset: UInt, length: UInt) -> UInt {
    // Words from another server: checked before they become a pointer.
    guard let shared, offset < UInt(sharedSize), length <= UInt(sharedSize) - offset else { return 0 }
    return headerSum(shared + Int(offset), Int(length))
  }
}

func start() -> FrameSink {
  FrameSink.export(Sink())!
}
