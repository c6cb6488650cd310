// FaultTests: deliberate faults whose panic reports the host's system tests check.
// Each ends the kernel, so each runs alone (`test=fault.NAME on-panic=exit`).

import KernelCore
import TestSupport

func faultTests() -> [KernelTest] {
  [
    KernelTest(name: "fault.page_fault", endsInPanic: true, body: { triggerPageFault(0xDEAD_B000) }),
    KernelTest(name: "fault.divide_by_zero", endsInPanic: true, body: { test_divide_by_zero() }),
    KernelTest(name: "fault.swift_trap", endsInPanic: true, body: triggerSwiftTrap),
    KernelTest(name: "fault.panic", endsInPanic: true, body: { panic("deliberate panic from fault.panic") }),
    KernelTest(name: "fault.kernel_stack_overflow", endsInPanic: true, body: overflowAKernelStack),
  ]
}

/// Runs a thread whose recursion runs off its 16 KiB kernel stack into the guard below.
func overflowAKernelStack() {
  _ = Scheduler.spawn(name: "deep recursion", priority: Scheduler.highPriority) { _ = recurse(0) }
  while true { Scheduler.sleep(ticks: 100) }
}

@inline(never)
func recurse(_ depth: UInt32) -> UInt32 {
  var frame: InlineArray<64, UInt32> = .init(repeating: depth)
  frame[Int(depth % 64)] = recurse(depth + 1)  // not a tail call: the frame stays
  return frame[Int((depth + 1) % 64)]
}

@inline(never)
func triggerPageFault(_ address: UInt32) {
  test_write_to(address)
}

nonisolated(unsafe) var trapIndex = 7

@inline(never)
func triggerSwiftTrap() {
  let values: InlineArray<4, Int> = [1, 2, 3, 4]
  Log.info("reading element \(trapIndex) of 4")
  _ = values[trapIndex]  // out of bounds: the runtime traps
}
