// PciBus: see PciBus.server. Decoding and naming are KernelCore's (Pci.swift, host-tested);
// this server walks the buses and sizes BARs.
//
// Contract: `start` enumerates once: every device of bus 0, every function of a
// multi-function device, and the bus behind every PCI-to-PCI bridge (each bus once). A
// BAR is sized by writing all ones with the function's I/O and memory decoding switched
// off, reading back, and restoring both the BAR and the command register. `find` hands a
// function to one driver as a `Device` (PciDevice): its configuration space without the
// registers that decide what it decodes (BARs, interrupt line), its I/O ports, its
// memory-mapped registers and its interrupt line, which the kernel derives from those registers itself; `findClass`
// matches by class instead, and `findWithoutBusMastering` hands out a function whose
// driver may not let it do DMA (the bus-master bit is the bus server's alone). When the driver
// lets it go (or fails), the function's bus mastering is switched off and it can be
// found again; while the driver holds the BusMastering object `enableBusMastering`
// returned, the function may do DMA, and when that object goes, it may not.

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
    handOut(mayMasterBus: true) { UInt($0.vendor) == vendor && UInt($0.deviceIdentifier) == device }
  }

  func findClass(classCode: UInt) -> PciDevice? {
    handOut(mayMasterBus: true) { UInt($0.classCode) << 8 | UInt($0.subclass) == classCode }
  }

  func findWithoutBusMastering(vendor: UInt, device: UInt) -> PciDevice? {
    handOut(mayMasterBus: false) { UInt($0.vendor) == vendor && UInt($0.deviceIdentifier) == device }
  }

  /// The first function not handed out yet that `matches`, handed out.
  private func handOut(mayMasterBus: Bool, where matches: (PciFunction) -> Bool) -> PciDevice? {
    // Bridges are the bus server's own: their registers route other devices' buses and
    // interrupts (a driver holding the PCI-to-ISA bridge could re-route every line).
    guard
      let index = functions.indices.first(where: {
        !handedOut[$0] && functions[$0].classCode != 0x06 && matches(functions[$0])
      }),
      let exported = PciDevice.export(
        Device(functions[index], bus: self, index: index, mayMasterBus: mayMasterBus))
    else { return nil }
    handedOut[index] = true
    return exported
  }

  /// A device was let go (the composition's group ended, or its driver found it itself
  /// and ended or failed): the function stops mastering the bus and can be found again.
  func released(_ index: Int) {
    stopMastering(functions[index])
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
  private let mayMasterBus: Bool

  init(_ function: PciFunction, bus: Bus, index: Int, mayMasterBus: Bool) {
    self.function = function
    self.bus = bus
    self.index = index
    self.mayMasterBus = mayMasterBus
  }

  deinit { bus.released(index) }

  func identity() -> UInt { UInt(function.vendor) | UInt(function.deviceIdentifier) << 16 }

  func read32(offset: UInt) -> UInt {
    guard offset < 256, offset & 3 == 0 else { return UInt(UInt32.max) }
    return UInt(read(function.bus, function.device, function.function, UInt32(truncatingIfNeeded: offset)))
  }

  func write32(offset: UInt, value: UInt) -> UInt {
    // What the function decodes (the BARs, the expansion ROM) and where it interrupts are
    // the bus server's to set; beyond the header (0x40 on) lie device-specific registers
    // and capabilities this bus server does not vet.
    guard offset < 0x40, offset & 3 == 0, !(0x10..<0x28).contains(offset), offset != 0x30, offset != 0x3C
    else { return 0 }
    var word = UInt32(truncatingIfNeeded: value)
    if offset == UInt(PciOffset.commandAndStatus) {
      // DMA is the bus server's to allow (enableBusMastering), not the driver's to take.
      let current = read(function.bus, function.device, function.function, PciOffset.commandAndStatus)
      word = word & ~PciCommand.busMaster | current & PciCommand.busMaster
    }
    write(function.bus, function.device, function.function, UInt32(truncatingIfNeeded: offset), word)
    return 1
  }

  func ports(bar: UInt) -> IOPorts? {
    try? Required.config.ports(
      bus: UInt(function.bus), device: UInt(function.device), function: UInt(function.function), bar: bar)
  }

  func registers(bar: UInt) -> Memory? {
    try? Required.config.registers(
      bus: UInt(function.bus), device: UInt(function.device), function: UInt(function.function), bar: bar)
  }

  func interrupt() -> InterruptLine? {
    try? Required.config.interrupt(
      bus: UInt(function.bus), device: UInt(function.device), function: UInt(function.function))
  }

  /// Whether a BusMastering object of this device is held.
  var mastering = false

  func enableBusMastering() -> BusMastering? {
    guard mayMasterBus, !mastering, let permission = BusMastering.export(Permission(self)) else { return nil }
    let command = read(function.bus, function.device, function.function, PciOffset.commandAndStatus)
    write(
      function.bus, function.device, function.function, PciOffset.commandAndStatus,
      (command | PciCommand.busMaster | PciCommand.ioSpace) & 0xFFFF)
    mastering = true
    return permission
  }
}

/// A driver's permission to let its device do DMA: while it is held, the bus-master bit
/// stays on. A driver that fails loses it with its other references, so a device bound
/// in the composition (and kept for the restarted driver) stops DMA when its driver dies;
/// the DMA memory the driver gave it to keep goes only after that.
final class Permission: BusMasteringImplementation {
  private let device: Device
  /// The driver's DMA memory, let go only once the function cannot master the bus.
  private var kept: [Memory] = []

  init(_ device: Device) { self.device = device }

  deinit {
    stopMastering(device.function)
    device.mastering = false
    for memory in kept { _ = memory.release() }
  }

  func keep(memory: Memory) -> UInt {
    // Lent for the call: acquired to outlive it.
    guard kept.count < 16, (try? memory.acquire()) != nil else { return 0 }
    kept.append(memory)
    return 1
  }

  func isEnabled() -> UInt {
    let function = device.function
    return read(function.bus, function.device, function.function, PciOffset.commandAndStatus)
      & PciCommand.busMaster != 0 ? 1 : 0
  }
}

/// Switches `function`'s bus mastering off.
private func stopMastering(_ function: PciFunction) {
  let command = read(function.bus, function.device, function.function, PciOffset.commandAndStatus)
  write(
    function.bus, function.device, function.function, PciOffset.commandAndStatus,
    command & 0xFFFF & ~PciCommand.busMaster)
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
