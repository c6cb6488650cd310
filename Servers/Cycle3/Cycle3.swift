// Cycle3: see Cycle3.server (systems/tests/workers.system).

import KernelCore
import ServerRuntime

func report(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}
func sleep(_ ms: UInt) { try? Required.clock.sleep(milliseconds: ms) }

nonisolated(unsafe) var done: UInt = 0
final class Task: RunnableImplementation {
  let body: () -> UInt
  var result: UInt = 99
  init(_ body: @escaping () -> UInt) { self.body = body }
  func run() { result = body(); done += 1 }
}

final class Attack: ProgramImplementation {
  func run() -> UInt {
    let a = Required.v1, b = Required.v2, c = Required.v3
    let tasks = [
      Task({ (try? a.spinThenCall(milliseconds: 40, other: b)) ?? 77 }),
      Task({ (try? b.spinThenCall(milliseconds: 40, other: c)) ?? 77 }),
      Task({ (try? c.spinThenCall(milliseconds: 40, other: a)) ?? 77 }),
    ]
    for task in tasks {
      let work = Runnable.export(task)!
      _ = try? Required.threads.spawn(work: work, priority: 2)
      _ = work.release()
    }
    for _ in 0..<200 where done < 3 { sleep(10) }
    report("@@ATK cycle3 finished=\(done) results=\(tasks[0].result),\(tasks[1].result),\(tasks[2].result)")
    return 0
  }
}

func start() -> Program { Program.export(Attack())! }
