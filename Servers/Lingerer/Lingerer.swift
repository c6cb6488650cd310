// Lingerer: a worker thread loops inside Fragile (misbehave kind 4) while the program
// makes Fragile fault (kind 1), releases its own reference and returns at once, so the
// composition drops the last reference to Fragile while the worker is still inside it. The kernel must keep the
// dead server until the watchdog has stopped the worker; the worker then reports.

import KernelCore
import ServerRuntime

func say(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}

func outcome(_ body: () throws(CallError) -> UInt) -> KernelMessage {
  do throws(CallError) {
    return "value \(try body())"
  } catch {
    return error == .serverUnavailable ? "serverUnavailable" : "error \(error.status)"
  }
}

final class Worker: RunnableImplementation {
  func run() {
    let result = outcome { () throws(CallError) in try Required.fragile.misbehave(kind: 4, address: 0) }
    say("@@LINGER worker left the failed server: \(result)")
  }
}

final class Main: ProgramImplementation {
  func run() -> UInt {
    guard let work = Runnable.export(Worker()) else { return 1 }
    _ = try? Required.threads.spawn(work: work, priority: 2)
    work.release()
    try? Required.clock.sleep(milliseconds: 20)  // the worker is inside Fragile by now
    let result = outcome { () throws(CallError) in try Required.fragile.misbehave(kind: 1, address: 0) }
    say("@@LINGER fault while the worker is inside: \(result)")
    // Drop this server's reference too (the worker keeps using the handle's entry as it
    // was when it called): the composition's reference is then the last one.
    Required.fragile.release()
    return 0
  }
}

func start() -> Program {
  Program.export(Main())!
}
