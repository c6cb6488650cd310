// MultibootTests: parsing of boot information, memory maps and module tables from literal bytes.

import Testing

@testable import KernelCore

@Suite struct MultibootTests {
  /// The memory map QEMU gives a 128 MiB machine.
  static func qemuMemoryMap() -> [UInt8] {
    var bytes = Bytes()
    for (base, length, type) in [
      (UInt64(0), UInt64(0x9FC00), UInt32(1)), (0x9FC00, 0x400, 2), (0xF0000, 0x10000, 2),
      (0x100000, 0x7EE0000, 1), (0x7FE0000, 0x20000, 2), (0xFFFC0000, 0x40000, 2),
    ] {
      bytes.u32(20)
      bytes.u64(base)
      bytes.u64(length)
      bytes.u32(type)
    }
    return bytes.data
  }

  @Test func parsesQEMUMemoryMap() throws {
    let bytes = Self.qemuMemoryMap()
    let regions = try bytes.withUnsafeBytes { raw in Array(try MemoryMap(bytes: raw)) }
    #expect(regions.count == 6)
    #expect(regions[3] == MemoryRegion(base: 0x100000, length: 0x7EE0000, type: 1))
    #expect(regions.filter(\.isAvailable).map(\.length).reduce(0, +) == 0x9FC00 + 0x7EE0000)
    #expect(regions[5].end == 0x1_0000_0000)
  }

  @Test func honoursLargerEntrySizes() throws {
    var bytes = Bytes()
    bytes.u32(24)  // four bytes of a future field follow the type
    bytes.u64(0x100000)
    bytes.u64(0x1000)
    bytes.u32(1)
    bytes.u32(0xFFFF_FFFF)
    bytes.u32(20)
    bytes.u64(0x200000)
    bytes.u64(0x2000)
    bytes.u32(3)
    let regions = try bytes.data.withUnsafeBytes { Array(try MemoryMap(bytes: $0)) }
    #expect(
      regions == [
        MemoryRegion(base: 0x100000, length: 0x1000, type: 1),
        MemoryRegion(base: 0x200000, length: 0x2000, type: 3),
      ])
  }

  @Test func rejectsEntrySmallerThanItsFields() {
    var bytes = Bytes()
    bytes.u32(8)
    bytes.zeros(20)
    #expect(throws: MultibootError.malformedMemoryMapEntry(offset: 0)) {
      try bytes.data.withUnsafeBytes { _ = try MemoryMap(bytes: $0) }
    }
  }

  @Test func rejectsEntryRunningPastTheTable() {
    var bytes = Self.qemuMemoryMap()
    bytes.removeLast(3)
    #expect(throws: MultibootError.malformedMemoryMapEntry(offset: 120)) {
      try bytes.withUnsafeBytes { _ = try MemoryMap(bytes: $0) }
    }
  }

  @Test func rejectsZeroSizeEntryInsteadOfLoopingForever() {
    let bytes = [UInt8](repeating: 0, count: 48)
    #expect(throws: MultibootError.malformedMemoryMapEntry(offset: 0)) {
      try bytes.withUnsafeBytes { _ = try MemoryMap(bytes: $0) }
    }
  }

  static func information(flags: UInt32) -> [UInt8] {
    var bytes = Bytes()
    bytes.u32(flags)
    bytes.u32(639)  // mem_lower
    bytes.u32(130_048)  // mem_upper
    bytes.u32(0)  // boot_device
    bytes.u32(0x9000)  // cmdline
    bytes.u32(2)  // mods_count
    bytes.u32(0x9100)  // mods_addr
    bytes.zeros(16)  // syms
    bytes.u32(144)  // mmap_length
    bytes.u32(0x9200)  // mmap_addr
    return bytes.data
  }

  @Test func parsesInformationStructure() throws {
    let bytes = Self.information(flags: 0b0100_1101)
    let information = try bytes.withUnsafeBytes {
      try MultibootInformation(magic: MultibootInformation.bootloaderMagic, bytes: $0)
    }
    #expect(information.lowerMemoryKiB == 639)
    #expect(information.upperMemoryKiB == 130_048)
    #expect(information.commandLineAddress == 0x9000)
    #expect(information.modulesCount == 2)
    #expect(information.modulesAddress == 0x9100)
    #expect(information.memoryMapLength == 144)
    #expect(information.memoryMapAddress == 0x9200)
  }

  @Test func ignoresFieldsWhoseFlagIsClear() throws {
    let bytes = Self.information(flags: 0b0100_0000)
    let information = try bytes.withUnsafeBytes {
      try MultibootInformation(magic: MultibootInformation.bootloaderMagic, bytes: $0)
    }
    #expect(information.commandLineAddress == nil)
    #expect(information.modulesCount == 0)
    #expect(information.lowerMemoryKiB == nil)
  }

  @Test func rejectsWrongMagicTruncationAndMissingMap() {
    let full = Self.information(flags: 0b0100_1101)
    #expect(throws: MultibootError.wrongMagic(0x1234)) {
      try full.withUnsafeBytes { _ = try MultibootInformation(magic: 0x1234, bytes: $0) }
    }
    #expect(throws: MultibootError.informationTruncated) {
      try Array(full.prefix(40)).withUnsafeBytes {
        _ = try MultibootInformation(magic: MultibootInformation.bootloaderMagic, bytes: $0)
      }
    }
    #expect(throws: MultibootError.noMemoryMap) {
      try Self.information(flags: 0b1101).withUnsafeBytes {
        _ = try MultibootInformation(magic: MultibootInformation.bootloaderMagic, bytes: $0)
      }
    }
  }

  @Test func parsesModuleTable() throws {
    var bytes = Bytes()
    for (start, end, name) in [(UInt32(0x200000), UInt32(0x201234), UInt32(0x9300)), (0x202000, 0x202000, 0)]
    {
      bytes.u32(start)
      bytes.u32(end)
      bytes.u32(name)
      bytes.u32(0)
    }
    let modules = try bytes.data.withUnsafeBytes { Array(try ModuleTable(bytes: $0, count: 2)) }
    #expect(
      modules == [
        BootModule(start: 0x200000, end: 0x201234, commandLineAddress: 0x9300),
        BootModule(start: 0x202000, end: 0x202000, commandLineAddress: 0),
      ])
    #expect(modules[0].size == 0x1234)
    #expect(throws: MultibootError.malformedModuleTable) {
      try bytes.data.withUnsafeBytes { _ = try ModuleTable(bytes: $0, count: 3) }
    }
    #expect(BootModule(start: 10, end: 5, commandLineAddress: 0).size == 0)
  }
}
