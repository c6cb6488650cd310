// ComputeTarget: the callee of the call benchmarks.

import ServerRuntime

final class Adder: ComputeImplementation {
  func compute(a: UInt, b: UInt, c: UInt) -> UInt { a &+ b &+ c }
}

func start() -> Compute {
  Compute.export(Adder())!
}
