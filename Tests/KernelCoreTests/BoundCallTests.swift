// BoundCallTests: the bound-call imports (names, and their check against a server file's
// slots, on the real Benchmark.srv and on copies with a name changed), and the stubs the
// kernel generates for them, disassembled.

import Foundation
import Testing

@testable import I686CodeGeneration
@testable import KernelCore

@Suite struct BoundCallTests {
  func parse(_ name: String) -> BoundCallImport? {
    Array(name.utf8).withUnsafeBufferPointer { BoundCallImport.parse($0) }
  }

  @Test func namesParseOnlyInTheirOneForm() {
    #expect(parse("tessera_bound_call3_1_0") == BoundCallImport(words: 3, slot: 1, method: 0))
    #expect(parse("tessera_bound_call0_255_255") == BoundCallImport(words: 0, slot: 255, method: 255))
    #expect(parse("tessera_bound_call8_12_7") == BoundCallImport(words: 8, slot: 12, method: 7))
    for bad in [
      "tessera_bound_call9_1_0", "tessera_bound_call3_0_0", "tessera_bound_call3_01_0",
      "tessera_bound_call3_1_00",
      "tessera_bound_call3_256_0", "tessera_bound_call3_1_1000", "tessera_bound_call3_1",
      "tessera_bound_call3__1_0",
      "tessera_bound_call3_1_0_", "tessera_bound_call3_1_0x", "tessera_bound_call_1_0",
      "tessera_bound_call31_1_0",
      "tessera_bound_call3_-1_0", "tessera_call3", "tessera_bound_call", "",
    ] {
      #expect(parse(bad) == nil, "\(bad)")
    }
  }

  /// Benchmark.srv with `from` (an import name in its string table) replaced by `to`.
  func benchmarkFile(replacing from: String, with to: String) throws -> [UInt8] {
    let (_, data) = try #require(try BuiltServers.files().first { $0.name == "Benchmark.srv" })
    var bytes = data
    let pattern = Array(from.utf8) + [0]
    let replacement = Array(to.utf8) + [0]
    try #require(pattern.count == replacement.count)
    let start = try #require(
      (0...(bytes.count - pattern.count)).first { bytes[$0..<($0 + pattern.count)].elementsEqual(pattern) },
      "Benchmark.srv imports \(from)")
    bytes.replaceSubrange(start..<(start + pattern.count), with: replacement)
    return bytes
  }

  @Test func theBenchmarkServersBoundCallsMatchItsSlots() throws {
    let (_, data) = try #require(try BuiltServers.files().first { $0.name == "Benchmark.srv" })
    var calls: [BoundCallImport] = []
    try data.withUnsafeBytes { raw in
      try ServerFile(bytes: raw).forEachBoundImport { if case .call(let call) = $0 { calls.append(call) } }
    }
    // target, locked, isolated and isolatedLocked are slots 1-4 of Compute; compute takes
    // three words.
    for slot in 1...4 { #expect(calls.contains(BoundCallImport(words: 3, slot: slot, method: 0))) }
    let slots = try data.withUnsafeBytes { try ServerFile(bytes: $0).manifest.slotCount }
    #expect(calls.allSatisfy { $0.slot >= 1 && $0.slot <= slots })
  }

  @Test func aBoundCallOfNoSuchSlotMethodOrWordCountIsRejected() throws {
    let (_, data) = try #require(try BuiltServers.files().first { $0.name == "Benchmark.srv" })
    let slots = try data.withUnsafeBytes { try ServerFile(bytes: $0).manifest.slotCount }
    // A one-digit slot whose method 0 takes other than three words (a name of the same
    // length as the one replaced).
    let (other, words) = try #require(
      try data.withUnsafeBytes { raw -> (Int, Int)? in
        let manifest = try ServerFile(bytes: raw).manifest
        for slot in 1...min(slots, 9) {
          let interface = manifest.interface(manifest.slot(slot - 1).interface)
          if interface.methodCount > 0, interface.method(0).callWords != 3 {
            return (slot, interface.method(0).callWords)
          }
        }
        return nil
      })
    let notACount = "is not tessera_bound_acquire_SLOT or tessera_bound_release_SLOT"
    // (the import replaced, its replacement, why the file is rejected)
    for (original, name, expected) in [
      (
        "tessera_bound_call3_1_0", "tessera_bound_call3_\(other)_0",
        "calls method 0 of slot \(other) with 3 words; it takes \(words)"
      ),
      (
        "tessera_bound_call3_1_0", "tessera_bound_call3_1_5",
        "calls method 5 of slot 1, whose interface Compute has 1"
      ),
      (
        "tessera_bound_call3_1_0", "tessera_bound_call4_1_0",
        "calls method 0 of slot 1 with 4 words; it takes 3"
      ),
      ("tessera_bound_call3_1_0", "tessera_bound_call3_1_x", "is not tessera_bound_callW_SLOT_METHOD"),
      // A bound acquire or release: the same rules for the slot.
      ("tessera_bound_acquire_1", "tessera_bound_acquire_x", notACount),
      ("tessera_bound_acquire_1", "tessera_bound_acquire_0", notACount),
    ] {
      let bytes = try benchmarkFile(replacing: original, with: name)
      bytes.withUnsafeBytes { raw in
        do throws(ServerFileError) {
          _ = try ServerFile(bytes: raw)
          Issue.record("\(name) was accepted")
        } catch {
          #expect(error.message.string == "imports \(name), which \(expected)")
        }
      }
    }
    try data.withUnsafeBytes { raw in
      let manifest = try ServerFile(bytes: raw).manifest
      for bound in [BoundImport.acquire(slot: slots + 1), .release(slot: slots + 1)] {
        #expect(!bound.fits(manifest))
        #expect(
          bound.problem(in: manifest)?.string == "names slot \(slots + 1), and the server has \(slots) slots")
      }
      #expect(BoundImport.acquire(slot: slots).fits(manifest))
    }
    // A slot past the last (a longer name than any the file has, so checked directly).
    try data.withUnsafeBytes { raw in
      let manifest = try ServerFile(bytes: raw).manifest
      let beyond = BoundCallImport(words: 3, slot: slots + 1, method: 0)
      #expect(!beyond.fits(manifest))
      #expect(
        beyond.problem(in: manifest)?.string == "calls slot \(slots + 1), and the server has \(slots) slots")
    }
  }

  /// The layout, writer (base 0x1000) and disassembler the gate's tests use.
  let stubs = CallStubTests()
  var chain: CallChainLayout { stubs.chain }
  func write(_ body: (inout CodeBuffer) -> Void) -> [UInt8] { stubs.write(body) }

  @Test func aBoundStubPushesTheRecordAndCallsTheEntryThroughTheVector() throws {
    let target = CallStubs.BoundTarget(chainValue: 0x8001, context: 0x9000, entry: 0xA004)
    let bytes = write { CallStubs.writeBoundStub(into: &$0, chain: chain, target: target) }
    #expect(bytes.count <= CallStubs.boundStubSize)
    let listing = try stubs.disassemble(bytes, base: 0x1000)
    #expect(
      listing == [
        "mov edx,DWORD PTR ds:0x3000", "cmp edx,0x40", "jae 0x1049",
        "mov DWORD PTR [edx*8+0x3008],0x8001", "inc DWORD PTR ds:0x3000",
        "pop DWORD PTR [edx*8+0x3004]",
        "mov DWORD PTR [esp],0x9000", "call DWORD PTR ds:0xa004", "xor edx,edx", "dec DWORD PTR ds:0x3000",
        "mov ecx,DWORD PTR ds:0x3000", "jmp DWORD PTR [ecx*8+0x3004]", "xor eax,eax", "mov edx,0x6",
        "ret",
      ])
  }

  @Test func aBoundStubIntoALockedServerTakesAFreeLockItselfAndLeavesTheRestToTheLockStub() throws {
    let lock = CallStubs.BoundLock(lock: 0x4000, failed: 0x4008, dispatch: 0x5000, release: 0x7000)
    let target = CallStubs.BoundTarget(chainValue: 0x8001, context: 0x9000, entry: 0xA004, lock: lock)
    let bytes = write { CallStubs.writeBoundStub(into: &$0, chain: chain, target: target) }
    #expect(bytes.count <= CallStubs.boundStubSize)
    let listing = try stubs.disassemble(bytes, base: 0x1000)
    let general = try #require(listing.firstIndex(of: "call DWORD PTR ds:0xa004"))
    // A failed server, or a lock held by anyone (this thread included), goes to the entry.
    let start = try #require(listing.firstIndex(of: "mov DWORD PTR [esp],0x9000")) + 1
    #expect(
      Array(listing[start..<(start + 9)]) == [
        "cmp DWORD PTR ds:0x4008,0x0", listing[start + 1], "mov ecx,DWORD PTR ds:0x3404", "xor eax,eax",
        "lock cmpxchg DWORD PTR ds:0x4000,ecx", listing[start + 5], "mov DWORD PTR [edx*4+0x3204],0x1",
        "call 0x5000", "mov ecx,DWORD PTR ds:0x3000",
      ])
    #expect(listing[start + 1].hasPrefix("jne ") && listing[start + 5].hasPrefix("jne "))
    #expect(listing[start + 1].dropFirst(4) == listing[start + 5].dropFirst(4), "both go to the general path")
    // Freeing: the flag is cleared first, then one xchg, and only then is the record
    // popped (a record still names the callee while its lock is freed); a contended lock
    // goes to release.
    let free = try #require(listing.firstIndex(of: "xchg DWORD PTR ds:0x4000,edx"))
    #expect(listing[free - 2] == "mov DWORD PTR [ecx*4+0x3204],0x0")
    #expect(listing[free - 3] == "dec ecx" && listing[free - 4] == "mov ecx,DWORD PTR ds:0x3000")
    #expect(
      Array(listing[(free + 1)...(free + 5)]) == [
        "test edx,edx", listing[free + 2], "xor edx,edx", "mov DWORD PTR ds:0x3000,ecx",
        "jmp DWORD PTR [ecx*8+0x3004]",
      ])
    let release = try #require(listing.firstIndex(of: "call 0x7000"))
    #expect(
      Array(listing[(release + 2)...(release + 6)]) == [
        "pop eax", "xor edx,edx", "dec DWORD PTR ds:0x3000", "mov ecx,DWORD PTR ds:0x3000",
        "jmp DWORD PTR [ecx*8+0x3004]",
      ], "a contended lock is handed on before the record is popped")
    #expect(listing.contains("call 0x7000"))
    #expect(
      Array(listing[general..<(general + 5)]) == [
        "call DWORD PTR ds:0xa004", "xor edx,edx", "dec DWORD PTR ds:0x3000", "mov ecx,DWORD PTR ds:0x3000",
        "jmp DWORD PTR [ecx*8+0x3004]",
      ])
  }

  @Test func theRedirectFitsInsideTheStubsFirstInstruction() throws {
    let gate = UInt32(0x7000)
    let redirect = write { CallStubs.writeBoundRedirect(into: &$0, gate: gate) }
    #expect(try stubs.disassemble(redirect, base: 0x1000) == ["jmp 0x7000"])
    #expect(redirect.count == CallStubs.boundRedirectSize)
    // Written over a live stub's start, it leaves the rest as it was: a thread switched
    // away inside the stub is at its start (rewound: its window) or past the record's
    // count, beyond the redirect's bytes (StubExecutionTests preempt it everywhere).
    var window = CountWindow(start: 0, commit: 0)
    let stub = write {
      window = CallStubs.writeBoundStub(
        into: &$0, chain: chain,
        target: CallStubs.BoundTarget(chainValue: 0x8001, context: 0x9000, entry: 0xA004))
    }
    #expect(window.start == 0x1000 && window.commit > window.start + UInt32(redirect.count))
    let first = try stubs.disassemble(Array(stub.prefix(6)), base: 0x1000)
    #expect(first == ["mov edx,DWORD PTR ds:0x3000"], "the first instruction is 6 bytes, the redirect 5")
  }
}
