// Dns: DNS messages (RFC 1035) for a stub resolver: A queries written into buffers
// (emit) and responses read (parse), names with compression followed safely.
//
// Contract: `DnsQuery.emit` writes a recursive query for one name's A records; a name is
// refused (nil) unless it has labels of 1 to 63 bytes and at most 253 bytes in all.
// `DnsResponse(bytes, identifier:)` accepts a response to that identifier with one
// question; it reads the answers' A records (with their TTLs) and skips the rest. Every
// name in it is walked within the message: compression pointers must point backwards
// and at most 32 are followed (a loop or a pointer forward is refused), so a hostile
// answer cannot make the resolver run away; names are at most 255 bytes. TTLs with the
// top bit set count as 0 (RFC 2181), and none is longer than a day. Offsets live in
// `DnsMessage.Offset`.

/// Byte offsets and constants of a DNS message.
public enum DnsMessage {
  /// Offsets of the header's fields.
  public enum Offset {
    /// The identifier that matches a response to its query.
    public static let identifier = 0
    /// Flags: query or response, opcode, recursion, response code.
    public static let flags = 2
    /// Entries in the question section.
    public static let questions = 4
    /// Entries in the answer section.
    public static let answers = 6
    /// The first question.
    public static let body = 12
  }
  /// The server's port.
  public static let port: UInt16 = 53
  /// Type A (an IPv4 address) and class IN.
  public static let typeA: UInt16 = 1
  /// See `typeA`.
  public static let classInternet: UInt16 = 1
  /// A pointer's two top bits.
  static let pointer: UInt8 = 0xC0
}

/// A query for a name's IPv4 addresses.
public enum DnsQuery {
  /// Writes a recursive query for `name`'s A records with `identifier` into `buffer` (at
  /// least 12 + 255 + 4 bytes); its length, or nil if `name` is not a valid DNS name.
  public static func emit(
    into buffer: UnsafeMutableRawBufferPointer, identifier: UInt16, name: UnsafeRawBufferPointer
  )
    -> Int?
  {
    // 253 characters at most, 254 with the trailing dot that marks a name as absolute.
    let absolute = name.last == UInt8(ascii: ".")
    guard !name.isEmpty, name.count <= (absolute ? 254 : 253) else { return nil }
    store(identifier, at: DnsMessage.Offset.identifier, in: buffer)
    store(0x0100, at: DnsMessage.Offset.flags, in: buffer)  // a standard query, recursion desired
    store(1, at: DnsMessage.Offset.questions, in: buffer)
    for offset in stride(from: DnsMessage.Offset.answers, to: DnsMessage.Offset.body, by: 2) {
      store(0, at: offset, in: buffer)
    }
    var offset = DnsMessage.Offset.body
    var start = 0
    while start <= name.count {
      var end = start
      while end < name.count && name[end] != UInt8(ascii: ".") { end += 1 }
      let length = end - start
      // A trailing dot ends the name; any other empty label, or one too long, is invalid.
      if length == 0 && end == name.count && start > 0 { break }
      guard length >= 1, length <= 63 else { return nil }
      buffer[offset] = UInt8(length)
      for index in 0..<length { buffer[offset + 1 + index] = name[start + index] }
      offset += 1 + length
      start = end + 1
    }
    buffer[offset] = 0
    store(DnsMessage.typeA, at: offset + 1, in: buffer)
    store(DnsMessage.classInternet, at: offset + 3, in: buffer)
    return offset + 5
  }
}

/// A response's answers to an A query.
public struct DnsResponse {
  /// The response code (0: no error, 3: no such name).
  public let responseCode: UInt8
  /// The IPv4 addresses answered, with their time to live in seconds (at most 8).
  public private(set) var addresses: [(address: IPv4Address, timeToLive: UInt32)] = []

  /// The most addresses kept.
  public static let maximumAddresses = 8

  /// Reads `bytes` (a UDP payload) as the response to the query `identifier`; with
  /// `query` (the query as sent), its question must be the query's too (letters in any
  /// case), so a forged answer must guess more than 16 bits (RFC 5452).
  public init(_ bytes: UnsafeRawBufferPointer, identifier: UInt16, query: UnsafeRawBufferPointer? = nil)
    throws(PacketError)
  {
    guard bytes.count >= DnsMessage.Offset.body else { throw PacketError("shorter than a DNS header") }
    func word(_ offset: Int) -> UInt16 { UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1]) }
    guard word(DnsMessage.Offset.identifier) == identifier else {
      throw PacketError("DNS identifier differs")
    }
    let flags = word(DnsMessage.Offset.flags)
    guard flags & 0x8000 != 0 else { throw PacketError("DNS message is not a response") }
    guard word(DnsMessage.Offset.questions) == 1 else {
      throw PacketError("DNS response has not one question")
    }
    responseCode = UInt8(flags & 0x000F)
    var offset = try Self.skipName(bytes, at: DnsMessage.Offset.body) + 4
    guard offset <= bytes.count else { throw PacketError("DNS question runs past the message") }
    if let query {
      let question = offset - DnsMessage.Offset.body
      guard query.count == DnsMessage.Offset.body + question,
        (0..<question).allSatisfy({ index in
          let (left, right) = (bytes[DnsMessage.Offset.body + index], query[DnsMessage.Offset.body + index])
          return left == right
            || (left | 0x20 == right | 0x20 && (left | 0x20) >= 0x61 && (left | 0x20) <= 0x7A)
        })
      else { throw PacketError("DNS question differs from the query") }
    }
    for _ in 0..<word(DnsMessage.Offset.answers) {
      offset = try Self.skipName(bytes, at: offset)
      guard offset + 10 <= bytes.count else { throw PacketError("DNS answer runs past the message") }
      let type = word(offset)
      let dataClass = word(offset + 2)
      var timeToLive = UInt32(word(offset + 4)) << 16 | UInt32(word(offset + 6))
      // RFC 2181 8: a TTL with the top bit set means 0; and no cache keeps an answer a day.
      timeToLive = timeToLive & 0x8000_0000 != 0 ? 0 : min(timeToLive, 86_400)
      let length = Int(word(offset + 8))
      offset += 10
      guard offset + length <= bytes.count else { throw PacketError("DNS answer runs past the message") }
      if type == DnsMessage.typeA, dataClass == DnsMessage.classInternet, length == 4,
        addresses.count < Self.maximumAddresses
      {
        addresses.append((IPv4Address(bytes, at: offset), timeToLive))
      }
      offset += length
    }
  }

  /// The offset after the name at `offset`: its labels, or its pointer (whose target is
  /// walked too, to refuse a name that leaves the message, loops, or is longer than the
  /// 255 bytes RFC 1035 allows, which also bounds the walk).
  static func skipName(_ bytes: UnsafeRawBufferPointer, at start: Int) throws(PacketError) -> Int {
    var offset = start
    var end: Int?
    var jumps = 0
    var nameLength = 1
    while true {
      guard offset < bytes.count else { throw PacketError("DNS name runs past the message") }
      let length = bytes[offset]
      if length == 0 { return end ?? offset + 1 }
      if length & DnsMessage.pointer == DnsMessage.pointer {
        guard offset + 1 < bytes.count else { throw PacketError("DNS name runs past the message") }
        let target = Int(length & 0x3F) << 8 | Int(bytes[offset + 1])
        guard target < offset, jumps < 32 else {
          throw PacketError("DNS name pointer loops or points forward")
        }
        if end == nil { end = offset + 2 }
        jumps += 1
        offset = target
        continue
      }
      guard length & DnsMessage.pointer == 0 else { throw PacketError("DNS label type unknown") }
      nameLength += 1 + Int(length)
      guard nameLength <= 255 else { throw PacketError("DNS name longer than 255 bytes") }
      offset += 1 + Int(length)
    }
  }
}
