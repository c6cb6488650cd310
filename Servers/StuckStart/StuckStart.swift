// StuckStart: see StuckStart.server (systems/tests/workers.system).

import KernelCore
import ServerRuntime

func report(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}

final class Crasher: ProgramImplementation {
  func run() -> UInt {
    report("@@ATK first instance crashes now")
    UnsafeMutablePointer<UInt>(bitPattern: UInt(0xDEAD_0000))!.pointee = 1
    return 0
  }
}

func start() -> Program {
  try? Required.counter.increment()
  if ((try? Required.counter.value()) ?? 0) > 1 {
    report("@@ATK restarted start sleeps for ever")
    while true { try? Required.clock.sleep(milliseconds: 1000) }
  }
  return Program.export(Crasher())!
}
