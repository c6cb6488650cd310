// ServerFileTests: the server-file validator and loader on the real server files the build
// made, on damaged copies, and under random mutation (the fuzzer: 10,000 cases by default;
// set TESSERA_FUZZ_CASES for a longer run, see docs/ARCHITECTURE.md).

import Foundation
import Testing

@testable import KernelCore

enum BuiltServers {
  static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("build/servers")

  /// The server files `make` built; the tests need them (`make test` builds them first).
  static func files() throws -> [(name: String, data: [UInt8])] {
    let names = ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).filter {
      $0.hasSuffix(".srv")
    }.sorted()
    try #require(
      !names.isEmpty, "no server files in \(folder.path): run `make test`, which builds them before the tests"
    )
    return names.map {
      ($0, Array(FileManager.default.contents(atPath: folder.appendingPathComponent($0).path)!))
    }
  }
}

/// Validates and, if valid, loads `bytes` with a resolver that offers every import.
@discardableResult
/// The file offset of the ELF32 section `name` in `bytes` (read here from the section
/// headers, independently of the code under test); nil if there is none.
func sectionOffset(named name: String, in bytes: [UInt8]) -> Int? {
  func word(_ offset: Int) -> Int {
    Int(bytes[offset]) | Int(bytes[offset + 1]) << 8 | Int(bytes[offset + 2]) << 16 | Int(bytes[offset + 3])
      << 24
  }
  func half(_ offset: Int) -> Int { Int(bytes[offset]) | Int(bytes[offset + 1]) << 8 }
  let (table, size, count, names) = (word(32), half(46), half(48), half(50))
  let namesOffset = word(table + names * size + 16)
  for index in 0..<count {
    let header = table + index * size
    let start = namesOffset + word(header)
    let end = bytes[start...].firstIndex(of: 0) ?? start
    if String(decoding: bytes[start..<end], as: UTF8.self) == name { return word(header + 16) }
  }
  return nil
}

func validateAndLoad(_ bytes: [UInt8]) -> Result<UInt32, ServerFileError> {
  bytes.withUnsafeBytes { raw in
    do throws(ServerFileError) {
      let file = try ServerFile(bytes: raw)
      let image = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(file.imageSize), alignment: 4096)
      defer { image.deallocate() }
      image.initializeMemory(as: UInt8.self, repeating: 0)
      try file.load(into: image, base: 0x4000_0000) { _ in 0x1000 }
      return .success(file.imageSize)
    } catch { return .failure(error) }
  }
}

@Suite struct ServerFileTests {
  @Test func everyBuiltServerValidatesAndLoads() throws {
    for (name, data) in try BuiltServers.files() {
      let result = validateAndLoad(data)
      guard case .success(let size) = result else {
        Issue.record("\(name) rejected: \(result)")
        continue
      }
      #expect(size > 0 && size <= ServerFile.maximumImageSize)
      data.withUnsafeBytes { raw in
        let file = try! ServerFile(bytes: raw)
        #expect(file.symbolAddress("tessera_start") != nil)
        var imports: [String] = []
        file.forEachImport { imports.append(String(decoding: $0, as: UTF8.self)) }
        #expect(
          !imports.isEmpty
            && imports.allSatisfy {
              $0.hasPrefix("tessera_")
                || ["posix_memalign", "free", "memcpy", "memmove", "memset", "memcmp", "putchar"].contains($0)
            }, "\(name) imports \(imports)")
      }
    }
  }

  @Test func relocationsPointIntoTheLoadedImage() throws {
    let (_, data) = try BuiltServers.files().first { $0.name == "RamDisk.srv" } ?? BuiltServers.files()[0]
    try data.withUnsafeBytes { raw in
      let file = try ServerFile(bytes: raw)
      let image = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(file.imageSize), alignment: 4096)
      defer { image.deallocate() }
      image.initializeMemory(as: UInt8.self, repeating: 0)
      var resolved: [String] = []
      try file.load(into: image, base: 0x4000_0000) { name in
        resolved.append(String(decoding: name, as: UTF8.self))
        return 0xCAFE_0000
      }
      #expect(resolved.contains("tessera_export"))
      // Every import slot now holds the resolved address.
      let words = image.bindMemory(to: UInt32.self)
      #expect(words.contains(0xCAFE_0000))
    }
  }

  /// A copy of the built ComputeTarget.srv, and its parsed ELF structure.
  private func computeTarget() throws -> [UInt8] {
    try #require(try BuiltServers.files().first { $0.name == "ComputeTarget.srv" }).data
  }

  private func word(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
    bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self) }
  }

  private func setWord(_ bytes: inout [UInt8], _ offset: Int, _ value: UInt32) {
    bytes.withUnsafeMutableBytes { $0.storeBytes(of: value, toByteOffset: offset, as: UInt32.self) }
  }

  @Test func entryPointsMustLieInLoadedExecutableCode() throws {
    // The executable segment's type changed to PT_NULL: not loaded, so nothing the kernel
    // would call exists (before: accepted, and the kernel jumped into zeroed memory).
    var bytes = try computeTarget()
    let table = Int(word(bytes, 28))
    let count = Int(bytes[44]) | Int(bytes[45]) << 8
    let text = try #require(
      (0..<count).first { word(bytes, table + 32 * $0) == 1 && word(bytes, table + 32 * $0 + 24) & 1 != 0 })
    setWord(&bytes, table + 32 * text, 0)
    guard case .failure = validateAndLoad(bytes) else {
      Issue.record("a file without loaded code was accepted")
      return
    }
    // The same segment made non-executable: its functions may not be called.
    bytes = try computeTarget()
    setWord(&bytes, table + 32 * text + 24, word(bytes, table + 32 * text + 24) & ~1)
    #expect(validateAndLoad(bytes) == .failure(.entryNotExecutable("tessera_start")))
  }

  @Test func chosenBadWordsInEveryTableAreRejectedOrHarmless() throws {
    // Every header, program-header and section-header word set to values that overflow
    // 32-bit offsets: each file is rejected or loads within its image (the host cannot
    // see i686's traps; the in-kernel test loader.hostile_server_files runs the same
    // words on i686).
    let original = try computeTarget()
    let programs = Int(word(original, 28))
    let sections = Int(word(original, 32))
    let sectionCount = Int(original[48]) | Int(original[49]) << 8
    var offsets = Array(stride(from: 16, to: 52, by: 2)) + (0..<56).map { programs + 4 * $0 }
    offsets += (0..<(10 * sectionCount)).map { sections + 4 * $0 }
    // Words the loader cannot do without: the table offsets, and each loadable segment's
    // file offset and size. Those must be refused; the rest must only not crash.
    var required: Set<Int> = [28, 32]
    for index in 0..<(Int(original[44]) | Int(original[45]) << 8)
    where word(original, programs + 32 * index) == 1 {
      required.formUnion([programs + 32 * index + 4, programs + 32 * index + 16])
    }
    var rejected = 0
    for offset in offsets where offset + 4 <= original.count {
      for value: UInt32 in [0x8000_0000, 0xFFFF_FFFC, 0x7FFF_FFFF, 0xFFFF_FFFF] {
        var bytes = original
        setWord(&bytes, offset, value)
        let result = validateAndLoad(bytes)
        if case .failure = result {
          rejected += 1
        } else if required.contains(offset) {
          Issue.record("word at \(offset) set to \(value) was accepted")
        }
      }
    }
    #expect(rejected >= 4 * required.count, "\(rejected) of \(4 * offsets.count) rejected")
  }

  @Test func rejectsAnUnofferedImport() throws {
    let (_, data) = try BuiltServers.files()[0]
    try data.withUnsafeBytes { raw in
      let file = try ServerFile(bytes: raw)
      let image = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(file.imageSize), alignment: 4096)
      defer { image.deallocate() }
      #expect(throws: ServerFileError.self) { try file.load(into: image, base: 0x4000_0000) { _ in nil } }
    }
  }

  @Test func rejectsDamagedFilesWithReasons() throws {
    let (_, good) = try BuiltServers.files()[0]
    var notShared = good
    notShared[16] = 2  // ET_EXEC
    #expect(throws: ServerFileError.notSharedObject) { try validateAndLoad(notShared).get() }
    var lying = good
    lying[44] = 0xFF
    lying[45] = 0xFF
    #expect(throws: ServerFileError.elf(.badHeaderTable)) { try validateAndLoad(lying).get() }
    // The manifest's magic, found through the section headers (the same four bytes may
    // also occur in a server's constants).
    var noManifest = good
    let offset = try #require(sectionOffset(named: ".tessera", in: good), "no .tessera section")
    #expect(Array(good[offset..<(offset + 4)]) == Array("TSRV".utf8))
    noManifest[offset] = UInt8(ascii: "X")
    #expect(throws: ServerFileError.manifest(.badMagic)) { try validateAndLoad(noManifest).get() }
    for length in stride(from: 0, to: good.count, by: 97) {
      #expect(throws: ServerFileError.self) { try validateAndLoad(Array(good.prefix(length))).get() }
    }
  }

  @Test func fuzzedFilesAreAcceptedOrRejectedNeverCrash() throws {
    let cases = Int(ProcessInfo.processInfo.environment["TESSERA_FUZZ_CASES"] ?? "") ?? 10_000
    let files = try BuiltServers.files()
    var random = SeededRandom(
      state: UInt64(ProcessInfo.processInfo.environment["TESSERA_FUZZ_SEED"] ?? "") ?? 2026)
    var accepted = 0
    var rejected = 0
    for _ in 0..<cases {
      var bytes = files[Int.random(in: 0..<files.count, using: &random)].data
      switch Int.random(in: 0..<4, using: &random) {
      case 0: bytes.removeLast(Int.random(in: 1..<bytes.count, using: &random))
      case 1:
        for _ in 0..<Int.random(in: 1...4, using: &random) {
          bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
        }
      case 2:  // damage the headers, where lengths and offsets live
        let index = Int.random(in: 0..<min(64, bytes.count), using: &random)
        bytes[index] = UInt8.random(in: 0...255, using: &random)
      default:  // damage the section header table or the manifest near the end
        let index = bytes.count - 1 - Int.random(in: 0..<min(1200, bytes.count), using: &random)
        bytes[index] ^= UInt8(1) << UInt8.random(in: 0...7, using: &random)
      }
      switch validateAndLoad(bytes) {
      case .success: accepted += 1
      case .failure(let error):
        #expect(!error.message.string.isEmpty)
        rejected += 1
      }
    }
    #expect(accepted > 0, "damage to code bytes leaves a valid file: a validator rejecting all is wrong too")
    #expect(rejected > 0, "mutations must be caught")
  }
}
