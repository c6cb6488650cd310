// Udp: UDP datagrams (RFC 768) as views (parse, checksum verified) and written into
// buffers (emit, checksum computed).
//
// Contract: `UdpDatagram(bytes, source:, destination:)` takes the IPv4 payload and the
// packet's addresses (for the pseudo-header). It refuses fewer than 8 bytes, a length
// field under 8 or beyond the bytes, and a checksum that does not verify; a checksum of
// 0 means the sender computed none, which RFC 768 allows. Bytes past the length field are
// not part of the datagram. Offsets live in `UdpDatagram.Offset`.

/// A UDP datagram: a view of its bytes.
public struct UdpDatagram {
  /// Byte offsets of the header's fields.
  public enum Offset {
    /// Where the source port field starts.
    public static let sourcePort = 0
    /// Where the destination port field starts.
    public static let destinationPort = 2
    /// Where the length field starts.
    public static let length = 4
    /// Where the checksum field starts.
    public static let checksum = 6
    /// Where the payload field starts.
    public static let payload = 8
  }
  /// Bytes of the header.
  public static let headerLength = 8

  /// The datagram, up to its length field.
  public let bytes: UnsafeRawBufferPointer

  /// A view of `bytes` (an IPv4 payload from `source` to `destination`) as a datagram.
  public init(_ bytes: UnsafeRawBufferPointer, source: IPv4Address, destination: IPv4Address)
    throws(PacketError)
  {
    guard bytes.count >= Self.headerLength else { throw PacketError("shorter than a UDP header") }
    let length = Int(bytes[4]) << 8 | Int(bytes[5])
    guard length >= Self.headerLength else { throw PacketError("UDP length under 8") }
    guard length <= bytes.count else { throw PacketError("UDP length beyond the packet") }
    let datagram = UnsafeRawBufferPointer(rebasing: bytes[0..<length])
    if bytes[6] != 0 || bytes[7] != 0 {
      let sum = InternetChecksum.sum(
        datagram, initial: Self.pseudoHeader(source: source, destination: destination, length: length))
      guard sum == 0xFFFF else { throw PacketError("UDP checksum is wrong") }
    }
    self.bytes = datagram
  }

  /// The source port, read from the bytes.
  public var sourcePort: UInt16 { UInt16(bytes[0]) << 8 | UInt16(bytes[1]) }
  /// The destination port, read from the bytes.
  public var destinationPort: UInt16 { UInt16(bytes[2]) << 8 | UInt16(bytes[3]) }
  /// Whether the sender computed a checksum.
  public var hasChecksum: Bool { bytes[6] != 0 || bytes[7] != 0 }
  /// The data after the header, up to the length field.
  public var payload: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: bytes[Offset.payload...]) }

  /// The pseudo-header's sum (RFC 768): addresses, protocol 17, length.
  static func pseudoHeader(source: IPv4Address, destination: IPv4Address, length: Int) -> UInt32 {
    (source.value >> 16) + (source.value & 0xFFFF) + (destination.value >> 16) + (destination.value & 0xFFFF)
      + UInt32(IPv4Packet.udp) + UInt32(truncatingIfNeeded: length)
  }

  /// Writes the header before a payload already in `buffer` at offset 8 (`payloadLength`
  /// bytes), with its checksum (0 is sent as 0xFFFF); returns the datagram's length.
  @discardableResult
  public static func emit(
    into buffer: UnsafeMutableRawBufferPointer, sourcePort: UInt16, destinationPort: UInt16,
    payloadLength: Int,
    source: IPv4Address, destination: IPv4Address
  ) -> Int {
    let length = headerLength + payloadLength
    store(sourcePort, at: Offset.sourcePort, in: buffer)
    store(destinationPort, at: Offset.destinationPort, in: buffer)
    store(UInt16(truncatingIfNeeded: length), at: Offset.length, in: buffer)
    store(0, at: Offset.checksum, in: buffer)
    var checksum = ~InternetChecksum.sum(
      UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(buffer)[0..<length]),
      initial: pseudoHeader(source: source, destination: destination, length: length))
    if checksum == 0 { checksum = 0xFFFF }
    store(checksum, at: Offset.checksum, in: buffer)
    return length
  }

}
