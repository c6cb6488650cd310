// NetworkText: addresses written and read as people type them (10.0.2.15, 10.0.2.0/24,
// 52:54:00:12:34:56), and `TextWriter`, which fills a method's text block line by line.
//
// Contract: `IPv4Address(parsing:)` accepts exactly four decimal numbers 0-255 separated by
// dots (no spaces, no leading "+", at most three digits each) and nothing else;
// `parsingPrefix` also takes "/N" with N 0-32 (none: 32). A TextWriter never writes past
// its buffer: a line that does not fit is not written, and the last line then says how
// many were left out.

extension IPv4Address {
  /// The address written as `a.b.c.d` in `text`, or nil if it is not one.
  public init?(parsing text: UnsafeBufferPointer<UInt8>) {
    var value: UInt32 = 0
    var part: UInt32 = 0
    var digits = 0
    var parts = 0
    for byte in text {
      if byte == UInt8(ascii: ".") {
        guard digits > 0, parts < 3 else { return nil }
        value = value << 8 | part
        parts += 1
        part = 0
        digits = 0
      } else if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
        guard digits < 3 else { return nil }
        part = part * 10 + UInt32(byte - UInt8(ascii: "0"))
        digits += 1
        guard part <= 255 else { return nil }
      } else {
        return nil
      }
    }
    guard digits > 0, parts == 3 else { return nil }
    self.init(value: value << 8 | part)
  }

  /// An address with a prefix length, `a.b.c.d/N` (without "/N": 32), or nil.
  public static func parsingPrefix(_ text: UnsafeBufferPointer<UInt8>) -> (IPv4Address, Int)? {
    guard let slash = text.firstIndex(of: UInt8(ascii: "/")) else {
      return IPv4Address(parsing: text).map { ($0, 32) }
    }
    guard let address = IPv4Address(parsing: UnsafeBufferPointer(rebasing: text[..<slash])) else {
      return nil
    }
    guard let length = decimalNumber(text[(slash + 1)...], maximumDigits: 2) else { return nil }
    return length <= 32 ? (address, length) : nil
  }

  /// The mask of a prefix length (24: 255.255.255.0); 0 for 0.
  public static func mask(prefixLength: Int) -> UInt32 {
    prefixLength <= 0 ? 0 : prefixLength >= 32 ? UInt32.max : ~(UInt32.max >> UInt32(prefixLength))
  }

  /// 255.255.255.255.
  public static let broadcast = IPv4Address(value: UInt32.max)
  /// 0.0.0.0.
  public static let unspecified = IPv4Address(value: 0)
}

extension KernelMessage.StringInterpolation {
  /// `a.b.c.d`.
  public mutating func appendInterpolation(_ address: IPv4Address) {
    for shift in [24, 16, 8, 0] as [UInt32] {
      message.append(decimal: (address.value >> shift) & 0xFF)
      if shift > 0 { message.append(".") }
    }
  }

  /// `52:54:00:12:34:56`.
  public mutating func appendInterpolation(_ address: MacAddress) {
    let bytes = address.bytes
    for (index, byte) in [bytes.0, bytes.1, bytes.2, bytes.3, bytes.4, bytes.5].enumerated() {
      if index > 0 { message.append(":") }
      message.append(hex: byte, width: 2, prefix: false)
    }
  }
}

/// Fills a text block (a method's `out bytes`) with lines.
public struct TextWriter {
  private let buffer: UnsafeMutableRawBufferPointer
  /// Bytes written.
  public private(set) var count = 0
  private var leftOut = 0

  /// A writer into `buffer`.
  public init(_ buffer: UnsafeMutableRawBufferPointer) { self.buffer = buffer }

  /// Appends `line` and a line feed if both fit (else counts it as left out).
  public mutating func line(_ line: KernelMessage) {
    // Room is kept for the note about left-out lines.
    let room = buffer.count - count - 40
    line.withBytes { bytes in
      guard leftOut == 0, bytes.count + 1 <= room else {
        leftOut += 1
        return
      }
      for byte in bytes {
        buffer[count] = byte
        count += 1
      }
      buffer[count] = UInt8(ascii: "\n")
      count += 1
    }
  }

  /// The bytes written, with a last line saying how many lines did not fit, if any.
  public mutating func finish() -> Int {
    if leftOut > 0 {
      let note: KernelMessage = "(\(leftOut) more lines did not fit)\n"
      note.withBytes { bytes in
        for byte in bytes where count < buffer.count {
          buffer[count] = byte
          count += 1
        }
      }
      leftOut = 0
    }
    return count
  }
}

/// The value of `digits`, decimal ASCII digits and nothing else, at most `maximumDigits`
/// of them (at most 9, so the value fits an i686 `Int` and cannot trap); nil otherwise.
/// Every number read from a packet, a request or a command line goes through here.
public func decimalNumber<Digits: Collection>(_ digits: Digits, maximumDigits: Int = 9) -> Int?
where Digits.Element == UInt8 {
  guard !digits.isEmpty, digits.count <= min(maximumDigits, 9) else { return nil }
  var value = 0
  for digit in digits {
    guard digit >= UInt8(ascii: "0"), digit <= UInt8(ascii: "9") else { return nil }
    value = value * 10 + Int(digit - UInt8(ascii: "0"))
  }
  return value
}
