// TrapDestroy: see TrapDestroy.server (systems/tests/workers.system).

import ServerRuntime

nonisolated(unsafe) var zero: UInt = 0
nonisolated(unsafe) var optional: UInt? = nil
final class Trapper: RunnableImplementation {
  func run() { _ = optional! }
}
final class T: NapperImplementation {
  // nap(1): sets a timer whose callback traps.
  func nap(milliseconds: UInt) -> UInt {
    let r = Runnable.export(Trapper())!
    let t = (try? Required.timers.after(milliseconds: milliseconds, callback: r)) ?? 0
    _ = r.release()
    return t
  }
  func ping() -> UInt { 1 }
  deinit { zero = zero - 1 }  // overflow trap in the destroy
}
func start() -> Napper { Napper.export(T())! }
