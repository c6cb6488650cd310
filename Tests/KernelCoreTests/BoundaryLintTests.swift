// BoundaryLintTests: the checked-boundary rule (docs/ARCHITECTURE.md, "One checked
// boundary"): the files that decode words from user mode and from server files convert
// them without trapping. On i686 `Int(someUInt32)` traps for 2^31 and more, and a trap
// in the kernel is a panic, so these files use `Int(exactly:)` (and handle nil),
// `Int(widening:)` (UInt8/UInt16 only: the type system refuses a UInt32),
// `Int(truncatingIfNeeded:)` for values already checked, or ByteReader's UInt32 overloads.

import Foundation
import Testing

@Suite struct BoundaryLintTests {
  static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

  /// The boundary: parsers of server files and boot data, reference tables (handles come
  /// from servers), and every kernel file that serves a call from a server.
  static let boundaryFiles = [
    "Sources/KernelCore/ByteReader.swift", "Sources/KernelCore/ELF32.swift",
    "Sources/KernelCore/ServerFile.swift", "Sources/KernelCore/ServerManifest.swift",
    "Sources/KernelCore/InterfaceDescriptor.swift", "Sources/KernelCore/Multiboot.swift",
    "Sources/KernelCore/ReferenceTable.swift", "Kernel/Core/Components/UserCalls.swift",
    "Kernel/Core/Components/KernelABI.swift", "Kernel/Core/Components/KernelServices.swift",
    "Kernel/Core/Components/MemoryObjects.swift", "Kernel/Core/Components/DeviceServices.swift",
    "Kernel/Core/Components/Marshal.swift", "Kernel/Core/Threads/TimerService.swift",
  ]

  /// A conversion to a type narrower than a UInt32 word (on i686) without a label that
  /// says how it cannot trap.
  static func trapping() throws -> Regex<AnyRegexOutput> {
    try Regex(
      #"(^|[^A-Za-z0-9_.])(Int|Int8|Int16|Int32|UInt8|UInt16)\((?!exactly:|truncatingIfNeeded:|bitPattern:|clamping:|widening:|ascii:|littleEndian:|bigEndian:)"#
    )
  }

  @Test func boundaryFilesUseNoTrappingConversions() throws {
    let trapping = try Self.trapping()
    var found: [String] = []
    for path in Self.boundaryFiles {
      let text = try String(contentsOf: Self.root.appendingPathComponent(path), encoding: .utf8)
      for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
        let code = line.split(separator: "//", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        if code.contains(trapping) {
          found.append("\(path):\(number + 1): \(line.trimmingCharacters(in: .whitespaces))")
        }
      }
    }
    #expect(found.isEmpty, "trapping conversions at the boundary:\n\(found.joined(separator: "\n"))")
  }

  @Test func theLintFindsATrappingConversion() throws {
    let trapping = try Self.trapping()
    #expect("let index = Int(word)".contains(trapping))
    #expect(!"let index = Int(exactly: word)".contains(trapping))
    #expect(!"let index = UInt(word)".contains(trapping))
  }
}
