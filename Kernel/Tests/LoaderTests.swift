// LoaderTests: the server-file validator and loader run on i686 against hostile files:
// every header, program-header, section-header, symbol and relocation word set to the
// values that trap 32-bit conversions and overflow offsets, then seeded random
// mutations and truncations. The host fuzzer (ServerFileTests) cannot find traps that
// only i686's 32-bit `Int` has; this one runs where they would panic.

import KernelCore

func loaderTests() -> [KernelTest] {
  [KernelTest(name: "loader.hostile_server_files", body: loaderHostileServerFiles)]
}

/// Random mutations after the chosen words.
private let randomCases = 10_000

private func loaderHostileServerFiles() {
  guard let name = BootModules.firstName(endingWith: ".srv"), let original = BootModules.bytes(named: name)
  else {
    check(false, "no server file among the boot modules")
    return
  }
  guard (try? ServerFile(bytes: original)) != nil else {
    check(false, "the unchanged \(text: name) is rejected")
    return
  }
  let count = original.count
  let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 16)
  defer { copy.deallocate() }
  var accepted = 0
  var rejected = 0
  // Validates (and, when accepted, relocates into scratch memory) the first `length` bytes.
  func attempt(_ length: Int) {
    let bytes = UnsafeRawBufferPointer(rebasing: copy[0..<length])
    guard let file = try? ServerFile(bytes: bytes) else {
      rejected += 1
      return
    }
    accepted += 1
    let image = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(file.imageSize), alignment: 4096)
    defer { image.deallocate() }
    image.initializeMemory(as: UInt8.self, repeating: 0)
    try? file.load(into: image, base: 0x4010_0000) { _ in 0x4000_0000 }
  }

  // Chosen words: every 4-byte field of the headers and tables the loader reads.
  let reader = ByteReader(UnsafeRawBufferPointer(original))
  var offsets: [Int] = Array(stride(from: 16, to: 52, by: 2))
  let elf = try! ELF32File(bytes: UnsafeRawBufferPointer(original))
  let programTable = Int(reader.uint32(at: 28)!)
  for index in 0..<elf.programHeaderCount {
    offsets += (0..<8).map { programTable + 32 * index + 4 * $0 }
  }
  let sectionTable = Int(reader.uint32(at: 32)!)
  for index in 0..<elf.sectionCount {
    offsets += (0..<10).map { sectionTable + 40 * index + 4 * $0 }
    let section = elf.section(at: index)
    // The first entries of symbol (11: dynamic) and relocation (9) tables.
    if section.type == 11 || section.type == 9 {
      let start = Int(section.offset)
      offsets += (0..<min(Int(section.size) / 4, 24)).map { start + 4 * $0 }
    }
  }
  let values: [UInt32] = [0x8000_0000, 0xFFFF_FFFC, 0x7FFF_FFFF, 0xFFFF_FFFF, 0]
  var chosen = 0
  for offset in offsets where offset + 4 <= count {
    for value in values {
      copy.copyMemory(from: UnsafeRawBufferPointer(original))
      copy.storeBytes(of: value, toByteOffset: offset, as: UInt32.self)
      attempt(count)
      chosen += 1
    }
  }

  // Random: flipped bytes, chosen words at random places, truncations.
  var state: UInt32 = 0x7E55_E7A1
  func random(_ bound: Int) -> Int {
    state ^= state << 13
    state ^= state >> 17
    state ^= state << 5
    return Int(state % UInt32(bound))
  }
  for _ in 0..<randomCases {
    copy.copyMemory(from: UnsafeRawBufferPointer(original))
    for _ in 0..<(1 + random(4)) {
      if random(2) == 0 {
        copy[random(count)] = UInt8(truncatingIfNeeded: random(256))
      } else {
        let offset = random(count - 4) & ~3
        copy.storeBytes(of: values[random(values.count)], toByteOffset: offset, as: UInt32.self)
      }
    }
    attempt(random(8) == 0 ? random(count) : count)
  }
  KernelConsole.write(
    "@@LOADER-FUZZ file=\(text: name) chosen=\(chosen) random=\(randomCases) accepted=\(accepted) rejected=\(rejected)\n"
  )
  check(chosen > 500, "only \(chosen) chosen words")
  check(rejected > 0, "nothing was rejected")
}
