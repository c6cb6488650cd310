// DefaultSystem: what the kernel does after booting in `make run`.
//
// Contract: for now, report memory and idle with interrupts on; the component model
// (issue 3) replaces this with loading the composition in systems/default.

import KernelCore

func runSystem() -> Never {
  let frames = PhysicalMemory.statistics
  Log.info("\(frames.freeFrames) of \(frames.usableFrames) frames free; no servers to load yet, idling (Ctrl-A X quits QEMU)")
  while true { Machine.waitForInterrupt() }
}
