// DeviceSystemTests: device resources as capabilities (systems/tests/pci.system, with
// QEMU's RTL8139): the PCI bus server hands the card to one driver with its ports and
// interrupt, and refuses what is not the driver's; in user and in kernel mode.

import Testing

@Suite struct DeviceSystemTests {
  @Test func aDriverGetsItsDevicesResourcesAndNothingElse() throws {
    let result = try bootComposition(
      "systems/tests/pci.system", test: "aDriverGetsItsDevicesResourcesAndNothingElse",
      until: "composition done",
      devices: ["rtl8139"])
    let lines = result.lines.filter { $0.contains("@@NIC ") }
    #expect(lines.count == 2, "\(result.tail(20))")
    for line in lines {
      // Found once (a second driver gets nothing); its identity; the MAC address read
      // through its own I/O ports (QEMU's 52:54:00:...), 256 of them; a 32-bit read of the
      // first four bytes; a read crossing the range's end, a memory BAR as ports and a
      // write to a BAR refused; the interrupt line given; bus mastering on.
      #expect(
        line.contains(
          /@@NIC found=1 second=0 identity=0x813910ec mac=52:54:00:[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2} ports=256 word=0x[0-9a-f]{4}5452 outside=0xffffffff memoryBarGiven=false barWrite=0 barKept=true irqGiven=true busMaster=true secondMastering=false/
        ), "\(line)")
    }
    #expect(result.output.contains("system: composition done, 0 errors"))
    expectGroupsGiveBack(result, groups: 2)
  }
}
