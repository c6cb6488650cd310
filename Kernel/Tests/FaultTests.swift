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
  ]
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
