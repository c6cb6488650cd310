// SerialPort: the 16550 UART at COM1, the kernel's console.
//
// Contract: `initialize` sets 115200 baud, 8N1, FIFOs on; `write` blocks until each byte
// is accepted and turns "\n" into "\r\n" so raw terminals show lines correctly. Callers
// serialize (the log disables interrupts around whole lines).

import CPU
import KernelCore

enum SerialPort {
  private static let base: UInt16 = 0x3F8
  private static let data: UInt16 = base
  private static let interruptEnable: UInt16 = base + 1
  private static let fifoControl: UInt16 = base + 2
  private static let lineControl: UInt16 = base + 3
  private static let modemControl: UInt16 = base + 4
  private static let lineStatus: UInt16 = base + 5
  private static let transmitterEmpty: UInt8 = 0x20

  /// Programs the UART; called once, first thing at boot.
  static func initialize() {
    cpu_outb(interruptEnable, 0x00)
    cpu_outb(lineControl, 0x80)  // divisor latch access
    cpu_outb(data, 0x01)  // divisor 1 = 115200 baud
    cpu_outb(interruptEnable, 0x00)
    cpu_outb(lineControl, 0x03)  // 8 bits, no parity, one stop bit
    cpu_outb(fifoControl, 0xC7)  // enable and clear FIFOs
    cpu_outb(modemControl, 0x03)  // DTR, RTS
  }

  /// Sends one byte, translating "\n" to "\r\n".
  static func write(byte: UInt8) {
    if byte == UInt8(ascii: "\n") { put(UInt8(ascii: "\r")) }
    put(byte)
  }

  /// Sends bytes.
  static func write(_ bytes: UnsafeBufferPointer<UInt8>) {
    for byte in bytes { write(byte: byte) }
  }

  private static func put(_ byte: UInt8) {
    while cpu_inb(lineStatus) & transmitterEmpty == 0 {}
    cpu_outb(data, byte)
  }
}
