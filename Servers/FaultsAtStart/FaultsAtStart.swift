// FaultsAtStart: a server whose start function faults (see FaultsAtStart.server).

import ServerRuntime
import TesseraABI

final class NeverStarted: ProgramImplementation {
  func run() -> UInt { 0 }
}

func start() -> Program {
  // The time-stamp counter is never 0, but the compiler cannot know: the write stays.
  let address = tessera_timestamp() == 0 ? UInt(0) : UInt(0xDEAD_0000)
  UnsafeMutablePointer<UInt>(bitPattern: address)!.pointee = 1
  return Program.export(NeverStarted())!
}
