// InterruptTests: in-kernel tests of interrupt dispatch, the timer, SSE state and symbols.

import CPU
import KernelCore
import TestSupport

func interruptTests() -> [KernelTest] {
  [
    KernelTest(name: "interrupts.timer_ticks", body: timerTicks),
    KernelTest(name: "interrupts.handler_registration", body: handlerRegistration),
    KernelTest(name: "interrupts.sse_state_preserved", body: sseStatePreserved),
    KernelTest(name: "interrupts.spurious_irq7", body: spuriousIRQ7),
    KernelTest(name: "symbols.names_in_backtraces", body: symbolNames),
  ]
}

private func timerTicks() {
  let startTicks = Timer.ticks
  let startNanoseconds = Timer.uptimeNanoseconds
  Timer.sleep(ticks: 20)
  let ticks = Timer.ticks - startTicks
  let nanoseconds = Timer.uptimeNanoseconds - startNanoseconds
  check(ticks >= 20 && ticks <= 22, "slept 20 ticks but \(ticks) passed")
  check(nanoseconds >= 19_000_000 && nanoseconds <= 23_000_000, "20 ticks took \(nanoseconds) ns of uptime")
  check(InterruptController.counts[0] > 0, "no IRQ 0 counted")
}

private nonisolated(unsafe) var testLineCalls = 0

private func handlerRegistration() {
  let handler: IRQHandler = { _ in testLineCalls += 1 }
  check(InterruptController.register(line: 5, handler: handler), "registering line 5 failed")
  check(!InterruptController.register(line: 5, handler: handler), "line 5 accepted a second owner")
  let before = testLineCalls
  softwareInterrupt37()
  check(testLineCalls == before + 1, "handler for line 5 not called by vector 37")
  InterruptController.unregister(line: 5)
  softwareInterrupt37()
  check(testLineCalls == before + 1, "handler called after unregister")
}

private func softwareInterrupt37() { _ = test_sse_survives_interrupt_37() }

private func sseStatePreserved() {
  let clobber: IRQHandler = { _ in
    test_clobber_sse()
    testLineCalls += 1
  }
  check(InterruptController.register(line: 5, handler: clobber), "registering line 5 failed")
  let before = testLineCalls
  let changed = test_sse_survives_interrupt_37()
  let handled = testLineCalls - before
  InterruptController.unregister(line: 5)
  check(handled == 1, "the clobbering handler ran \(handled) times")
  check(changed == 0, "xmm registers changed by an interrupt handler (mask \(hex: changed))")
}

private func spuriousIRQ7() {
  let spuriousBefore = InterruptController.spuriousCount
  let countBefore = InterruptController.counts[7]
  test_raise_vector_39()
  check(
    InterruptController.spuriousCount == spuriousBefore + 1,
    "IRQ 7 without in-service bit not counted as spurious")
  check(InterruptController.counts[7] == countBefore, "spurious IRQ 7 counted as a real one")
}

private func symbolNames() {
  check(Panic.symbols != nil, "no symbol map loaded")
  let dispatch: @convention(c) (UnsafeMutablePointer<InterruptFrame>) -> Void = interruptDispatch
  let dispatchAddress = UInt32(UInt(bitPattern: unsafeBitCast(dispatch, to: UnsafeRawPointer.self)))
  let name = Panic.symbol(dispatchAddress + 3)
  check(contains(name, "interrupt_dispatch + 0x3"), "address of interrupt_dispatch named '\(name)'")
  let stub: @convention(c) () -> Void = test_clobber_sse
  let stubName = Panic.symbol(UInt32(UInt(bitPattern: unsafeBitCast(stub, to: UnsafeRawPointer.self))))
  check(contains(stubName, "test_clobber_sse + 0x0"), "assembly function named '\(stubName)'")
  check(contains(Panic.symbol(0xFFFF_F000), "?"), "an address outside the kernel got a name")
}

/// Whether the rendered `message` contains `text`.
func contains(_ message: KernelMessage, _ text: StaticString) -> Bool {
  message.withBytes { bytes in
    let needle = UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount)
    guard needle.count <= bytes.count else { return false }
    for start in 0...(bytes.count - needle.count) {
      var index = 0
      while index < needle.count && bytes[start + index] == needle[index] { index += 1 }
      if index == needle.count { return true }
    }
    return false
  }
}
