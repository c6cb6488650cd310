// CrossWake: see CrossWake.server (systems/tests/workers.system).

import KernelCore
import ServerRuntime

func report(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}
func sleep(_ ms: UInt) { try? Required.clock.sleep(milliseconds: ms) }

nonisolated(unsafe) var spinDone = false
final class Spin: RunnableImplementation {
  func run() {
    _ = try? Required.victims.spinThenCall(milliseconds: 100, other: Required.victims)
    spinDone = true
  }
}

final class Attack: ProgramImplementation {
  func run() -> UInt {
    let victims = Required.victims
    guard let o1 = try? victims.make(), let o2 = try? victims.make() else { return 1 }
    let work = Runnable.export(Spin())!
    _ = try? Required.threads.spawn(work: work, priority: 2)
    _ = work.release()
    sleep(10)  // the spinner holds the Victim's lock
    _ = o1.release()  // destroy 1 waits for the lock on the Victim's worker
    sleep(10)
    _ = o2.release()  // destroy 2 posted: the worker is woken inside its lock wait
    for _ in 0..<50 where !spinDone { sleep(10) }
    sleep(50)
    report("@@ATK spinner done=\(spinDone); calling victims.ping")
    let answer = (try? victims.ping()) ?? 0
    report("@@ATK victims.ping answered \(answer): no hang")
    return 0
  }
}

func start() -> Program { Program.export(Attack())! }
