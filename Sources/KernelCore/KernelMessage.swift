// KernelMessage: a fixed-capacity text built by string interpolation without allocating.
//
// Contract: building a message never touches the heap, so the kernel can log before its
// heap exists, from interrupt handlers and while panicking. Text past `capacity` is not
// silently lost: the message is marked truncated and ends in "..." when rendered.

/// A line of text of at most `KernelMessage.capacity` bytes, written with interpolation:
/// `"found \(count) frames at \(hex: address)"`.
public struct KernelMessage: ExpressibleByStringInterpolation, Equatable, Sendable {
  /// The most bytes a message holds; longer text is truncated and marked.
  public static let capacity = 256

  private var storage: InlineArray<256, UInt8> = .init(repeating: 0)
  /// The number of bytes written, at most `capacity`.
  public private(set) var count = 0
  /// Whether text was cut off because the message was full.
  public private(set) var isTruncated = false

  /// An empty message.
  public init() {}

  /// A message holding exactly `literal`.
  public init(stringLiteral literal: StaticString) {
    append(literal)
  }

  /// The message an interpolated literal produced.
  public init(stringInterpolation: StringInterpolation) {
    self = stringInterpolation.message
  }

  /// Whether two messages render the same bytes.
  public static func == (left: KernelMessage, right: KernelMessage) -> Bool {
    left.withBytes { leftBytes in
      right.withBytes { rightBytes in
        leftBytes.count == rightBytes.count && leftBytes.elementsEqual(rightBytes)
      }
    }
  }

  /// Appends one byte, or marks the message truncated when it is full.
  public mutating func append(byte: UInt8) {
    guard count < Self.capacity else {
      isTruncated = true
      return
    }
    storage[count] = byte
    count += 1
  }

  /// Appends the bytes of a static string.
  public mutating func append(_ literal: StaticString) {
    if literal.hasPointerRepresentation {
      let start = literal.utf8Start
      for index in 0..<literal.utf8CodeUnitCount { append(byte: start[index]) }
    } else {
      // A single-scalar literal; only ASCII occurs in kernel messages.
      append(byte: UInt8(truncatingIfNeeded: literal.unicodeScalar.value))
    }
  }

  /// Appends raw text bytes (for example a name read from memory).
  public mutating func append(text: UnsafeBufferPointer<UInt8>) {
    for byte in text { append(byte: byte) }
  }

  /// Appends another message.
  public mutating func append(message other: KernelMessage) {
    other.withBytes { bytes in
      for byte in bytes { append(byte: byte) }
    }
  }

  /// Appends `value` in decimal.
  public mutating func append<Value: BinaryInteger>(decimal value: Value) {
    if value < 0 {
      append(byte: UInt8(ascii: "-"))
    }
    // Work on the magnitude in 64 bits; kernel integers never exceed that.
    var magnitude = UInt64(truncatingIfNeeded: value.magnitude)
    var digits: InlineArray<20, UInt8> = .init(repeating: 0)
    var digitCount = 0
    repeat {
      digits[digitCount] = UInt8(ascii: "0") + UInt8(magnitude % 10)
      digitCount += 1
      magnitude /= 10
    } while magnitude != 0
    while digitCount > 0 {
      digitCount -= 1
      append(byte: digits[digitCount])
    }
  }

  /// Appends `value` as `0x` followed by at least `width` hexadecimal digits.
  public mutating func append<Value: BinaryInteger>(hex value: Value, width: Int = 1, prefix: Bool = true) {
    let bits = UInt64(truncatingIfNeeded: value)
    var digitCount = 1
    while digitCount < 16 && (bits >> (4 * UInt64(digitCount))) != 0 { digitCount += 1 }
    digitCount = max(digitCount, min(width, 16))
    if prefix {
      append(byte: UInt8(ascii: "0"))
      append(byte: UInt8(ascii: "x"))
    }
    while digitCount > 0 {
      digitCount -= 1
      let nibble = UInt8((bits >> (4 * UInt64(digitCount))) & 0xF)
      append(byte: nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10)
    }
  }

  /// Calls `body` with the rendered bytes; a truncated message ends in "...".
  public func withBytes<Result>(_ body: (UnsafeBufferPointer<UInt8>) -> Result) -> Result {
    var copy = storage
    if isTruncated {
      for index in (Self.capacity - 3)..<Self.capacity { copy[index] = UInt8(ascii: ".") }
    }
    return copy.span.withUnsafeBufferPointer { all in
      body(UnsafeBufferPointer(rebasing: all[0..<count]))
    }
  }

  /// The state of an interpolated literal while it is being built.
  public struct StringInterpolation: StringInterpolationProtocol {
    /// The message written so far.
    public var message = KernelMessage()

    /// Starts an empty interpolation; the capacity hints are not needed.
    public init(literalCapacity: Int, interpolationCount: Int) {}

    /// Appends a literal segment.
    public mutating func appendLiteral(_ literal: StaticString) { message.append(literal) }

    /// Appends an integer in decimal.
    public mutating func appendInterpolation<Value: BinaryInteger>(_ value: Value) {
      message.append(decimal: value)
    }

    /// Appends an integer in hexadecimal with at least `width` digits.
    public mutating func appendInterpolation<Value: BinaryInteger>(hex value: Value, width: Int = 1) {
      message.append(hex: value, width: width)
    }

    /// Hexadecimal digits without "0x" (PCI addresses and identifiers, as lspci writes them).
    public mutating func appendInterpolation<Value: BinaryInteger>(hexDigits value: Value, width: Int = 1) {
      message.append(hex: value, width: width, prefix: false)
    }

    /// Appends a static string.
    public mutating func appendInterpolation(_ literal: StaticString) { message.append(literal) }

    /// Appends `true` or `false`.
    public mutating func appendInterpolation(_ value: Bool) {
      let text: StaticString = value ? "true" : "false"
      message.append(text)
    }

    /// Appends raw text bytes.
    public mutating func appendInterpolation(text: UnsafeBufferPointer<UInt8>) {
      message.append(text: text)
    }

    /// Appends another message.
    public mutating func appendInterpolation(_ other: KernelMessage) { message.append(message: other) }
  }
}
