// StaleFlag: see StaleFlag.server (systems/tests/workers.system).

import KernelCore
import ServerRuntime

func report(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}
func sleep(_ ms: UInt) { try? Required.clock.sleep(milliseconds: ms) }

nonisolated(unsafe) var done: UInt = 0
final class Worker: RunnableImplementation {
  let delay: UInt
  init(_ delay: UInt) { self.delay = delay }
  func run() {
    sleep(delay)
    _ = try? Required.locked.ping()  // leaves the lock flag of this depth set
    _ = try? Required.safe.nap(milliseconds: 50)
    done += 1
  }
}

final class Attack: ProgramImplementation {
  func run() -> UInt {
    for delay: UInt in [0, 10] {
      let work = Runnable.export(Worker(delay))!
      _ = try? Required.threads.spawn(work: work, priority: 2)
      _ = work.release()
    }
    for _ in 0..<100 where done < 2 { sleep(10) }
    report("@@ATK stale-flag threads finished=\(done) of 2 ok=\(done == 2)")
    return 0
  }
}

func start() -> Program { Program.export(Attack())! }
