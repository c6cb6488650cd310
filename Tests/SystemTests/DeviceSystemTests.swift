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
          /@@NIC found=1 second=0 identity=0x813910ec mac=52:54:00:[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2} ports=256 word=0x[0-9a-f]{4}5452 outside=0xffffffff memoryBarGiven=false barWrite=0 barKept=true irqGiven=true busMaster=true secondMastering=false mmioMacSame=true ioBarAsRegisters=false/
        ), "\(line)")
    }
    #expect(result.output.contains("system: composition done, 0 errors"))
    expectGroupsGiveBack(result, groups: 2)
  }

  /// Drivers given the wrong device, a card another driver holds, an unknown mode or no
  /// bus mastering each fail with a clear message (systems/tests/driver-refusals.system);
  /// the kernel goes on and every group gives its memory back.
  @Test func driversGivenWhatTheyCannotUseFailClearly() throws {
    let result = try bootComposition(
      "systems/tests/driver-refusals.system", test: "driversGivenWhatTheyCannotUseFailClearly",
      until: "composition done", devices: ["rtl8139", "e1000"])
    let log = result.output
    #expect(log.contains("rtl8139: ready, MAC 52:54:00:"), "\(result.tail(30))")
    #expect(
      log.contains(
        "system line 18: cannot bind second.device: find returned no reference (nil: nothing matched, or it is handed out already)"
      ))
    #expect(log.contains("system line 17: second: slot device is not bound; not started"))
    #expect(log.contains("rtl8139: the device bound to `device` is 8086:100e, not an RTL8139 (10ec:8139)"))
    #expect(log.contains("rtl8139: the setting `mode` must be c or c+"))
    #expect(
      log.contains(
        "rtl8139: the PCI bus server refused bus mastering (DMA) for this card; it cannot work without it"))
    #expect(result.lines.filter { $0.contains("start returned no object") }.count == 3)
    // A probe finds the card taken in each group: a driver holds it (group 1), or the
    // composition keeps the failed driver's binding until the group ends.
    #expect(result.lines.filter { $0.contains("@@NIC found=0") }.count == 3)
    #expect(log.contains("system: composition done, 5 errors"))
    expectGroupsGiveBack(result, groups: 3)
  }
}
