// Crasher: calls another server, then faults (see Crasher.server).

import ServerRuntime

final class Faulty: ProgramImplementation {
  func run() -> UInt {
    let sum = (try? Required.target.compute(a: 1, b: 2, c: 3)) ?? 0
    let wild = UnsafeMutablePointer<UInt>(bitPattern: UInt(0xDEAD_0000) &+ sum)!
    wild.pointee = sum  // page fault: nothing is mapped there
    return 0
  }
}

func start() -> Program {
  Program.export(Faulty())!
}
