// BootCommandLine: `key=value` options from the kernel command line.
//
// Contract: words are separated by spaces; a word without `=` is a flag whose value is
// empty. The first word is the kernel's own path (QEMU and GRUB put it there) and is
// never taken for an option. Lookups allocate nothing.

/// The kernel command line as options.
public struct BootCommandLine {
  private let bytes: UnsafeBufferPointer<UInt8>

  /// Options parsed from `bytes` (the text without its NUL).
  public init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

  /// The value of option `key` (empty for a bare flag), or nil if absent. The last
  /// occurrence wins, so appended options override earlier ones.
  public func value(of key: StaticString) -> UnsafeBufferPointer<UInt8>? {
    var found: UnsafeBufferPointer<UInt8>?
    var index = 0
    var wordNumber = 0
    while index < bytes.count {
      while index < bytes.count && bytes[index] == UInt8(ascii: " ") { index += 1 }
      let start = index
      while index < bytes.count && bytes[index] != UInt8(ascii: " ") { index += 1 }
      guard start < index else { break }
      defer { wordNumber += 1 }
      guard wordNumber > 0 || !isPath(start, index) else { continue }
      let keyLength = key.utf8CodeUnitCount
      guard index - start >= keyLength, matches(key, at: start) else { continue }
      if index - start == keyLength {
        found = UnsafeBufferPointer(rebasing: bytes[index..<index])
      } else if bytes[start + keyLength] == UInt8(ascii: "=") {
        found = UnsafeBufferPointer(rebasing: bytes[(start + keyLength + 1)..<index])
      }
    }
    return found
  }

  /// Whether option `key` is present with exactly `value`.
  public func has(_ key: StaticString, equalTo value: StaticString) -> Bool {
    guard let actual = self.value(of: key), actual.count == value.utf8CodeUnitCount else { return false }
    for index in 0..<actual.count where actual[index] != value.utf8Start[index] { return false }
    return true
  }

  private func isPath(_ start: Int, _ end: Int) -> Bool {
    for index in start..<end where bytes[index] == UInt8(ascii: "=") { return false }
    return true
  }

  private func matches(_ key: StaticString, at start: Int) -> Bool {
    for index in 0..<key.utf8CodeUnitCount where bytes[start + index] != key.utf8Start[index] {
      return false
    }
    return true
  }
}
