// KernelImportTests: the one table of importable names agrees with the header servers are
// compiled against (Servers/Runtime/include/TesseraABI.h), and names outside it are refused.

import Foundation
import Testing

@testable import KernelCore

@Suite struct KernelImportTests {
  func kind(_ name: String) -> KernelImport? {
    Array(name.utf8).withUnsafeBufferPointer { KernelImport(name: $0) }
  }

  /// The functions TesseraABI.h declares (not its `static inline` helpers, which are no
  /// imports).
  func headerFunctions() throws -> Set<String> {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent()
    let text = try String(
      contentsOf: root.appendingPathComponent("Servers/Runtime/include/TesseraABI.h"), encoding: .utf8)
    var names: Set<String> = []
    for line in text.split(separator: "\n") where !line.hasPrefix("static") && !line.hasPrefix("//") {
      if let match = line.firstMatch(of: /\b(tessera_[a-z0-9_]+)\(/) { names.insert(String(match.1)) }
    }
    return names
  }

  @Test func theHeaderDeclaresExactlyTheTablesKernelFunctions() throws {
    let declared = try headerFunctions()
    var table = Set(KernelImport.fixedNames.map { "\($0.name)" }.filter { $0.hasPrefix("tessera_") })
    for words in 0...8 { table.insert("tessera_call\(words)") }
    #expect(
      declared == table,
      "only in the header: \(declared.subtracting(table)), only in the table: \(table.subtracting(declared))")
    for name in declared { #expect(kind(name) != nil, "\(name)") }
  }

  @Test func callsBoundCallsAndTheRestAreTold() {
    #expect(kind("tessera_call0") == .call(words: 0) && kind("tessera_call8") == .call(words: 8))
    #expect(kind("tessera_bound_call2_3_4") == .boundCall(BoundCallImport(words: 2, slot: 3, method: 4)))
    #expect(kind("tessera_bound_acquire_3") == .boundAcquire(slot: 3))
    #expect(kind("tessera_bound_release_255") == .boundRelease(slot: 255))
    #expect(kind("free") == .free && kind("memcmp") == .memcmp)
    for refused in [
      "tessera_call9", "tessera_call", "tessera_bound_call2_0_4", "malloc", "tessera_exchange", "", "exit",
      "tessera_bound_acquire_0", "tessera_bound_acquire_07", "tessera_bound_acquire_256",
      "tessera_bound_acquire_",
      "tessera_bound_release_1x", "tessera_bound_release_1000", "tessera_bound_count_1", "tessera_bound_",
    ] {
      #expect(kind(refused) == nil, "\(refused)")
    }
    // User mode: every kernel call has a thunk; the allocator and string functions do not.
    #expect(kind("tessera_bound_call2_3_4")?.userCode == 2)
    #expect(kind("tessera_bound_acquire_3")?.userCode == UserCallCode.acquire)
    #expect(kind("tessera_bound_release_3")?.userCode == UserCallCode.release)
    #expect(kind("tessera_pause")?.userCode == UserCallCode.pause)
    #expect(kind("posix_memalign")?.userCode == nil && kind("memcpy")?.userCode == nil)
  }
}
