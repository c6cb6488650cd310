// ByteReader: bounds-checked little-endian reads from untrusted bytes.
//
// Contract: every read checks its range first and reports `nil` instead of reading past
// the end, so parsers of boot information, ELF files and packets never follow a lying
// length field out of their buffer. Offsets and lengths taken straight from untrusted
// words have `UInt32` overloads that never trap: on i686 `Int(someUInt32)` traps for
// values of 2^31 and more, so parsers pass such words here unconverted (the rule is in
// docs/ARCHITECTURE.md, "One checked boundary", and enforced by BoundaryLintTests).

/// A read-only view of bytes whose contents are not trusted.
public struct ByteReader {
  /// The bytes being read.
  public let bytes: UnsafeRawBufferPointer

  /// A reader over `bytes`.
  public init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

  /// The number of bytes.
  public var count: Int { bytes.count }

  /// Whether `length` bytes starting at `offset` lie inside the buffer (overflow-safe).
  public func contains(offset: Int, length: Int) -> Bool {
    offset >= 0 && length >= 0 && offset <= bytes.count && length <= bytes.count - offset
  }

  /// Whether a range given as unsigned 64-bit offset and length lies inside the buffer.
  public func contains(offset: UInt64, length: UInt64) -> Bool {
    offset <= UInt64(bytes.count) && length <= UInt64(bytes.count) - offset
  }

  /// `offset` as an index into the buffer if `offset...offset+length` lies inside it.
  public func index(_ offset: UInt32, length: UInt32 = 0) -> Int? {
    guard contains(offset: UInt64(offset), length: UInt64(length)) else { return nil }
    return Int(truncatingIfNeeded: offset)  // at most `count`, so it fits
  }

  /// The little-endian 16-bit value at an untrusted `offset`, or nil if it does not fit.
  public func uint16(at offset: UInt32) -> UInt16? { index(offset, length: 2).flatMap { uint16(at: $0) } }

  /// The little-endian 32-bit value at an untrusted `offset`, or nil if it does not fit.
  public func uint32(at offset: UInt32) -> UInt32? { index(offset, length: 4).flatMap { uint32(at: $0) } }

  /// The bytes of an untrusted range, or nil if it does not fit.
  public func slice(offset: UInt32, length: UInt32) -> UnsafeRawBufferPointer? {
    guard let start = index(offset, length: length) else { return nil }
    return slice(offset: start, length: Int(truncatingIfNeeded: length))
  }

  /// The NUL-terminated string at an untrusted `offset`, or nil.
  public func cString(at offset: UInt32) -> UnsafeBufferPointer<UInt8>? {
    index(offset).flatMap { cString(at: $0) }
  }

  /// The byte at `offset`, or nil past the end.
  public func uint8(at offset: Int) -> UInt8? {
    contains(offset: offset, length: 1) ? bytes[offset] : nil
  }

  /// The little-endian 16-bit value at `offset`, or nil if it does not fit.
  public func uint16(at offset: Int) -> UInt16? {
    guard contains(offset: offset, length: 2) else { return nil }
    return UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
  }

  /// The little-endian 32-bit value at `offset`, or nil if it does not fit.
  public func uint32(at offset: Int) -> UInt32? {
    guard contains(offset: offset, length: 4) else { return nil }
    return UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
  }

  /// The little-endian 64-bit value at `offset`, or nil if it does not fit.
  public func uint64(at offset: Int) -> UInt64? {
    guard contains(offset: offset, length: 8) else { return nil }
    return UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
  }

  /// The bytes in `offset..<offset+length`, or nil if the range does not fit.
  public func slice(offset: Int, length: Int) -> UnsafeRawBufferPointer? {
    guard contains(offset: offset, length: length) else { return nil }
    return UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + length)])
  }

  /// The NUL-terminated string starting at `offset` (without the NUL), or nil if no NUL
  /// follows inside the buffer.
  public func cString(at offset: Int) -> UnsafeBufferPointer<UInt8>? {
    guard contains(offset: offset, length: 0) else { return nil }
    var end = offset
    while end < bytes.count {
      if bytes[end] == 0 {
        let typed = bytes.bindMemory(to: UInt8.self)
        return UnsafeBufferPointer(rebasing: typed[offset..<end])
      }
      end += 1
    }
    return nil
  }
}

extension Int {
  /// A value of a type that always fits an `Int`, on i686 as on the host. Converting a
  /// `UInt32` does not compile: use `Int(exactly:)` and handle the failure.
  @inline(__always)
  public init(widening value: UInt8) { self.init(truncatingIfNeeded: value) }

  /// A 16-bit value (always fits).
  @inline(__always)
  public init(widening value: UInt16) { self.init(truncatingIfNeeded: value) }
}
