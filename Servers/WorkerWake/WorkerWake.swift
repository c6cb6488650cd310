// WorkerWake: see WorkerWake.server (systems/tests/workers.system).

import KernelCore
import ServerRuntime

func report(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}
func now() -> UInt { (try? Required.clock.uptimeMilliseconds()) ?? 0 }
func sleep(_ ms: UInt) { try? Required.clock.sleep(milliseconds: ms) }

nonisolated(unsafe) var slept: UInt = 0
nonisolated(unsafe) var sleptDone = false
nonisolated(unsafe) var ticks: UInt = 0

final class Body: RunnableImplementation {
  let body: () -> Void
  init(_ body: @escaping () -> Void) { self.body = body }
  func run() { body() }
}
func runnable(_ body: @escaping () -> Void) -> Runnable { Runnable.export(Body(body))! }

final class Attack: ProgramImplementation {
  func run() -> UInt {
    // 1. A callback that sleeps 500 ms while a periodic timer of the same server fires.
    let sleepy = runnable {
      let t0 = now()
      sleep(500)
      slept = now() - t0
      sleptDone = true
    }
    let tick = runnable { ticks += 1 }
    _ = try? Required.timers.after(milliseconds: 5, callback: sleepy)
    sleep(15)
    let periodic = (try? Required.timers.every(milliseconds: 20, callback: tick)) ?? 0
    for _ in 0..<100 where !sleptDone { sleep(10) }
    _ = try? Required.timers.cancel(timer: periodic)
    report("@@ATK sleep-in-callback asked=500 slept=\(slept) ticks=\(ticks) ok=\(slept >= 500)")
    sleepy.release(); tick.release()
    sleep(50)

    // 2. The worker waits for this server's lock (held by a spinning thread) when another
    // callback is posted: it is woken, queues itself twice, and the lock is later handed
    // to it a second time after it has let go.
    let spin = runnable {
      report("@@ATK spinner holds the lock")
      let end = now() + 100
      while now() < end {}
      report("@@ATK spinner lets go")
    }
    let c1 = runnable { report("@@ATK callback 1 ran") }
    let c2 = runnable { report("@@ATK callback 2 ran") }
    _ = try? Required.timers.after(milliseconds: 20, callback: c1)
    _ = try? Required.timers.after(milliseconds: 40, callback: c2)
    _ = try? Required.threads.spawn(work: spin, priority: 2)
    c1.release(); c2.release(); spin.release()
    report("@@ATK main sleeps 300 ms")
    sleep(300)
    report("@@ATK main woke: lock handover survived")
    return 0
  }
}

func start() -> Program { Program.export(Attack())! }
