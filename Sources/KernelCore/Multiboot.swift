// Multiboot: parsing of the Multiboot (version 1) boot information a loader hands over.
//
// Contract: the information structure, memory map and module list are treated as
// untrusted bytes; malformed tables are reported as `MultibootError`, never followed
// out of bounds. Parsing allocates nothing, so the kernel can use it before its heap.

/// Why boot information could not be used.
public enum MultibootError: Error, Equatable, Sendable {
  /// The loader's magic number in EAX was not 0x2BADB002.
  case wrongMagic(UInt32)
  /// The information structure is shorter than its fixed part.
  case informationTruncated
  /// The loader supplied no memory map (flag bit 6 clear).
  case noMemoryMap
  /// A memory-map entry at `offset` declares a size too small or runs past the table.
  case malformedMemoryMapEntry(offset: Int)
  /// The module table does not fit its declared length.
  case malformedModuleTable

  /// A one-line explanation.
  public var message: KernelMessage {
    switch self {
    case .wrongMagic(let magic): "not loaded by a Multiboot loader (magic \(hex: magic))"
    case .informationTruncated: "boot information structure is truncated"
    case .noMemoryMap: "the boot loader supplied no memory map"
    case .malformedMemoryMapEntry(let offset): "malformed memory map entry at offset \(offset)"
    case .malformedModuleTable: "malformed boot module table"
    }
  }
}

/// The fixed part of the Multiboot information structure.
public struct MultibootInformation: Sendable {
  /// The value a Multiboot loader leaves in EAX.
  public static let bootloaderMagic: UInt32 = 0x2BAD_B002
  /// Bytes of the structure this parser reads (up to and including `mmap_addr`).
  public static let parsedSize = 52

  private enum Offset {
    static let flags = 0
    static let memoryLower = 4
    static let memoryUpper = 8
    static let commandLine = 16
    static let modulesCount = 20
    static let modulesAddress = 24
    static let memoryMapLength = 44
    static let memoryMapAddress = 48
  }

  private enum Flag {
    static let memory: UInt32 = 1 << 0
    static let commandLine: UInt32 = 1 << 2
    static let modules: UInt32 = 1 << 3
    static let memoryMap: UInt32 = 1 << 6
  }

  /// Which fields the loader filled in.
  public let flags: UInt32
  /// KiB of conventional memory below 1 MiB, if reported.
  public let lowerMemoryKiB: UInt32?
  /// KiB of memory above 1 MiB up to the first hole, if reported.
  public let upperMemoryKiB: UInt32?
  /// Physical address of the NUL-terminated kernel command line, if any.
  public let commandLineAddress: UInt32?
  /// Number of boot modules.
  public let modulesCount: UInt32
  /// Physical address of the module table.
  public let modulesAddress: UInt32
  /// Length in bytes of the memory map.
  public let memoryMapLength: UInt32
  /// Physical address of the memory map.
  public let memoryMapAddress: UInt32

  /// Parses the structure the loader passed, after checking the loader's magic number.
  public init(magic: UInt32, bytes: UnsafeRawBufferPointer) throws(MultibootError) {
    guard magic == Self.bootloaderMagic else { throw .wrongMagic(magic) }
    let reader = ByteReader(bytes)
    guard reader.count >= Self.parsedSize, let flags = reader.uint32(at: Offset.flags) else {
      throw .informationTruncated
    }
    self.flags = flags
    let hasMemory = flags & Flag.memory != 0
    lowerMemoryKiB = hasMemory ? reader.uint32(at: Offset.memoryLower) : nil
    upperMemoryKiB = hasMemory ? reader.uint32(at: Offset.memoryUpper) : nil
    commandLineAddress = flags & Flag.commandLine != 0 ? reader.uint32(at: Offset.commandLine) : nil
    let hasModules = flags & Flag.modules != 0
    modulesCount = hasModules ? reader.uint32(at: Offset.modulesCount) ?? 0 : 0
    modulesAddress = hasModules ? reader.uint32(at: Offset.modulesAddress) ?? 0 : 0
    guard flags & Flag.memoryMap != 0 else { throw .noMemoryMap }
    memoryMapLength = reader.uint32(at: Offset.memoryMapLength) ?? 0
    memoryMapAddress = reader.uint32(at: Offset.memoryMapAddress) ?? 0
  }
}

/// One region of the loader's memory map.
public struct MemoryRegion: Equatable, Sendable {
  /// The memory-map type of usable RAM.
  public static let availableType: UInt32 = 1

  /// Physical start address.
  public var base: UInt64
  /// Length in bytes.
  public var length: UInt64
  /// The memory-map type (1 = usable RAM; anything else is reserved).
  public var type: UInt32

  /// A region.
  public init(base: UInt64, length: UInt64, type: UInt32) {
    self.base = base
    self.length = length
    self.type = type
  }

  /// Whether the region is usable RAM.
  public var isAvailable: Bool { type == Self.availableType }
  /// The first address past the region (saturating at 2^64 - 1).
  public var end: UInt64 { base &+ length < base ? UInt64.max : base + length }
}

/// The Multiboot memory map: a validated sequence of `MemoryRegion`s.
///
/// Each entry is `size (4) | base (8) | length (8) | type (4)`, where `size` counts the
/// bytes after itself and may exceed 20 for future fields.
public struct MemoryMap: Sequence {
  private static let fieldsSize = 20
  private let reader: ByteReader

  /// Validates every entry of the table in `bytes`.
  public init(bytes: UnsafeRawBufferPointer) throws(MultibootError) {
    reader = ByteReader(bytes)
    var offset = 0
    while offset < reader.count {
      guard let size = reader.uint32(at: offset), size >= UInt32(Self.fieldsSize),
        reader.contains(offset: UInt64(offset) + 4, length: UInt64(size))
      else { throw .malformedMemoryMapEntry(offset: offset) }
      offset += 4 + Int(truncatingIfNeeded: size)  // inside the table: checked above
    }
  }

  /// Iterates the regions in table order.
  public struct Iterator: IteratorProtocol {
    fileprivate let reader: ByteReader
    fileprivate var offset = 0

    /// The next region, or nil after the last.
    public mutating func next() -> MemoryRegion? {
      guard offset < reader.count, let size = reader.uint32(at: offset),
        let base = reader.uint64(at: offset + 4), let length = reader.uint64(at: offset + 12),
        let type = reader.uint32(at: offset + 20)
      else { return nil }
      offset += 4 + Int(truncatingIfNeeded: size)  // checked by `init`
      return MemoryRegion(base: base, length: length, type: type)
    }
  }

  /// An iterator over the validated regions.
  public func makeIterator() -> Iterator { Iterator(reader: reader) }
}

/// One boot module: a file the loader placed in memory.
public struct BootModule: Equatable, Sendable {
  /// Physical address of the first byte.
  public var start: UInt32
  /// Physical address past the last byte.
  public var end: UInt32
  /// Physical address of the module's NUL-terminated command line (0 if none).
  public var commandLineAddress: UInt32

  /// A module.
  public init(start: UInt32, end: UInt32, commandLineAddress: UInt32) {
    self.start = start
    self.end = end
    self.commandLineAddress = commandLineAddress
  }

  /// The module's size in bytes (0 if the loader reported end before start).
  public var size: UInt32 { end >= start ? end - start : 0 }
}

/// The Multiboot module table: `start (4) | end (4) | string (4) | reserved (4)` per module.
public struct ModuleTable: Sequence {
  /// Bytes of one table entry.
  public static let entrySize = 16
  private let reader: ByteReader

  /// Checks that the table in `bytes` holds `count` entries.
  public init(bytes: UnsafeRawBufferPointer, count: UInt32) throws(MultibootError) {
    guard UInt64(count) * UInt64(Self.entrySize) <= UInt64(bytes.count) else {
      throw .malformedModuleTable
    }
    reader = ByteReader(
      UnsafeRawBufferPointer(rebasing: bytes[0..<(Int(truncatingIfNeeded: count) * Self.entrySize)]))
  }

  /// Iterates the modules in table order.
  public struct Iterator: IteratorProtocol {
    fileprivate let reader: ByteReader
    fileprivate var offset = 0

    /// The next module, or nil after the last.
    public mutating func next() -> BootModule? {
      guard let start = reader.uint32(at: offset), let end = reader.uint32(at: offset + 4),
        let commandLine = reader.uint32(at: offset + 8)
      else { return nil }
      offset += ModuleTable.entrySize
      return BootModule(start: start, end: end, commandLineAddress: commandLine)
    }
  }

  /// An iterator over the modules.
  public func makeIterator() -> Iterator { Iterator(reader: reader) }
}
