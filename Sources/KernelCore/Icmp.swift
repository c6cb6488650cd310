// Icmp: ICMP messages (RFC 792) as views (parse, checksum verified) and written into
// buffers (emit): echo request and reply, destination unreachable, time exceeded.
//
// Contract: `IcmpMessage(bytes)` takes the IPv4 payload and refuses fewer than 8 bytes or
// a checksum that does not verify. `emitEcho` and `emitError` write whole messages with
// their checksums. An error quotes the offending packet's header and the first bytes of
// its payload (RFC 1122 asks for at least 8; `quoting` says how many the caller gives).

/// An ICMP message: a view of its bytes.
public struct IcmpMessage {
  /// Byte offsets of the fields.
  public enum Offset {
    /// Where the type field starts.
    public static let type = 0
    /// Where the code field starts.
    public static let code = 1
    /// Where the checksum field starts.
    public static let checksum = 2
    /// Echo: identifier and sequence number; errors: unused (or the next-hop MTU).
    public static let rest = 4
    /// Where the body field starts.
    public static let body = 8
  }
  /// Bytes of the header.
  public static let headerLength = 8
  /// Types the stack knows.
  public static let echoReply: UInt8 = 0
  /// Destination unreachable (type 3).
  public static let destinationUnreachable: UInt8 = 3
  /// Echo request (type 8).
  public static let echoRequest: UInt8 = 8
  /// Time exceeded (type 11).
  public static let timeExceeded: UInt8 = 11
  /// Destination-unreachable codes.
  public static let protocolUnreachable: UInt8 = 2
  /// Port unreachable (code 3).
  public static let portUnreachable: UInt8 = 3
  /// Fragmentation needed and don't fragment set (code 4).
  public static let fragmentationNeeded: UInt8 = 4

  /// The whole message.
  public let bytes: UnsafeRawBufferPointer

  /// A view of `bytes` (an IPv4 payload) as an ICMP message.
  public init(_ bytes: UnsafeRawBufferPointer) throws(PacketError) {
    guard bytes.count >= Self.headerLength else { throw PacketError("shorter than an ICMP header") }
    guard InternetChecksum.sum(bytes) == 0xFFFF else { throw PacketError("ICMP checksum is wrong") }
    self.bytes = bytes
  }

  /// The type, read from the bytes.
  public var type: UInt8 { bytes[Offset.type] }
  /// The code, read from the bytes.
  public var code: UInt8 { bytes[Offset.code] }
  /// Echo messages: the identifier and the sequence number.
  public var identifier: UInt16 { UInt16(bytes[4]) << 8 | UInt16(bytes[5]) }
  /// Echo messages: the sequence number.
  public var sequence: UInt16 { UInt16(bytes[6]) << 8 | UInt16(bytes[7]) }
  /// After the header: an echo's data, or an error's quoted packet.
  public var body: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: bytes[Offset.body...]) }

  /// Writes an echo request or reply with `data` into `buffer`; returns its length, or nil
  /// (writing nothing) if `buffer` cannot hold 8 + `data.count` bytes.
  @discardableResult
  public static func emitEcho(
    into buffer: UnsafeMutableRawBufferPointer, reply: Bool, identifier: UInt16, sequence: UInt16,
    data: UnsafeRawBufferPointer
  ) -> Int? {
    guard headerLength + data.count <= buffer.count else { return nil }
    buffer[Offset.type] = reply ? echoReply : echoRequest
    buffer[Offset.code] = 0
    store(identifier, at: 4, in: buffer)
    store(sequence, at: 6, in: buffer)
    if !data.isEmpty {
      (buffer.baseAddress! + Offset.body).copyMemory(from: data.baseAddress!, byteCount: data.count)
    }
    return finish(buffer, length: headerLength + data.count)
  }

  /// Writes an error (`type`, `code`) quoting `offending` (an IPv4 packet's first bytes:
  /// its header and as much payload as the caller chose) into `buffer`; returns its length,
  /// or nil (writing nothing) if `buffer` cannot hold 8 + `offending.count` bytes.
  @discardableResult
  public static func emitError(
    into buffer: UnsafeMutableRawBufferPointer, type: UInt8, code: UInt8,
    quoting offending: UnsafeRawBufferPointer
  ) -> Int? {
    guard headerLength + offending.count <= buffer.count else { return nil }
    buffer[Offset.type] = type
    buffer[Offset.code] = code
    store(0, at: 4, in: buffer)
    store(0, at: 6, in: buffer)
    if !offending.isEmpty {
      (buffer.baseAddress! + Offset.body).copyMemory(from: offending.baseAddress!, byteCount: offending.count)
    }
    return finish(buffer, length: headerLength + offending.count)
  }

  private static func finish(_ buffer: UnsafeMutableRawBufferPointer, length: Int) -> Int {
    store(0, at: Offset.checksum, in: buffer)
    let checksum = ~InternetChecksum.sum(
      UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(buffer)[0..<length]))
    store(checksum, at: Offset.checksum, in: buffer)
    return length
  }

}
