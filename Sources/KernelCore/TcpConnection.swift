// TcpConnection: one TCP connection's state machine (RFC 9293 3.3.2 and 3.10), driven by
// segments, the application and time, for the TCP server (issue 13). Not yet: SACK,
// timestamps.
//
// Contract: times are milliseconds of any monotonic clock. `open`/`listen`, `receive`,
// `send`, `close`, `abort` and `tick` update the state and queue what must go out in
// `outgoing` (the caller drains it and adds IP and ports), and what the application must
// hear in `events`. Data is acknowledged cumulatively, a lone in-order segment after up
// to `acknowledgmentDelay` (delayed ACK), anything else at once; segments that arrive
// ahead of `receiveNext` wait in an out-of-order queue of at most the receive buffer's
// capacity in bytes (with the in-order data); what the application has not read counts
// against the advertised window.
// Unacknowledged data is sent again from `sendUnacknowledged` when the retransmission
// timeout (RetransmissionTimeout) runs out, the timeout doubling each time; after
// `maximumRetransmissions` in a row (`maximumHandshakeRetransmissions` for a SYN or
// SYN-ACK) the connection is reset; a SYN-ACK sent again has no MSS option (libslirp cut
// streams short on one). Round trips are sampled from
// segments not sent twice (Karn). TIME-WAIT lasts `timeWait`. The peer's window is
// respected, probing a zero window with one byte at the timeout for as long as the peer
// answers the probes. Window scaling (RFC 7323) is offered in every SYN with a shift of 0
// (our window is at most 65,535 bytes) and used for the peer's window when both SYNs
// carried it. Congestion control is RFC 5681's (slow start,
// congestion avoidance, an initial window of RFC 5681 3.1) with fast retransmit on the
// third duplicate ACK and NewReno's recovery (RFC 6582): partial ACKs send the next hole
// at once; a timeout falls back to one segment.

/// A segment to send: the caller writes it with `TcpSegment.emit`.
public struct OutgoingSegment: Equatable, Sendable {
  /// Its sequence number.
  public var sequence: SequenceNumber
  /// What it acknowledges (with ACK).
  public var acknowledgment: SequenceNumber
  /// Its control bits.
  public var flags: TcpSegment.Flags
  /// The window advertised.
  public var window: UInt16
  /// The MSS option (SYN only).
  public var maximumSegmentSize: UInt16?
  /// The window scale option (SYN only, RFC 7323).
  public var windowScale: UInt8?
  /// The data.
  public var payload: [UInt8]

  /// A segment with these fields.
  public init(
    sequence: SequenceNumber, acknowledgment: SequenceNumber, flags: TcpSegment.Flags, window: UInt16,
    maximumSegmentSize: UInt16? = nil, payload: [UInt8] = [], windowScale: UInt8? = nil
  ) {
    self.sequence = sequence
    self.acknowledgment = acknowledgment
    self.flags = flags
    self.window = window
    self.maximumSegmentSize = maximumSegmentSize
    self.windowScale = windowScale
    self.payload = payload
  }
}

extension OutgoingSegment {
  /// The RST answering a segment that no connection takes (RFC 9293 3.10.7.1), given its
  /// sequence number, acknowledgment, flags and sequence length; nil for a RST (never
  /// answered).
  public static func reset(
    answering sequence: SequenceNumber, acknowledgment: SequenceNumber, flags: TcpSegment.Flags,
    length: UInt32
  ) -> OutgoingSegment? {
    if flags.contains(.rst) { return nil }
    if flags.contains(.ack) {
      return OutgoingSegment(
        sequence: acknowledgment, acknowledgment: SequenceNumber(0), flags: .rst, window: 0)
    }
    return OutgoingSegment(
      sequence: SequenceNumber(0), acknowledgment: sequence + length, flags: .rst | .ack, window: 0)
  }
}

/// One TCP connection.
public struct TcpConnection {
  /// Where the connection is (RFC 9293 3.3.2).
  public struct State: Equatable, Sendable {
    let value: UInt8
    /// No connection.
    public static let closed = State(value: 0)
    /// Waiting for a SYN.
    public static let listen = State(value: 1)
    /// A SYN went out; waiting for the peer's.
    public static let synSent = State(value: 2)
    /// A SYN came and ours went out; waiting for its acknowledgment.
    public static let synReceived = State(value: 3)
    /// Open both ways.
    public static let established = State(value: 4)
    /// Our FIN went out; the peer may still send.
    public static let finWait1 = State(value: 5)
    /// Our FIN is acknowledged; waiting for the peer's.
    public static let finWait2 = State(value: 6)
    /// The peer's FIN came; we may still send.
    public static let closeWait = State(value: 7)
    /// Both FINs crossed; waiting for ours to be acknowledged.
    public static let closing = State(value: 8)
    /// The peer closed first and our FIN went out.
    public static let lastAck = State(value: 9)
    /// Both closed; old segments die out.
    public static let timeWait = State(value: 10)

    /// The state's name as RFC 9293 spells it (for netstat).
    public var name: StaticString {
      switch value {
      case 1: "LISTEN"
      case 2: "SYN-SENT"
      case 3: "SYN-RECEIVED"
      case 4: "ESTABLISHED"
      case 5: "FIN-WAIT-1"
      case 6: "FIN-WAIT-2"
      case 7: "CLOSE-WAIT"
      case 8: "CLOSING"
      case 9: "LAST-ACK"
      case 10: "TIME-WAIT"
      default: "CLOSED"
      }
    }
  }

  /// What the application must hear.
  public struct Event: Equatable, Sendable {
    let value: UInt8
    /// The handshake completed.
    public static let connected = Event(value: 0)
    /// Data can be read.
    public static let readable = Event(value: 1)
    /// The peer will send no more (its FIN).
    public static let peerClosed = Event(value: 2)
    /// The connection was reset (by the peer, or after too many retransmissions).
    public static let reset = Event(value: 3)
    /// The connection is closed and can be forgotten.
    public static let closed = Event(value: 4)
  }

  /// Retransmissions of the same data before the connection is reset.
  public static let maximumRetransmissions = 8
  /// Retransmissions of our SYN or SYN-ACK before the handshake is given up: 3 (after
  /// about 15 s; Linux tries 5 times, about a minute). A listener's half-open
  /// connections, a SYN flood's among them, are gone that soon.
  public static let maximumHandshakeRetransmissions = 3
  /// How long an ACK for one in-order segment may wait (RFC 1122 allows 500 ms; Linux
  /// waits 40 ms at least).
  public static let acknowledgmentDelay: UInt64 = 40
  /// How long an orphaned connection waits in FIN-WAIT-2 for the peer's FIN (Linux: 60 s).
  public static let orphanFinWait2: UInt64 = 60_000
  /// Segments the out-of-order queue holds at most: beyond, later ones are dropped (the
  /// peer sends them again). Bounds the queue's work per segment and its overhead: an
  /// attack review queued 32,767 one-byte segments, each its own allocation.
  public static let maximumOutOfOrderSegments = 32
  /// The congestion window's ceiling: four full windows.
  static let largestCongestionWindow: UInt32 = 4 * 65_535
  /// How long TIME-WAIT lasts (2 MSL, short: a host of this size cannot hold many).
  public static let timeWait: UInt64 = 2_000

  /// The state.
  public private(set) var state = State.closed
  /// Segments to send, oldest first.
  public var outgoing: [OutgoingSegment] = []
  /// Events for the application, oldest first.
  public var events: [Event] = []
  /// Retransmissions so far (a counter for `netstat`), timeouts and fast ones.
  public private(set) var retransmissions = 0
  /// Fast retransmissions (on duplicate ACKs) among them.
  public private(set) var fastRetransmissions = 0
  /// The congestion window in bytes.
  public private(set) var congestionWindow: UInt32 = 0

  // Send side (RFC 9293 3.3.1).
  private var sendUnacknowledged = SequenceNumber(0)
  private var sendNext = SequenceNumber(0)
  private var initialSend = SequenceNumber(0)
  private var peerWindow: UInt32 = 0
  /// Window scaling (RFC 7323): on when both SYNs carried the option; then the peer's
  /// window fields (but a SYN's) count in units of 2^peerShift bytes. Ours are sent with a
  /// shift of 0 (our rings hold at most 65,535 bytes), which still lets the peer scale.
  private var scaling = false
  private var peerShift: UInt8 = 0
  /// Whether our SYN offers scaling (not one answering a SYN without the option).
  private var offersScaling = true
  /// Data from `sendUnacknowledged` on: sent and not acknowledged, then not yet sent.
  private var sendBuffer: ByteQueue
  /// Whether our FIN is queued (the application closed or shut down its side).
  public private(set) var finQueued = false
  private var finSent = false
  /// Our FIN's sequence number, once it was sent.
  private var finSequence: SequenceNumber?
  /// The highest sequence number sent (sendNext goes back after a timeout; this does not).
  private var sendMaximum = SequenceNumber(0)
  private var peerMaximumSegment = 536
  private var slowStartThreshold: UInt32 = 65_535
  private var duplicateAcknowledgments = 0
  /// In fast recovery: the highest sequence sent when it began (RFC 6582 "recover").
  private var recover: SequenceNumber?
  private let ourMaximumSegment: UInt16

  // Receive side.
  private var receiveNext = SequenceNumber(0)
  /// In-order data the application has not read.
  private var receiveBuffer: ByteQueue
  /// Out-of-order data: start and bytes, sorted, apart.
  private var outOfOrder: [(start: SequenceNumber, bytes: [UInt8])] = []
  /// Whether the peer's FIN came (after all its data).
  public private(set) var peerFinished = false

  // Timers.
  private var timeout = RetransmissionTimeout()
  private var retransmitAt: UInt64?
  private var retries = 0
  /// The segment being timed: its end and when it was sent (Karn: none while resending).
  private var timing: (end: SequenceNumber, sentAt: UInt64)?
  private var timeWaitEnds: UInt64?
  private var orphaned = false
  private var finWait2Since: UInt64?
  /// When a delayed ACK is due (nil: none is owed).
  private var acknowledgmentDue: UInt64?

  /// A connection that will use `initialSequence` (random, from the caller: RFC 6528) and
  /// segments of at most `maximumSegment` bytes of data.
  /// `bufferSize` bounds each direction's buffer (at most 65,535: no window scaling).
  public init(initialSequence: SequenceNumber, maximumSegment: UInt16 = 1460, bufferSize: Int = 65_535) {
    sendBuffer = ByteQueue(capacity: min(max(bufferSize, 1024), 65_535))
    receiveBuffer = ByteQueue(capacity: min(max(bufferSize, 1024), 65_535))
    initialSend = initialSequence
    sendUnacknowledged = initialSequence
    sendNext = initialSequence
    ourMaximumSegment = maximumSegment
  }

  // MARK: The application

  /// A connection whose SYN was answered without state (TcpSynCookies): our SYN-ACK had
  /// sequence number `cookie`, the peer's SYN `peerSequence` and segment size
  /// `peerMaximumSegment`. Give it the ACK that completes the handshake next: `receive`
  /// makes it ESTABLISHED (or answers with a RST, as in SYN-RECEIVED). Nothing is ever
  /// retransmitted for the SYN-ACK: the peer sends its SYN again if that was lost.
  public init(
    cookie: SequenceNumber, peerSequence: SequenceNumber, peerMaximumSegment: UInt16,
    maximumSegment: UInt16 = 1460, bufferSize: Int = 65_535
  ) {
    self.init(initialSequence: cookie, maximumSegment: maximumSegment, bufferSize: bufferSize)
    state = .synReceived
    receiveNext = peerSequence + 1
    sendNext = cookie + 1
    sendMaximum = sendNext
    self.peerMaximumSegment = min(max(Int(peerMaximumSegment), 64), Int(maximumSegment))
    offersScaling = false  // a cookie cannot carry the peer's shift: no scaling
  }

  /// Active open: sends a SYN.
  public mutating func open(now: UInt64) {
    guard state == .closed else { return }
    state = .synSent
    transmitSyn(acknowledging: false, now: now)
  }

  /// Passive open: waits for a SYN.
  public mutating func listen() {
    if state == .closed { state = .listen }
  }

  /// Queues `data` to send; returns how many bytes were taken (the rest does not fit).
  public mutating func send(_ data: [UInt8], now: UInt64) -> Int {
    guard state == .established || state == .closeWait || state == .synSent || state == .synReceived,
      !finQueued
    else { return 0 }
    let taken = sendBuffer.append(contentsOf: data)
    transmitData(now: now)
    return taken
  }

  /// Takes up to `count` bytes of received data.
  public mutating func read(_ count: Int) -> [UInt8] {
    let windowWasSmall = Int(advertisedWindow) < receiveBuffer.capacity / 2
    let taken = receiveBuffer.take(count)
    // The window opened by at least half the buffer: tell the peer (no silly windows).
    if !taken.isEmpty && windowWasSmall && Int(advertisedWindow) >= receiveBuffer.capacity / 2
      && state != .closed && state != .listen
    {
      acknowledge()
    }
    return taken
  }

  /// Bytes received and not read yet.
  public var readable: Int { receiveBuffer.count }

  /// Bytes queued to send and not acknowledged yet.
  public var sendQueued: Int { sendBuffer.count }

  /// Room to queue more to send.
  public var sendRoom: Int { sendBuffer.room }

  /// Each direction's buffer capacity in bytes (what the connection may hold at most).
  public var bufferCapacity: Int { receiveBuffer.capacity }

  /// No application will use the connection again (its stream went): once in FIN-WAIT-2
  /// it waits at most `orphanFinWait2` for the peer's FIN, as Linux's tcp_fin_timeout, or
  /// a peer that never closes would hold it for good.
  public mutating func orphan() { orphaned = true }

  /// Bytes received out of order, held until the gap before them fills.
  public var outOfOrderBytes: Int { outOfOrder.reduce(0) { $0 + $1.bytes.count } }

  /// Closes our side: a FIN follows the data queued.
  public mutating func close(now: UInt64) {
    switch state {
    case .listen, .synSent:
      state = .closed
      events.append(.closed)
    case .synReceived, .established:
      finQueued = true
      state = .finWait1
      transmitData(now: now)
    case .closeWait:
      finQueued = true
      state = .lastAck
      transmitData(now: now)
    default:
      break
    }
  }

  /// Ends the connection at once with a RST (RFC 9293 3.10.5).
  public mutating func abort() {
    if state != .closed && state != .listen && state != .synSent && state != .timeWait {
      outgoing.append(segment(sendNext, flags: .rst))
    }
    becomeClosed(.reset)
  }

  // MARK: Segments

  /// A segment for this connection arrived (checksum verified, ports matched).
  public mutating func receive(_ incoming: TcpSegment, now: UInt64) {
    receive(
      sequence: incoming.sequence, acknowledgment: incoming.acknowledgment, flags: incoming.flags,
      window: incoming.window, maximumSegmentSize: incoming.options.maximumSegmentSize,
      payload: Array(incoming.payload), now: now, windowScale: incoming.options.windowScale)
  }

  /// A segment arrived, given by its fields (what `receive(_:now:)` reads from a segment).
  public mutating func receive(
    sequence: SequenceNumber, acknowledgment: SequenceNumber, flags: TcpSegment.Flags, window: UInt16,
    maximumSegmentSize: UInt16?, payload: [UInt8], now: UInt64, windowScale: UInt8? = nil
  ) {
    switch state {
    case .closed:
      return
    case .listen:
      if flags.contains(.rst) { return }
      if flags.contains(.ack) {
        outgoing.append(
          OutgoingSegment(
            sequence: acknowledgment, acknowledgment: SequenceNumber(0), flags: .rst, window: 0,
            maximumSegmentSize: nil, payload: []))
        return
      }
      guard flags.contains(.syn) else { return }
      receiveNext = sequence + 1
      peerWindow = UInt32(window)  // a SYN's window is never scaled
      if let size = maximumSegmentSize {
        peerMaximumSegment = min(max(Int(size), 64), Int(ourMaximumSegment))
      }
      scaling = windowScale != nil
      offersScaling = scaling
      peerShift = min(windowScale ?? 0, 14)
      state = .synReceived
      transmitSyn(acknowledging: true, now: now)
      return
    case .synSent:
      if flags.contains(.ack) && (acknowledgment <= initialSend || acknowledgment > sendNext) {
        if !flags.contains(.rst) {
          outgoing.append(
            OutgoingSegment(
              sequence: acknowledgment, acknowledgment: SequenceNumber(0), flags: .rst, window: 0,
              maximumSegmentSize: nil, payload: []))
        }
        return
      }
      if flags.contains(.rst) {
        if flags.contains(.ack) { becomeClosed(.reset) }
        return
      }
      guard flags.contains(.syn) else { return }
      receiveNext = sequence + 1
      peerWindow = UInt32(window)  // a SYN's window is never scaled
      if let size = maximumSegmentSize {
        peerMaximumSegment = min(max(Int(size), 64), Int(ourMaximumSegment))
      }
      scaling = windowScale != nil && offersScaling
      peerShift = scaling ? min(windowScale ?? 0, 14) : 0
      if flags.contains(.ack) {
        acknowledged(up: acknowledgment, now: now)
        state = .established
        events.append(.connected)
        acknowledge()
        transmitData(now: now)
      } else {
        // Simultaneous open: SYN-ACK ours again.
        state = .synReceived
        outgoing.append(
          OutgoingSegment(
            sequence: initialSend, acknowledgment: receiveNext, flags: .syn | .ack, window: advertisedWindow,
            maximumSegmentSize: ourMaximumSegment, payload: [], windowScale: scaling ? 0 : nil))
      }
      return
    default:
      break
    }

    // Synchronized states: is the segment acceptable (RFC 9293 3.10.7.4, first check)?
    let length = UInt32(payload.count) + (flags.contains(.syn) ? 1 : 0) + (flags.contains(.fin) ? 1 : 0)
    // Ours, not the segment's `window` (the peer's), which this name once hid.
    let ourWindow = UInt32(advertisedWindow)
    let acceptable: Bool
    if length == 0 {
      acceptable =
        ourWindow == 0
        ? sequence == receiveNext : sequence >= receiveNext && sequence < receiveNext + ourWindow
    } else {
      let last = sequence + (length - 1)
      acceptable =
        ourWindow > 0
        && ((sequence >= receiveNext && sequence < receiveNext + ourWindow)
          || (last >= receiveNext && last < receiveNext + ourWindow))
    }
    guard acceptable else {
      if !flags.contains(.rst) { acknowledge() }
      return
    }
    if flags.contains(.rst) {
      // RFC 5961 3.2: only a RST at exactly the next expected number resets; one elsewhere
      // in the window gets a challenge ACK.
      if sequence == receiveNext { becomeClosed(.reset) } else { acknowledge() }
      return
    }
    if flags.contains(.syn) {
      // RFC 5961 4.2: a SYN in a synchronized state gets a challenge ACK.
      acknowledge()
      return
    }
    guard flags.contains(.ack) else { return }

    // The acknowledgment.
    if state == .synReceived {
      guard acknowledgment > sendUnacknowledged, acknowledgment <= sendNext else {
        outgoing.append(
          OutgoingSegment(
            sequence: acknowledgment, acknowledgment: SequenceNumber(0), flags: .rst, window: 0,
            maximumSegmentSize: nil, payload: []))
        return
      }
      state = .established
      events.append(.connected)
    }
    if acknowledgment > sendMaximum {
      acknowledge()  // acknowledges what we never sent
      return
    }
    // After a timeout sent from the start again, an ACK for what went out before it moves
    // the next byte to send on.
    if acknowledgment > sendNext { sendNext = acknowledgment }
    if acknowledgment == sendUnacknowledged && payload.isEmpty && !flags.contains(.fin)
      && peerWindowBytes(window) == peerWindow && sendNext != sendUnacknowledged
    {
      duplicateAcknowledgment(now: now)
    }
    if acknowledgment > sendUnacknowledged {
      let newlyAcknowledged = UInt32(acknowledgment - sendUnacknowledged)
      acknowledged(up: acknowledgment, now: now)
      grow(acknowledging: newlyAcknowledged, upTo: acknowledgment, now: now)
    }
    if acknowledgment >= sendUnacknowledged { peerWindow = peerWindowBytes(window) }
    // RFC 1122 4.2.2.17: a peer that answers the probes of its closed window is there; the
    // connection stays as long as it answers (a silent one is still given up).
    if window == 0 && acknowledgment == sendUnacknowledged { retries = 0 }
    let ourFinAcknowledged = finSent && sendUnacknowledged == sendNext
    switch state {
    case .finWait1 where ourFinAcknowledged:
      state = .finWait2
      finWait2Since = now
    case .closing where ourFinAcknowledged: enterTimeWait(now: now)
    case .lastAck where ourFinAcknowledged:
      becomeClosed(.closed)
      return
    default: break
    }

    // The data.
    let expected = receiveNext
    if !payload.isEmpty && (state == .established || state == .finWait1 || state == .finWait2) {
      accept(payload, at: sequence)
    }
    // Delayed ACK (RFC 1122 4.2.3.2): the first in-order segment of data waits up to
    // `acknowledgmentDelay` for a second one, or for data of ours to ride on; anything
    // else (a second segment, a gap, a FIN, a duplicate) is acknowledged at once.
    let delayable =
      !payload.isEmpty && !flags.contains(.fin) && sequence == expected
      && receiveNext == expected + UInt32(payload.count) && outOfOrder.isEmpty && acknowledgmentDue == nil
    // The FIN, once everything before it has come.
    if flags.contains(.fin) && sequence + UInt32(payload.count) == receiveNext && !peerFinished {
      peerFinished = true
      receiveNext = receiveNext + 1
      events.append(.peerClosed)
      switch state {
      case .established, .synReceived: state = .closeWait
      case .finWait1: state = ourFinAcknowledged ? .timeWait : .closing
      case .finWait2: enterTimeWait(now: now)
      default: break
      }
      if state == .timeWait { enterTimeWait(now: now) }
    }
    if delayable {
      acknowledgmentDue = now + Self.acknowledgmentDelay
    } else if length > 0 {
      acknowledge()
    }
    transmitData(now: now)
  }

  /// Time passed: retransmissions, zero-window probes, the end of TIME-WAIT.
  public mutating func tick(now: UInt64) {
    if let due = acknowledgmentDue, now >= due { acknowledge() }
    if orphaned, state == .finWait2, let since = finWait2Since, now >= since + Self.orphanFinWait2 {
      becomeClosed(.closed)
      return
    }
    if let ends = timeWaitEnds, now >= ends {
      becomeClosed(.closed)
      return
    }
    guard let due = retransmitAt, now >= due else { return }
    retries += 1
    let handshake = state == .synSent || state == .synReceived
    guard retries <= (handshake ? Self.maximumHandshakeRetransmissions : Self.maximumRetransmissions) else {
      abort()
      return
    }
    timeout.backOff()
    timing = nil  // Karn: no sample from a segment sent twice
    retransmissions += 1
    if state == .synSent || state == .synReceived {
      transmitSyn(acknowledging: state == .synReceived, now: now, again: true)
      return
    }
    // Go back: send again from the first unacknowledged byte, with one segment's window
    // (RFC 5681 3.1: the loss window).
    slowStartThreshold = max(UInt32(sendNext - sendUnacknowledged) / 2, 2 * UInt32(peerMaximumSegment))
    congestionWindow = UInt32(peerMaximumSegment)
    recover = nil
    duplicateAcknowledgments = 0
    sendNext = sendUnacknowledged
    finSent = false
    transmitData(now: now, probe: peerWindow == 0)
    retransmitAt = now + UInt64(timeout.milliseconds)
  }

  // MARK: Inside

  /// A window field of the peer's (not in a SYN) in bytes.
  private func peerWindowBytes(_ window: UInt16) -> UInt32 {
    UInt32(window) << UInt32(scaling ? peerShift : 0)
  }

  private var advertisedWindow: UInt16 {
    let held = receiveBuffer.count + outOfOrder.reduce(0) { $0 + $1.bytes.count }
    return UInt16(max(0, min(receiveBuffer.capacity - held, 65_535)))
  }

  private func segment(_ sequence: SequenceNumber, flags: TcpSegment.Flags, payload: [UInt8] = [])
    -> OutgoingSegment
  {
    OutgoingSegment(
      sequence: sequence, acknowledgment: receiveNext, flags: flags, window: advertisedWindow,
      maximumSegmentSize: nil, payload: payload)
  }

  private mutating func acknowledge() {
    acknowledgmentDue = nil
    // One ACK is enough: replace a pure ACK already queued.
    if let last = outgoing.last, last.flags == .ack, last.payload.isEmpty { outgoing.removeLast() }
    // At the highest number sent, as BSD does: after a timeout `sendNext` went back, and a
    // pure ACK numbered below what the peer has received would be dropped as old.
    outgoing.append(segment(sendMaximum, flags: .ack))
  }

  private mutating func transmitSyn(acknowledging: Bool, now: UInt64, again: Bool = false) {
    sendNext = initialSend + 1
    sendMaximum = sendNext
    outgoing.append(
      OutgoingSegment(
        sequence: initialSend, acknowledgment: acknowledging ? receiveNext : SequenceNumber(0),
        flags: acknowledging ? .syn | .ack : .syn, window: advertisedWindow,
        // A SYN-ACK sent again carries no MSS option: libslirp (4.7) cut a connection's
        // stream short, sending its FIN at once, when one did (seen with 100 connections
        // at once, their SYN-ACKs timed out while the ACKs waited in QEMU's queue). A
        // peer that lost the first SYN-ACK then sends 536-byte segments.
        maximumSegmentSize: again && acknowledging ? nil : ourMaximumSegment,
        payload: [], windowScale: offersScaling ? 0 : nil))
    if !again { timing = (sendNext, now) }
    retransmitAt = now + UInt64(timeout.milliseconds)
  }

  /// Sends what the peer's window allows of the data not sent yet, then the FIN if queued.
  private mutating func transmitData(now: UInt64, probe: Bool = false) {
    guard state != .synSent && state != .synReceived && state != .closed && state != .listen else { return }
    let sent = Int(sendNext - sendUnacknowledged)
    var offset = min(sent, sendBuffer.count)
    if congestionWindow == 0 { congestionWindow = initialWindow }
    let allowed = min(peerWindow, congestionWindow)
    let limit = probe ? max(peerWindow, 1) : allowed
    var inFlight = UInt32(offset)
    while offset < sendBuffer.count && inFlight < limit {
      let count = min(peerMaximumSegment, sendBuffer.count - offset, Int(limit - inFlight))
      let payload = sendBuffer.peek(from: offset, count: count)
      let isLast = offset + count == sendBuffer.count
      outgoing.append(segment(sendNext, flags: isLast ? .ack | .psh : .ack, payload: payload))
      acknowledgmentDue = nil  // the ACK rides on the data
      if timing == nil { timing = (sendNext + UInt32(count), now) }
      sendNext = sendNext + UInt32(count)
      if sendNext > sendMaximum { sendMaximum = sendNext }
      offset += count
      inFlight += UInt32(count)
    }
    if offset == sendBuffer.count && finQueued && !finSent {
      outgoing.append(segment(sendNext, flags: .fin | .ack))
      acknowledgmentDue = nil
      finSent = true
      if finSequence == nil { finSequence = sendNext }
      sendNext = sendNext + 1
      if sendNext > sendMaximum { sendMaximum = sendNext }
    }
    if sendNext != sendUnacknowledged && retransmitAt == nil {
      retransmitAt = now + UInt64(timeout.milliseconds)
    }
    if sendNext == sendUnacknowledged && !sendBuffer.isEmpty && peerWindow == 0 && retransmitAt == nil {
      retransmitAt = now + UInt64(timeout.milliseconds)  // probe the zero window
    }
  }

  /// The peer acknowledged everything before `acknowledgment`.
  private mutating func acknowledged(up acknowledgment: SequenceNumber, now: UInt64) {
    // Only data counts: not our SYN (before the first byte) nor our FIN (after the last).
    let firstData = sendUnacknowledged == initialSend ? initialSend + 1 : sendUnacknowledged
    let dataEnd = firstData + UInt32(sendBuffer.count)
    let covered = acknowledgment < dataEnd ? acknowledgment : dataEnd
    sendBuffer.removeFirst(max(0, min(Int(covered - firstData), sendBuffer.count)))
    sendUnacknowledged = acknowledgment
    if let measured = timing, acknowledgment >= measured.end {
      timeout.sample(UInt32(truncatingIfNeeded: now - measured.sentAt))
      timing = nil
    }
    retries = 0
    retransmitAt = sendUnacknowledged == sendNext ? nil : now + UInt64(timeout.milliseconds)
  }

  /// RFC 5681 3.1's initial window.
  private var initialWindow: UInt32 {
    let size = UInt32(peerMaximumSegment)
    return size > 2190 ? 2 * size : size > 1095 ? 3 * size : 4 * size
  }

  /// The window grows with new acknowledgments (slow start, then congestion avoidance);
  /// in fast recovery, a partial ACK sends the next hole and a full one ends recovery.
  private mutating func grow(acknowledging count: UInt32, upTo acknowledgment: SequenceNumber, now: UInt64) {
    let size = UInt32(peerMaximumSegment)
    if congestionWindow == 0 { congestionWindow = initialWindow }
    duplicateAcknowledgments = 0
    if let point = recover {
      if acknowledgment >= point {
        // Full acknowledgment (RFC 6582 3.2 step 3): deflate.
        congestionWindow = min(slowStartThreshold, UInt32(sendNext - sendUnacknowledged) + size)
        recover = nil
      } else {
        // Partial: the next hole goes now; deflate by what was acknowledged.
        retransmitFirst(now: now)
        congestionWindow = min(
          congestionWindow > count ? congestionWindow - count + size : size, Self.largestCongestionWindow)
      }
      return
    }
    if congestionWindow < slowStartThreshold {
      congestionWindow += min(count, size)
    } else {
      congestionWindow += max(1, size * size / congestionWindow)
    }
    congestionWindow = min(congestionWindow, Self.largestCongestionWindow)
  }

  /// A duplicate ACK: the third starts fast retransmit and recovery (RFC 5681 3.2); more
  /// inflate the window by a segment each.
  private mutating func duplicateAcknowledgment(now: UInt64) {
    let size = UInt32(peerMaximumSegment)
    duplicateAcknowledgments += 1
    if recover != nil {
      // Inflated by each duplicate, but bounded: a peer could send millions.
      congestionWindow = min(congestionWindow + size, Self.largestCongestionWindow)
      return
    }
    guard duplicateAcknowledgments == 3 else { return }
    slowStartThreshold = max(UInt32(sendNext - sendUnacknowledged) / 2, 2 * size)
    recover = sendNext
    retransmitFirst(now: now)
    fastRetransmissions += 1
    congestionWindow = slowStartThreshold + 3 * size
  }

  /// Sends the first unacknowledged segment again (data, or the FIN alone).
  private mutating func retransmitFirst(now: UInt64) {
    retransmissions += 1
    timing = nil  // Karn
    let count = min(peerMaximumSegment, sendBuffer.count)
    if count > 0 {
      outgoing.append(
        segment(sendUnacknowledged, flags: .ack, payload: sendBuffer.peek(from: 0, count: count)))
    } else if finSent {
      outgoing.append(segment(sendUnacknowledged, flags: .fin | .ack))
    }
    retransmitAt = now + UInt64(timeout.milliseconds)
  }

  /// Takes data at `sequence` into the receive buffer or the out-of-order queue.
  private mutating func accept(_ payload: [UInt8], at sequence: SequenceNumber) {
    var start = sequence
    var bytes = payload
    // What is old already: trim.
    if start < receiveNext {
      let old = Int(receiveNext - start)
      guard old < bytes.count else { return }
      bytes.removeFirst(old)
      start = receiveNext
    }
    // Beyond the window: trim.
    let room = Int(advertisedWindow)
    let offset = Int(start - receiveNext)
    guard offset < room else { return }
    if offset + bytes.count > room { bytes.removeLast(offset + bytes.count - room) }
    if start == receiveNext {
      receiveBuffer.append(contentsOf: bytes)
      receiveNext = receiveNext + UInt32(bytes.count)
      // Queued segments that now follow on.
      while let first = outOfOrder.first, first.start <= receiveNext {
        outOfOrder.removeFirst()
        let skip = Int(receiveNext - first.start)
        if skip < first.bytes.count {
          receiveBuffer.append(contentsOf: first.bytes[skip...])
          receiveNext = receiveNext + UInt32(first.bytes.count - skip)
        }
      }
      events.append(.readable)
    } else if outOfOrder.count < Self.maximumOutOfOrderSegments
      && !outOfOrder.contains(where: { $0.start == start && $0.bytes.count >= bytes.count })
    {
      let index = outOfOrder.firstIndex { $0.start > start } ?? outOfOrder.count
      outOfOrder.insert((start, bytes), at: index)
    }
  }

  private mutating func enterTimeWait(now: UInt64) {
    state = .timeWait
    retransmitAt = nil
    timeWaitEnds = now + Self.timeWait
  }

  private mutating func becomeClosed(_ event: Event) {
    guard state != .closed else { return }
    state = .closed
    retransmitAt = nil
    timeWaitEnds = nil
    events.append(event)
    if event == .reset { events.append(.closed) }
  }
}
