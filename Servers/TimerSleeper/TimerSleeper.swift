// TimerSleeper: see TimerSleeper.server. Prints `@@TIMER` lines.

import KernelCore
import ServerRuntime

func report(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}

/// A callback that sleeps: it holds its server's timer thread for 500 ms.
final class Sleepy: RunnableImplementation {
  func run() {
    report("@@TIMER sleepy callback starts sleeping")
    try? Required.clock.sleep(milliseconds: 500)
    report("@@TIMER sleepy callback woke")
  }
}

final class Sleeper: ProgramImplementation {
  func run() -> UInt {
    let sleepy = Runnable.export(Sleepy())!
    _ = try? Required.timers.after(milliseconds: 10, callback: sleepy)
    try? Required.clock.sleep(milliseconds: 50)  // the sleepy callback is asleep now
    let witnessed = (try? Required.witness.run()) ?? 0
    report("@@TIMER the witness's timer fired while the sleepy callback slept: \(witnessed == 1)")
    try? Required.clock.sleep(milliseconds: 600)  // let the sleepy callback end
    sleepy.release()
    return witnessed == 1 ? 0 : 1
  }
}

func start() -> Program {
  Program.export(Sleeper())!
}
