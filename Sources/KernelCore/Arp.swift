// Arp: ARP packets for IPv4 over Ethernet (RFC 826) as views (parse) and written into
// buffers (emit).
//
// Contract: `ArpPacket(bytes)` accepts only Ethernet/IPv4 ARP (hardware type 1, protocol
// 0x0800, lengths 6 and 4) with operation 1 (request) or 2 (reply), in at least 28
// bytes; anything else is refused with a reason. Offsets live in `ArpPacket.Offset`.

/// An IPv4 address.
public struct IPv4Address: Equatable, Sendable {
  /// The address as a number (the first byte on the wire in the high bits).
  public var value: UInt32

  /// a.b.c.d.
  public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
    value = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
  }

  /// The address with this value.
  public init(value: UInt32) { self.value = value }

  /// The address in the four bytes at `offset` of `bytes`.
  public init(_ bytes: UnsafeRawBufferPointer, at offset: Int) {
    value =
      UInt32(bytes[offset]) << 24 | UInt32(bytes[offset + 1]) << 16 | UInt32(bytes[offset + 2]) << 8
      | UInt32(bytes[offset + 3])
  }

  /// Writes the four bytes at `offset` of `buffer`.
  public func write(to buffer: UnsafeMutableRawBufferPointer, at offset: Int) {
    buffer[offset] = UInt8(value >> 24)
    buffer[offset + 1] = UInt8(truncatingIfNeeded: value >> 16)
    buffer[offset + 2] = UInt8(truncatingIfNeeded: value >> 8)
    buffer[offset + 3] = UInt8(truncatingIfNeeded: value)
  }
}

/// An ARP packet for IPv4 over Ethernet: a view of its bytes.
public struct ArpPacket {
  /// Byte offsets of the fields (RFC 826).
  public enum Offset {
    /// Where the hardware type field starts.
    public static let hardwareType = 0
    /// Where the protocol type field starts.
    public static let protocolType = 2
    /// Where the hardware length field starts.
    public static let hardwareLength = 4
    /// Where the protocol length field starts.
    public static let protocolLength = 5
    /// Where the operation field starts.
    public static let operation = 6
    /// Where the sender hardware field starts.
    public static let senderHardware = 8
    /// Where the sender protocol field starts.
    public static let senderProtocol = 14
    /// Where the target hardware field starts.
    public static let targetHardware = 18
    /// Where the target protocol field starts.
    public static let targetProtocol = 24
  }
  /// Bytes of an Ethernet/IPv4 ARP packet.
  public static let length = 28
  /// Operation values.
  public static let request: UInt16 = 1
  /// ARP reply.
  public static let reply: UInt16 = 2

  /// The packet (its first 28 bytes; Ethernet padding may follow).
  public let bytes: UnsafeRawBufferPointer

  /// A view of `bytes` as an ARP packet; refused unless Ethernet/IPv4 request or reply.
  public init(_ bytes: UnsafeRawBufferPointer) throws(PacketError) {
    guard bytes.count >= Self.length else { throw PacketError("shorter than an ARP packet") }
    guard bytes[0] == 0, bytes[1] == 1 else { throw PacketError("ARP hardware type is not Ethernet") }
    guard bytes[2] == 0x08, bytes[3] == 0x00 else { throw PacketError("ARP protocol type is not IPv4") }
    guard bytes[4] == 6, bytes[5] == 4 else { throw PacketError("ARP address lengths are not 6 and 4") }
    guard bytes[6] == 0, bytes[7] == 1 || bytes[7] == 2 else {
      throw PacketError("ARP operation is neither request nor reply")
    }
    self.bytes = UnsafeRawBufferPointer(rebasing: bytes[0..<Self.length])
  }

  /// Request (1) or reply (2).
  public var operation: UInt16 { UInt16(bytes[Offset.operation + 1]) }
  /// The sender's MAC address.
  public var senderHardware: MacAddress {
    MacAddress(UnsafeRawBufferPointer(rebasing: bytes[Offset.senderHardware...]))
  }
  /// The sender's IPv4 address.
  public var senderProtocol: IPv4Address { IPv4Address(bytes, at: Offset.senderProtocol) }
  /// The target's MAC address (zero in a request).
  public var targetHardware: MacAddress {
    MacAddress(UnsafeRawBufferPointer(rebasing: bytes[Offset.targetHardware...]))
  }
  /// The target's IPv4 address.
  public var targetProtocol: IPv4Address { IPv4Address(bytes, at: Offset.targetProtocol) }

  /// Writes a packet into `buffer` (at least 28 bytes); returns 28.
  @discardableResult
  public static func emit(
    into buffer: UnsafeMutableRawBufferPointer, operation: UInt16, senderHardware: MacAddress,
    senderProtocol: IPv4Address, targetHardware: MacAddress, targetProtocol: IPv4Address
  ) -> Int {
    buffer[Offset.hardwareType] = 0
    buffer[Offset.hardwareType + 1] = 1  // Ethernet
    buffer[Offset.protocolType] = 0x08
    buffer[Offset.protocolType + 1] = 0x00  // IPv4
    buffer[Offset.hardwareLength] = 6
    buffer[Offset.protocolLength] = 4
    buffer[Offset.operation] = UInt8(truncatingIfNeeded: operation >> 8)
    buffer[Offset.operation + 1] = UInt8(truncatingIfNeeded: operation)
    senderHardware.write(to: buffer, at: Offset.senderHardware)
    senderProtocol.write(to: buffer, at: Offset.senderProtocol)
    targetHardware.write(to: buffer, at: Offset.targetHardware)
    targetProtocol.write(to: buffer, at: Offset.targetProtocol)
    return length
  }
}
