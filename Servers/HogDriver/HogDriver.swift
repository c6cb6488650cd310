// HogDriver: see HogDriver.server (systems/tests/workers.system).

import KernelCore
import ServerRuntime

func report(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}
final class Nap: RunnableImplementation {
  func run() { try? Required.clock.sleep(milliseconds: 100) }
}
final class Driver: ProgramImplementation {
  func run() -> UInt {
    report("@@ATK driver runs")
    var semaphores: [Semaphore] = []
    for _ in 0..<3000 {
      guard let s = try? Required.sync.makeSemaphore(count: 0) else { break }
      semaphores.append(s)
    }
    report("@@ATK made \(semaphores.count) semaphores")
    var threads = 0
    let work = Runnable.export(Nap())!
    for _ in 0..<16 where ((try? Required.threads.spawn(work: work, priority: 2)) ?? 0) != 0 { threads += 1 }
    report("@@ATK spawned \(threads) threads")
    try? Required.clock.sleep(milliseconds: 200)
    for s in semaphores { _ = s.release() }
    _ = work.release()
    return 0
  }
}
func start() -> Program { Program.export(Driver())! }
