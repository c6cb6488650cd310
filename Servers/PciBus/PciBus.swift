// PciBus: see PciBus.server. Decoding and naming are KernelCore's (Pci.swift, host-tested);
// this server walks the buses and sizes BARs.
//
// Contract: `start` enumerates once: every device of bus 0, every function of a
// multi-function device, and the bus behind every PCI-to-PCI bridge (each bus once). A
// BAR is sized by writing all ones with the function's I/O and memory decoding switched
// off, reading back, and restoring both the BAR and the command register. `find` hands a
// function to one driver as a `Device` (PciDevice): its configuration space without the
// registers that decide what it decodes (BARs, interrupt line), its I/O ports and its
// interrupt line, which the kernel derives from those registers itself. When the driver
// lets it go (or fails), the function's bus mastering is switched off and it can be
// found again.

import KernelCore
import ServerRuntime

final class Bus: PciBusImplementation {
  private(set) var functions: [PciFunction] = []
  /// Which functions were handed to a driver (by index in `functions`).
  private var handedOut: [Bool] = []

  init() {
    var buses: [UInt8] = [0]
    var visited: [UInt8] = []
    while let bus = buses.popLast() {
      guard !visited.contains(bus) else { continue }
      visited.append(bus)
      for device in UInt8(0)..<32 {
        for function in UInt8(0)..<8 {
          guard
            var found = PciFunction(
              bus: bus, device: device, function: function,
              read: { offset in
                read(bus, device, function, offset)
              })
          else {
            if function == 0 { break }  // no device: no other functions either
            continue
          }
          size(&found)
          if let secondary = found.secondaryBus, secondary != 0 { buses.append(secondary) }
          functions.append(found)
          if function == 0 && !found.isMultiFunction { break }
        }
      }
    }
    handedOut = [Bool](repeating: false, count: functions.count)
  }

  func find(vendor: UInt, device: UInt) -> PciDevice? {
    guard
      let index = functions.indices.first(where: { index in
        !handedOut[index] && UInt(functions[index].vendor) == vendor
          && UInt(functions[index].deviceIdentifier) == device
      }), let exported = PciDevice.export(Device(functions[index], bus: self, index: index))
    else { return nil }
    handedOut[index] = true
    return exported
  }

  /// A driver let its device go (it ended, or failed and its references were released):
  /// the function stops mastering the bus, so it cannot write into memory the kernel now
  /// reuses, and it can be found again (by the restarted driver).
  func released(_ index: Int) {
    let function = functions[index]
    let command = read(function.bus, function.device, function.function, PciOffset.commandAndStatus)
    write(
      function.bus, function.device, function.function, PciOffset.commandAndStatus,
      command & 0xFFFF & ~PciCommand.busMaster)
    handedOut[index] = false
  }

  /// Sizes every BAR of `function` (decoding off meanwhile, then everything restored).
  private func size(_ function: inout PciFunction) {
    let (bus, device, number) = (function.bus, function.device, function.function)
    let command = read(bus, device, number, PciOffset.commandAndStatus)
    write(
      bus, device, number, PciOffset.commandAndStatus,
      command & ~(PciCommand.ioSpace | PciCommand.memorySpace))
    for index in function.bars.indices {
      let offset = PciOffset.firstBar + UInt32(truncatingIfNeeded: function.bars[index].index) * 4
      let original = read(bus, device, number, offset)
      write(bus, device, number, offset, 0xFFFF_FFFF)
      let readback = read(bus, device, number, offset)
      write(bus, device, number, offset, original)
      function.bars[index].size = PciBar.size(written: readback, kind: function.bars[index].kind)
    }
    write(bus, device, number, PciOffset.commandAndStatus, command & 0xFFFF)
  }

  func list(text: UnsafeMutableRawBufferPointer) -> Int {
    var count = 0
    func add(_ message: KernelMessage) {
      message.withBytes { bytes in
        for byte in bytes where count < text.count {
          text[count] = byte
          count += 1
        }
      }
      if count < text.count {
        text[count] = UInt8(ascii: "\n")
        count += 1
      }
    }
    for function in functions { add(function.summary) }
    return count
  }

  func count() -> UInt { UInt(functions.count) }
}

/// One function, as its driver sees it.
final class Device: PciDeviceImplementation {
  let function: PciFunction
  private let bus: Bus
  private let index: Int

  init(_ function: PciFunction, bus: Bus, index: Int) {
    self.function = function
    self.bus = bus
    self.index = index
  }

  deinit { bus.released(index) }

  func identity() -> UInt { UInt(function.vendor) | UInt(function.deviceIdentifier) << 16 }

  func read32(offset: UInt) -> UInt {
    guard offset < 256, offset & 3 == 0 else { return UInt(UInt32.max) }
    return UInt(read(function.bus, function.device, function.function, UInt32(truncatingIfNeeded: offset)))
  }

  func write32(offset: UInt, value: UInt) -> UInt {
    // What the function decodes and where it interrupts are the bus server's to set.
    guard offset < 256, offset & 3 == 0, !(0x10..<0x28).contains(offset), offset != 0x3C else { return 0 }
    write(
      function.bus, function.device, function.function, UInt32(truncatingIfNeeded: offset),
      UInt32(truncatingIfNeeded: value))
    return 1
  }

  func ports(bar: UInt) -> IOPorts? {
    try? Required.config.ports(
      bus: UInt(function.bus), device: UInt(function.device), function: UInt(function.function), bar: bar)
  }

  func interrupt() -> InterruptLine? {
    try? Required.config.interrupt(
      bus: UInt(function.bus), device: UInt(function.device), function: UInt(function.function))
  }

  func enableBusMastering() -> UInt {
    let command = read(function.bus, function.device, function.function, PciOffset.commandAndStatus)
    write(
      function.bus, function.device, function.function, PciOffset.commandAndStatus,
      (command | PciCommand.busMaster | PciCommand.ioSpace) & 0xFFFF)
    return 1
  }
}

private func read(_ bus: UInt8, _ device: UInt8, _ function: UInt8, _ offset: UInt32) -> UInt32 {
  UInt32(
    truncatingIfNeeded: (try? Required.config.read32(
      bus: UInt(bus), device: UInt(device), function: UInt(function), offset: UInt(offset))) ?? 0xFFFF_FFFF)
}

private func write(_ bus: UInt8, _ device: UInt8, _ function: UInt8, _ offset: UInt32, _ value: UInt32) {
  _ = try? Required.config.write32(
    bus: UInt(bus), device: UInt(device), function: UInt(function), offset: UInt(offset), value: UInt(value))
}

func start() -> PciBus {
  PciBus.export(Bus())!
}
