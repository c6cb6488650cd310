// IPv4Reassembly: putting fragmented IPv4 datagrams back together (RFC 791, RFC 815's hole
// bookkeeping), within limits on memory and time (RFC 1122 3.3.2).
//
// Contract: `add` takes a validated fragment and the time (milliseconds, any monotonic
// clock) and answers `.incomplete`, `.complete` with the whole datagram, or `.refused`
// with a reason. Fragments are matched by source, destination, protocol and
// identification. A duplicate (bytes already held, the same) is ignored; any other
// overlap drops the datagram and is refused ("overlapping fragments"), as is an empty
// fragment, one past 65,535 bytes, one whose length (other than the last) is not a
// multiple of 8, a second "last" fragment that disagrees, a datagram beyond
// `maximumDatagrams` in progress, or memory beyond `maximumBytes` in all (what a datagram
// costs is its buffer, up to the furthest byte received, and 64 bytes per range held). `expire` drops datagrams older than `timeout` and says,
// for each, whether its first fragment had come (then RFC 1122 asks for an ICMP time
// exceeded, code 1, quoting it).

/// Datagrams being reassembled.
public struct IPv4Reassembly {
  /// Datagrams in progress at once.
  public static let maximumDatagrams = 8
  /// Bytes held in all, at most (buffers and 64 per range held).
  public static let maximumBytes = 64 * 1024
  /// How long a datagram may take to complete, in milliseconds (RFC 1122 suggests 60 to
  /// 120 s; less here, since memory is small).
  public static let timeout: UInt64 = 30_000

  /// What identifies a datagram's fragments.
  struct Key: Equatable {
    var source: UInt32
    var destination: UInt32
    var protocolNumber: UInt8
    var identification: UInt16
  }

  /// One datagram in progress.
  struct Datagram {
    var key: Key
    var started: UInt64
    /// The first fragment's header (options included), once it came.
    var header: [UInt8] = []
    /// Payload bytes received so far, at their offsets (grown as fragments come).
    var data: [UInt8] = []
    /// Ranges received, `[start, end)`, sorted and apart.
    var ranges: [(start: Int, end: Int)] = []
    /// The payload's length, once the last fragment came.
    var length: Int?
    /// What it costs: its data buffer plus a per-range overhead.
    var held: Int { data.count + 64 * ranges.count }
  }

  /// A whole datagram.
  public struct Reassembled {
    /// The first fragment's header (its length and fragment fields as they came).
    public var header: [UInt8]
    /// The payload, whole.
    public var payload: [UInt8]
    /// Where it came from.
    public var source: IPv4Address
    /// Where it went.
    public var destination: IPv4Address
    /// What it carries (IPv4Packet.udp, .tcp, .icmp).
    public var protocolNumber: UInt8
  }

  /// What adding a fragment did.
  public enum Outcome {
    /// Kept; more fragments are needed.
    case incomplete
    /// The datagram is whole.
    case complete(Reassembled)
    /// Not kept, for this reason (the datagram may have been dropped with it).
    case refused(StaticString)
  }

  private var datagrams: [Datagram] = []

  /// No datagrams in progress.
  public init() {}

  /// Datagrams in progress.
  public var inProgress: Int { datagrams.count }
  /// Bytes held (buffers and 64 per range held).
  public var bytesHeld: Int { datagrams.reduce(0) { $0 + $1.held } }

  /// Adds `fragment` (a validated IPv4 packet that is a fragment) at time `now`.
  public mutating func add(_ fragment: IPv4Packet, now: UInt64) -> Outcome {
    let key = Key(
      source: fragment.source.value, destination: fragment.destination.value,
      protocolNumber: fragment.protocolNumber, identification: fragment.identification)
    let start = fragment.fragmentOffset
    let end = start + fragment.payload.count
    guard end <= 65_535 - fragment.headerLength else { return .refused("fragment past 65,535 bytes") }
    guard !fragment.moreFragments || fragment.payload.count % 8 == 0 else {
      return .refused("fragment length not a multiple of 8")
    }
    guard end > start else { return .refused("empty fragment") }
    var index = datagrams.firstIndex { $0.key == key }
    if index == nil {
      guard datagrams.count < Self.maximumDatagrams else {
        return .refused("too many datagrams in reassembly")
      }
      datagrams.append(Datagram(key: key, started: now))
      index = datagrams.count - 1
    }
    let slot = index!
    var datagram = datagrams[slot]
    // An exact duplicate changes nothing; any other overlap is an attack or a mess.
    if datagram.ranges.contains(where: { $0.start <= start && end <= $0.end }),
      datagram.data[start..<end].elementsEqual(fragment.payload)
    {
      return .incomplete
    }
    if datagram.ranges.contains(where: { $0.start < end && start < $0.end }) {
      datagrams.remove(at: slot)
      return .refused("overlapping fragments")
    }
    if !fragment.moreFragments {
      if let length = datagram.length, length != end {
        datagrams.remove(at: slot)
        return .refused("two last fragments disagree")
      }
      guard datagram.ranges.allSatisfy({ $0.end <= end }) else {
        datagrams.remove(at: slot)
        return .refused("data past the last fragment")
      }
      datagram.length = end
    } else if let length = datagram.length, end > length {
      datagrams.remove(at: slot)
      return .refused("data past the last fragment")
    }
    let growth = max(0, end - datagram.data.count) + 64
    guard bytesHeld + growth <= Self.maximumBytes else {
      if datagram.ranges.isEmpty { datagrams.remove(at: slot) }
      return .refused("reassembly memory full")
    }
    datagrams[slot].data = []  // so that `datagram.data` is uniquely referenced (no copy per fragment)
    datagrams[slot].ranges = []
    if start == 0 {
      datagram.header = Array(UnsafeRawBufferPointer(rebasing: fragment.bytes[0..<fragment.headerLength]))
    }
    if datagram.data.count < end { datagram.data += [UInt8](repeating: 0, count: end - datagram.data.count) }
    datagram.data.withUnsafeMutableBytes { data in
      if end > start {
        (data.baseAddress! + start).copyMemory(from: fragment.payload.baseAddress!, byteCount: end - start)
      }
    }
    datagram.ranges.append((start, end))
    datagram.ranges.sort { $0.start < $1.start }
    // Merge touching ranges: whole once one range covers [0, length).
    var merged: [(start: Int, end: Int)] = []
    for range in datagram.ranges {
      if let last = merged.last, last.end == range.start {
        merged[merged.count - 1].end = range.end
      } else {
        merged.append(range)
      }
    }
    datagram.ranges = merged
    if let length = datagram.length, merged.count == 1, merged[0].start == 0, merged[0].end == length {
      datagrams.remove(at: slot)
      return .complete(
        Reassembled(
          header: datagram.header, payload: datagram.data, source: IPv4Address(value: key.source),
          destination: IPv4Address(value: key.destination), protocolNumber: key.protocolNumber))
    }
    datagrams[slot] = datagram
    return .incomplete
  }

  /// Drops the datagrams started more than `timeout` before `now`; for each, the first
  /// fragment's header and data (empty if it never came), for an ICMP time exceeded.
  public mutating func expire(now: UInt64) -> [(header: [UInt8], data: [UInt8])] {
    var expired: [(header: [UInt8], data: [UInt8])] = []
    datagrams.removeAll { datagram in
      guard now &- datagram.started > Self.timeout else { return false }
      let firstEnd = datagram.ranges.first.map { $0.start == 0 ? $0.end : 0 } ?? 0
      expired.append((datagram.header, Array(datagram.data.prefix(firstEnd))))
      return true
    }
    return expired
  }
}
