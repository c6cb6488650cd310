// TrapDriver: see TrapDriver.server (systems/tests/workers.system).

import KernelCore
import ServerRuntime

func report(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}
final class Driver: ProgramImplementation {
  func run() -> UInt {
    let timer = (try? Required.target.nap(milliseconds: 5)) ?? 0
    try? Required.clock.sleep(milliseconds: 50)
    report("@@ATK timer \(timer) fired (callback traps in kernel mode); now the destroy traps at group end")
    return 0
  }
}
func start() -> Program { Program.export(Driver())! }
