// DhcpClient: the DHCP client's state machine (RFC 2131 section 4.4) for the DHCP server,
// driven by messages and time, deciding what to send and when the address changes.
//
// Contract: times are milliseconds of any monotonic clock. `start`, `receive` and `tick`
// return the actions to take, in order: send a message (broadcast, or to the server once
// bound), check that no other host uses a new address (an ARP probe, RFC 2131 4.4.1:
// `probed` says what it found; an address in use is declined and the client starts over
// after 10 s), configure a lease, or drop the configuration. Discover and request are sent
// again with back-off (4, 8, 16, 32, 64 s); four requests without an answer start over
// with a discover. Bound, the client renews with its server at T1 (option 58, else half
// the lease), rebinds by broadcast at T2 (option 59, else seven eighths), asking again
// after half the time left (at least 60 s, RFC 2131 4.4.5), and drops the
// address when the lease ends. A NAK starts over. Replies for another transaction or
// another client are ignored.

/// The DHCP client.
public struct DhcpClient {
  /// Where the client is.
  public struct State: Equatable, Sendable {
    let value: UInt8
    /// Nothing yet.
    public static let initial = State(value: 0)
    /// A discover went out; waiting for an offer.
    public static let selecting = State(value: 1)
    /// A request went out for an offer; waiting for the ack.
    public static let requesting = State(value: 2)
    /// The lease holds.
    public static let bound = State(value: 3)
    /// Past T1: asking the server to extend the lease.
    public static let renewing = State(value: 4)
    /// Past T2: asking any server.
    public static let rebinding = State(value: 5)
    /// Acknowledged: waiting for the probe of the new address (`probed`).
    public static let checking = State(value: 6)
    /// The address was in use and declined: starting over after 10 s.
    public static let declined = State(value: 7)
  }

  /// An address and what came with it.
  public struct Lease: Equatable, Sendable {
    /// The client's address.
    public var address: IPv4Address
    /// The subnet mask (255.255.255.0 if the server gave none).
    public var mask: IPv4Address
    /// The default gateway, if given.
    public var router: IPv4Address?
    /// The DNS server, if given.
    public var dnsServer: IPv4Address?
    /// The server that gave it.
    public var server: IPv4Address
    /// The lease's length in seconds.
    public var seconds: UInt32
  }

  /// What the caller must do.
  public enum Action: Sendable {
    /// Send `message` (a UDP payload, port 68 to 67): to `server`, or broadcast if nil.
    case send(message: [UInt8], to: IPv4Address?)
    /// Check that no other host uses the lease's address (an ARP probe), then call
    /// `probed(inUse:now:)` with what was found.
    case probe(Lease)
    /// Use this lease (address, mask, gateway, DNS).
    case configure(Lease)
    /// The address is no longer ours.
    case unconfigure
  }

  /// The client's state.
  public private(set) var state = State.initial
  /// The lease, while there is one.
  public private(set) var lease: Lease?
  private let hardware: MacAddress
  private var transaction: UInt32
  private var attempts = 0
  private var nextSend: UInt64 = 0
  private var offered: (address: IPv4Address, server: IPv4Address)?
  /// A new lease being probed.
  private var pending: Lease?
  private var leaseStart: UInt64 = 0
  private var renewAt: UInt64 = 0
  private var rebindAt: UInt64 = 0
  private var endAt: UInt64 = 0

  /// Requests sent in one state before the client starts over.
  public static let attemptsBeforeRestart = 4

  /// A client for `hardware`, whose first transaction is `transaction` (random, from the
  /// caller: the next transactions count up from it).
  public init(hardware: MacAddress, transaction: UInt32) {
    self.hardware = hardware
    self.transaction = transaction
  }

  /// Starts (or starts over): a discover, broadcast.
  public mutating func start(now: UInt64) -> [Action] {
    var actions: [Action] = []
    if lease != nil {
      lease = nil
      actions.append(.unconfigure)
    }
    state = .selecting
    offered = nil
    attempts = 0
    return actions + [send(DhcpMessage.MessageType.discover, now: now)]
  }

  /// A reply came: what to do about it.
  public mutating func receive(_ message: DhcpMessage, now: UInt64) -> [Action] {
    guard message.transaction == transaction, message.clientHardware == hardware else { return [] }
    switch (state, message.messageType) {
    case (.selecting, DhcpMessage.MessageType.offer):
      guard let server = message.serverIdentifier else { return [] }
      offered = (message.yourAddress, server)
      state = .requesting
      attempts = 0
      return [send(DhcpMessage.MessageType.request, now: now)]
    case (.requesting, DhcpMessage.MessageType.acknowledge), (.renewing, DhcpMessage.MessageType.acknowledge),
      (.rebinding, DhcpMessage.MessageType.acknowledge):
      let seconds = message.leaseTime ?? 3_600
      let granted = Lease(
        address: message.yourAddress, mask: message.subnetMask ?? IPv4Address(255, 255, 255, 0),
        router: message.router, dnsServer: message.dnsServer,
        server: message.serverIdentifier ?? lease?.server ?? offered?.server ?? IPv4Address(value: 0),
        seconds: seconds)
      let changed = granted != lease
      let isNewAddress = granted.address != lease?.address
      leaseStart = now
      let length = UInt64(seconds) * 1000
      renewAt = now + (message.renewalTime.map { UInt64($0) * 1000 } ?? length / 2)
      rebindAt = now + (message.rebindingTime.map { UInt64($0) * 1000 } ?? length * 7 / 8)
      endAt = now + length
      transaction &+= 1
      if isNewAddress {
        pending = granted
        state = .checking
        return [.probe(granted)]
      }
      lease = granted
      state = .bound
      return changed ? [.configure(granted)] : []
    case (.requesting, DhcpMessage.MessageType.negativeAcknowledge),
      (.renewing, DhcpMessage.MessageType.negativeAcknowledge),
      (.rebinding, DhcpMessage.MessageType.negativeAcknowledge):
      transaction &+= 1
      return start(now: now)
    default:
      return []
    }
  }

  /// What the probe of a new address found: free, the lease is configured; in use, it is
  /// declined and the client starts over 10 s later (RFC 2131 3.1.5).
  public mutating func probed(inUse: Bool, now: UInt64) -> [Action] {
    guard state == .checking, let granted = pending else { return [] }
    pending = nil
    guard inUse else {
      let replaced = lease != nil && lease != granted
      lease = granted
      state = .bound
      return (replaced ? [.unconfigure] : []) + [.configure(granted)]
    }
    var buffer = [UInt8](repeating: 0, count: DhcpMessage.maximumEmitted)
    let length = buffer.withUnsafeMutableBytes { bytes in
      DhcpMessage.emit(
        into: bytes, type: DhcpMessage.MessageType.decline, transaction: transaction, hardware: hardware,
        requested: granted.address, server: granted.server)
    }
    transaction &+= 1
    var actions: [Action] = [.send(message: Array(buffer.prefix(length)), to: nil)]
    if lease != nil {
      lease = nil
      actions.append(.unconfigure)
    }
    state = .declined
    nextSend = now + 10_000
    return actions
  }

  /// Time passed: what is due.
  public mutating func tick(now: UInt64) -> [Action] {
    switch state {
    case .declined:
      return now >= nextSend ? start(now: now) : []
    case .selecting, .requesting:
      guard now >= nextSend else { return [] }
      if state == .requesting && attempts >= Self.attemptsBeforeRestart {
        transaction &+= 1
        return start(now: now)
      }
      return [
        send(
          state == .selecting ? DhcpMessage.MessageType.discover : DhcpMessage.MessageType.request, now: now)
      ]
    case .bound, .renewing, .rebinding:
      if now >= endAt {
        transaction &+= 1
        return start(now: now)
      }
      if state == .bound && now >= renewAt {
        state = .renewing
        attempts = 0
        return [send(DhcpMessage.MessageType.request, now: now)]
      }
      if state != .rebinding && now >= rebindAt {
        state = .rebinding
        attempts = 0
        return [send(DhcpMessage.MessageType.request, now: now)]
      }
      guard state != .bound, now >= nextSend else { return [] }
      return [send(DhcpMessage.MessageType.request, now: now)]
    default:
      return []
    }
  }

  /// The message of `type` for the current state, and the time of the next try.
  private mutating func send(_ type: UInt8, now: UInt64) -> Action {
    attempts += 1
    switch state {
    case .renewing, .rebinding:
      // RFC 2131 4.4.5: half the time left to T2 (renewing) or to the lease's end
      // (rebinding), but at least 60 s.
      let deadline = state == .renewing ? rebindAt : endAt
      nextSend = now + max(60_000, deadline > now ? (deadline - now) / 2 : 0)
    default:
      // 4 s, doubling, at most 64 s (RFC 2131 4.1).
      nextSend = now + (UInt64(4_000) << UInt64(min(attempts - 1, 4)))
    }
    var buffer = [UInt8](repeating: 0, count: DhcpMessage.maximumEmitted)
    let length = buffer.withUnsafeMutableBytes { bytes in
      switch state {
      case .renewing, .rebinding:
        return DhcpMessage.emit(
          into: bytes, type: type, transaction: transaction, hardware: hardware, client: lease?.address)
      case .requesting:
        return DhcpMessage.emit(
          into: bytes, type: type, transaction: transaction, hardware: hardware, requested: offered?.address,
          server: offered?.server)
      default:
        return DhcpMessage.emit(into: bytes, type: type, transaction: transaction, hardware: hardware)
      }
    }
    return .send(message: Array(buffer.prefix(length)), to: state == .renewing ? lease?.server : nil)
  }
}
