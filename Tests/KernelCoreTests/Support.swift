// Support: helpers shared by the host unit tests of KernelCore.

import Foundation

@testable import KernelCore

extension KernelMessage {
  /// The rendered message as a host string.
  var string: String { withBytes { String(decoding: $0, as: UTF8.self) } }
}

/// Little-endian byte building for literal test inputs.
struct Bytes {
  var data: [UInt8] = []
  mutating func u8(_ value: UInt8) { data.append(value) }
  mutating func u16(_ value: UInt16) { withUnsafeBytes(of: value.littleEndian) { data += $0 } }
  mutating func u32(_ value: UInt32) { withUnsafeBytes(of: value.littleEndian) { data += $0 } }
  mutating func u64(_ value: UInt64) { withUnsafeBytes(of: value.littleEndian) { data += $0 } }
  mutating func zeros(_ count: Int) { data += [UInt8](repeating: 0, count: count) }
}

/// A deterministic generator for randomized tests (SplitMix64).
struct SeededRandom: RandomNumberGenerator {
  var state: UInt64
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}

/// Runs `body` with the string's bytes as a buffer.
func withText<Result>(_ text: String, _ body: (UnsafeBufferPointer<UInt8>) -> Result) -> Result {
  let bytes = Array(text.utf8)
  return bytes.withUnsafeBufferPointer(body)
}

/// The frames of `Captures/NAME` (one per line: direction, length, hex bytes; `#` lines are
/// comments), with their direction field.
func capturedFrames(_ name: String) -> [(direction: Substring, bytes: [UInt8])] {
  let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
    "Captures/\(name)")
  let text = (try? String(contentsOf: url, encoding: .utf8)) ?? ""
  return text.split(separator: "\n").filter { !$0.hasPrefix("#") }.map { line in
    let fields = line.split(separator: " ")
    let hex = Array(fields[2].utf8)
    return (
      fields[0],
      stride(from: 0, to: hex.count, by: 2).map {
        UInt8(String(decoding: hex[$0..<($0 + 2)], as: UTF8.self), radix: 16)!
      }
    )
  }
}

extension SeededRandom {
  /// True with probability `percent` / 100.
  mutating func chance(_ percent: Int) -> Bool { Int(next() % 100) < percent }
}
