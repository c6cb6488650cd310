// LineIntruder: see LineIntruder.server. `run` returns detach's result * 10 + attach's
// (0 when both are refused).

import ServerRuntime

final class Handler: InterruptHandlerImplementation {
  func interrupt() {}
}

final class Intruder: ProgramImplementation {
  func run() -> UInt {
    let detached = (try? Required.irq.detach()) ?? 9
    let handler = InterruptHandler.export(Handler())!
    let attached = (try? Required.irq.attach(handler: handler)) ?? 9
    handler.release()
    return detached * 10 + attached
  }
}

func start() -> Program {
  Program.export(Intruder())!
}
