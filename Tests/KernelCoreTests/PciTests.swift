// PciTests: configuration headers as QEMU's PC shows them, decoded from literal words;
// BAR sizes from what the BARs read back; an empty slot; a bridge.

import KernelCore
import Testing

@Suite struct PciTests {
  /// An RTL8139 as QEMU presents it at 00:03.0 (words by offset).
  let rtl8139: [UInt32: UInt32] = [
    0x00: 0x8139_10EC, 0x04: 0x0000_0103, 0x08: 0x0200_0020, 0x0C: 0x0000_0000, 0x10: 0x0000_C001,
    0x14: 0xFEBF_1000, 0x18: 0, 0x1C: 0, 0x20: 0, 0x24: 0, 0x3C: 0x0000_010B,
  ]

  @Test func anRtl8139IsDecoded() throws {
    let function = try #require(PciFunction(bus: 0, device: 3, function: 0) { rtl8139[$0] ?? 0 })
    #expect(function.vendor == 0x10EC && function.deviceIdentifier == 0x8139)
    #expect(function.classCode == 2 && function.subclass == 0 && function.revision == 0x20)
    #expect(function.headerType == 0 && !function.isMultiFunction && function.secondaryBus == nil)
    #expect(function.interruptLine == 11 && function.interruptPin == 1)
    #expect(function.bars.count == 6)
    #expect(function.bars[0] == PciBar(index: 0, value: 0xC001) && function.bars[0].kind == .io)
    #expect(function.bars[0].address == 0xC000)
    #expect(
      function.bars[1].kind == .memory32(prefetchable: false) && function.bars[1].address == 0xFEBF_1000)
    var sized = function
    sized.bars[0].size = PciBar.size(written: 0xFFFF_FF01, kind: .io)
    sized.bars[1].size = PciBar.size(written: 0xFFFF_FF00, kind: .memory32(prefetchable: false))
    #expect(sized.bars[0].size == 256 && sized.bars[1].size == 256)
    #expect(
      sized.summary.string
        == "00:03.0 Ethernet controller [0200]: 10ec:8139 (rev 20) irq 11 (INTA) bar0 io 0xc000 size 256 bar1 mem 0xfebf1000 size 256"
    )
  }

  @Test func anEmptySlotIsNoFunction() {
    #expect(PciFunction(bus: 0, device: 9, function: 0) { _ in 0xFFFF_FFFF } == nil)
  }

  @Test func barSizesFromTheirReadback() {
    #expect(PciBar.size(written: 0, kind: .io) == 0, "an unimplemented BAR")
    #expect(PciBar.size(written: 0xFFFF_FFE1, kind: .io) == 32)
    #expect(PciBar.size(written: 0xFFFE_0000, kind: .memory32(prefetchable: false)) == 0x2_0000)
    #expect(PciBar.size(written: 0xFF00_0008, kind: .memory32(prefetchable: true)) == 0x100_0000)
    // A 64-bit BAR is one entry; its high half is skipped.
    let function = PciFunction(bus: 0, device: 2, function: 0) { offset in
      [0x00: 0x1111_1234, 0x08: 0x0300_0002, 0x10: 0xFD00_000C, 0x14: 0, 0x18: 0xFEBF_0000][offset] ?? 0
    }
    #expect(function?.bars.map(\.index) == [0, 2, 3, 4, 5])
    #expect(function?.bars[0].kind == .memory64(prefetchable: true))
  }

  @Test func aBridgeNamesTheBusBehindIt() {
    let bridge = PciFunction(bus: 0, device: 5, function: 0) { offset in
      [0x00: 0x0001_1B36, 0x08: 0x0604_0000, 0x0C: 0x0001_0000, 0x18: 0x0001_0100][offset] ?? 0
    }
    #expect(bridge?.headerType == 1 && bridge?.secondaryBus == 1 && bridge?.bars.count == 2)
    #expect(bridge?.className.description == "PCI bridge")
  }
}
