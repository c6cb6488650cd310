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
    let lines = result.lines.filter { $0.contains("@@NIC found") }
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
    // The registers through BAR 1 (mapped uncached) show the same MAC address; an I/O BAR
    // is no memory; the expansion ROM, registers past the header and bridges are refused.
    #expect(
      result.lines.filter {
        $0.contains(
          "@@NIC more mmioMacSame=true ioBarAsRegisters=false romWrite=0 pastHeaderWrite=0 bridgeGiven=false")
      }.count == 2, "\(result.tail(20))")
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
        "system line 19: cannot bind second.device: find returned no reference (nil: nothing matched, or it is handed out already)"
      ))
    #expect(log.contains("system line 18: second: slot device is not bound; not started"))
    #expect(log.contains("rtl8139: the device bound to `device` is 8086:100e, not an RTL8139 (10ec:8139)"))
    #expect(log.contains("rtl8139: the setting `mode` must be c or c+"))
    #expect(
      log.contains(
        "rtl8139: the PCI bus server refused bus mastering (DMA) for this card; it cannot work without it"))
    #expect(result.lines.filter { $0.contains("start returned no object") }.count == 3)
    // A probe finds the card taken in each group: a driver holds it (group 1), or the
    // composition keeps the failed driver's binding until the group ends.
    #expect(result.lines.filter { $0.contains("@@NIC found=0 bridgeGiven=false") }.count == 3)
    // A hostile client of a kernel-mode driver: a 4-byte buffer for a 1,514-byte frame gets
    // nothing (it once overran a kernel heap buffer), and the fault command is ignored
    // without `faults on` (it once was a wild write in kernel mode).
    #expect(log.contains("@@ABUSE small=0 after=1514 same=true"), "\(result.tail(20))")
    // Ports: the receive slots map read-only; a port cannot give back another's slot or
    // forged ones; a port holds at most 32 slots and a device has at most 8 ports; with
    // every slot lent a frame is not dropped (C mode: it waits in the card's ring until a
    // slot comes back), and a port let go while holding 32 gives them back.
    #expect(
      log.contains(
        "@@PORTS writable=false readable=true stolen=0 overLimit=0 extraPorts=6 droppedWhenFull=0 droppedAfterClose=0"
      ), "\(result.tail(20))")
    // A method binding whose result cannot suit the slot is refused before the method runs:
    // it would have taken the card, and the next driver gets it (and fails on its mode).
    #expect(
      log.contains(
        "system line 45: cannot bind misbound.memory: it requires MemoryService, find returns PciDevice; not called"
      ))
    // A second bus server would hand the same card out again: kernel.pci has one keeper.
    #expect(
      log.contains(
        "system line 37: cannot bind rival.config: kernel.pci is bound to PciBus already, and one server at a time may keep it"
      ), "\(result.tail(30))")
    #expect(log.contains("system: composition done, 9 errors"))
    expectGroupsGiveBack(result, groups: 4)
  }

  /// A driver fails while a client thread waits inside it (in `receive`): the wait ends
  /// (it once lasted for good, so the failed driver never unloaded, was never restarted,
  /// and its memory leaked), the driver is restarted, and each group gives everything back.
  /// User-mode driver, then kernel-mode.
  @Test func aClientWaitingInAFailingDriverComesBack() throws {
    let result = try bootComposition(
      "systems/tests/driver-failure.system", test: "aClientWaitingInAFailingDriverComesBack",
      until: "composition done", devices: ["rtl8139", "e1000"])
    let lines = result.lines.filter { $0.contains("@@BLOCKED") }
    #expect(lines.count == 2, "\(result.tail(20))")
    for line in lines {
      #expect(line.contains("returned=true") && line.contains("restarted=true"), "\(line)")
    }
    #expect(result.lines.filter { $0.contains("system: nic failed; restarting it (restart 1)") }.count == 2)
    #expect(result.output.contains("system: composition done, 0 errors"))
    expectGroupsGiveBack(result, groups: 2)
  }
}
