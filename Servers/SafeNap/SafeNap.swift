// SafeNap: see SafeNap.server (systems/tests/workers.system).

import ServerRuntime

final class N: NapperImplementation {
  func nap(milliseconds: UInt) -> UInt { try? Required.clock.sleep(milliseconds: milliseconds); return 1 }
  func ping() -> UInt { 1 }
}
func start() -> Napper { Napper.export(N())! }
