// DefaultSystem: what the kernel does after booting in `make run`: load the composition
// passed as a boot module (`*.system`), then idle (or, with `exit-when-idle` on the
// command line, end QEMU with ExitCode.success, as `make bench` does).

import KernelCore

func runSystem() -> Never {
  if let name = BootModules.firstName(endingWith: ".system") {
    _ = SystemLoader.run(moduleName: name)
  } else {
    Log.warning("no composition module (*.system): nothing to load")
  }
  let frames = PhysicalMemory.statistics
  if Boot.commandLine.value(of: "exit-when-idle") != nil {
    Log.info("\(frames.freeFrames) of \(frames.usableFrames) frames free; exiting (exit-when-idle)")
    Machine.stop(.success)
  }
  Log.info("\(frames.freeFrames) of \(frames.usableFrames) frames free; idling (Ctrl-A X quits QEMU)")
  while true { Machine.waitForInterrupt() }
}
