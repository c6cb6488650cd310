// ArpCache: IPv4-to-MAC resolution state (RFC 826, RFC 1122 2.3.2.1 and 2.3.2.2) for the
// ARP server: learned addresses with their expiry, requests retried, and a bounded queue
// of packets waiting for an address.
//
// Contract: times are milliseconds of any monotonic clock; a packet is a token of the
// caller's (the ARP server's send-buffer number). `resolve` answers at once for
// a known address; otherwise it queues the packet (at most `waitingPerAddress` per
// address and `waitingInAll` in all: beyond, the packet is dropped and said so) and says
// when a request must go out. `learn` records an address (updating one known or awaited;
// adding one only when asked to, i.e. when the packet was for us, as RFC 826's merge rule
// says) and hands back the packets that waited for it. `tick` says which requests to send
// again (every `retryInterval`) and which addresses to give up on (after `attempts`
// requests), with their packets. The cache never holds more than `capacity` addresses: a
// new one replaces an entry added unsolicited (from another station's request), else the
// resolved entry that expires first, else the oldest awaited one (whose packets are
// dropped and counted), so a flood of requests cannot push out what this host asked for.

/// The ARP cache.
public struct ArpCache {
  /// Addresses held at most.
  public static let capacity = 32
  /// How long a learned address stays, in milliseconds.
  public static let lifetime: UInt64 = 60_000
  /// Time between requests for an address, in milliseconds.
  public static let retryInterval: UInt64 = 1_000
  /// Requests sent for an address before giving up.
  public static let attempts = 3
  /// Packets waiting for one address, at most.
  public static let waitingPerAddress = 4
  /// Packets waiting in all, at most.
  public static let waitingInAll = 8

  struct Entry {
    var address: IPv4Address
    var hardware: MacAddress?
    /// Resolved: when it expires; awaited: when the next request is due.
    var deadline: UInt64
    var requestsSent = 0
    var waiting: [UInt32] = []
    /// Added from another station's request to us, not asked for by this host: the first
    /// to go when room is needed, so a flood of requests cannot push out the gateway.
    var unsolicited = false
  }

  private var entries: [Entry] = []
  /// Packets dropped because their awaited entry was evicted to make room (counted).
  public private(set) var evictedPackets = 0
  /// Those packets, until `takeEvicted` hands them to the caller to free.
  private var evicted: [UInt32] = []

  /// An empty cache.
  public init() {}

  /// What `resolve` found.
  public enum Resolution {
    /// The address is known: send now.
    case ready(MacAddress)
    /// Queued; send an ARP request for the address now (the first for it).
    case queuedSendRequest
    /// Queued behind a request already sent.
    case queued
    /// Not queued, for this reason.
    case dropped(StaticString)
  }

  /// Addresses held (resolved or awaited).
  public var count: Int { entries.count }
  /// Packets waiting for addresses.
  public var waitingCount: Int { entries.reduce(0) { $0 + $1.waiting.count } }

  /// The hardware address of `address` if known and not expired at `now`.
  public func lookup(_ address: IPv4Address, now: UInt64) -> MacAddress? {
    guard let entry = entries.first(where: { $0.address == address }), let hardware = entry.hardware,
      now < entry.deadline
    else { return nil }
    return hardware
  }

  /// Where to send `packet` for `address` at `now` (see `Resolution`).
  public mutating func resolve(_ address: IPv4Address, packet: UInt32, now: UInt64) -> Resolution {
    if let hardware = lookup(address, now: now) { return .ready(hardware) }
    guard waitingCount < Self.waitingInAll else { return .dropped("too many packets wait for addresses") }
    if let index = entries.firstIndex(where: { $0.address == address }) {
      if entries[index].hardware != nil {
        // Expired: ask again.
        entries[index].hardware = nil
        entries[index].requestsSent = 1
        entries[index].deadline = now + Self.retryInterval
        entries[index].waiting = [packet]
        return .queuedSendRequest
      }
      guard entries[index].waiting.count < Self.waitingPerAddress else {
        return .dropped("too many packets wait for this address")
      }
      entries[index].waiting.append(packet)
      return .queued
    }
    makeRoom()
    entries.append(
      Entry(address: address, deadline: now + Self.retryInterval, requestsSent: 1, waiting: [packet]))
    return .queuedSendRequest
  }

  /// Records that `address` is at `hardware` (seen at `now`): updates a known or awaited
  /// address; adds an unknown one only if `add` (the packet was addressed to us); ignores
  /// a group (broadcast or multicast) hardware address. Returns the packets that waited
  /// for it, to be sent now.
  @discardableResult
  public mutating func learn(_ address: IPv4Address, at hardware: MacAddress, now: UInt64, add: Bool)
    -> [UInt32]
  {
    // No station has a group address: a sender claiming one is lying (or broken).
    guard !hardware.isGroup else { return [] }
    if let index = entries.firstIndex(where: { $0.address == address }) {
      let waiting = entries[index].waiting
      entries[index].hardware = hardware
      entries[index].deadline = now + Self.lifetime
      entries[index].requestsSent = 0
      entries[index].waiting = []
      return waiting
    }
    guard add else { return [] }
    makeRoom()
    entries.append(
      Entry(address: address, hardware: hardware, deadline: now + Self.lifetime, unsolicited: true))
    return []
  }

  /// What is due at `now`: the addresses to ask for again, and those given up on with the
  /// packets that waited for them (for ICMP host unreachable, or just to drop). Expired
  /// addresses are forgotten.
  public mutating func tick(now: UInt64) -> (requests: [IPv4Address], failed: [(IPv4Address, [UInt32])]) {
    var requests: [IPv4Address] = []
    var failed: [(IPv4Address, [UInt32])] = []
    entries.removeAll { entry in
      if entry.hardware != nil { return now >= entry.deadline }
      guard now >= entry.deadline else { return false }
      if entry.requestsSent >= Self.attempts {
        failed.append((entry.address, entry.waiting))
        return true
      }
      return false
    }
    for index in entries.indices where entries[index].hardware == nil && now >= entries[index].deadline {
      entries[index].requestsSent += 1
      entries[index].deadline = now + Self.retryInterval
      requests.append(entries[index].address)
    }
    return (requests, failed)
  }

  /// Makes room for one more address if the cache is full: drops the unsolicited entry
  /// that expires first, else the resolved one that does, else the awaited one asked for
  /// longest (its packets counted in `evictedPackets`).
  private mutating func makeRoom() {
    guard entries.count >= Self.capacity else { return }
    let unsolicited = entries.indices.filter { entries[$0].unsolicited }
    let resolved = entries.indices.filter { entries[$0].hardware != nil }
    let victim =
      unsolicited.min { entries[$0].deadline < entries[$1].deadline }
      ?? resolved.min { entries[$0].deadline < entries[$1].deadline }
      ?? entries.indices.min { entries[$0].requestsSent > entries[$1].requestsSent }!
    let dropped = entries.remove(at: victim).waiting
    evictedPackets += dropped.count
    evicted += dropped
  }

  /// One entry as `arp` shows it.
  public struct Summary {
    /// The IPv4 address.
    public let address: IPv4Address
    /// Its hardware address, once resolved.
    public let hardware: MacAddress?
    /// Seconds until it expires (resolved) or is asked for again (awaited).
    public let seconds: UInt64
    /// Packets waiting for it.
    public let waiting: Int
  }

  /// The entries at `now`, for display.
  public func snapshot(now: UInt64) -> [Summary] {
    entries.map { entry in
      Summary(
        address: entry.address, hardware: entry.hardware,
        seconds: entry.deadline > now ? (entry.deadline - now + 999) / 1000 : 0, waiting: entry.waiting.count)
    }
  }

  /// The packets dropped by evictions since the last call (to free their buffers).
  public mutating func takeEvicted() -> [UInt32] {
    defer { evicted = [] }
    return evicted
  }
}
