// SerialDriver: receives by interrupt, sends by polling. The kernel serializes calls into
// it (not thread-safe), and releases its lock while a reader waits for a byte.

import ServerRuntime

enum UART {
  static let data: UInt = 0
  static let interruptEnable: UInt = 1
  static let modemControl: UInt = 4
  static let lineStatus: UInt = 5
  static let dataReady: UInt = 0x01
  static let transmitterEmpty: UInt = 0x20
}

final class Serial: CharacterDeviceImplementation, InterruptHandlerImplementation {
  static let capacity = 256
  private var buffer = [UInt8](repeating: 0, count: Serial.capacity)
  private var head = 0
  private var count = 0
  /// Whether the receive interrupt is off because the buffer is full: input then waits
  /// in the UART (and QEMU holds the rest) instead of being dropped.
  private var paused = false
  private let available: Semaphore

  init() {
    available = try! Required.sync.makeSemaphore(count: 0)
  }

  /// Turns on the receive interrupt (and OUT2, which routes the UART's interrupt to the PIC).
  func enable() {
    _ = try? Required.ports.write8(offset: UART.modemControl, value: 0x0B)
    _ = try? Required.ports.write8(offset: UART.interruptEnable, value: 0x01)
  }

  func interrupt() { drain() }

  /// Moves received bytes into the buffer while there is room; when it is full, turns the
  /// receive interrupt off until a reader makes room.
  private func drain() {
    while ((try? Required.ports.read8(offset: UART.lineStatus)) ?? 0) & UART.dataReady != 0 {
      guard count < Serial.capacity else {
        paused = true
        _ = try? Required.ports.write8(offset: UART.interruptEnable, value: 0x00)
        return
      }
      let byte = UInt8(truncatingIfNeeded: (try? Required.ports.read8(offset: UART.data)) ?? 0)
      buffer[(head + count) % Serial.capacity] = byte
      count += 1
      try? available.signal()
    }
  }

  func read() -> UInt {
    try? available.wait()
    let byte = buffer[head]
    head = (head + 1) % Serial.capacity
    count -= 1
    if paused {
      paused = false
      drain()  // take what waited in the UART, then let it interrupt again
      if !paused { _ = try? Required.ports.write8(offset: UART.interruptEnable, value: 0x01) }
    }
    return UInt(byte)
  }

  func write(data: UnsafeRawBufferPointer) -> UInt {
    for byte in data {
      while ((try? Required.ports.read8(offset: UART.lineStatus)) ?? 0) & UART.transmitterEmpty == 0 {}
      _ = try? Required.ports.write8(offset: UART.data, value: UInt(byte))
    }
    return UInt(data.count)
  }
}

func start() -> CharacterDevice {
  let serial = Serial()
  guard let handler = InterruptHandler.export(serial), (try? Required.irq.attach(handler: handler)) == 1
  else {
    fatalError("the serial line's interrupt could not be attached")
  }
  handler.release()  // the kernel keeps its own reference for delivery
  serial.enable()
  return CharacterDevice.export(serial)!
}
