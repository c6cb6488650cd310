// ComponentModelTests: interface descriptors and structural matching, manifests,
// compositions and the generated call stubs (checked by disassembling them).

import Foundation
import Testing

@testable import I686CodeGeneration
@testable import KernelCore

/// Descriptor bytes built by hand, following the format in InterfaceDescriptor.swift.
enum SampleDescriptors {
  static func name(_ text: String) -> [UInt8] { [UInt8(text.utf8.count)] + Array(text.utf8) }

  /// interface Store { get(key: word) -> word; put(data: in bytes[64]) ; open() -> Store? }
  static func store(putMaximum: UInt32 = 64, extraMethod: Bool = false) -> [UInt8] {
    var bytes = name("Store") + [extraMethod ? 4 : 3]
    bytes += name("get") + [1, 0, 1]
    bytes += name("put") + [1, 2, 1] + withUnsafeBytes(of: putMaximum.littleEndian, Array.init) + [0]
    bytes += name("open") + [0, 3] + name("Store")
    if extraMethod { bytes += name("close") + [0, 0] }
    return bytes
  }

  static func parse(_ bytes: [UInt8]) throws -> (InterfaceDescriptor, [UInt8]) {
    let copy = bytes
    let descriptor = try copy.withUnsafeBytes { raw in
      // Keep the bytes alive: copy them into memory that outlives the closure.
      let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: raw.count, alignment: 1)
      storage.copyMemory(from: raw)
      return try InterfaceDescriptor(bytes: UnsafeRawBufferPointer(storage))
    }
    return (descriptor, copy)
  }
}

@Suite struct InterfaceDescriptorTests {
  @Test func parsesMethodsParametersAndResults() throws {
    let (descriptor, _) = try SampleDescriptors.parse(SampleDescriptors.store())
    #expect(String(decoding: descriptor.name, as: UTF8.self) == "Store")
    #expect(descriptor.methodCount == 3)
    let get = descriptor.method(0)
    #expect(get.isWordsOnly && get.callWords == 1 && get.result == .word)
    let put = descriptor.method(1)
    let block = try #require(Array(put.parameters).first)
    #expect(
      block.kind == .block && block.direction == .input && block.maximumSize == 64 && put.callWords == 2)
    #expect(!put.isWordsOnly)
    let open = descriptor.method(2)
    #expect(
      open.result == .optionalReference && String(decoding: open.resultInterface!, as: UTF8.self) == "Store")
  }

  @Test func identityIsStructural() throws {
    let (first, _) = try SampleDescriptors.parse(SampleDescriptors.store())
    let (same, _) = try SampleDescriptors.parse(SampleDescriptors.store())
    let (bigger, _) = try SampleDescriptors.parse(SampleDescriptors.store(putMaximum: 128))
    let (longer, _) = try SampleDescriptors.parse(SampleDescriptors.store(extraMethod: true))
    #expect(first.matches(same) && first.digest == same.digest)
    #expect(!first.matches(bigger) && first.digest != bigger.digest)
    #expect(first.firstDifference(from: same) == nil)
    #expect(first.firstDifference(from: bigger) == 1, "the first method that differs is put")
    #expect(
      first.firstDifference(from: longer) == 3, "same methods, one more: the difference is at the count")
    var renamed = SampleDescriptors.store()
    renamed[1] = UInt8(ascii: "Z")
    let (other, _) = try SampleDescriptors.parse(renamed)
    #expect(first.firstDifference(from: other) == -1)
  }

  @Test func nestedInterfacesAreComparedStructurallyAllTheWayDown() throws {
    // interface Shelf { open() -> Store }: equal bytes on both sides, but the Store each
    // side describes may differ (the attack: SimpleFS's Iterator block 64 -> 57).
    let shelfBytes =
      SampleDescriptors.name("Shelf") + [1] + SampleDescriptors.name("open") + [0, 2]
      + SampleDescriptors.name("Store")
    let (shelf, _) = try SampleDescriptors.parse(shelfBytes)
    let (store, _) = try SampleDescriptors.parse(SampleDescriptors.store())
    let (smallerStore, _) = try SampleDescriptors.parse(SampleDescriptors.store(putMaximum: 57))
    func lookup(_ table: [String: InterfaceDescriptor]) -> (UnsafeBufferPointer<UInt8>) ->
      InterfaceDescriptor?
    {
      { table[String(decoding: $0, as: UTF8.self)] }
    }
    let same = InterfaceMatching.firstMismatch(
      required: shelf, provided: shelf, requiredLookup: lookup(["Shelf": shelf, "Store": store]),
      providedLookup: lookup(["Shelf": shelf, "Store": store]))
    #expect(same == nil)
    let differing = InterfaceMatching.firstMismatch(
      required: shelf, provided: shelf, requiredLookup: lookup(["Shelf": shelf, "Store": store]),
      providedLookup: lookup(["Shelf": shelf, "Store": smallerStore]))
    #expect(differing.map { String(decoding: $0, as: UTF8.self) } == "Store")
    let unknown = InterfaceMatching.firstMismatch(
      required: shelf, provided: shelf, requiredLookup: lookup(["Shelf": shelf, "Store": store]),
      providedLookup: lookup(["Shelf": shelf]))
    #expect(
      unknown.map { String(decoding: $0, as: UTF8.self) } == "Store", "the provider does not know Store")
  }

  @Test func rejectsEveryTruncation() {
    let bytes = SampleDescriptors.store()
    for length in 0..<bytes.count {
      #expect(throws: DescriptorError.self) { _ = try SampleDescriptors.parse(Array(bytes.prefix(length))) }
    }
  }

  @Test func rejectsMalformedFields() {
    var badKind = SampleDescriptors.store()
    badKind[12] = 9  // the kind of get's parameter
    #expect(throws: DescriptorError.badKind(offset: 12)) { _ = try SampleDescriptors.parse(badKind) }
    #expect(throws: DescriptorError.badBlockBound(offset: 21)) {
      _ = try SampleDescriptors.parse(SampleDescriptors.store(putMaximum: 0))
    }
    #expect(throws: DescriptorError.badBlockBound(offset: 21)) {
      _ = try SampleDescriptors.parse(
        SampleDescriptors.store(putMaximum: InterfaceDescriptor.maximumBlockSize + 1))
    }
    var badName = SampleDescriptors.store()
    badName[1] = UInt8(ascii: "1")
    #expect(throws: DescriptorError.badName(offset: 0)) { _ = try SampleDescriptors.parse(badName) }
    #expect(throws: DescriptorError.trailingBytes(offset: SampleDescriptors.store().count)) {
      _ = try SampleDescriptors.parse(SampleDescriptors.store() + [0])
    }
    // filled(0) where parameter 0 is a word.
    let filledWord = SampleDescriptors.name("F") + [1] + SampleDescriptors.name("m") + [1, 0, 4, 0]
    #expect(throws: DescriptorError.badFilledResult(method: 0)) {
      _ = try SampleDescriptors.parse(filledWord)
    }
    // Nine words.
    let tooMany =
      SampleDescriptors.name("F") + [1] + SampleDescriptors.name("m") + [9] + [UInt8](repeating: 0, count: 9)
      + [0]
    #expect(throws: DescriptorError.tooManyArguments(method: 0)) { _ = try SampleDescriptors.parse(tooMany) }
  }
}

enum SampleManifest {
  static func bytes(
    interfaces: [[UInt8]] = [SampleDescriptors.store()], provided: UInt8 = 0, exports: [UInt8] = [0],
    slots: [(String, UInt8)] = [("peer", 0)], magic: [UInt8] = Array("TSRV".utf8) + [1]
  ) -> [UInt8] {
    var bytes = magic + SampleDescriptors.name("Sample") + [1, UInt8(interfaces.count)]
    for interface in interfaces {
      bytes += [UInt8(interface.count & 0xFF), UInt8(interface.count >> 8)] + interface
    }
    bytes += [provided, UInt8(exports.count)] + exports + [UInt8(slots.count)]
    for (name, index) in slots { bytes += SampleDescriptors.name(name) + [index] }
    return bytes
  }

  static func parse(_ bytes: [UInt8]) throws -> ServerManifest {
    let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
    storage.copyBytes(from: bytes)
    return try ServerManifest(bytes: UnsafeRawBufferPointer(storage))
  }
}

@Suite struct ServerManifestTests {
  @Test func parsesAValidManifest() throws {
    let manifest = try SampleManifest.parse(SampleManifest.bytes())
    #expect(String(decoding: manifest.name, as: UTF8.self) == "Sample")
    #expect(manifest.isThreadSafe && manifest.interfaceCount == 1 && manifest.exportCount == 1)
    #expect(
      String(decoding: manifest.slot(0).name, as: UTF8.self) == "peer" && manifest.slot(0).interface == 0)
  }

  @Test func rejectsInconsistentManifests() {
    #expect(throws: ManifestError.badMagic) {
      _ = try SampleManifest.parse(SampleManifest.bytes(magic: Array("TSRX".utf8) + [1]))
    }
    #expect(throws: ManifestError.providedNotExported) {
      _ = try SampleManifest.parse(SampleManifest.bytes(exports: []))
    }
    #expect(throws: ManifestError.self) {
      _ = try SampleManifest.parse(SampleManifest.bytes(slots: [("peer", 3)]))
    }
    #expect(throws: ManifestError.duplicateInterface(index: 1)) {
      _ = try SampleManifest.parse(
        SampleManifest.bytes(interfaces: [SampleDescriptors.store(), SampleDescriptors.store()]))
    }
    // An interface naming one the manifest does not describe.
    let orphan =
      SampleDescriptors.name("Orphan") + [1] + SampleDescriptors.name("m") + [0, 2]
      + SampleDescriptors.name("Missing")
    #expect(throws: ManifestError.undescribedInterface(interface: 0, method: 0)) {
      _ = try SampleManifest.parse(SampleManifest.bytes(interfaces: [orphan], slots: []))
    }
    let good = SampleManifest.bytes()
    for length in 0..<good.count {
      #expect(throws: ManifestError.self) { _ = try SampleManifest.parse(Array(good.prefix(length))) }
    }
  }
}

@Suite struct CompositionTests {
  func statements(_ text: String) -> [String] {
    withText(text) { buffer in
      Composition(text: buffer).map { line, statement -> String in
        switch statement {
        case .failure(let error): return "\(line): error \(error.reason.string)"
        case .success(.server(let instance, let file, let placement, let restart)):
          var text = "\(line): server \(string(instance)) \(string(file))"
          switch placement {
          case .kernel: break
          case .user: text += " user"
          case .sharedUser(let space): text += " user:\(string(space))"
          }
          return text + (restart ? " restart" : "")
        case .success(.run(let instance)): return "\(line): run \(string(instance))"
        case .success(.limit(let resource, let value)): return "\(line): limit \(resource.name) \(value)"
        case .success(.bind(let slot, .kernel(let service))):
          return "\(line): bind \(string(slot)) kernel \(string(service))"
        case .success(.bind(let slot, .instance(let instance))):
          return "\(line): bind \(string(slot)) \(string(instance))"
        case .success(.bind(let slot, .none)): return "\(line): bind \(string(slot)) to nothing"
        case .success(.bind(let slot, .method(let instance, let method, let arguments))):
          let words = (0..<arguments.count).map { "\(arguments[$0])" }.joined(separator: ",")
          return "\(line): bind \(string(slot)) \(string(instance)).\(string(method))(\(words))"
        case .success(.setting(let name, let value)): return "\(line): set \(string(name)) \(string(value))"
        }
      }
    }
  }

  func string(_ bytes: UnsafeBufferPointer<UInt8>) -> String { String(decoding: bytes, as: UTF8.self) }

  @Test func readsStatementsWithLineNumbers() {
    let text = """
      # comment
      server fs SimpleFS.srv   # trailing comment
        bind device ramdisk
        bind console kernel.console
        bind root fs.getRootDirectory

      run client
      """
    #expect(
      statements(text) == [
        "2: server fs SimpleFS.srv", "3: bind device ramdisk", "4: bind console kernel console",
        "5: bind root fs.getRootDirectory()", "7: run client",
      ])
  }

  @Test func readsPlacementsAndRestartPolicies() {
    let text = """
      server a A.srv
      server b B.srv kernel
      server c C.srv user
      server d D.srv user:network restart
      server e E.srv restart
      """
    #expect(
      statements(text) == [
        "1: server a A.srv", "2: server b B.srv", "3: server c C.srv user",
        "4: server d D.srv user:network restart", "5: server e E.srv restart",
      ])
  }

  @Test func readsLimits() {
    #expect(
      statements(
        "server a A.srv\n  limit memory 4M\n  limit threads 8\n  limit priority 0\n  limit timers 2\n")
        == [
          "1: server a A.srv", "2: limit memory 4194304", "3: limit threads 8", "4: limit priority 0",
          "5: limit timers 2",
        ])
    for (line, reason) in [
      ("limit disk 4", "limit: the resources are memory, threads, priority, timers and mappings"),
      ("limit threads 0", "limit threads: the value must be a number from 1 to 256"),
      ("limit threads 257", "limit threads: the value must be a number from 1 to 256"),
      ("limit memory 4G", "limit memory: the value must be a number from 1 to 1073741824"),
      ("limit priority 4", "limit priority: the value must be a number from 0 to 3"),
      ("limit timers 99999999999", "limit timers: the value must be a number from 1 to 4096"),
      ("limit timers", "expected: limit RESOURCE VALUE"),
    ] {
      #expect(statements(line) == ["1: error \(reason)"], "\(line)")
    }
  }

  @Test func noneLeavesASlotEmptyAndIsNoInstanceName() {
    let text = """
      server shell Shell.srv
        bind tools none
        bind other nonesuch
      server none Shell.srv
      """
    #expect(
      statements(text) == [
        "1: server shell Shell.srv", "2: bind tools to nothing", "3: bind other nonesuch",
        "4: error `none` is reserved (bind SLOT none)",
      ])
  }

  @Test func readsMethodArgumentsAndSettings() {
    let text = """
      server nic Rtl8139.srv
        bind device pci.find(0x10EC,0x8139)
        bind other pci.find(4332,33081,0,4294967295)
        bind none pci.list()
        set mode c+
      """
    #expect(
      statements(text) == [
        "1: server nic Rtl8139.srv", "2: bind device pci.find(4332,33081)",
        "3: bind other pci.find(4332,33081,0,4294967295)", "4: bind none pci.list()", "5: set mode c+",
      ])
    let wrongWords =
      "method arguments must be up to 4 words (decimal or 0x hexadecimal) separated by commas"
    for (line, reason) in [
      ("bind d pci.find(0x1_0000_0000)", wrongWords), ("bind d pci.find(4294967296)", wrongWords),
      ("bind d pci.find(1,2,3,4,5)", wrongWords), ("bind d pci.find(0x)", wrongWords),
      ("bind d pci.find(1,)", wrongWords), ("bind d pci.find(-1)", wrongWords),
      ("bind d pci.find(0xG)", wrongWords),
      ("bind d pci.find(1", "expected INSTANCE.METHOD(WORD,...) with no spaces"),
      ("bind d kernel.pci(1)", "expected INSTANCE.METHOD(WORD,...) with no spaces"),
      ("bind d pci.(1)", "expected SOURCE.NAME with identifiers"),
      ("set mode", "expected: set NAME VALUE"), ("set 9 x", "expected: set NAME VALUE"),
      ("set a " + String(repeating: "x", count: 65), "set: the value is longer than 64 bytes"),
    ] {
      #expect(statements(line) == ["1: error \(reason)"], "\(line)")
    }
    #expect(statements("set a " + String(repeating: "x", count: 64)).count == 1)
  }

  @Test func reportsTheFirstBadLineAndStops() {
    #expect(
      statements("server a\nrun b") == ["1: error expected: server INSTANCE FILE [PLACEMENT] [restart]"])
    #expect(statements("server a A.srv ring3") == ["1: error placement must be kernel, user or user:SPACE"])
    #expect(statements("server a A.srv user again") == ["1: error expected `restart` after the placement"])
    #expect(statements("server a A.srv user: ") == ["1: error placement must be kernel, user or user:SPACE"])
    #expect(
      statements("run a\nlaunch b\nrun c") == [
        "1: run a", "2: error unknown statement (expected server, bind, limit, set or run)",
      ])
    #expect(statements("bind x 9lives") == ["1: error binding source must start with an identifier"])
    #expect(statements("server 1a F.srv") == ["1: error instance name must be an identifier"])
  }
}

@Suite struct CallStubTests {
  /// Disassembles `bytes` placed at `base` with binutils' objdump (Intel syntax).
  func disassemble(_ bytes: [UInt8], base: UInt32) throws -> [String] {
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("stub-\(UUID().uuidString).bin")
    try Data(bytes).write(to: file)
    defer { try? FileManager.default.removeItem(at: file) }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = [
      "objdump", "-D", "-b", "binary", "-m", "i386", "-M", "intel",
      "--adjust-vma=0x\(String(base, radix: 16))", file.path,
    ]
    let pipe = Pipe()
    process.standardOutput = pipe
    try process.run()
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    #expect(process.terminationStatus == 0, "objdump (binutils) is needed for this test")
    return output.split(separator: "\n").compactMap { line in
      let columns = line.split(separator: "\t")
      guard columns.count >= 3 else { return nil }
      return columns[2].split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
    }
  }

  func write(_ body: (inout CodeBuffer) -> Void) -> [UInt8] {
    let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: 1024, alignment: 16)
    defer { memory.deallocate() }
    var buffer = CodeBuffer(memory: memory, base: 0x1000)
    body(&buffer)
    return Array(memory[0..<buffer.count])
  }

  let table = TableLayout(base: 0x2000, capacity: 0x2004)
  let chain = CallChainLayout(
    depth: 0x3000, records: 0x3004, lockFlags: 0x3204, innerReturns: 0x3304, threadNumber: 0x3404)

  @Test func gateChecksTheCallAndKeepsTheCallChain() throws {
    let bytes = write { CallStubs.writeGate(into: &$0, table: table, chain: chain) }
    #expect(bytes.count <= CallStubs.gateSize)
    let listing = try disassemble(bytes, base: 0x1000)
    #expect(
      Array(listing.prefix(32)) == [
        "pushf", "cli", "mov eax,DWORD PTR [esp+0x8]", "cmp eax,DWORD PTR ds:0x2004", "jae 0x108e",
        "shl eax,0x6", "add eax,DWORD PTR ds:0x2000", "mov ecx,DWORD PTR [esp+0xc]",
        "sub ecx,DWORD PTR [eax+0x8]", "cmp ecx,DWORD PTR [eax+0xc]", "jae 0x107f",
        "mov edx,DWORD PTR [eax+0x0]",
        "mov DWORD PTR [esp+0x8],edx", "mov edx,DWORD PTR [eax+0x4]", "mov ecx,DWORD PTR [edx+ecx*4]",
        "mov edx,DWORD PTR ds:0x3000", "cmp edx,0x40", "jae 0x1076", "mov eax,DWORD PTR [eax+0x10]",
        "mov DWORD PTR [edx*8+0x3008],eax", "inc DWORD PTR ds:0x3000", "popf",
        "pop DWORD PTR [edx*8+0x3004]", "call ecx", "xor edx,edx", "dec DWORD PTR ds:0x3000",
        "mov ecx,DWORD PTR ds:0x3000", "jmp DWORD PTR [ecx*8+0x3004]", "popf", "xor eax,eax", "mov edx,0x6",
        "ret",
      ])
    // Every way out restores the caller's flags; a free entry (method count 0) is an invalid handle.
    #expect(listing.filter { $0 == "popf" }.count == 4)
    #expect(listing.contains("je 0x108e"), "the free-entry check jumps to the invalid-handle return")
    #expect(Array(listing.suffix(4)) == ["popf", "xor eax,eax", "mov edx,0x1", "ret"])
  }

  @Test func lockStubTakesTheLockUnlessThisThreadHoldsIt() throws {
    let bytes = write {
      CallStubs.writeLockStub(
        into: &$0, chain: chain, dispatch: 0x5000, lock: 0x4000, wait: 0x6000, release: 0x7000)
    }
    #expect(bytes.count <= CallStubs.methodEntrySize)
    let listing = try disassemble(bytes, base: 0x1000)
    #expect(
      Array(listing.prefix(10)) == [
        "mov ecx,DWORD PTR ds:0x3000", "dec ecx", "pop DWORD PTR [ecx*4+0x3304]",
        "mov edx,DWORD PTR ds:0x3404",
        "xor eax,eax", "lock cmpxchg DWORD PTR ds:0x4000,edx", "jne 0x1080",
        "mov DWORD PTR [ecx*4+0x3204],0x1",
        "call 0x5000", "mov ecx,DWORD PTR ds:0x3000",
      ])
    // Freeing: a lock without waiters is freed by one xchg and the stub returns.
    let free = try #require(listing.firstIndex(of: "xchg DWORD PTR ds:0x4000,edx"))
    #expect(listing[free + 1] == "test edx,edx" && listing[free + 3] == "jmp DWORD PTR [ecx*4+0x3304]")
    // The call's lock flag is cleared before the lock is freed (a stale flag once made a
    // later thread-safe call at the same depth free a lock it did not hold).
    #expect(listing[free - 2] == "mov DWORD PTR [ecx*4+0x3204],0x0")
    let skip = try #require(listing.firstIndex { $0.hasPrefix("je 0x") })
    #expect(listing[skip] == "je 0x105c", "a call that did not take the lock skips to the return at 0x105c")
    #expect(listing.contains("call 0x6000"), "a held lock makes the caller wait in the kernel")
    #expect(listing.contains("call 0x5000"))
    #expect(listing.contains("call 0x7000"), "waiters get the lock handed over")
    // After waiting, the thread enters like the fast path; a wait refused because it would
    // deadlock returns its status (EAX) to the gate's caller, popping the record.
    let wait = try #require(listing.firstIndex(of: "call 0x6000"))
    // The refusal's target: `mov edx,eax`, 23 bytes before the end (2+2+6+6+7).
    let refused = String(0x1000 + bytes.count - 23, radix: 16)
    #expect(Array(listing[(wait + 2)..<(wait + 4)]) == ["test eax,eax", "jne 0x\(refused)"], "\(listing)")
    #expect(listing[wait + 7] == "jmp 0x102f")
    #expect(
      Array(listing.suffix(6)) == [
        "jmp 0x102f", "mov edx,eax", "xor eax,eax", "dec DWORD PTR ds:0x3000", "mov ecx,DWORD PTR ds:0x3000",
        "jmp DWORD PTR [ecx*8+0x3004]",
      ])
  }

  @Test func marshalingStubFitsAMethodEntry() {
    let bytes = write {
      CallStubs.writeMarshalStub(into: &$0, chain: chain, information: 0x8000, marshal: 0x9000)
    }
    #expect(!bytes.isEmpty && bytes.count <= CallStubs.methodEntrySize)
  }

  @Test func upcallStubFitsAMethodEntryAndEntersThroughTheUpcall() throws {
    for words in [0, 8] {
      let layout = UpcallLayout(
        kernel: UpcallKernel(
          chain: chain, state: 0x5000, taskStackPointer: 0, resumePoint: 0, trampoline: 0x4000_0000,
          failedAfterUpcall: 0x7000),
        serverWords: 0x4000, dispatch: 0x4010_0000, upcall: 0x6000, words: words)
      let bytes = write {
        CallStubs.writeUpcallStub(into: &$0, layout: layout, information: 0x8000, slow: 0x9000)
      }
      #expect(bytes.count <= CallStubs.methodEntrySize, "\(bytes.count) bytes for \(words) words")
      let listing = try disassemble(bytes, base: 0x1000)
      #expect(listing.first == "add esp,0x4")
      #expect(listing.contains("cmp DWORD PTR ds:0x4008,0x0"), "the failed flag is checked")
      #expect(listing.contains("mov cr3,edx") && listing.contains("mov cr3,ecx"))
      #expect(listing.contains("push 0x40100000") && listing.contains("call 0x6000"))
      #expect(listing.contains("mov DWORD PTR [eax],0x40000000"), "the trampoline is the return address")
      #expect(listing.filter { $0.hasPrefix("mov DWORD PTR [eax+") }.count == words + 2)
      #expect(listing.contains("call 0x9000"), "the general path is user_call_words")
      #expect(listing.contains("call 0x7000"), "a failed server wakes the supervisor")
      #expect(!listing.contains { $0.hasPrefix("lock cmpxchg") }, "a thread-safe server takes no lock")
    }
    let locked = UpcallLayout(
      kernel: UpcallKernel(
        chain: chain, state: 0x5000, taskStackPointer: 0, resumePoint: 0, trampoline: 0x4000_0000,
        failedAfterUpcall: 0x7000),
      serverWords: 0x4000, dispatch: 0x4010_0000, upcall: 0x6000, words: 8,
      lockRelease: 0xA000)
    let bytes = write {
      CallStubs.writeUpcallStub(into: &$0, layout: locked, information: 0x8000, slow: 0x9000)
    }
    #expect(bytes.count <= CallStubs.methodEntrySize, "\(bytes.count) bytes with a lock")
    let listing = try disassemble(bytes, base: 0x1000)
    #expect(listing.contains("lock cmpxchg DWORD PTR ds:0x4000,edi"), "taken with the thread's number")
    #expect(listing.contains("mov DWORD PTR [edx*4+0x3204],0x1"), "the call records that it took the lock")
    #expect(listing.contains("xchg DWORD PTR ds:0x4000,ecx"), "freed with one xchg")
    #expect(listing.contains("call 0xa000"), "a waiter is handed the lock")
  }

  @Test func countingCodeFitsTheRoomTheLoaderGivesIt() {
    #expect(write { CallStubs.writeAcquire(into: &$0, table: table) }.count <= CallStubs.acquireSize)
    #expect(
      write { _ = CallStubs.writeRelease(into: &$0, table: table, lastCount: 0x9000) }.count
        <= CallStubs.releaseSize)
    // The largest slot needs 32-bit displacements: the longest code.
    for slot in [1, 2, 255] {
      let acquire = write { CallStubs.writeBoundAcquire(into: &$0, table: table, slot: slot) }
      let release = write {
        _ = CallStubs.writeBoundRelease(into: &$0, table: table, slot: slot, lastCount: 0x9000)
      }
      #expect(
        acquire.count <= CallStubs.boundCountSize && release.count <= CallStubs.boundCountSize, "slot \(slot)"
      )
    }
  }

  @Test func acquireAndReleaseCountWithoutCallingTheKernel() throws {
    let acquire = try disassemble(write { CallStubs.writeAcquire(into: &$0, table: table) }, base: 0x1000)
    // One unsigned compare refuses a free entry (count 0x80000000) and a full count
    // (0x7fffffff) before the one write; the refusal then tells them apart: invalid (1)
    // or outOfResources (6).
    #expect(
      acquire == [
        "mov eax,DWORD PTR [esp+0x4]", "cmp eax,DWORD PTR ds:0x2004", "jae 0x1034", "shl eax,0x6",
        "add eax,DWORD PTR ds:0x2000", "cmp DWORD PTR [eax+0x18],0x7fffffff", "jae 0x1028",
        "inc DWORD PTR [eax+0x18]", "xor eax,eax", "ret", "cmp DWORD PTR [eax+0xc],0x0", "je 0x1034",
        "mov eax,0x6", "ret", "mov eax,0x1", "ret",
      ], "\(acquire)")
    let releaseBytes = write { CallStubs.writeRelease(into: &$0, table: table, lastCount: 0x9000) }
    #expect(releaseBytes.count <= CallStubs.releaseSize)
    let release = try disassemble(releaseBytes, base: 0x1000)
    // The `dec`, and a result above 0 returns. Else the entry is found again: a free entry
    // gets its count back (0x80000000, stored at 0x104f) and a count below 0 gets 0, both
    // invalid (1, at 0x1052); a count taken again meanwhile returns 0 (0x1058); the last
    // count goes to the kernel (`jmp 0x9000` at 0x105b).
    #expect(
      release == [
        "mov eax,DWORD PTR [esp+0x4]", "cmp eax,DWORD PTR ds:0x2004", "jae 0x1052", "shl eax,0x6",
        "add eax,DWORD PTR ds:0x2000", "dec DWORD PTR [eax+0x18]", "jle 0x1021", "xor eax,eax", "ret",
        "mov eax,DWORD PTR [esp+0x4]", "cmp eax,DWORD PTR ds:0x2004", "jae 0x1052", "shl eax,0x6",
        "add eax,DWORD PTR ds:0x2000", "mov ecx,0x80000000", "cmp DWORD PTR [eax+0xc],0x0", "je 0x104f",
        "cmp DWORD PTR [eax+0x18],0x0", "je 0x105b", "jg 0x1058", "xor ecx,ecx",
        "mov DWORD PTR [eax+0x18],ecx",
        "mov eax,0x1", "ret", "xor eax,eax", "ret", "jmp 0x9000",
      ], "\(release)")
  }

}
