// TimerWitness: see TimerWitness.server. `run` returns 1 if its 20 ms timer fired within
// a second, else 0.

import KernelCore
import ServerRuntime

final class Quick: RunnableImplementation {
  var fired = false
  func run() {
    fired = true
    ("@@TIMER quick callback fired" as KernelMessage).withBytes { bytes in
      _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes))
    }
  }
}

final class Witness: ProgramImplementation {
  let quick = Quick()

  func run() -> UInt {
    let callback = Runnable.export(quick)!
    _ = try? Required.timers.after(milliseconds: 20, callback: callback)
    for _ in 0..<100 where !quick.fired { try? Required.clock.sleep(milliseconds: 10) }
    callback.release()
    return quick.fired ? 1 : 0
  }
}

func start() -> Program {
  Program.export(Witness())!
}
