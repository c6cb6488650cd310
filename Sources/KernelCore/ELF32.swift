// ELF32: a validating reader for 32-bit little-endian i386 ELF files.
//
// Contract: every header, table and string is bounds-checked against the file before it
// is used; a malformed or truncated file yields an `ELFError` naming what is wrong. The
// reader allocates nothing and never copies the file. It serves the kernel (symbols for
// panic backtraces, and later the server loader) and the host tools alike.

/// Why an ELF file was rejected.
public enum ELFError: Error, Equatable, Sendable {
  /// The file is shorter than the ELF header.
  case truncatedHeader
  /// The first four bytes are not 0x7F 'E' 'L' 'F'.
  case notELF
  /// Not ELFCLASS32, little-endian, version 1.
  case unsupportedFormat
  /// `e_machine` is not EM_386 (3).
  case wrongMachine(UInt16)
  /// A header table (program or section headers) lies outside the file or has a wrong
  /// entry size.
  case badHeaderTable
  /// The section at this index has contents outside the file.
  case badSection(index: Int)
  /// A string-table offset does not name a NUL-terminated string inside its table.
  case badString(offset: UInt32)

  /// A one-line explanation.
  public var message: KernelMessage {
    switch self {
    case .truncatedHeader: "file is shorter than an ELF header"
    case .notELF: "not an ELF file (bad magic)"
    case .unsupportedFormat: "not a 32-bit little-endian ELF version 1 file"
    case .wrongMachine(let machine): "built for machine \(machine), not i386 (3)"
    case .badHeaderTable: "program or section header table lies outside the file"
    case .badSection(let index): "section \(index) lies outside the file"
    case .badString(let offset): "string at offset \(offset) is not terminated inside its table"
    }
  }
}

/// One entry of the section header table.
public struct ELF32Section: Equatable, Sendable {
  /// Section type: no contents.
  public static let typeNoBits: UInt32 = 8
  /// Section type: symbol table.
  public static let typeSymbolTable: UInt32 = 2
  /// Section type: string table.
  public static let typeStringTable: UInt32 = 3

  /// Offset of the name in the section-name string table.
  public var nameOffset: UInt32
  /// `sh_type`.
  public var type: UInt32
  /// `sh_flags`.
  public var flags: UInt32
  /// Virtual address when loaded.
  public var address: UInt32
  /// Offset of the contents in the file.
  public var offset: UInt32
  /// Size of the contents.
  public var size: UInt32
  /// `sh_link`: for a symbol table, the index of its string table.
  public var link: UInt32
  /// `sh_info`.
  public var info: UInt32
  /// Size of one entry for tables.
  public var entrySize: UInt32
}

/// One entry of a symbol table.
public struct ELF32Symbol: Equatable, Sendable {
  /// Symbol type: function.
  public static let typeFunction: UInt8 = 2

  /// Offset of the name in the linked string table.
  public var nameOffset: UInt32
  /// The symbol's value (an address for defined functions and objects).
  public var value: UInt32
  /// The symbol's size in bytes.
  public var size: UInt32
  /// `st_info`: binding in the high nibble, type in the low.
  public var info: UInt8
  /// Index of the section the symbol is defined in (0 = undefined).
  public var sectionIndex: UInt16

  /// The symbol type (`info & 0xF`).
  public var type: UInt8 { info & 0xF }
  /// Whether the symbol is defined in some section.
  public var isDefined: Bool { sectionIndex != 0 }
}

/// One entry of the program header table.
public struct ELF32ProgramHeader: Equatable, Sendable {
  /// `p_type` (1 = loadable, 2 = dynamic).
  public var type: UInt32
  /// Offset of the segment's bytes in the file.
  public var offset: UInt32
  /// Virtual address of the segment.
  public var virtualAddress: UInt32
  /// Bytes in the file.
  public var fileSize: UInt32
  /// Bytes in memory (the rest is zero).
  public var memorySize: UInt32
  /// `p_flags`: 1 execute, 2 write, 4 read.
  public var flags: UInt32
  /// Alignment.
  public var alignment: UInt32
}

/// A validated view of an ELF32 i386 file.
public struct ELF32File {
  private enum Header {
    static let size = 52
    static let programHeaderOffset = 28
    static let sectionHeaderOffset = 32
    static let programHeaderEntrySize = 42
    static let programHeaderCount = 44
    static let sectionHeaderEntrySize = 46
    static let sectionHeaderCount = 48
    static let sectionNameTableIndex = 50
  }
  private static let sectionHeaderSize = 40
  private static let programHeaderSize = 32
  private static let symbolSize = 16

  /// The file's bytes.
  public let reader: ByteReader
  /// `e_type` (1 relocatable, 2 executable, 3 shared object).
  public let fileType: UInt16
  /// The entry point address.
  public let entry: UInt32
  /// Number of section headers.
  public let sectionCount: Int
  /// Number of program headers.
  public let programHeaderCount: Int
  // Byte indices of the header tables, checked against the file in `init`.
  private let sectionTableIndex: Int
  private let programTableIndex: Int
  private let sectionNameTableIndex: Int

  /// Validates the ELF header and the bounds of both header tables.
  public init(bytes: UnsafeRawBufferPointer) throws(ELFError) {
    let reader = ByteReader(bytes)
    guard reader.count >= Header.size else { throw .truncatedHeader }
    guard bytes[0] == 0x7F, bytes[1] == 0x45, bytes[2] == 0x4C, bytes[3] == 0x46 else {
      throw .notELF
    }
    guard bytes[4] == 1, bytes[5] == 1, bytes[6] == 1 else { throw .unsupportedFormat }
    let machine = reader.uint16(at: 18)!
    guard machine == 3 else { throw .wrongMachine(machine) }
    self.reader = reader
    fileType = reader.uint16(at: 16)!
    entry = reader.uint32(at: 24)!
    programHeaderCount = Int(widening: reader.uint16(at: Header.programHeaderCount)!)
    sectionCount = Int(widening: reader.uint16(at: Header.sectionHeaderCount)!)
    sectionNameTableIndex = Int(widening: reader.uint16(at: Header.sectionNameTableIndex)!)
    let programEntrySize = reader.uint16(at: Header.programHeaderEntrySize)!
    let sectionEntrySize = reader.uint16(at: Header.sectionHeaderEntrySize)!
    // A table of up to 65,535 entries of 32 or 40 bytes: its length fits 32 bits.
    func table(at field: Int, count: Int, entrySize: Int) throws(ELFError) -> Int {
      guard count > 0 else { return 0 }
      guard
        let index = reader.index(
          reader.uint32(at: field)!, length: UInt32(truncatingIfNeeded: count * entrySize))
      else { throw .badHeaderTable }
      return index
    }
    guard programHeaderCount == 0 || Int(widening: programEntrySize) == Self.programHeaderSize,
      sectionCount == 0
        || (Int(widening: sectionEntrySize) == Self.sectionHeaderSize && sectionNameTableIndex < sectionCount)
    else { throw .badHeaderTable }
    programTableIndex = try table(
      at: Header.programHeaderOffset, count: programHeaderCount, entrySize: Self.programHeaderSize)
    sectionTableIndex = try table(
      at: Header.sectionHeaderOffset, count: sectionCount, entrySize: Self.sectionHeaderSize)
  }

  /// The section header at `index` (which must be below `sectionCount`).
  public func section(at index: Int) -> ELF32Section {
    precondition(index >= 0 && index < sectionCount)
    let base = sectionTableIndex + index * Self.sectionHeaderSize
    func field(_ number: Int) -> UInt32 { reader.uint32(at: base + 4 * number)! }
    return ELF32Section(
      nameOffset: field(0), type: field(1), flags: field(2), address: field(3), offset: field(4),
      size: field(5), link: field(6), info: field(7), entrySize: field(9))
  }

  /// The program header at `index` (which must be below `programHeaderCount`).
  public func programHeader(at index: Int) -> ELF32ProgramHeader {
    precondition(index >= 0 && index < programHeaderCount)
    let base = programTableIndex + index * Self.programHeaderSize
    func field(_ number: Int) -> UInt32 { reader.uint32(at: base + 4 * number)! }
    return ELF32ProgramHeader(
      type: field(0), offset: field(1), virtualAddress: field(2), fileSize: field(4),
      memorySize: field(5), flags: field(6), alignment: field(7))
  }

  /// The index of the section an untrusted word names, if it exists.
  public func sectionIndex(_ word: UInt32) -> Int? {
    word < UInt32(truncatingIfNeeded: sectionCount) ? Int(truncatingIfNeeded: word) : nil
  }

  /// The file bytes of the section at `index`; empty for sections without contents.
  public func contents(ofSection index: Int) throws(ELFError) -> ByteReader {
    let header = section(at: index)
    if header.type == ELF32Section.typeNoBits {
      return ByteReader(UnsafeRawBufferPointer(start: nil, count: 0))
    }
    guard let bytes = reader.slice(offset: header.offset, length: header.size) else {
      throw .badSection(index: index)
    }
    return ByteReader(bytes)
  }

  /// The name of the section at `index`.
  public func name(ofSection index: Int) throws(ELFError) -> UnsafeBufferPointer<UInt8> {
    let names = try contents(ofSection: sectionNameTableIndex)
    let offset = section(at: index).nameOffset
    guard let name = names.cString(at: offset) else { throw .badString(offset: offset) }
    return name
  }

  /// The index of the first section of `type`, if any.
  public func firstSection(ofType type: UInt32) -> Int? {
    for index in 0..<sectionCount where section(at: index).type == type { return index }
    return nil
  }

  /// The symbol table and its string table, if the file has one; validated for bounds.
  public func symbolTable() throws(ELFError) -> ELF32SymbolTable? {
    guard let index = firstSection(ofType: ELF32Section.typeSymbolTable) else { return nil }
    let symbols = try contents(ofSection: index)
    guard let link = sectionIndex(section(at: index).link),
      section(at: link).type == ELF32Section.typeStringTable
    else {
      throw .badSection(index: index)
    }
    return ELF32SymbolTable(symbols: symbols, strings: try contents(ofSection: link))
  }
}

/// A symbol table with its string table.
public struct ELF32SymbolTable: Sequence {
  fileprivate static let entrySize = 16
  /// The raw symbol entries.
  public let symbols: ByteReader
  /// The string table the names point into.
  public let strings: ByteReader

  /// The number of symbols.
  public var count: Int { symbols.count / Self.entrySize }

  /// The name of `symbol`.
  public func name(of symbol: ELF32Symbol) throws(ELFError) -> UnsafeBufferPointer<UInt8> {
    guard let name = strings.cString(at: symbol.nameOffset) else {
      throw .badString(offset: symbol.nameOffset)
    }
    return name
  }

  /// Iterates the symbols in table order.
  public struct Iterator: IteratorProtocol {
    fileprivate let symbols: ByteReader
    fileprivate var offset = 0

    /// The next symbol, or nil after the last whole entry.
    public mutating func next() -> ELF32Symbol? {
      guard symbols.contains(offset: offset, length: ELF32SymbolTable.entrySize) else { return nil }
      defer { offset += ELF32SymbolTable.entrySize }
      return ELF32Symbol(
        nameOffset: symbols.uint32(at: offset)!, value: symbols.uint32(at: offset + 4)!,
        size: symbols.uint32(at: offset + 8)!, info: symbols.uint8(at: offset + 12)!,
        sectionIndex: symbols.uint16(at: offset + 14)!)
    }
  }

  /// An iterator over the symbols.
  public func makeIterator() -> Iterator { Iterator(symbols: symbols) }
}
