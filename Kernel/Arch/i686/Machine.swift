// Machine: whole-machine operations of the PC: stopping, ending QEMU, the real-time clock,
// and scoped interrupt masking.
//
// Contract: `stop` never returns. With `on-panic=exit` on the kernel command line (the
// system tests use it) it ends QEMU through the isa-debug-exit device so the host sees
// the status; otherwise it halts the CPU with interrupts off, leaving the console readable.

import CPU
import KernelCore

/// Exit statuses reported through isa-debug-exit; QEMU exits with `(code << 1) | 1`.
enum ExitCode: UInt32 {
  /// Every test passed (QEMU status 33).
  case success = 0x10
  /// Some test failed (QEMU status 35).
  case failure = 0x11
  /// The kernel panicked (QEMU status 37).
  case panic = 0x12
}

enum Machine {
  private static let debugExitPort: UInt16 = 0xF4

  /// Whether `stop` should end QEMU instead of halting (set from the command line).
  nonisolated(unsafe) static var exitOnStop = false

  /// Ends QEMU with `code` if the debug-exit device is present, else halts forever.
  static func stop(_ code: ExitCode) -> Never {
    cpu_disable_interrupts()
    if exitOnStop || code != .panic { cpu_outl(debugExitPort, code.rawValue) }
    while true { cpu_halt() }
  }

  /// Runs `body` with interrupts disabled, restoring the previous state afterwards.
  @inline(__always)
  static func withInterruptsDisabled<Result>(_ body: () -> Result) -> Result {
    let flags = cpu_flags()
    cpu_disable_interrupts()
    defer { cpu_restore_flags(flags) }
    return body()
  }

  /// Timestamp counts spent halted since boot. Under `-icount shift=0` a timestamp is a
  /// guest instruction, so busy instructions are the elapsed count less these (`make
  /// bench` measures a stack's cost per byte this way).
  nonisolated(unsafe) private(set) static var haltedTimestamps: UInt64 = 0
  /// Timestamp counts since the kernel's first instruction.
  static var timestampsSinceBoot: UInt64 { cpu_timestamp() &- arch_boot_timestamp() }
  /// When the current halt began (0: not halted).
  nonisolated(unsafe) private static var haltedSince: UInt64 = 0

  /// Waits for the next interrupt with interrupts enabled.
  static func waitForInterrupt() {
    cpu_disable_interrupts()
    haltedSince = cpu_timestamp()
    cpu_enable_interrupts_and_halt()  // sti's one-instruction shadow: no interrupt before hlt
  }

  /// Ends the halt an interrupt woke, first thing in every interrupt (its handler, and any
  /// thread it switches to, are busy time).
  static func endHalt() {
    guard haltedSince != 0 else { return }
    haltedTimestamps &+= cpu_timestamp() &- haltedSince
    haltedSince = 0
  }

  /// A calendar date and time from the CMOS real-time clock.
  struct WallClock {
    var year = 0
    var month = 0
    var day = 0
    var hour = 0
    var minute = 0
    var second = 0
  }

  /// Reads the real-time clock (UTC in QEMU).
  static func readClock() -> WallClock {
    func register(_ index: UInt8) -> UInt8 {
      cpu_outb(0x70, index)
      return cpu_inb(0x71)
    }
    while register(0x0A) & 0x80 != 0 {}  // wait out an update in progress
    let status = register(0x0B)
    func value(_ index: UInt8) -> Int {
      let raw = register(index)
      let binary = status & 0x04 != 0 ? raw : (raw >> 4) * 10 + (raw & 0x0F)
      return Int(binary)
    }
    var clock = WallClock()
    clock.second = value(0x00)
    clock.minute = value(0x02)
    clock.hour = value(0x04)
    clock.day = value(0x07)
    clock.month = value(0x08)
    clock.year = 2000 + value(0x09)
    return clock
  }
}
