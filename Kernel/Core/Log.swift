// Log: the kernel log on the serial console.
//
// Contract: each call writes one whole line `[seconds.micros] level: text`, with
// interrupts disabled so lines never interleave. Lines below `Log.threshold` (set by
// `loglevel=` on the command line) are dropped. Nothing here allocates.

import KernelCore

enum LogLevel: Int {
  case error = 0
  case warning = 1
  case info = 2
  case debug = 3

  var label: StaticString {
    switch self {
    case .error: "error"
    case .warning: "warning"
    case .info: "info"
    case .debug: "debug"
    }
  }
}

enum Log {
  /// The most detailed level written.
  nonisolated(unsafe) static var threshold = LogLevel.info

  static func error(_ message: KernelMessage) { write(.error, message) }
  static func warning(_ message: KernelMessage) { write(.warning, message) }
  static func info(_ message: KernelMessage) { write(.info, message) }
  static func debug(_ message: KernelMessage) { write(.debug, message) }

  /// Writes `message` at `level` with a timestamp.
  static func write(_ level: LogLevel, _ message: KernelMessage) {
    guard level.rawValue <= threshold.rawValue else { return }
    let nanoseconds = Timer.uptimeNanoseconds
    var prefix = KernelMessage()
    let seconds = nanoseconds / 1_000_000_000
    let micros = nanoseconds / 1000 % 1_000_000
    prefix.append("[")
    for _ in 0..<max(0, 5 - digits(seconds)) { prefix.append(" ") }
    prefix.append(decimal: seconds)
    prefix.append(".")
    for _ in 0..<(6 - digits(micros)) { prefix.append("0") }
    prefix.append(decimal: micros)
    prefix.append("] ")
    prefix.append(level.label)
    prefix.append(": ")
    // A line is written by one thread at a time, with interrupts on (a server's 1 KiB
    // console write must not hold them off for the time the UART takes). Lines written
    // with interrupts off (interrupt and fault handlers, boot) or by the idle thread go
    // out at once, under interrupts off.
    let thread = Scheduler.current
    guard Processor.interruptsEnabled(), let thread, thread.priority > 0 else {
      Machine.withInterruptsDisabled { writeLine(prefix, message) }
      return
    }
    let me = thread.number + 1
    var nested = false
    for _ in 0..<5 {
      let taken = Machine.withInterruptsDisabled {
        if consoleHolder == me { nested = true }
        if consoleHolder == 0 { consoleHolder = me }
        return consoleHolder == me
      }
      if taken { break }
      Scheduler.sleep(ticks: 1)  // the holder was switched out mid-line
    }
    guard consoleHolder == me else {
      // A holder of lower priority that others keep from running: write anyway, at once
      // (the line may cut into its own), rather than wait behind it.
      Machine.withInterruptsDisabled { writeLine(prefix, message) }
      return
    }
    writeLine(prefix, message)
    if !nested { Machine.withInterruptsDisabled { consoleHolder = 0 } }
  }

  /// The thread writing a line (its number + 1), 0 when none is.
  nonisolated(unsafe) private static var consoleHolder: UInt32 = 0

  private static func writeLine(_ prefix: KernelMessage, _ message: KernelMessage) {
    KernelConsole.write(prefix)
    KernelConsole.write(message)
    KernelConsole.write("\n")
  }

  /// Sets the threshold from a `loglevel=` value; returns false if the name is unknown.
  static func setThreshold(named name: UnsafeBufferPointer<UInt8>) -> Bool {
    var rawValue = 0
    while let level = LogLevel(rawValue: rawValue) {
      if equals(name, level.label) {
        threshold = level
        return true
      }
      rawValue += 1
    }
    return false
  }

  private static func digits(_ value: UInt64) -> Int {
    var count = 1
    var rest = value / 10
    while rest > 0 {
      count += 1
      rest /= 10
    }
    return count
  }
}

/// Raw console output, for the log and for panic reports.
enum KernelConsole {
  static func write(_ message: KernelMessage) {
    message.withBytes { SerialPort.write($0) }
  }
}

/// The C `putchar` the embedded Swift runtime uses for its own messages (fatal errors).
@_cdecl("putchar")
func putchar(_ character: Int32) -> Int32 {
  SerialPort.write(byte: UInt8(truncatingIfNeeded: character))
  return character
}
