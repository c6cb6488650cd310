// Dhcp: DHCP messages (RFC 2131, options of RFC 2132) as views (parse) and written into
// buffers (emit), for the DHCP client.
//
// Contract: `DhcpMessage(bytes)` accepts a BOOTP reply for Ethernet (op 2, htype 1, hlen
// 6) with the magic cookie and well-formed options (each within the message, ended by
// 255 or the message's end), and a DHCP message type; anything else is refused with a
// reason. The options a client needs are decoded once, at parse. `emit` writes a client
// message (discover, request, release) with the options RFC 2131 asks for. Offsets live
// in `DhcpMessage.Offset`.

/// A DHCP message from a server: a view of its bytes and its decoded options.
public struct DhcpMessage {
  /// Byte offsets of the fixed fields (RFC 2131, figure 1).
  public enum Offset {
    /// 1: request (client to server), 2: reply.
    public static let operation = 0
    /// Hardware type (1: Ethernet) and its address length (6).
    public static let hardwareType = 1
    /// Where the hardware address length is.
    public static let hardwareLength = 2
    /// The transaction identifier the client chose.
    public static let transaction = 4
    /// Seconds since the client began.
    public static let seconds = 8
    /// Bit 15: the client wants replies broadcast.
    public static let flags = 10
    /// The client's address, when it has one (renewing).
    public static let clientAddress = 12
    /// The address the server gives ("your" address).
    public static let yourAddress = 16
    /// The client's hardware address (16 bytes, the MAC first).
    public static let clientHardware = 28
    /// The magic cookie 99.130.83.99.
    public static let cookie = 236
    /// The first option.
    public static let options = 240
  }
  /// Message types (option 53).
  public enum MessageType {
    /// From a client: who offers an address?
    public static let discover: UInt8 = 1
    /// From a server: this address.
    public static let offer: UInt8 = 2
    /// From a client: that address, please (or renew it).
    public static let request: UInt8 = 3
    /// From a client: that address is in use by another host.
    public static let decline: UInt8 = 4
    /// From a server: yours, for the lease.
    public static let acknowledge: UInt8 = 5
    /// From a server: no.
    public static let negativeAcknowledge: UInt8 = 6
    /// From a client: done with it.
    public static let release: UInt8 = 7
  }
  /// Option codes (RFC 2132).
  public enum Option {
    /// Pads between options.
    public static let pad: UInt8 = 0
    /// The subnet mask.
    public static let subnetMask: UInt8 = 1
    /// Routers, in order of preference.
    public static let router: UInt8 = 3
    /// DNS servers.
    public static let dnsServer: UInt8 = 6
    /// The address the client asks for.
    public static let requestedAddress: UInt8 = 50
    /// The lease's length in seconds.
    public static let leaseTime: UInt8 = 51
    /// The message type.
    public static let messageType: UInt8 = 53
    /// The server's identifier (its address).
    public static let serverIdentifier: UInt8 = 54
    /// The options the client wants.
    public static let parameterRequest: UInt8 = 55
    /// When to renew (T1), in seconds.
    public static let renewalTime: UInt8 = 58
    /// When to rebind (T2), in seconds.
    public static let rebindingTime: UInt8 = 59
    /// Ends the options.
    public static let end: UInt8 = 255
  }
  /// The magic cookie, as a word.
  public static let cookie: UInt32 = 0x6382_5363
  /// Bytes before the options.
  public static let fixedLength = 240
  /// The client's port (68) and the server's (67).
  public static let clientPort: UInt16 = 68
  /// The server's port.
  public static let serverPort: UInt16 = 67

  /// The message.
  public let bytes: UnsafeRawBufferPointer
  /// The message type (option 53).
  public let messageType: UInt8
  /// The server's identifier (option 54), if given.
  public private(set) var serverIdentifier: IPv4Address?
  /// The lease in seconds (option 51), if given.
  public private(set) var leaseTime: UInt32?
  /// T1 and T2 in seconds (options 58 and 59), if given.
  public private(set) var renewalTime: UInt32?
  /// See `renewalTime`.
  public private(set) var rebindingTime: UInt32?
  /// The subnet mask (option 1), if given.
  public private(set) var subnetMask: IPv4Address?
  /// The first router (option 3), if given.
  public private(set) var router: IPv4Address?
  /// The first DNS server (option 6), if given.
  public private(set) var dnsServer: IPv4Address?

  /// A view of `bytes` (a UDP payload) as a server's DHCP message.
  public init(_ bytes: UnsafeRawBufferPointer) throws(PacketError) {
    guard bytes.count >= Self.fixedLength + 3 else { throw PacketError("shorter than a DHCP message") }
    guard bytes[Offset.operation] == 2 else { throw PacketError("DHCP message is not a reply") }
    guard bytes[Offset.hardwareType] == 1, bytes[Offset.hardwareLength] == 6 else {
      throw PacketError("DHCP hardware is not Ethernet")
    }
    guard IPv4Address(bytes, at: Offset.cookie).value == Self.cookie else {
      throw PacketError("DHCP magic cookie is missing")
    }
    self.bytes = bytes
    var type: UInt8?
    var offset = Offset.options
    while offset < bytes.count {
      let code = bytes[offset]
      if code == Option.end { break }
      if code == Option.pad {
        offset += 1
        continue
      }
      guard offset + 1 < bytes.count else { throw PacketError("DHCP option runs past the message") }
      let length = Int(bytes[offset + 1])
      let value = offset + 2
      guard value + length <= bytes.count else { throw PacketError("DHCP option runs past the message") }
      func address() -> IPv4Address? { length >= 4 ? IPv4Address(bytes, at: value) : nil }
      func seconds() -> UInt32? { length == 4 ? IPv4Address(bytes, at: value).value : nil }
      switch code {
      case Option.messageType where length == 1: type = bytes[value]
      case Option.serverIdentifier: serverIdentifier = address()
      case Option.leaseTime: leaseTime = seconds()
      case Option.renewalTime: renewalTime = seconds()
      case Option.rebindingTime: rebindingTime = seconds()
      case Option.subnetMask: subnetMask = address()
      case Option.router: router = address()
      case Option.dnsServer: dnsServer = address()
      default: break
      }
      offset = value + length
    }
    guard let type else { throw PacketError("DHCP message type is missing") }
    messageType = type
  }

  /// The transaction identifier.
  public var transaction: UInt32 { IPv4Address(bytes, at: Offset.transaction).value }
  /// The address the server gives.
  public var yourAddress: IPv4Address { IPv4Address(bytes, at: Offset.yourAddress) }
  /// The client's hardware address the reply is for.
  public var clientHardware: MacAddress {
    MacAddress(UnsafeRawBufferPointer(rebasing: bytes[Offset.clientHardware...]))
  }

  /// Bytes `emit` needs at most.
  public static let maximumEmitted = fixedLength + 32

  /// Writes a client's message of `type` into `buffer` (at least `maximumEmitted` bytes,
  /// zeroed): `requested` and `server` for a request in reply to an offer, `client` as the
  /// client's own address when renewing or releasing. Returns its length.
  @discardableResult
  public static func emit(
    into buffer: UnsafeMutableRawBufferPointer, type: UInt8, transaction: UInt32, hardware: MacAddress,
    client: IPv4Address? = nil, requested: IPv4Address? = nil, server: IPv4Address? = nil
  ) -> Int {
    buffer[Offset.operation] = 1
    buffer[Offset.hardwareType] = 1
    buffer[Offset.hardwareLength] = 6
    IPv4Address(value: transaction).write(to: buffer, at: Offset.transaction)
    // Broadcast replies: the client has no address to receive unicast on yet.
    buffer[Offset.flags] = client == nil ? 0x80 : 0
    client?.write(to: buffer, at: Offset.clientAddress)
    hardware.write(to: buffer, at: Offset.clientHardware)
    IPv4Address(value: cookie).write(to: buffer, at: Offset.cookie)
    var offset = Offset.options
    func option(_ code: UInt8, _ values: [UInt8]) {
      buffer[offset] = code
      buffer[offset + 1] = UInt8(values.count)
      for (index, value) in values.enumerated() { buffer[offset + 2 + index] = value }
      offset += 2 + values.count
    }
    func bytes(_ address: IPv4Address) -> [UInt8] {
      [
        UInt8(address.value >> 24), UInt8(truncatingIfNeeded: address.value >> 16),
        UInt8(truncatingIfNeeded: address.value >> 8), UInt8(truncatingIfNeeded: address.value),
      ]
    }
    option(Option.messageType, [type])
    if let requested { option(Option.requestedAddress, bytes(requested)) }
    if let server { option(Option.serverIdentifier, bytes(server)) }
    if type != MessageType.release && type != MessageType.decline {
      option(Option.parameterRequest, [Option.subnetMask, Option.router, Option.dnsServer, Option.leaseTime])
    }
    buffer[offset] = Option.end
    return offset + 1
  }
}
