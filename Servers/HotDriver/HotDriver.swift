// HotDriver: see HotDriver.server (systems/tests/workers.system).

import KernelCore
import ServerRuntime

func report(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}
final class Driver: ProgramImplementation {
  func run() -> UInt {
    let hot = Required.hot
    _ = try? hot.ping()
    report("@@ATK releasing the hot object (the composition's instance handle goes at group end)")
    return 0
  }
}
func start() -> Program { Program.export(Driver())! }
