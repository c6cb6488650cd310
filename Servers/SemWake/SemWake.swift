// SemWake: see SemWake.server (systems/tests/workers.system).

import KernelCore
import ServerRuntime

func report(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}
func sleep(_ ms: UInt) { try? Required.clock.sleep(milliseconds: ms) }
final class Attack: ProgramImplementation {
  func run() -> UInt {
    let v = Required.victims
    let before = (try? v.destroyed()) ?? 0
    guard let sleepy = try? v.makeSleepy(), let plain = try? v.make() else { return 1 }
    _ = sleepy.release()  // its destroy waits on Victim's semaphore until wake()
    sleep(20)
    _ = plain.release()  // posts a destroy: wakes the worker inside that wait
    sleep(20)
    let early = ((try? v.destroyed()) ?? 0) - before
    report("@@ATK sleepy destroy finished without wake(): \(early == 2) (destroyed=\(early))")
    // The unit of wake() now goes to the stale waiter: a second sleepy destroy waits for ever.
    try? v.wake()
    sleep(20)
    guard let sleepy2 = try? v.makeSleepy() else { return 1 }
    _ = sleepy2.release()
    sleep(20)
    try? v.wake()
    sleep(50)
    let total = ((try? v.destroyed()) ?? 0) - before
    report("@@ATK second sleepy destroyed after wake(): \(total == 3) (destroyed=\(total))")
    return 0
  }
}
func start() -> Program { Program.export(Attack())! }
