// HotDestroy: see HotDestroy.server (systems/tests/workers.system).

import ServerRuntime

final class Hot: NapperImplementation {
  func nap(milliseconds: UInt) -> UInt { 0 }
  func ping() -> UInt { 1 }
  // Never returns, but calls out of the server all the time (the watchdog never fires).
  deinit { while true { _ = try? Required.clock.uptimeMilliseconds() } }
}
func start() -> Napper { Napper.export(Hot())! }
