// Support: helpers shared by the host unit tests of KernelCore.

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
