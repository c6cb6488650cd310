// ELF32Tests: the ELF reader on a literal file built here, on damaged copies of it, and on
// random mutations (which must never crash it).

import Testing

@testable import KernelCore

enum SampleELF {
  /// A 32-bit i386 ELF with a symbol table: `first` (function at 0x1000, 0x20 bytes),
  /// `second` (object at 0x2000), and an undefined `third`.
  static func bytes(machine: UInt16 = 3) -> [UInt8] {
    let strings = Array("\0first\0second\0third\0".utf8)
    let sectionNames = Array("\0.symtab\0.strtab\0.shstrtab\0".utf8)
    var symbols = Bytes()
    symbols.zeros(16)
    for (name, value, size, info, section) in [
      (UInt32(1), UInt32(0x1000), UInt32(0x20), UInt8(0x12), UInt16(1)),
      (7, 0x2000, 4, 0x11, 1), (14, 0, 0, 0x10, 0),
    ] {
      symbols.u32(name)
      symbols.u32(value)
      symbols.u32(size)
      symbols.u8(info)
      symbols.u8(0)
      symbols.u16(section)
    }
    let symbolsOffset = 52
    let stringsOffset = symbolsOffset + symbols.data.count
    let namesOffset = stringsOffset + strings.count
    let sectionTableOffset = (namesOffset + sectionNames.count + 3) & ~3

    var file = Bytes()
    file.data = [0x7F, 0x45, 0x4C, 0x46, 1, 1, 1, 0] + [UInt8](repeating: 0, count: 8)
    file.u16(2)  // executable
    file.u16(machine)
    file.u32(1)
    file.u32(0x1000)  // entry
    file.u32(0)  // no program headers
    file.u32(UInt32(sectionTableOffset))
    file.u32(0)  // flags
    file.u16(52)
    file.u16(32)
    file.u16(0)
    file.u16(40)
    file.u16(4)  // sections
    file.u16(3)  // .shstrtab
    file.data += symbols.data + strings + sectionNames
    file.zeros(sectionTableOffset - file.data.count)
    func section(
      _ name: UInt32, _ type: UInt32, _ offset: Int, _ size: Int, link: UInt32 = 0, entrySize: UInt32 = 0
    ) {
      for value in [name, type, 0, 0, UInt32(offset), UInt32(size), link, 0, 1, entrySize] { file.u32(value) }
    }
    section(0, 0, 0, 0)
    section(1, 2, symbolsOffset, symbols.data.count, link: 2, entrySize: 16)
    section(9, 3, stringsOffset, strings.count)
    section(17, 3, namesOffset, sectionNames.count)
    return file.data
  }
}

@Suite struct ELF32Tests {
  @Test func readsHeaderSectionsAndSymbols() throws {
    try SampleELF.bytes().withUnsafeBytes { raw in
      let file = try ELF32File(bytes: raw)
      #expect(file.fileType == 2)
      #expect(file.entry == 0x1000)
      #expect(file.sectionCount == 4)
      #expect(String(decoding: try file.name(ofSection: 1), as: UTF8.self) == ".symtab")
      let table = try #require(try file.symbolTable())
      #expect(table.count == 4)
      let symbols = Array(table)
      let names = try symbols.map { String(decoding: try table.name(of: $0), as: UTF8.self) }
      #expect(names == ["", "first", "second", "third"])
      #expect(
        symbols[1].type == ELF32Symbol.typeFunction && symbols[1].value == 0x1000 && symbols[1].size == 0x20)
      #expect(symbols[2].type == 1 && symbols[2].isDefined)
      #expect(!symbols[3].isDefined)
    }
  }

  @Test func rejectsDamagedHeaders() {
    func parse(_ bytes: [UInt8]) throws {
      try bytes.withUnsafeBytes { _ = try ELF32File(bytes: $0) }
    }
    let good = SampleELF.bytes()
    #expect(throws: ELFError.truncatedHeader) { try parse(Array(good.prefix(51))) }
    var badMagic = good
    badMagic[1] = 0x46
    #expect(throws: ELFError.notELF) { try parse(badMagic) }
    var sixtyFour = good
    sixtyFour[4] = 2
    #expect(throws: ELFError.unsupportedFormat) { try parse(sixtyFour) }
    #expect(throws: ELFError.wrongMachine(62)) { try parse(SampleELF.bytes(machine: 62)) }
    #expect(throws: ELFError.badHeaderTable) { try parse(Array(good.dropLast(1))) }
  }

  @Test func rejectsSectionsAndStringsOutsideTheFile() throws {
    var bytes = SampleELF.bytes()
    let sectionTable = Int(UInt32(bytes[32]) | UInt32(bytes[33]) << 8)
    // Make .strtab's size run past the end of the file.
    let strtabSize = sectionTable + 2 * 40 + 20
    bytes[strtabSize] = 0xFF
    bytes[strtabSize + 1] = 0xFF
    try bytes.withUnsafeBytes { raw in
      let file = try ELF32File(bytes: raw)
      #expect(throws: ELFError.badSection(index: 2)) { _ = try file.symbolTable() }
    }
    var badName = SampleELF.bytes()
    badName[52 + 16] = 200  // first symbol's name offset past the string table
    try badName.withUnsafeBytes { raw in
      let file = try ELF32File(bytes: raw)
      let table = try #require(try file.symbolTable())
      let symbol = Array(table)[1]
      #expect(throws: ELFError.badString(offset: 200)) { _ = try table.name(of: symbol) }
    }
  }

  @Test func neverCrashesOnRandomMutationsAndTruncations() {
    var random = SeededRandom(state: 7)
    let original = SampleELF.bytes()
    var accepted = 0
    var rejected = 0
    for _ in 0..<5000 {
      var bytes = original
      for _ in 0..<Int.random(in: 1...8, using: &random) {
        bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
      }
      if Bool.random(using: &random) { bytes.removeLast(Int.random(in: 0..<bytes.count, using: &random)) }
      bytes.withUnsafeBytes { raw in
        do {
          let file = try ELF32File(bytes: raw)
          for index in 0..<file.sectionCount { _ = try? file.name(ofSection: index) }
          if let table = try file.symbolTable() {
            for symbol in table { _ = try? table.name(of: symbol) }
          }
          accepted += 1
        } catch {
          rejected += 1
        }
      }
    }
    #expect(accepted > 0 && rejected > 0, "mutations should produce both outcomes")
  }
}
