// IrqWitness: see IrqWitness.server. Prints `@@IRQ witness line=given attached=1` at
// start and `@@IRQ witness calls=N` when it ends.

import KernelCore
import ServerRuntime

func say(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}

/// Counts the calls.
final class Witness: InterruptHandlerImplementation {
  var calls = 0
  var line: InterruptLine?

  func interrupt() { calls += 1 }

}

/// The main object the composition holds: its end detaches the handler.
final class Holder: InterruptHandlerImplementation {
  let witness: Witness
  init(_ witness: Witness) { self.witness = witness }
  func interrupt() {}
  deinit {
    say("@@IRQ witness calls=\(witness.calls)")
    _ = try? witness.line?.detach()
  }
}

func start() -> InterruptHandler {
  let witness = Witness()
  var attached: UInt = 0
  if let line = (try? Required.device.interrupt()) ?? nil, let handler = InterruptHandler.export(witness) {
    witness.line = line
    attached = (try? line.attach(handler: handler)) ?? 0
  }
  let given = witness.line != nil
  say("@@IRQ witness lineGiven=\(given) attached=\(attached)")
  return InterruptHandler.export(Holder(witness))!
}
