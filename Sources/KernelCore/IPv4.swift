// IPv4: IPv4 headers (RFC 791) as views (parse, validated as RFC 1122 asks) and written
// into buffers (emit).
//
// Contract: `IPv4Packet(bytes)` refuses, each with its own reason: fewer than 20 bytes, a
// version other than 4, a header length under 20 bytes or beyond the buffer, a total
// length shorter than the header or longer than the buffer, and a header whose checksum
// does not verify. The payload is what the total length says (Ethernet padding after it
// is not part of it). TTL is reported, not judged: forwarding is not a host's job.
// Offsets live in `IPv4Packet.Offset`.

/// An IPv4 packet: a view of its bytes.
public struct IPv4Packet {
  /// Byte offsets of the header's fields (RFC 791).
  public enum Offset {
    /// Where the version and length field starts.
    public static let versionAndLength = 0
    /// Where the type of service field starts.
    public static let typeOfService = 1
    /// Where the total length field starts.
    public static let totalLength = 2
    /// Where the identification field starts.
    public static let identification = 4
    /// Where the flags and fragment field starts.
    public static let flagsAndFragment = 6
    /// Where the time to live field starts.
    public static let timeToLive = 8
    /// Where the protocol number field starts.
    public static let protocolNumber = 9
    /// Where the checksum field starts.
    public static let checksum = 10
    /// Where the source field starts.
    public static let source = 12
    /// Where the destination field starts.
    public static let destination = 16
    /// Where the options field starts.
    public static let options = 20
  }
  /// Bytes of a header without options.
  public static let minimumHeaderLength = 20
  /// The "don't fragment" and "more fragments" flags (in the flags-and-offset word).
  public static let dontFragment: UInt16 = 0x4000
  /// The "more fragments" flag.
  public static let moreFragments: UInt16 = 0x2000
  /// Protocol numbers the stack knows.
  public static let icmp: UInt8 = 1
  /// TCP.
  public static let tcp: UInt8 = 6
  /// UDP.
  public static let udp: UInt8 = 17

  /// The packet, up to its total length.
  public let bytes: UnsafeRawBufferPointer

  /// A view of `bytes` as a validated IPv4 packet.
  public init(_ bytes: UnsafeRawBufferPointer) throws(PacketError) {
    guard bytes.count >= Self.minimumHeaderLength else { throw PacketError("shorter than an IPv4 header") }
    guard bytes[0] >> 4 == 4 else { throw PacketError("IP version is not 4") }
    let headerLength = Int(bytes[0] & 0x0F) * 4
    guard headerLength >= Self.minimumHeaderLength else { throw PacketError("IPv4 header length under 20") }
    guard headerLength <= bytes.count else { throw PacketError("IPv4 header longer than the frame") }
    let total = Int(bytes[2]) << 8 | Int(bytes[3])
    guard total >= headerLength else { throw PacketError("IPv4 total length shorter than its header") }
    guard total <= bytes.count else { throw PacketError("IPv4 total length beyond the frame") }
    guard InternetChecksum.sum(UnsafeRawBufferPointer(rebasing: bytes[0..<headerLength])) == 0xFFFF else {
      throw PacketError("IPv4 header checksum is wrong")
    }
    self.bytes = UnsafeRawBufferPointer(rebasing: bytes[0..<total])
  }

  /// Bytes of the header, options included.
  public var headerLength: Int { Int(bytes[0] & 0x0F) * 4 }
  /// Bytes of the packet (its total length field).
  public var totalLength: Int { bytes.count }
  /// The identification, read from the bytes.
  public var identification: UInt16 { word(Offset.identification) }
  /// Whether "don't fragment" is set.
  public var dontFragment: Bool { word(Offset.flagsAndFragment) & Self.dontFragment != 0 }
  /// Whether "more fragments" is set.
  public var moreFragments: Bool { word(Offset.flagsAndFragment) & Self.moreFragments != 0 }
  /// Where this fragment's data starts in the datagram, in bytes.
  public var fragmentOffset: Int { Int(word(Offset.flagsAndFragment) & 0x1FFF) * 8 }
  /// Whether this is a fragment (of a datagram split in several).
  public var isFragment: Bool { moreFragments || fragmentOffset != 0 }
  /// The time to live, read from the bytes.
  public var timeToLive: UInt8 { bytes[Offset.timeToLive] }
  /// The protocol number, read from the bytes.
  public var protocolNumber: UInt8 { bytes[Offset.protocolNumber] }
  /// The source, read from the bytes.
  public var source: IPv4Address { IPv4Address(bytes, at: Offset.source) }
  /// The destination, read from the bytes.
  public var destination: IPv4Address { IPv4Address(bytes, at: Offset.destination) }
  /// The header's options (empty without).
  public var options: UnsafeRawBufferPointer {
    UnsafeRawBufferPointer(rebasing: bytes[Offset.options..<headerLength])
  }
  /// What the packet carries (up to the total length).
  public var payload: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: bytes[headerLength...]) }

  private func word(_ offset: Int) -> UInt16 { UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1]) }

  /// Writes a 20-byte header (no options) with its checksum into `buffer`; returns 20.
  /// `fragmentOffset` is in bytes (a multiple of 8).
  @discardableResult
  public static func emit(
    into buffer: UnsafeMutableRawBufferPointer, payloadLength: Int, identification: UInt16,
    dontFragment: Bool = false, moreFragments: Bool = false, fragmentOffset: Int = 0, timeToLive: UInt8 = 64,
    protocolNumber: UInt8, source: IPv4Address, destination: IPv4Address
  ) -> Int {
    let total = minimumHeaderLength + payloadLength
    let flags = (dontFragment ? Self.dontFragment : 0) | (moreFragments ? Self.moreFragments : 0)
    let flagsAndOffset = flags | UInt16(truncatingIfNeeded: fragmentOffset / 8) & 0x1FFF
    buffer[Offset.versionAndLength] = 0x45
    buffer[Offset.typeOfService] = 0
    store(UInt16(truncatingIfNeeded: total), at: Offset.totalLength, in: buffer)
    store(identification, at: Offset.identification, in: buffer)
    store(flagsAndOffset, at: Offset.flagsAndFragment, in: buffer)
    buffer[Offset.timeToLive] = timeToLive
    buffer[Offset.protocolNumber] = protocolNumber
    store(0, at: Offset.checksum, in: buffer)
    source.write(to: buffer, at: Offset.source)
    destination.write(to: buffer, at: Offset.destination)
    let checksum = ~InternetChecksum.sum(
      UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(buffer)[0..<minimumHeaderLength]))
    store(checksum, at: Offset.checksum, in: buffer)
    return minimumHeaderLength
  }

}
