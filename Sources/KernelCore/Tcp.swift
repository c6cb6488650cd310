// Tcp: TCP segments (RFC 9293) as views (parse, checksum and options validated) and
// written into buffers (emit), sequence numbers that wrap (RFC 9293 3.4), and the
// retransmission timeout estimator (RFC 6298), for the TCP server (issue 13).
//
// Contract: `TcpSegment(bytes, source:, destination:)` takes the IPv4 payload and the
// packet's addresses (for the pseudo-header). It refuses, each with its own reason: fewer
// than 20 bytes, a data offset under 5 or past the bytes, a checksum that does not verify,
// and options that are malformed (a length under 2 or past the header, or a known option
// of the wrong length: MSS 4, window scale 3, SACK permitted 2, SACK 2 + 8n with n 1-4,
// timestamps 10). Unknown options are skipped by their length; end-of-list stops. A window
// scale over 14 is taken as 14 (RFC 7323 2.3). `emit` writes a header with the options
// given, in Linux's order (so a SYN's bytes match Linux's), before a payload the caller
// placed at `headerLength(options:)`. Offsets live in `TcpSegment.Offset`.

/// A TCP sequence number: 32 bits that wrap, compared within half the number space.
public struct SequenceNumber: Equatable, Sendable {
  /// The number as it is on the wire.
  public var value: UInt32

  /// The sequence number `value`.
  public init(_ value: UInt32) { self.value = value }

  /// `number` advanced by `count` (wrapping).
  public static func + (number: SequenceNumber, count: UInt32) -> SequenceNumber {
    SequenceNumber(number.value &+ count)
  }

  /// How far `later` is after `earlier` (negative if it is before), within half the space.
  public static func - (later: SequenceNumber, earlier: SequenceNumber) -> Int32 {
    Int32(bitPattern: later.value &- earlier.value)
  }

  /// Whether `left` comes before `right`.
  public static func < (left: SequenceNumber, right: SequenceNumber) -> Bool { left - right < 0 }
  /// Whether `left` comes before `right` or is it.
  public static func <= (left: SequenceNumber, right: SequenceNumber) -> Bool { left - right <= 0 }
  /// Whether `left` comes after `right`.
  public static func > (left: SequenceNumber, right: SequenceNumber) -> Bool { left - right > 0 }
  /// Whether `left` comes after `right` or is it.
  public static func >= (left: SequenceNumber, right: SequenceNumber) -> Bool { left - right >= 0 }
}

/// A TCP segment: a view of its bytes.
public struct TcpSegment {
  /// Byte offsets of the header's fields.
  public enum Offset {
    /// Where the source port starts.
    public static let sourcePort = 0
    /// Where the destination port starts.
    public static let destinationPort = 2
    /// Where the sequence number starts.
    public static let sequence = 4
    /// Where the acknowledgment number starts.
    public static let acknowledgment = 8
    /// The data offset (header length in words) in the high 4 bits.
    public static let dataOffset = 12
    /// The flags (CWR ECE URG ACK PSH RST SYN FIN).
    public static let flags = 13
    /// Where the window starts.
    public static let window = 14
    /// Where the checksum starts.
    public static let checksum = 16
    /// Where the urgent pointer starts.
    public static let urgent = 18
    /// Where the options start.
    public static let options = 20
  }
  /// Bytes of a header without options.
  public static let minimumHeaderLength = 20

  /// The control bits.
  public struct Flags: Equatable, Sendable {
    /// The bits as on the wire (byte 13).
    public var bits: UInt8
    /// Flags from their wire bits.
    public init(bits: UInt8) { self.bits = bits }
    /// No more data from the sender.
    public static let fin = Flags(bits: 0x01)
    /// Synchronize sequence numbers.
    public static let syn = Flags(bits: 0x02)
    /// Reset the connection.
    public static let rst = Flags(bits: 0x04)
    /// Push.
    public static let psh = Flags(bits: 0x08)
    /// The acknowledgment field is significant.
    public static let ack = Flags(bits: 0x10)
    /// The urgent pointer is significant.
    public static let urg = Flags(bits: 0x20)
    /// Whether every bit of `other` is set.
    public func contains(_ other: Flags) -> Bool { bits & other.bits == other.bits }
    /// Both sets of bits.
    public static func | (left: Flags, right: Flags) -> Flags { Flags(bits: left.bits | right.bits) }
  }

  /// The options TCP uses (RFC 9293 3.2, RFC 7323, RFC 2018).
  public struct Options: Equatable, Sendable {
    /// The largest segment the sender takes (SYN only).
    public var maximumSegmentSize: UInt16?
    /// The sender's window scale shift, 0-14 (SYN only).
    public var windowScale: UInt8?
    /// The sender takes selective acknowledgments (SYN only).
    public var sackPermitted = false
    /// The sender's timestamp and the one it echoes.
    public var timestamp: (value: UInt32, echo: UInt32)?
    /// Blocks received out of order, [start, end) (at most 4).
    public var sackBlocks: [(start: SequenceNumber, end: SequenceNumber)] = []

    /// No options.
    public init() {}

    /// Whether both hold the same options.
    public static func == (left: Options, right: Options) -> Bool {
      left.maximumSegmentSize == right.maximumSegmentSize && left.windowScale == right.windowScale
        && left.sackPermitted == right.sackPermitted && left.timestamp?.value == right.timestamp?.value
        && left.timestamp?.echo == right.timestamp?.echo && left.sackBlocks.count == right.sackBlocks.count
        && zip(left.sackBlocks, right.sackBlocks).allSatisfy { $0.start == $1.start && $0.end == $1.end }
    }
  }

  /// The option kinds.
  enum Kind {
    static let end: UInt8 = 0
    static let noOperation: UInt8 = 1
    static let maximumSegmentSize: UInt8 = 2
    static let windowScale: UInt8 = 3
    static let sackPermitted: UInt8 = 4
    static let sack: UInt8 = 5
    static let timestamp: UInt8 = 8
  }

  /// The whole segment.
  public let bytes: UnsafeRawBufferPointer
  /// Its options.
  public let options: Options

  /// A view of `bytes` (an IPv4 payload from `source` to `destination`) as a segment.
  public init(_ bytes: UnsafeRawBufferPointer, source: IPv4Address, destination: IPv4Address)
    throws(PacketError)
  {
    guard bytes.count >= Self.minimumHeaderLength else { throw PacketError("shorter than a TCP header") }
    let headerLength = Int(bytes[Offset.dataOffset] >> 4) * 4
    guard headerLength >= Self.minimumHeaderLength else { throw PacketError("TCP data offset under 5") }
    guard headerLength <= bytes.count else { throw PacketError("TCP header longer than the segment") }
    guard
      InternetChecksum.sum(
        bytes, initial: Self.pseudoHeader(source: source, destination: destination, length: bytes.count))
        == 0xFFFF
    else { throw PacketError("TCP checksum is wrong") }
    self.bytes = bytes
    options = try Self.parseOptions(UnsafeRawBufferPointer(rebasing: bytes[Offset.options..<headerLength]))
  }

  private static func parseOptions(_ bytes: UnsafeRawBufferPointer) throws(PacketError) -> Options {
    var options = Options()
    var index = 0
    func word(_ at: Int) -> UInt32 {
      UInt32(bytes[at]) << 24 | UInt32(bytes[at + 1]) << 16 | UInt32(bytes[at + 2]) << 8
        | UInt32(bytes[at + 3])
    }
    while index < bytes.count {
      let kind = bytes[index]
      if kind == Kind.end { break }
      if kind == Kind.noOperation {
        index += 1
        continue
      }
      guard index + 1 < bytes.count else { throw PacketError("TCP option runs past the header") }
      let length = Int(bytes[index + 1])
      guard length >= 2 else { throw PacketError("TCP option length under 2") }
      guard index + length <= bytes.count else { throw PacketError("TCP option runs past the header") }
      switch kind {
      case Kind.maximumSegmentSize:
        guard length == 4 else { throw PacketError("TCP MSS option is not 4 bytes") }
        options.maximumSegmentSize = UInt16(bytes[index + 2]) << 8 | UInt16(bytes[index + 3])
      case Kind.windowScale:
        guard length == 3 else { throw PacketError("TCP window scale option is not 3 bytes") }
        options.windowScale = min(bytes[index + 2], 14)
      case Kind.sackPermitted:
        guard length == 2 else { throw PacketError("TCP SACK-permitted option is not 2 bytes") }
        options.sackPermitted = true
      case Kind.sack:
        guard length >= 10, length <= 34, (length - 2) % 8 == 0 else {
          throw PacketError("TCP SACK option is not 2 + 8n bytes (n 1 to 4)")
        }
        for block in stride(from: index + 2, to: index + length, by: 8) {
          options.sackBlocks.append((SequenceNumber(word(block)), SequenceNumber(word(block + 4))))
        }
      case Kind.timestamp:
        guard length == 10 else { throw PacketError("TCP timestamp option is not 10 bytes") }
        options.timestamp = (word(index + 2), word(index + 6))
      default:
        break  // unknown: skipped
      }
      index += length
    }
    return options
  }

  /// The pseudo-header's sum (RFC 9293 3.1): addresses, protocol 6, length.
  static func pseudoHeader(source: IPv4Address, destination: IPv4Address, length: Int) -> UInt32 {
    (source.value >> 16) + (source.value & 0xFFFF) + (destination.value >> 16) + (destination.value & 0xFFFF)
      + UInt32(IPv4Packet.tcp) + UInt32(truncatingIfNeeded: length)
  }

  private func half(_ offset: Int) -> UInt16 { UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1]) }
  private func word(_ offset: Int) -> UInt32 { UInt32(half(offset)) << 16 | UInt32(half(offset + 2)) }

  /// The source port, read from the bytes.
  public var sourcePort: UInt16 { half(Offset.sourcePort) }
  /// The destination port, read from the bytes.
  public var destinationPort: UInt16 { half(Offset.destinationPort) }
  /// The sequence number of the first byte (or of the SYN).
  public var sequence: SequenceNumber { SequenceNumber(word(Offset.sequence)) }
  /// The next sequence number the sender expects (with ACK).
  public var acknowledgment: SequenceNumber { SequenceNumber(word(Offset.acknowledgment)) }
  /// The control bits.
  public var flags: Flags { Flags(bits: bytes[Offset.flags]) }
  /// The window, unscaled.
  public var window: UInt16 { half(Offset.window) }
  /// Bytes of the header, options included.
  public var headerLength: Int { Int(bytes[Offset.dataOffset] >> 4) * 4 }
  /// The data.
  public var payload: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: bytes[headerLength...]) }
  /// The sequence space the segment takes: its data, and one each for SYN and FIN.
  public var sequenceLength: UInt32 {
    UInt32(payload.count) + (flags.contains(.syn) ? 1 : 0) + (flags.contains(.fin) ? 1 : 0)
  }

  /// Bytes of a header carrying `options` (padded to whole words).
  public static func headerLength(options: Options) -> Int {
    var length = minimumHeaderLength
    if options.maximumSegmentSize != nil { length += 4 }
    if options.sackPermitted || options.timestamp != nil { length += options.timestamp != nil ? 12 : 4 }
    if options.windowScale != nil { length += 4 }
    if !options.sackBlocks.isEmpty { length += 4 + 8 * min(options.sackBlocks.count, 4) }
    return length
  }

  /// Writes the header (with `options`, laid out as Linux does) and its checksum before a
  /// payload of `payloadLength` bytes the caller placed at `headerLength(options:)`;
  /// returns the segment's length.
  @discardableResult
  public static func emit(
    into buffer: UnsafeMutableRawBufferPointer, sourcePort: UInt16, destinationPort: UInt16,
    sequence: SequenceNumber, acknowledgment: SequenceNumber, flags: Flags, window: UInt16,
    options: Options = Options(), payloadLength: Int, source: IPv4Address, destination: IPv4Address
  ) -> Int {
    let headerLength = Self.headerLength(options: options)
    func put(_ value: UInt32, at offset: Int) {
      store(UInt16(truncatingIfNeeded: value >> 16), at: offset, in: buffer)
      store(UInt16(truncatingIfNeeded: value), at: offset + 2, in: buffer)
    }
    store(sourcePort, at: Offset.sourcePort, in: buffer)
    store(destinationPort, at: Offset.destinationPort, in: buffer)
    put(sequence.value, at: Offset.sequence)
    put(acknowledgment.value, at: Offset.acknowledgment)
    buffer[Offset.dataOffset] = UInt8(headerLength / 4) << 4
    buffer[Offset.flags] = flags.bits
    store(window, at: Offset.window, in: buffer)
    store(0, at: Offset.checksum, in: buffer)
    store(0, at: Offset.urgent, in: buffer)
    var offset = Offset.options
    func bytes(_ values: UInt8...) {
      for value in values {
        buffer[offset] = value
        offset += 1
      }
    }
    if let size = options.maximumSegmentSize {
      bytes(Kind.maximumSegmentSize, 4, UInt8(size >> 8), UInt8(truncatingIfNeeded: size))
    }
    if let timestamp = options.timestamp {
      if options.sackPermitted {
        bytes(Kind.sackPermitted, 2)
      } else {
        bytes(Kind.noOperation, Kind.noOperation)
      }
      bytes(Kind.timestamp, 10)
      put(timestamp.value, at: offset)
      put(timestamp.echo, at: offset + 4)
      offset += 8
    } else if options.sackPermitted {
      bytes(Kind.noOperation, Kind.noOperation, Kind.sackPermitted, 2)
    }
    if let scale = options.windowScale { bytes(Kind.noOperation, Kind.windowScale, 3, min(scale, 14)) }
    if !options.sackBlocks.isEmpty {
      let blocks = options.sackBlocks.prefix(4)
      bytes(Kind.noOperation, Kind.noOperation, Kind.sack, UInt8(2 + 8 * blocks.count))
      for block in blocks {
        put(block.start.value, at: offset)
        put(block.end.value, at: offset + 4)
        offset += 8
      }
    }
    let length = headerLength + payloadLength
    let checksum = ~InternetChecksum.sum(
      UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(buffer)[0..<length]),
      initial: pseudoHeader(source: source, destination: destination, length: length))
    store(checksum, at: Offset.checksum, in: buffer)
    return length
  }
}

/// The retransmission timeout (RFC 6298), from round-trip samples, in milliseconds.
///
/// Integer arithmetic with the smoothed RTT scaled by 8 and the variance by 4, as BSD
/// does. The lower bound is 200 ms, not RFC 6298's 1 s (a SHOULD): on a LAN and under
/// emulation a lost segment would otherwise stall a connection for a second, and Linux
/// uses 200 ms too. Back-off doubles the timeout up to 60 s.
public struct RetransmissionTimeout: Sendable {
  /// The smallest timeout.
  public static let minimum: UInt32 = 200
  /// The largest timeout.
  public static let maximum: UInt32 = 60_000
  /// The timeout before any sample (RFC 6298 2.1).
  public static let initial: UInt32 = 1_000
  /// The clock's granularity G.
  public static let granularity: UInt32 = 1

  private var scaledSmoothed: UInt32 = 0  // SRTT * 8
  private var scaledVariance: UInt32 = 0  // RTTVAR * 4
  private var sampled = false
  /// The current timeout, back-off included.
  public private(set) var milliseconds = RetransmissionTimeout.initial

  /// No samples yet: 1 s.
  public init() {}

  /// The smoothed round-trip time, once sampled.
  public var smoothed: UInt32? { sampled ? scaledSmoothed / 8 : nil }

  /// A round-trip sample (of a segment not retransmitted: Karn's rule is the caller's).
  public mutating func sample(_ roundTrip: UInt32) {
    let rtt = min(roundTrip, Self.maximum)
    if !sampled {
      scaledSmoothed = rtt * 8
      scaledVariance = rtt * 2  // RTTVAR = R/2, times 4
      sampled = true
    } else {
      let smoothed = scaledSmoothed / 8
      let deviation = smoothed > rtt ? smoothed - rtt : rtt - smoothed
      // RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R|; SRTT = 7/8 SRTT + 1/8 R.
      scaledVariance = scaledVariance - scaledVariance / 4 + deviation
      scaledSmoothed = scaledSmoothed - scaledSmoothed / 8 + rtt
    }
    milliseconds = Self.clamp(scaledSmoothed / 8 + max(Self.granularity, scaledVariance))
  }

  /// A retransmission timed out: the timeout doubles (RFC 6298 5.5), up to the maximum.
  public mutating func backOff() {
    milliseconds = min(milliseconds &* 2, Self.maximum)
  }

  private static func clamp(_ value: UInt32) -> UInt32 { min(max(value, minimum), maximum) }
}
