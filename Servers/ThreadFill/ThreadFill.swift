// ThreadFill: see ThreadFill.server (systems/tests/workers.system).

import KernelCore
import ServerRuntime

func report(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}
func sleep(_ ms: UInt) { try? Required.clock.sleep(milliseconds: ms) }
nonisolated(unsafe) var gate: Semaphore? = nil
nonisolated(unsafe) var ended: UInt = 0
final class Waiter: RunnableImplementation {
  func run() { try? gate!.wait(); ended += 1 }
}
final class Attack: ProgramImplementation {
  func run() -> UInt {
    gate = try? Required.sync.makeSemaphore(count: 0)
    let work = Runnable.export(Waiter())!
    var n: UInt = 0
    while ((try? Required.threads.spawn(work: work, priority: 2)) ?? 0) != 0 { n += 1 }
    report("@@ATK spawned \(n) threads; table full")
    let victims = Required.victims
    let before = (try? victims.destroyed()) ?? 0
    if let object = try? victims.make() { _ = object.release() }
    sleep(50)
    let during = ((try? victims.destroyed()) ?? 0) - before
    var crashed = false
    do throws(CallError) { try Required.keeper.crash() } catch { crashed = true }
    sleep(50)
    for _ in 0..<n { try? gate!.signal() }
    for _ in 0..<100 where ended < n { sleep(10) }
    sleep(100)
    let after = ((try? victims.destroyed()) ?? 0) - before
    let rebound = (try? Required.supervision.rebind(reference: UInt(Required.keeper.handle))) ?? 0
    report(
      "@@ATK threads ended=\(ended) destroyedWhileFull=\(during) destroyedAfter=\(after) keeperCrashed=\(crashed) rebound=\(rebound)"
    )
    _ = work.release()
    return 0
  }
}
func start() -> Program { Program.export(Attack())! }
