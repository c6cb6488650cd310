// TransferTarget: the callee of the marshaled-call benchmarks; each method touches its
// argument, so the benchmark checks that the block or reference really arrived.

import ServerRuntime

final class Mover: TransferImplementation {
  func absorb(data: UnsafeRawBufferPointer) -> UInt {
    guard let first = data.first, let last = data.last else { return 0 }
    return UInt(first) &+ UInt(last)
  }

  func fill(data: UnsafeMutableRawBufferPointer) -> Int {
    guard !data.isEmpty else { return 0 }
    data[data.count - 1] = 0x5A
    return data.count
  }

  func hold(target: Compute) -> UInt {
    target.release()
    return 1
  }
}

func start() -> Transfer {
  Transfer.export(Mover())!
}
