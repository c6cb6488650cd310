// IPv4Reassembly: putting fragmented IPv4 datagrams back together (RFC 791, RFC 815's hole
// bookkeeping), within limits on memory and time (RFC 1122 3.3.2).
//
// Contract: `add` takes a validated fragment and the time (milliseconds, any monotonic
// clock) and answers `.incomplete`, `.complete` with the whole datagram, or `.refused`
// with a reason. Fragments are matched by source, destination, protocol and
// identification, and kept as the pieces that came (a datagram costs the bytes it holds
// and 64 per piece, not its length: a fragment far out costs what it carries). A
// duplicate (bytes already held, the same) is ignored; any other overlap drops the
// datagram and is refused ("overlapping fragments"), as is an empty fragment, one past
// 65,535 bytes, one whose length (other than the last) is not a multiple of 8, a second
// "last" fragment that disagrees, or data past the last fragment. When `maximumDatagrams`
// are in progress, or the memory `maximumBytes` would be exceeded, the oldest other
// datagrams are evicted (counted in `evicted`) to make room, so fragments that never
// complete cannot block the ones that do; a fragment that alone does not fit is refused
// ("reassembly memory full"). `expire` drops datagrams older than `timeout` and says, for
// each, whether its first fragment had come (then RFC 1122 asks for an ICMP time exceeded,
// code 1, quoting it).

/// Datagrams being reassembled.
public struct IPv4Reassembly {
  /// Datagrams in progress at once.
  public static let maximumDatagrams = 8
  /// Bytes held in all, at most (the bytes received and 64 per piece).
  public static let maximumBytes = 64 * 1024
  /// How long a datagram may take to complete, in milliseconds (RFC 1122 suggests 60 to
  /// 120 s; less here, since memory is small).
  public static let timeout: UInt64 = 30_000
  /// What each piece held costs besides its bytes.
  static let pieceOverhead = 64

  /// What identifies a datagram's fragments.
  struct Key: Equatable {
    var source: UInt32
    var destination: UInt32
    var protocolNumber: UInt8
    var identification: UInt16
  }

  /// Bytes received for `[start, start + bytes.count)` of a datagram's payload.
  struct Piece {
    var start: Int
    var bytes: [UInt8]
    var end: Int { start + bytes.count }
  }

  /// One datagram in progress.
  struct Datagram {
    var key: Key
    var started: UInt64
    /// The first fragment's header (options included), once it came.
    var header: [UInt8] = []
    /// The pieces received, sorted by start, apart (touching pieces are merged).
    var pieces: [Piece] = []
    /// The payload's length, once the last fragment came.
    var length: Int?
    /// What it costs.
    var held: Int { pieces.reduce(0) { $0 + $1.bytes.count + IPv4Reassembly.pieceOverhead } }
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
  /// Datagrams dropped unfinished to make room for others.
  public private(set) var evicted = 0

  /// No datagrams in progress.
  public init() {}

  /// Datagrams in progress.
  public var inProgress: Int { datagrams.count }
  /// Bytes held (the bytes received and 64 per piece).
  public var bytesHeld: Int { datagrams.reduce(0) { $0 + $1.held } }

  /// Drops the datagram started first, other than the one keyed `keep`; whether there was one.
  private mutating func evictOldest(keeping keep: Key?) -> Bool {
    guard
      let oldest = datagrams.indices.filter({ datagrams[$0].key != keep }).min(by: {
        datagrams[$0].started < datagrams[$1].started
      })
    else { return false }
    datagrams.remove(at: oldest)
    evicted += 1
    return true
  }

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
    let cost = end - start + Self.pieceOverhead
    guard cost <= Self.maximumBytes else { return .refused("reassembly memory full") }
    if !datagrams.contains(where: { $0.key == key }) {
      if datagrams.count >= Self.maximumDatagrams { _ = evictOldest(keeping: nil) }
      datagrams.append(Datagram(key: key, started: now))
    }
    var slot = datagrams.firstIndex { $0.key == key }!
    // An exact duplicate changes nothing; any other overlap is an attack or a mess.
    if let piece = datagrams[slot].pieces.first(where: { $0.start <= start && end <= $0.end }),
      piece.bytes[(start - piece.start)..<(end - piece.start)].elementsEqual(fragment.payload)
    {
      return .incomplete
    }
    if datagrams[slot].pieces.contains(where: { $0.start < end && start < $0.end }) {
      datagrams.remove(at: slot)
      return .refused("overlapping fragments")
    }
    if !fragment.moreFragments {
      if let length = datagrams[slot].length, length != end {
        datagrams.remove(at: slot)
        return .refused("two last fragments disagree")
      }
      guard datagrams[slot].pieces.allSatisfy({ $0.end <= end }) else {
        datagrams.remove(at: slot)
        return .refused("data past the last fragment")
      }
      datagrams[slot].length = end
    } else if let length = datagrams[slot].length, end > length {
      datagrams.remove(at: slot)
      return .refused("data past the last fragment")
    }
    // Room: the oldest other datagrams go first.
    while bytesHeld + cost > Self.maximumBytes, evictOldest(keeping: key) {}
    slot = datagrams.firstIndex { $0.key == key }!
    guard bytesHeld + cost <= Self.maximumBytes else {
      if datagrams[slot].pieces.isEmpty { datagrams.remove(at: slot) }
      return .refused("reassembly memory full")
    }
    var datagram = datagrams[slot]
    datagrams[slot].pieces = []  // so that the pieces are uniquely referenced (no copy)
    if start == 0 {
      datagram.header = Array(UnsafeRawBufferPointer(rebasing: fragment.bytes[0..<fragment.headerLength]))
    }
    let index = datagram.pieces.firstIndex { $0.start > start } ?? datagram.pieces.count
    datagram.pieces.insert(Piece(start: start, bytes: Array(fragment.payload)), at: index)
    // Merge touching pieces: whole once one piece covers [0, length).
    var merged: [Piece] = []
    for piece in datagram.pieces {
      if merged.last?.end == piece.start {
        merged[merged.count - 1].bytes += piece.bytes
      } else {
        merged.append(piece)
      }
    }
    datagram.pieces = merged
    if let length = datagram.length, merged.count == 1, merged[0].start == 0, merged[0].end == length {
      datagrams.remove(at: slot)
      return .complete(
        Reassembled(
          header: datagram.header, payload: merged[0].bytes, source: IPv4Address(value: key.source),
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
      let first = datagram.pieces.first.map { $0.start == 0 ? $0.bytes : [] } ?? []
      expired.append((datagram.header, first))
      return true
    }
    return expired
  }
}
