// NicProbe: see NicProbe.server. Prints one `@@NIC` line: what it got and what it was
// refused; the system test compares it with what QEMU's RTL8139 has.

import KernelCore
import ServerRuntime
import _Volatile

func report(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}

final class Probe: ProgramImplementation {
  func run() -> UInt {
    // Bridges are never handed to a driver (the PCI-to-ISA bridge routes every line).
    let bridge = (try? Required.pci.findClass(classCode: 0x0601)) ?? nil
    guard let device = (try? Required.pci.find(vendor: 0x10EC, device: 0x8139)) ?? nil else {
      report("@@NIC found=0 bridgeGiven=\(bridge != nil)")
      return 1
    }
    // One driver per function: a second find gets nothing.
    let second = (try? Required.pci.find(vendor: 0x10EC, device: 0x8139)) ?? nil
    let identity = (try? device.identity()) ?? 0
    guard let ports = (try? device.ports(bar: 0)) ?? nil else {
      report("@@NIC ports=none")
      return 1
    }
    var mac = KernelMessage()
    for offset: UInt in 0..<6 {
      if offset > 0 { mac.append(":") }
      mac.append(hex: (try? ports.read8(offset: offset)) ?? 0, width: 2, prefix: false)
    }
    let size = (try? ports.size()) ?? 0
    let word = (try? ports.read32(offset: 0)) ?? 0
    let outside = (try? ports.read32(offset: size - 2)) ?? 0  // crosses the range's end
    let memoryBar = (try? device.ports(bar: 1)) ?? nil
    let barBefore = (try? device.read32(offset: 0x10)) ?? 0
    let barWrite = (try? device.write32(offset: 0x10, value: 0)) ?? 9
    let barAfter = (try? device.read32(offset: 0x10)) ?? 1
    // The expansion ROM and registers past the header are refused too.
    let romWrite = (try? device.write32(offset: 0x30, value: 0xFFFF_FFFF)) ?? 9
    let pastHeaderWrite = (try? device.write32(offset: 0x60, value: 0x8080_8080)) ?? 9
    let line = (try? device.interrupt()) ?? nil
    let mastering = (try? device.enableBusMastering()) ?? nil
    let busMaster = ((try? device.read32(offset: 4)) ?? 0) & 4 != 0 && (try? mastering?.isEnabled()) == 1
    // One holder at a time: a second permission is refused while the first is held.
    let secondMastering = (try? device.enableBusMastering()) ?? nil
    _ = mastering?.release()
    let memoryBarGiven = memoryBar != nil
    // The same MAC address through the memory-mapped registers (BAR 1), mapped uncached.
    var mmioMac = KernelMessage()
    let registers = (try? device.registers(bar: 1)) ?? nil
    let ioAsRegisters = (try? device.registers(bar: 0)) ?? nil
    if let registers, let address = try? Required.memory.map(memory: registers, writable: 0), address != 0 {
      for offset: UInt in 0..<6 {
        if offset > 0 { mmioMac.append(":") }
        mmioMac.append(
          hex: VolatileMappedRegister<UInt8>(unsafeBitPattern: address + offset).load(), width: 2,
          prefix: false)
      }
      _ = try? Required.memory.unmap(address: address)
    }
    let lineGiven = line != nil
    report(
      "@@NIC found=1 second=\(second == nil ? 0 : 1) identity=\(hex: identity, width: 8) mac=\(mac) ports=\(size) word=\(hex: word, width: 8) outside=\(hex: outside, width: 8) memoryBarGiven=\(memoryBarGiven) barWrite=\(barWrite) barKept=\(barBefore == barAfter) irqGiven=\(lineGiven) busMaster=\(busMaster) secondMastering=\(secondMastering != nil)"
    )
    report(
      "@@NIC more mmioMacSame=\(mmioMac == mac) ioBarAsRegisters=\(ioAsRegisters != nil) romWrite=\(romWrite) pastHeaderWrite=\(pastHeaderWrite) bridgeGiven=\(bridge != nil)"
    )
    return 0
  }
}

func start() -> Program {
  Program.export(Probe())!
}
