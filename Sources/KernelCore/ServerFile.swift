// ServerFile: validation and relocation of a server file (an ELF32 i386 shared object
// carrying a `.tessera` manifest section).
//
// Contract: `ServerFile(bytes:)` checks everything the loader will rely on before any
// memory is touched: ELF structure, loadable segments inside the file and inside one span
// of at most `maximumImageSize`, the dynamic symbol table, every relocation's type and
// target, the manifest, and the presence of `tessera_start`, `tessera_destroy` and a
// dispatch function for every method of every exported interface. A file that fails any
// check is rejected with a `ServerFileError` naming the reason. `load(into:base:resolve:)`
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
  case unresolvedImport(KernelMessage)

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
    case .unresolvedImport(let name): "imports \(name), which the kernel does not offer"
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
    guard size <= UInt64(Self.maximumImageSize) else {
      throw .imageTooLarge(UInt32(min(size, UInt64(UInt32.max))))
    }
    imageStart = UInt32(start)
    imageSize = UInt32(size)

    // Dynamic symbols.
    guard let symbols = elf.firstSection(ofType: Self.typeDynamicSymbols),
      Int(elf.section(at: symbols).link) < elf.sectionCount
    else { throw .noDynamicSymbols }
    do throws(ELFError) {
      dynamicSymbols = try elf.contents(ofSection: symbols)
      dynamicStrings = try elf.contents(ofSection: Int(elf.section(at: symbols).link))
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
    let symbolCount = UInt32(dynamicSymbols.count / 16)
    for index in 0..<elf.sectionCount where elf.section(at: index).type == Self.typeRelocations {
      let section = elf.section(at: index)
      guard section.entrySize == 8, section.size % 8 == 0,
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
          guard dynamicStrings.cString(at: Int(dynamicSymbols.uint32(at: Int(symbol) * 16)!)) != nil else {
            throw .badSymbolIndex(symbol)
          }
        }
        offset += 8
      }
    }

    // Entry points.
    guard symbolAddress("tessera_start") != nil else { throw .missingEntry("tessera_start") }
    guard symbolAddress("tessera_destroy") != nil else { throw .missingEntry("tessera_destroy") }
    for export in 0..<manifest.exportCount {
      let interface = manifest.interface(manifest.export(export))
      for method in 0..<interface.methodCount {
        let name = Self.dispatchSymbol(interface: interface.name, method: method)
        guard symbolAddress(name) != nil else { throw .missingEntry(name) }
      }
    }
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
      if section != 0, let symbolName = dynamicStrings.cString(at: Int(dynamicSymbols.uint32(at: offset)!)),
        name.withBytes({ equal(UnsafeRawBufferPointer($0), UnsafeRawBufferPointer(symbolName)) })
      {
        let value = dynamicSymbols.uint32(at: offset + 4)!
        guard value >= imageStart, value < imageStart &+ imageSize else { return nil }
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
        let name = dynamicStrings.cString(at: Int(dynamicSymbols.uint32(at: offset)!)), !name.isEmpty
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
    precondition(image.count >= Int(imageSize))
    for index in 0..<elf.programHeaderCount {
      let header = elf.programHeader(at: index)
      guard header.type == Self.typeLoad, header.fileSize > 0 else { continue }
      let source = elf.reader.slice(offset: Int(header.offset), length: Int(header.fileSize))!
      let destination = Int(header.virtualAddress - imageStart)
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
        let place = Int(target - imageStart)
        let addend = image.loadUnaligned(fromByteOffset: place, as: UInt32.self)
        var value: UInt32
        if type == Relocation.relative {
          value = addend &+ delta
        } else {
          let symbol = try symbolValue(Int(info >> 8), base: base, resolve: resolve)
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
    _ index: Int, base: UInt32, resolve: (UnsafeBufferPointer<UInt8>) -> UInt32?
  ) throws(ServerFileError) -> UInt32 {
    let entry = index * 16
    let name = dynamicStrings.cString(at: Int(dynamicSymbols.uint32(at: entry)!))!
    if dynamicSymbols.uint16(at: entry + 14)! != 0 {
      return dynamicSymbols.uint32(at: entry + 4)! &- imageStart &+ base
    }
    guard let address = resolve(name) else { throw .unresolvedImport("\(text: name)") }
    return address
  }
}
