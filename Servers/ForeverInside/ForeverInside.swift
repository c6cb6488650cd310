// ForeverInside: see ForeverInside.server (systems/tests/workers.system).

import KernelCore
import ServerRuntime

func report(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}
nonisolated(unsafe) var object: Holdable? = nil
final class Holder: RunnableImplementation {
  func run() { _ = try? object!.hold(milliseconds: 100_000_000) }
}
final class Attack: ProgramImplementation {
  func run() -> UInt {
    object = try? Required.victims.make()
    let work = Runnable.export(Holder())!
    _ = try? Required.threads.spawn(work: work, priority: 2)
    _ = work.release()
    try? Required.clock.sleep(milliseconds: 20)
    // Drop the last reference while the holder sleeps inside (its handle stays valid for
    // the holder only by luck of timing: it is inside already).
    _ = object!.release()
    report("@@ATK released the object a thread sleeps inside for ever")
    return 0
  }
}
func start() -> Program { Program.export(Attack())! }
