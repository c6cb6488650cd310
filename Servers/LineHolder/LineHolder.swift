// LineHolder: the owner side of the interrupt-line tests (see LineHolder.server). Prints
// `@@LINE` lines for HostileSystemTests.

import KernelCore
import ServerRuntime
import TesseraABI

func report(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}

final class Handler: InterruptHandlerImplementation {
  func interrupt() {}
}

final class Holder: ProgramImplementation {
  func run() -> UInt {
    try? Required.rounds.increment()
    let round = (try? Required.rounds.value()) ?? 0
    let handler = InterruptHandler.export(Handler())!
    let attached = (try? Required.irq.attach(handler: handler)) ?? 9
    let again = (try? Required.irq.attach(handler: handler)) ?? 9
    if round == 1 {
      // Fail while holding the line: the restarted instance must get it back.
      report("@@LINE round=1 attach=\(attached) again=\(again)")
      let address = tessera_timestamp() == 0 ? UInt(0) : UInt(0xDEAD_0000)
      UnsafeMutablePointer<UInt>(bitPattern: address)!.pointee = round
    }
    let intruder = (try? Required.intruder.run()) ?? 9
    let detached = (try? Required.irq.detach()) ?? 9
    let detachedAgain = (try? Required.irq.detach()) ?? 9
    let reattached = (try? Required.irq.attach(handler: handler)) ?? 9
    let last = (try? Required.irq.detach()) ?? 9
    handler.release()
    report(
      "@@LINE round=\(round) attach=\(attached) again=\(again) intruder=\(intruder) detach=\(detached) detach-again=\(detachedAgain) reattach=\(reattached) last=\(last)"
    )
    return 0
  }
}

func start() -> Program {
  Program.export(Holder())!
}
