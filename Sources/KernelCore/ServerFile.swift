// ServerFile: validation and relocation of a server file (an ELF32 i386 shared object
// carrying a `.tessera` manifest section).
//
// Contract: `ServerFile(bytes:)` checks everything the loader will rely on before any
// memory is touched: ELF structure, loadable segments inside the file and inside one span
// of at most `maximumImageSize`, the dynamic symbol table (entry size, string table, every
// defined symbol's section), the dynamic segment, every relocation's type, target and
// symbol (a defined symbol a relocation uses must lie in the image), the manifest, and
// `tessera_start`, `tessera_destroy` and a dispatch function for every method of every
// exported interface, each inside a loaded executable segment. All arithmetic on the
// file's words is 32-bit safe (no trapping conversion: the kernel runs this on i686). A
// file that fails any check is rejected with a `ServerFileError` naming the reason. `load(into:base:resolve:)`
// then copies the segments and applies the relocations; it fails only when an import is
// not offered by the kernel.

/// Why a server file was rejected.
public enum ServerFileError: Error, Equatable, Sendable {
  case elf(ELFError)
  case notSharedObject
  case noLoadableSegments
  case badSegment(index: Int)
  case imageTooLarge(UInt32)
  case noDynamicSymbols
  case badRelocationSection(index: Int)
  case unsupportedRelocation(type: UInt8, offset: UInt32)
  case relocationOutsideImage(offset: UInt32)
  case badSymbolIndex(UInt32)
  case noManifest
  case manifest(ManifestError)
  case missingEntry(KernelMessage)
  case entryNotExecutable(KernelMessage)
  case badSymbol(index: UInt32)
  case badDynamicSegment
  case unresolvedImport(KernelMessage)
  case badBoundCall(name: KernelMessage, problem: KernelMessage)
  case tooManyBoundCalls(Int)

  /// A one-line explanation.
  public var message: KernelMessage {
    switch self {
    case .elf(let error): error.message
    case .notSharedObject: "not an ELF shared object (link servers with ld.lld -shared)"
    case .noLoadableSegments: "has no loadable segment"
    case .badSegment(let index): "segment \(index) lies outside the file or is misaligned"
    case .imageTooLarge(let size):
      "image of \(size) bytes exceeds the limit of \(ServerFile.maximumImageSize)"
    case .noDynamicSymbols: "has no dynamic symbol table"
    case .badRelocationSection(let index): "relocation section \(index) is malformed"
    case .unsupportedRelocation(let type, let offset):
      "unsupported relocation type \(type) at \(hex: offset) (servers must be linked with -shared)"
    case .relocationOutsideImage(let offset): "relocation target \(hex: offset) lies outside the image"
    case .badSymbolIndex(let index): "relocation names symbol \(index), which does not exist"
    case .noManifest: "has no .tessera manifest section (build servers with the Makefile)"
    case .manifest(let error): "manifest: \(error.message)"
    case .missingEntry(let name): "does not define \(name)"
    case .entryNotExecutable(let name): "\(name) does not lie in a loaded executable segment"
    case .badSymbol(let index): "dynamic symbol \(index) lies outside the image or names no section"
    case .badDynamicSegment: "the dynamic segment lies outside the file or the image"
    case .unresolvedImport(let name): "imports \(name), which the kernel does not offer"
    case .badBoundCall(let name, let problem): "imports \(name), which \(problem)"
    case .tooManyBoundCalls(let count):
      "imports \(count) bound calls, acquires and releases; at most \(ServerFile.maximumBoundCalls)"
    }
  }
}

/// A validated server file.
public struct ServerFile {
  /// The largest image (span of loadable segments) accepted: 4 MiB.
  public static let maximumImageSize: UInt32 = 4 << 20

  private enum Relocation {
    static let absolute: UInt8 = 1  // R_386_32: S + A
    static let relative32: UInt8 = 2  // R_386_PC32: S + A - P
    static let globalData: UInt8 = 6  // R_386_GLOB_DAT: S
    static let jumpSlot: UInt8 = 7  // R_386_JMP_SLOT: S
    static let relative: UInt8 = 8  // R_386_RELATIVE: B + A
  }
  private static let typeLoad: UInt32 = 1
  private static let typeDynamic: UInt32 = 2
  private static let flagExecute: UInt32 = 1
  private static let absoluteSection: UInt16 = 0xFFF1  // SHN_ABS
  private static let reservedSections: UInt16 = 0xFF00  // SHN_LORESERVE
  private static let typeDynamicSymbols: UInt32 = 11
  private static let typeRelocations: UInt32 = 9

  /// The ELF file.
  public let elf: ELF32File
  /// The manifest.
  public let manifest: ServerManifest
  /// The lowest virtual address of the loadable segments (page-aligned).
  public let imageStart: UInt32
  /// Bytes from `imageStart` to the end of the highest segment, page-aligned.
  public let imageSize: UInt32
  private let dynamicSymbols: ByteReader
  private let dynamicStrings: ByteReader

  /// Validates `bytes` as a server file.
  public init(bytes: UnsafeRawBufferPointer) throws(ServerFileError) {
    do throws(ELFError) {
      elf = try ELF32File(bytes: bytes)
    } catch { throw .elf(error) }
    guard elf.fileType == 3 else { throw .notSharedObject }

    // Loadable segments: inside the file, page-aligned placement, one bounded span.
    var low = UInt64.max
    var high: UInt64 = 0
    for index in 0..<elf.programHeaderCount {
      let header = elf.programHeader(at: index)
      if header.type == Self.typeDynamic {
        guard elf.reader.contains(offset: UInt64(header.offset), length: UInt64(header.fileSize)) else {
          throw .badDynamicSegment
        }
      }
      guard header.type == Self.typeLoad else { continue }
      guard header.fileSize <= header.memorySize,
        elf.reader.contains(offset: UInt64(header.offset), length: UInt64(header.fileSize)),
        header.alignment <= 4096,
        header.alignment == 0 || (header.virtualAddress % 4096) == (header.offset % 4096)
          || header.alignment < 4096
      else { throw .badSegment(index: index) }
      low = min(low, UInt64(header.virtualAddress))
      high = max(high, UInt64(header.virtualAddress) + UInt64(header.memorySize))
    }
    guard low != UInt64.max else { throw .noLoadableSegments }
    let start = low & ~4095
    let size = (high - start + 4095) & ~4095
    guard size <= UInt64(Self.maximumImageSize), start + size <= 0x1_0000_0000 else {
      throw .imageTooLarge(UInt32(min(size, UInt64(UInt32.max))))
    }
    imageStart = UInt32(truncatingIfNeeded: start)  // below 2^32: a segment's address
    imageSize = UInt32(truncatingIfNeeded: size)  // at most maximumImageSize
    for index in 0..<elf.programHeaderCount where elf.programHeader(at: index).type == Self.typeDynamic {
      let header = elf.programHeader(at: index)
      guard UInt64(header.virtualAddress) >= start,
        UInt64(header.virtualAddress) + UInt64(header.memorySize) <= start + size
      else { throw .badDynamicSegment }
    }

    // Dynamic symbols: whole 16-byte entries, names in a string table.
    guard let symbols = elf.firstSection(ofType: Self.typeDynamicSymbols),
      let strings = elf.sectionIndex(elf.section(at: symbols).link),
      elf.section(at: strings).type == ELF32Section.typeStringTable,
      elf.section(at: symbols).entrySize == 16, elf.section(at: symbols).size % 16 == 0
    else { throw .noDynamicSymbols }
    do throws(ELFError) {
      dynamicSymbols = try elf.contents(ofSection: symbols)
      dynamicStrings = try elf.contents(ofSection: strings)
    } catch { throw .elf(error) }

    // Manifest.
    var manifestBytes: UnsafeRawBufferPointer?
    for index in 0..<elf.sectionCount {
      guard let name = try? elf.name(ofSection: index), equals(name, ".tessera") else { continue }
      do throws(ELFError) {
        manifestBytes = try elf.contents(ofSection: index).bytes
      } catch { throw .elf(error) }
    }
    guard let manifestBytes else { throw .noManifest }
    do throws(ManifestError) {
      manifest = try ServerManifest(bytes: manifestBytes)
    } catch { throw .manifest(error) }

    // Relocations: known types, targets inside the image, symbol indices that exist.
    let symbolCount = UInt32(truncatingIfNeeded: dynamicSymbols.count / 16)
    for index in 0..<elf.sectionCount where elf.section(at: index).type == Self.typeRelocations {
      let section = elf.section(at: index)
      guard section.entrySize == 8, section.size % 8 == 0, elf.sectionIndex(section.link) == symbols,
        let entries = try? elf.contents(ofSection: index)
      else { throw .badRelocationSection(index: index) }
      var offset = 0
      while offset < entries.count {
        let target = entries.uint32(at: offset)!
        let info = entries.uint32(at: offset + 4)!
        let type = UInt8(truncatingIfNeeded: info)
        let symbol = info >> 8
        switch type {
        case Relocation.absolute, Relocation.relative32, Relocation.globalData, Relocation.jumpSlot,
          Relocation.relative:
          break
        default: throw .unsupportedRelocation(type: type, offset: target)
        }
        guard UInt64(target) >= start, UInt64(target) + 4 <= start + size else {
          throw .relocationOutsideImage(offset: target)
        }
        guard symbol < symbolCount else { throw .badSymbolIndex(symbol) }
        if symbol != 0 {
          let entry = symbol * 16  // below the table's size
          guard dynamicStrings.cString(at: dynamicSymbols.uint32(at: entry)!) != nil else {
            throw .badSymbolIndex(symbol)
          }
          // A defined symbol becomes an address in the image: it must lie there (or be
          // absolute, which only R_386_32 data may use).
          let section = dynamicSymbols.uint16(at: entry + 14)!
          let value = dynamicSymbols.uint32(at: entry + 4)!
          if section != 0 && section != Self.absoluteSection {
            guard section < Self.reservedSections, elf.sectionIndex(UInt32(section)) != nil,
              UInt64(value) >= start, UInt64(value) < start + size
            else { throw .badSymbol(index: symbol) }
          } else if section == Self.absoluteSection && type != Relocation.absolute {
            throw .badSymbol(index: symbol)
          }
        }
        offset += 8
      }
    }

    // Entry points: functions the kernel will call, so in loaded executable code.
    try requireFunction("tessera_start")
    try requireFunction("tessera_destroy")
    for export in 0..<manifest.exportCount {
      let interface = manifest.interface(manifest.export(export))
      for method in 0..<interface.methodCount {
        try requireFunction(Self.dispatchSymbol(interface: interface.name, method: method))
      }
    }

    // Bound imports: each must name one of the file's slots, and a call a method of it
    // with its number of words (the kernel generates a stub for each, see BoundImport). The loop
    // only finds the first bad one: the error (two KernelMessages) is made outside it, so
    // the supervisor's small stack does not carry it through every import (restarts
    // validate files on it).
    var badBoundCall: UnsafeBufferPointer<UInt8>? = nil
    var boundCalls = 0
    forEachImport { name in
      guard badBoundCall == nil, BoundImport.hasPrefix(name) else { return }
      boundCalls += 1
      if let bound = BoundImport.parse(name), bound.fits(manifest) { return }
      badBoundCall = name
    }
    if let badBoundCall { throw Self.boundCallError(badBoundCall, manifest: manifest) }
    // Each costs a stub of kernel memory (and the loader looks them up by name).
    guard boundCalls <= Self.maximumBoundCalls else { throw .tooManyBoundCalls(boundCalls) }
  }

  /// The most bound imports a file may have: a server calling every method of 16 slots of
  /// 32 methods each has 512 calls, and at most 255 slots have an acquire and a release.
  public static let maximumBoundCalls = 512 + 2 * 255

  @inline(never)
  private static func boundCallError(_ name: UnsafeBufferPointer<UInt8>, manifest: ServerManifest)
    -> ServerFileError
  {
    guard let bound = BoundImport.parse(name) else {
      let form: KernelMessage =
        BoundCallImport.hasPrefix(name)
        ? "tessera_bound_callW_SLOT_METHOD" : "tessera_bound_acquire_SLOT or tessera_bound_release_SLOT"
      return .badBoundCall(name: "\(text: name)", problem: "is not \(form)")
    }
    return .badBoundCall(name: "\(text: name)", problem: bound.problem(in: manifest) ?? "")
  }

  /// Calls `body` with every bound import of the file (all valid: `init` checked them).
  public func forEachBoundImport(_ body: (BoundImport) -> Void) {
    forEachImport { name in
      if let bound = BoundImport.parse(name) { body(bound) }
    }
  }

  private func requireFunction(_ name: KernelMessage) throws(ServerFileError) {
    guard symbolAddress(name) != nil else { throw .missingEntry(name) }
    guard functionAddress(name) != nil else { throw .entryNotExecutable(name) }
  }

  /// The image-relative address of the defined function `name`, if it lies in a loaded
  /// executable segment (the only addresses the kernel ever calls in a server).
  public func functionAddress(_ name: KernelMessage) -> UInt32? {
    guard let offset = symbolAddress(name) else { return nil }
    let address = UInt64(imageStart) + UInt64(offset)
    for index in 0..<elf.programHeaderCount {
      let header = elf.programHeader(at: index)
      if header.type == Self.typeLoad, header.flags & Self.flagExecute != 0,
        address >= UInt64(header.virtualAddress),
        address < UInt64(header.virtualAddress) + UInt64(header.memorySize)
      {
        return offset
      }
    }
    return nil
  }

  /// The name of the dispatch function of `method` of `interface`.
  public static func dispatchSymbol(interface: UnsafeBufferPointer<UInt8>, method: Int) -> KernelMessage {
    "tessera_dispatch_\(text: interface)_\(method)"
  }

  /// The image-relative address of the defined dynamic symbol `name`, if any.
  public func symbolAddress(_ name: KernelMessage) -> UInt32? {
    var offset = 16  // symbol 0 is the null symbol
    while offset + 16 <= dynamicSymbols.count {
      let section = dynamicSymbols.uint16(at: offset + 14)!
      if section != 0, let symbolName = dynamicStrings.cString(at: dynamicSymbols.uint32(at: offset)!),
        name.withBytes({ equal(UnsafeRawBufferPointer($0), UnsafeRawBufferPointer(symbolName)) })
      {
        let value = dynamicSymbols.uint32(at: offset + 4)!
        guard value >= imageStart, UInt64(value) < UInt64(imageStart) + UInt64(imageSize) else { return nil }
        return value - imageStart
      }
      offset += 16
    }
    return nil
  }

  /// Calls `body` with the name of every symbol the file imports.
  public func forEachImport(_ body: (UnsafeBufferPointer<UInt8>) -> Void) {
    var offset = 16
    while offset + 16 <= dynamicSymbols.count {
      if dynamicSymbols.uint16(at: offset + 14)! == 0,
        let name = dynamicStrings.cString(at: dynamicSymbols.uint32(at: offset)!), !name.isEmpty
      {
        body(name)
      }
      offset += 16
    }
  }

  /// Copies the segments into `image` (at least `imageSize` bytes, zeroed by the caller),
  /// which will run at address `base`, and applies every relocation. `resolve` gives the
  /// address of an imported symbol, or nil if the kernel does not offer it.
  public func load(
    into image: UnsafeMutableRawBufferPointer, base: UInt32,
    resolve: (UnsafeBufferPointer<UInt8>) -> UInt32?
  ) throws(ServerFileError) {
    // Every value used below was checked by `init`: segments lie in the file and the
    // image, relocation targets in the image, symbol indices in the table.
    precondition(UInt64(image.count) >= UInt64(imageSize))
    for index in 0..<elf.programHeaderCount {
      let header = elf.programHeader(at: index)
      guard header.type == Self.typeLoad, header.fileSize > 0 else { continue }
      let source = elf.reader.slice(offset: header.offset, length: header.fileSize)!
      let destination = Int(truncatingIfNeeded: header.virtualAddress - imageStart)
      UnsafeMutableRawBufferPointer(rebasing: image[destination..<(destination + source.count)]).copyMemory(
        from: source)
    }
    let delta = base &- imageStart
    for index in 0..<elf.sectionCount where elf.section(at: index).type == Self.typeRelocations {
      let entries = try! elf.contents(ofSection: index)
      var offset = 0
      while offset < entries.count {
        let target = entries.uint32(at: offset)!
        let info = entries.uint32(at: offset + 4)!
        let type = UInt8(truncatingIfNeeded: info)
        let place = Int(truncatingIfNeeded: target - imageStart)
        let addend = image.loadUnaligned(fromByteOffset: place, as: UInt32.self)
        var value: UInt32
        if type == Relocation.relative {
          value = addend &+ delta
        } else {
          let symbol = try symbolValue(info >> 8, base: base, resolve: resolve)
          switch type {
          case Relocation.absolute: value = symbol &+ addend
          case Relocation.relative32: value = symbol &+ addend &- (target &+ delta)
          default: value = symbol
          }
        }
        image.storeBytes(of: value, toByteOffset: place, as: UInt32.self)
        offset += 8
      }
    }
  }

  private func symbolValue(
    _ index: UInt32, base: UInt32, resolve: (UnsafeBufferPointer<UInt8>) -> UInt32?
  ) throws(ServerFileError) -> UInt32 {
    if index == 0 { return 0 }  // no symbol: S is 0
    let entry = index * 16
    guard let name = dynamicStrings.cString(at: dynamicSymbols.uint32(at: entry)!) else {
      throw .badSymbolIndex(index)
    }
    let section = dynamicSymbols.uint16(at: entry + 14)!
    if section == Self.absoluteSection { return dynamicSymbols.uint32(at: entry + 4)! }
    if section != 0 {
      return dynamicSymbols.uint32(at: entry + 4)! &- imageStart &+ base
    }
    guard let address = resolve(name) else { throw .unresolvedImport("\(text: name)") }
    return address
  }
}
