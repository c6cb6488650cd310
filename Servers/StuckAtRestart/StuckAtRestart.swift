// StuckAtRestart: see StuckAtRestart.server.

import ServerRuntime
import TesseraABI

final class Faulting: ProgramImplementation {
  func run() -> UInt {
    let address = tessera_timestamp() == 0 ? UInt(0) : UInt(0xDEAD_0000)
    UnsafeMutablePointer<UInt>(bitPattern: address)!.pointee = 1
    return 0
  }
}

func start() -> Program {
  try? Required.rounds.increment()
  if ((try? Required.rounds.value()) ?? 0) >= 2 {
    while true { try? Required.clock.sleep(milliseconds: 1000) }  // the restart never ends
  }
  return Program.export(Faulting())!
}
