// Timer: the PIT (8253/8254) channel 0 as the kernel's periodic tick.
//
// Contract: after `start`, IRQ 0 fires at `frequency` Hz (divisor 1193: 1000.15 Hz, a
// tick every 0.99985 ms) and `ticks` counts them. `uptimeNanoseconds` converts ticks
// exactly, so uptime does not drift by the 0.015% the divisor rounds off.

import CPU
import KernelCore

enum Timer {
  /// The PIT's input clock in Hz.
  static let inputFrequency: UInt64 = 1_193_182
  /// The divisor programmed into channel 0.
  static let divisor: UInt64 = 1193
  /// Ticks per second, rounded: 1000.
  static let frequency = inputFrequency / divisor

  private nonisolated(unsafe) static var tickCount: UInt64 = 0

  /// Programs channel 0 as a rate generator and installs the tick handler.
  static func start() {
    cpu_outb(0x43, 0x34)  // channel 0, low then high byte, mode 2
    cpu_outb(0x40, UInt8(divisor & 0xFF))
    cpu_outb(0x40, UInt8(divisor >> 8))
    InterruptController.register(
      line: 0,
      handler: { _ in
        Timer.tickCount &+= 1
        Scheduler.tick(now: Timer.tickCount)
      })
  }

  /// Ticks since `start`.
  static var ticks: UInt64 {
    Machine.withInterruptsDisabled { tickCount }  // a 64-bit read must not tear
  }

  /// `ticks` for a caller that has interrupts disabled already (the scheduler's switch).
  static var ticksWithInterruptsDisabled: UInt64 { tickCount }

  /// Nanoseconds since `start`.
  static var uptimeNanoseconds: UInt64 {
    let scaled = ticks * divisor  // in PIT input cycles; overflows only after millennia
    return scaled / inputFrequency * 1_000_000_000 + scaled % inputFrequency * 1_000_000_000 / inputFrequency
  }

  /// Waits until at least `count` more ticks have passed.
  static func sleep(ticks count: UInt64) {
    let end = ticks + count
    while ticks < end { Machine.waitForInterrupt() }
  }
}
