// Ethernet: Ethernet II frames as views over bytes (parse) and headers written into
// buffers (emit), for the network servers and their host tests.
//
// Contract: `EthernetFrame(bytes)` accepts any buffer of at least 14 bytes (the header)
// and refuses shorter ones with a reason; it copies nothing. Field offsets live in
// `EthernetFrame.Offset` only. `EthernetFrame.emit` writes a header into the first 14
// bytes of a buffer that holds at least that many.

/// A 48-bit MAC address.
public struct MacAddress: Equatable, Sendable {
  /// Its six bytes, in order on the wire.
  public var bytes: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)

  /// The address with these six bytes.
  public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8, _ e: UInt8, _ f: UInt8) {
    bytes = (a, b, c, d, e, f)
  }

  /// The address in the first six bytes of `raw` (which holds at least six).
  public init(_ raw: UnsafeRawBufferPointer) { bytes = (raw[0], raw[1], raw[2], raw[3], raw[4], raw[5]) }

  /// ff:ff:ff:ff:ff:ff.
  public static let broadcast = MacAddress(0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF)

  /// Whether the group bit is set (broadcast or multicast).
  public var isGroup: Bool { bytes.0 & 1 != 0 }

  /// Writes the six bytes at `offset` of `buffer`.
  public func write(to buffer: UnsafeMutableRawBufferPointer, at offset: Int) {
    buffer[offset] = bytes.0
    buffer[offset + 1] = bytes.1
    buffer[offset + 2] = bytes.2
    buffer[offset + 3] = bytes.3
    buffer[offset + 4] = bytes.4
    buffer[offset + 5] = bytes.5
  }

  /// Whether both addresses have the same six bytes.
  public static func == (left: MacAddress, right: MacAddress) -> Bool {
    left.bytes.0 == right.bytes.0 && left.bytes.1 == right.bytes.1 && left.bytes.2 == right.bytes.2
      && left.bytes.3 == right.bytes.3 && left.bytes.4 == right.bytes.4 && left.bytes.5 == right.bytes.5
  }
}

/// Why bytes were refused as a packet of some protocol.
public struct PacketError: Error, Sendable {
  /// The reason, for logs and tests.
  public let reason: StaticString

  /// A refusal for `reason`.
  public init(_ reason: StaticString) { self.reason = reason }
}

/// EtherType values the stack knows.
public enum EtherType {
  /// IPv4 frames.
  public static let ipv4: UInt16 = 0x0800
  /// ARP frames.
  public static let arp: UInt16 = 0x0806
  /// IPv6 frames.
  public static let ipv6: UInt16 = 0x86DD
}

/// An Ethernet II frame: a view of its bytes.
public struct EthernetFrame {
  /// Byte offsets of the header's fields (IEEE 802.3, Ethernet II).
  public enum Offset {
    /// Where the destination field starts.
    public static let destination = 0
    /// Where the source field starts.
    public static let source = 6
    /// Where the type field starts.
    public static let type = 12
    /// Where the payload field starts.
    public static let payload = 14
  }
  /// Bytes of the header.
  public static let headerLength = 14

  /// The whole frame.
  public let bytes: UnsafeRawBufferPointer

  /// A view of `bytes` as a frame; refused if shorter than a header.
  public init(_ bytes: UnsafeRawBufferPointer) throws(PacketError) {
    guard bytes.count >= Self.headerLength else { throw PacketError("shorter than an Ethernet header") }
    self.bytes = bytes
  }

  /// The destination, read from the bytes.
  public var destination: MacAddress {
    MacAddress(UnsafeRawBufferPointer(rebasing: bytes[Offset.destination...]))
  }
  /// The source, read from the bytes.
  public var source: MacAddress { MacAddress(UnsafeRawBufferPointer(rebasing: bytes[Offset.source...])) }
  /// The type, read from the bytes.
  public var type: UInt16 { UInt16(bytes[Offset.type]) << 8 | UInt16(bytes[Offset.type + 1]) }
  /// Everything after the header (with any padding the sender added).
  public var payload: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: bytes[Offset.payload...]) }

  /// Writes a header into `buffer` (at least 14 bytes); returns 14.
  @discardableResult
  public static func emit(
    into buffer: UnsafeMutableRawBufferPointer, destination: MacAddress, source: MacAddress, type: UInt16
  ) -> Int {
    destination.write(to: buffer, at: Offset.destination)
    source.write(to: buffer, at: Offset.source)
    buffer[Offset.type] = UInt8(type >> 8)
    buffer[Offset.type + 1] = UInt8(truncatingIfNeeded: type)
    return headerLength
  }
}
