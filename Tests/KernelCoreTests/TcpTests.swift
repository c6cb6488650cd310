// TcpTests: TCP segments on the bytes Linux sent and answered on a veth pair
// (Captures/linux-tcp.txt: a connection with Linux's SYN options, data, both FINs, and a
// RST from a closed port), emit reproducing Linux's bytes, malformed segments each refused
// with its reason, sequence numbers across the wrap, and RFC 6298's timeout.

import Foundation
import KernelCore
import Testing

@Suite struct TcpTests {
  /// The captured frames, in order.
  static let captured: [[UInt8]] = capturedFrames("linux-tcp.txt").map(\.bytes)

  let host = IPv4Address(10, 9, 0, 1)
  let peer = IPv4Address(10, 9, 0, 2)

  /// The TCP segment of captured frame `index` (after its IPv4 header), its addresses, and
  /// its checksum completed the way the receiving side of a veth does when Linux left it
  /// partial (the field then holds the pseudo-header's sum): the test's own arithmetic.
  func segment(_ index: Int) -> (bytes: [UInt8], source: IPv4Address, destination: IPv4Address) {
    let frame = Self.captured[index]
    var bytes = Array(frame[34...])
    let source = IPv4Address(UInt8(frame[26]), frame[27], frame[28], frame[29])
    let destination = IPv4Address(frame[30], frame[31], frame[32], frame[33])
    func fold(_ value: UInt32) -> UInt16 {
      var total = value
      while total > 0xFFFF { total = (total & 0xFFFF) + (total >> 16) }
      return UInt16(total)
    }
    var pseudo: UInt32 = 6 + UInt32(bytes.count)
    for address in [source, destination] { pseudo += address.value >> 16 + address.value & 0xFFFF }
    let stored = UInt16(bytes[16]) << 8 | UInt16(bytes[17])
    if stored == fold(pseudo) {
      var sum = pseudo
      bytes[16] = 0
      bytes[17] = 0
      for offset in stride(from: 0, to: bytes.count, by: 2) {
        sum += UInt32(bytes[offset]) << 8 | (offset + 1 < bytes.count ? UInt32(bytes[offset + 1]) : 0)
      }
      let checksum = ~fold(sum)
      bytes[16] = UInt8(checksum >> 8)
      bytes[17] = UInt8(checksum & 0xFF)
    }
    return (bytes, source, destination)
  }

  func parse<Result>(_ index: Int, _ body: (TcpSegment) throws -> Result) throws -> Result {
    let (bytes, source, destination) = segment(index)
    return try bytes.withUnsafeBytes {
      try body(try TcpSegment($0, source: source, destination: destination))
    }
  }

  func reason(_ bytes: [UInt8], source: IPv4Address, destination: IPv4Address) -> String {
    bytes.withUnsafeBytes { raw in
      do throws(PacketError) {
        _ = try TcpSegment(raw, source: source, destination: destination)
        return "accepted"
      } catch {
        return error.reason.description
      }
    }
  }

  @Test func linuxsHandshakeParsesWithItsOptions() throws {
    #expect(Self.captured.count == 12)
    let syn = try parse(0) { segment in
      #expect(segment.flags == .syn && segment.destinationPort == 7 && segment.window == 64240)
      #expect(segment.options.maximumSegmentSize == 1460 && segment.options.windowScale == 10)
      #expect(segment.options.sackPermitted && segment.options.timestamp?.echo == 0)
      #expect(segment.sequenceLength == 1 && segment.payload.isEmpty)
      return segment.sequence
    }
    try parse(1) { segment in
      #expect(segment.flags == .syn | .ack && segment.sourcePort == 7)
      #expect(segment.acknowledgment == syn + 1)
      #expect(segment.options.maximumSegmentSize == 1460 && segment.options.sackPermitted)
      #expect(segment.options.timestamp?.echo == 0xEF88_1107, "echoes the SYN's timestamp")
    }
    try parse(3) { segment in
      #expect(segment.flags == .psh | .ack && segment.sequence == syn + 1)
      #expect(Array(segment.payload) == Array("Tessera TCP test vector".utf8))
      #expect(segment.options.timestamp != nil && segment.options.maximumSegmentSize == nil)
    }
    // Both FINs take one sequence number each.
    for index in [7, 8] {
      try parse(index) { segment in #expect(segment.flags == .fin | .ack && segment.sequenceLength == 1) }
    }
  }

  @Test func linuxsResetVerifiesAsItCame() throws {
    // Linux computed this one's checksum whole: our pseudo-header must agree with it.
    let frame = Self.captured[11]
    let bytes = Array(frame[34...])
    try bytes.withUnsafeBytes { raw in
      let segment = try TcpSegment(raw, source: peer, destination: host)
      #expect(segment.flags == .rst | .ack && segment.sourcePort == 9 && segment.window == 0)
    }
  }

  @Test func emitWritesLinuxsBytes() throws {
    for index in [0, 1, 3, 7] {
      let (bytes, source, destination) = segment(index)
      let written = try bytes.withUnsafeBytes { raw in
        let linux = try TcpSegment(raw, source: source, destination: destination)
        var out = [UInt8](repeating: 0, count: 1500)
        let length = out.withUnsafeMutableBytes { buffer in
          let header = TcpSegment.headerLength(options: linux.options)
          for (offset, byte) in linux.payload.enumerated() { buffer[header + offset] = byte }
          return TcpSegment.emit(
            into: buffer, sourcePort: linux.sourcePort, destinationPort: linux.destinationPort,
            sequence: linux.sequence, acknowledgment: linux.acknowledgment, flags: linux.flags,
            window: linux.window, options: linux.options, payloadLength: linux.payload.count, source: source,
            destination: destination)
        }
        return Array(out[0..<length])
      }
      #expect(written == bytes, "segment \(index)")
    }
  }

  @Test func malformedSegmentsAreRefusedWithTheirReasons() {
    let (syn, source, destination) = segment(0)
    #expect(
      reason(Array(syn[0..<19]), source: source, destination: destination) == "shorter than a TCP header")
    var short = syn
    short[12] = 0x40
    #expect(reason(short, source: source, destination: destination) == "TCP data offset under 5")
    var long = syn
    long[12] = 0xF0
    #expect(reason(long, source: source, destination: destination) == "TCP header longer than the segment")
    var corrupt = syn
    corrupt[4] ^= 1
    #expect(reason(corrupt, source: source, destination: destination) == "TCP checksum is wrong")
    #expect(reason(syn, source: source, destination: IPv4Address(10, 9, 0, 3)) == "TCP checksum is wrong")

    /// `syn`'s header with `options` instead of its own, its checksum redone.
    func withOptions(_ options: [UInt8]) -> String {
      var bytes = Array(syn[0..<20]) + options
      bytes[12] = UInt8(bytes.count / 4) << 4
      return reasonAfterFixing(bytes, source: source, destination: destination)
    }
    #expect(withOptions([2, 4, 5, 0xB4, 1, 1, 1, 0]) == "accepted")
    #expect(withOptions([2, 3, 5, 0, 0, 0, 0, 0]) == "TCP MSS option is not 4 bytes")
    #expect(withOptions([3, 2, 1, 1, 0, 0, 0, 0]) == "TCP window scale option is not 3 bytes")
    #expect(withOptions([4, 3, 1, 1, 0, 0, 0, 0]) == "TCP SACK-permitted option is not 2 bytes")
    #expect(withOptions([8, 8, 1, 1, 1, 1, 1, 1]) == "TCP timestamp option is not 10 bytes")
    #expect(withOptions([5, 8, 1, 1, 1, 1, 1, 1]) == "TCP SACK option is not 2 + 8n bytes (n 1 to 4)")
    #expect(withOptions([1, 1, 1, 1, 1, 1, 1, 99]) == "TCP option runs past the header")
    #expect(withOptions([1, 1, 1, 1, 1, 1, 99, 3]) == "TCP option runs past the header")
    #expect(withOptions([99, 0, 0, 0, 0, 0, 0, 0]) == "TCP option length under 2")
    #expect(withOptions([99, 4, 7, 7, 0, 0, 0, 0]) == "accepted", "unknown options are skipped")
    #expect(withOptions([3, 3, 20, 0, 0, 0, 0, 0]) == "accepted")
  }

  /// Recomputes `bytes`' checksum with the test's own arithmetic, then parses.
  func reasonAfterFixing(_ bytes: [UInt8], source: IPv4Address, destination: IPv4Address) -> String {
    var fixed = bytes
    fixed[16] = 0
    fixed[17] = 0
    var sum: UInt32 = 6 + UInt32(fixed.count)
    for address in [source, destination] { sum += address.value >> 16 + address.value & 0xFFFF }
    for offset in stride(from: 0, to: fixed.count, by: 2) {
      sum += UInt32(fixed[offset]) << 8 | (offset + 1 < fixed.count ? UInt32(fixed[offset + 1]) : 0)
    }
    while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
    let checksum = ~UInt16(sum)
    fixed[16] = UInt8(checksum >> 8)
    fixed[17] = UInt8(checksum & 0xFF)
    return reason(fixed, source: source, destination: destination)
  }

  @Test func aWindowScaleOver14IsTakenAs14() throws {
    var options = TcpSegment.Options()
    options.windowScale = 20
    var out = [UInt8](repeating: 0, count: 64)
    let length = out.withUnsafeMutableBytes { buffer in
      TcpSegment.emit(
        into: buffer, sourcePort: 1, destinationPort: 2, sequence: SequenceNumber(5),
        acknowledgment: SequenceNumber(0), flags: .syn, window: 100, options: options, payloadLength: 0,
        source: host, destination: peer)
    }
    try out.withUnsafeBytes { raw in
      let segment = try TcpSegment(
        UnsafeRawBufferPointer(rebasing: raw[0..<length]), source: host, destination: peer)
      #expect(segment.options.windowScale == 14)
    }
  }

  @Test func sequenceNumbersCompareAcrossTheWrap() {
    let late = SequenceNumber(0xFFFF_FFF0)
    let early = late + 0x20  // wrapped to 0x10
    #expect(early.value == 0x10 && late < early && early > late && early - late == 0x20)
    #expect(late <= late && late >= late && !(late < late))
    #expect(SequenceNumber(0) - SequenceNumber(0x8000_0001) > 0, "within half the space: after")
  }

  @Test func theTimeoutFollowsRfc6298() {
    var timeout = RetransmissionTimeout()
    #expect(timeout.milliseconds == 1_000 && timeout.smoothed == nil)
    timeout.sample(100)  // SRTT 100, RTTVAR 50: RTO = 100 + 4 * 50
    #expect(timeout.smoothed == 100 && timeout.milliseconds == 300)
    timeout.sample(100)  // RTTVAR 37.5: RTO = 100 + 150
    #expect(timeout.milliseconds == 250)
    for _ in 0..<50 { timeout.sample(10) }
    #expect(timeout.milliseconds == RetransmissionTimeout.minimum, "never under 200 ms")
    for _ in 0..<20 { timeout.backOff() }
    #expect(timeout.milliseconds == RetransmissionTimeout.maximum, "doubling stops at 60 s")
    timeout.sample(40)
    #expect(timeout.milliseconds < 1_000, "a new sample ends the back-off")
  }

  @Test func fuzzedSegmentsNeverTrap() {
    var state: UInt64 = 0x1234_5678_9ABC_DEF0
    func next() -> UInt64 {
      state ^= state << 13
      state ^= state >> 7
      state ^= state << 17
      return state
    }
    let (syn, source, destination) = segment(0)
    var accepted = 0
    for _ in 0..<20_000 {
      var bytes = Array(syn.prefix(Int(next() % UInt64(syn.count + 1))))
      for _ in 0..<Int(next() % 6) where !bytes.isEmpty {
        bytes[Int(next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: next())
      }
      if reasonAfterFixing(
        bytes + [UInt8](repeating: 0, count: max(0, 18 - bytes.count)), source: source,
        destination: destination)
        == "accepted"
      {
        accepted += 1
      }
    }
    #expect(accepted > 0, "some mutations stay valid")
  }

  @Test func aSynAckSentAgainCarriesNoMaximumSegmentSize() {
    // libslirp cut a connection's stream short when a retransmitted SYN-ACK had the option.
    var connection = answeredSyn()
    #expect(connection.outgoing.last?.maximumSegmentSize == 1460, "the first SYN-ACK has it")
    connection.outgoing.removeAll()
    connection.tick(now: 1_000)
    #expect(connection.outgoing.count == 1 && connection.outgoing[0].flags == .syn | .ack)
    #expect(connection.outgoing.first?.maximumSegmentSize == nil)
    // An active open's SYN keeps it every time.
    var opener = TcpConnection(initialSequence: SequenceNumber(1000))
    opener.open(now: 0)
    opener.outgoing.removeAll()
    opener.tick(now: 1_000)
    #expect(opener.outgoing.first?.maximumSegmentSize == 1460)
  }

  @Test func anUnansweredHandshakeIsGivenUpAfterThreeRetransmissions() {
    // A SYN-ACK to a peer that never answers (a SYN flood's): sent 4 times, 1, 2 and 4 s
    // apart, then the connection resets itself 8 s later (about 15 s in all).
    var connection = answeredSyn()
    var synAcknowledgments = connection.outgoing.filter { $0.flags == .syn | .ack }.count
    connection.outgoing.removeAll()
    var now: UInt64 = 0
    while connection.state != .closed && now < 60_000 {
      now += 100
      connection.tick(now: now)
      synAcknowledgments += connection.outgoing.filter { $0.flags == .syn | .ack }.count
      connection.outgoing.removeAll()
    }
    #expect(synAcknowledgments == 1 + TcpConnection.maximumHandshakeRetransmissions)
    #expect(connection.state == .closed && connection.events.contains(.reset))
    #expect(now >= 14_000 && now <= 16_000, "given up after \(now) ms")
  }

  @Test func aLoneSegmentIsAcknowledgedLateAndASecondAtOnce() {
    var connection = established()
    func data(at sequence: UInt32, now: UInt64, flags: TcpSegment.Flags = .ack) {
      connection.receive(
        sequence: SequenceNumber(sequence), acknowledgment: SequenceNumber(1001), flags: flags, window: 65535,
        maximumSegmentSize: nil, payload: [UInt8](repeating: 7, count: 100), now: now)
    }
    data(at: 5001, now: 10)
    #expect(connection.outgoing.isEmpty, "a lone segment waits")
    connection.tick(now: 10 + TcpConnection.acknowledgmentDelay - 1)
    #expect(connection.outgoing.isEmpty)
    connection.tick(now: 10 + TcpConnection.acknowledgmentDelay)
    #expect(connection.outgoing.map(\.acknowledgment) == [SequenceNumber(5101)], "then it is acknowledged")
    connection.outgoing.removeAll()
    // Two in a row: the second is acknowledged at once, covering both.
    data(at: 5101, now: 100)
    data(at: 5201, now: 101)
    #expect(connection.outgoing.map(\.acknowledgment) == [SequenceNumber(5301)])
    connection.outgoing.removeAll()
    // A gap, and data with a FIN: at once.
    data(at: 5401, now: 200)
    #expect(
      connection.outgoing.map(\.acknowledgment) == [SequenceNumber(5301)], "a gap: a duplicate ACK at once")
    connection.outgoing.removeAll()
    data(at: 5301, now: 201, flags: .ack | .fin)
    #expect(connection.outgoing.last?.acknowledgment == SequenceNumber(5501))
    connection.outgoing.removeAll()
    // Data of ours carries the ACK: none is owed after it.
    var fresh = established()
    fresh.receive(
      sequence: SequenceNumber(5001), acknowledgment: SequenceNumber(1001), flags: .ack, window: 65535,
      maximumSegmentSize: nil, payload: [UInt8](repeating: 1, count: 10), now: 1)
    #expect(fresh.outgoing.filter { $0.payload.isEmpty && $0.flags == .ack }.isEmpty)
    _ = fresh.send([1, 2, 3], now: 2)
    #expect(
      fresh.outgoing.last?.acknowledgment == SequenceNumber(5011)
        && fresh.outgoing.last?.payload == [1, 2, 3])
    fresh.outgoing.removeAll()
    fresh.tick(now: 1000)
    #expect(fresh.outgoing.filter { $0.payload.isEmpty }.isEmpty, "no ACK owed after the data carried it")
  }
}

/// A listening connection that answered a SYN (5000, MSS 1460) at time 0: SYN-RECEIVED,
/// its SYN-ACK (sequence 1000) in `outgoing`.
func answeredSyn(windowScale: UInt8? = nil) -> TcpConnection {
  var connection = TcpConnection(initialSequence: SequenceNumber(1000))
  connection.listen()
  connection.receive(
    sequence: SequenceNumber(5000), acknowledgment: SequenceNumber(0), flags: .syn, window: 65535,
    maximumSegmentSize: 1460, payload: [], now: 0, windowScale: windowScale)
  return connection
}

/// An established connection to a peer at 5001 (sequence numbers), ours from 1001.
func established() -> TcpConnection {
  var connection = TcpConnection(initialSequence: SequenceNumber(1000))
  connection.listen()
  connection.receive(
    sequence: SequenceNumber(5000), acknowledgment: SequenceNumber(0), flags: .syn, window: 65535,
    maximumSegmentSize: 1460, payload: [], now: 0)
  connection.receive(
    sequence: SequenceNumber(5001), acknowledgment: SequenceNumber(1001), flags: .ack, window: 65535,
    maximumSegmentSize: nil, payload: [], now: 1)
  connection.outgoing.removeAll()
  return connection
}

@Suite struct TcpBoundsTests {

  @Test func theCongestionWindowStaysBoundedInRecovery() {
    // Recovery entered and kept going with duplicate ACKs and 1-byte partial ACKs: the
    // window once grew by a segment per duplicate until it overflowed (an attack review).
    var connection = established()
    _ = connection.send([UInt8](repeating: 1, count: 60_000), now: 2)
    var acknowledged: UInt32 = 1001
    for round in 0..<2_000 {
      for _ in 0..<50 {
        connection.receive(
          sequence: SequenceNumber(5001), acknowledgment: SequenceNumber(acknowledged), flags: .ack,
          window: 65535, maximumSegmentSize: nil, payload: [], now: UInt64(3 + round))
      }
      acknowledged += 1
      connection.receive(
        sequence: SequenceNumber(5001), acknowledgment: SequenceNumber(acknowledged), flags: .ack,
        window: 65535,
        maximumSegmentSize: nil, payload: [], now: UInt64(3 + round))
      connection.outgoing.removeAll()
    }
    #expect(connection.congestionWindow <= 4 * 65_535)
  }

  @Test func theOutOfOrderQueueHoldsAtMost32Segments() {
    var connection = established()
    for index in 0..<1_000 {
      connection.receive(
        sequence: SequenceNumber(5002 + 2 * UInt32(index)), acknowledgment: SequenceNumber(1001), flags: .ack,
        window: 65535, maximumSegmentSize: nil, payload: [7], now: 2)
    }
    #expect(connection.outOfOrderBytes == TcpConnection.maximumOutOfOrderSegments)
  }

  @Test func thePeersWindowLimitsWhatIsSent() {
    // The window of an ACK was once read from our own (a local of the same name hid it):
    // a peer with a small buffer was sent past its window.
    var connection = established()
    connection.receive(
      sequence: SequenceNumber(5001), acknowledgment: SequenceNumber(1001), flags: .ack, window: 2_000,
      maximumSegmentSize: nil, payload: [], now: 2)
    var now: UInt64 = 3
    _ = connection.send([UInt8](repeating: 9, count: 20_000), now: now)
    var acknowledged: UInt32 = 1001
    for _ in 0..<30 {
      let sent = connection.outgoing.reduce(0) { $0 + $1.payload.count }
      #expect(sent <= 2_000, "\(sent) bytes sent into a 2,000-byte window")
      connection.outgoing.removeAll()
      acknowledged += UInt32(sent)
      now += 10
      connection.receive(
        sequence: SequenceNumber(5001), acknowledgment: SequenceNumber(acknowledged), flags: .ack,
        window: 2_000,
        maximumSegmentSize: nil, payload: [], now: now)
    }
    #expect(acknowledged == 21_001, "everything went, 2,000 bytes at a time")
  }

  @Test func aZeroWindowIsProbedForAsLongAsThePeerAnswers() {
    // The probes once counted as retransmissions, so a receiver keeping its window closed
    // (allowed, RFC 1122 4.2.2.17) was reset after eight of them.
    var connection = established()
    _ = connection.send([1, 2, 3], now: 2)
    connection.receive(
      sequence: SequenceNumber(5001), acknowledgment: SequenceNumber(1004), flags: .ack, window: 0,
      maximumSegmentSize: nil, payload: [], now: 3)
    _ = connection.send([4, 5, 6], now: 4)
    connection.outgoing.removeAll()
    var now: UInt64 = 4
    var probes = 0
    for _ in 0..<40 {
      now += 61_000
      connection.tick(now: now)
      probes += connection.outgoing.filter { $0.payload.count == 1 }.count
      connection.outgoing.removeAll()
      // The probe's byte is not taken: the answer acknowledges nothing new, window still 0.
      connection.receive(
        sequence: SequenceNumber(5001), acknowledgment: SequenceNumber(1004), flags: .ack, window: 0,
        maximumSegmentSize: nil, payload: [], now: now)
    }
    #expect(probes == 40, "a probe at every timeout")
    #expect(connection.state == .established, "the peer answered every probe")
    // A peer that stops answering is given up after the usual retransmissions.
    for _ in 0...TcpConnection.maximumRetransmissions {
      now += 61_000
      connection.tick(now: now)
    }
    #expect(connection.state == .closed)
  }

  @Test func anOrphanedConnectionLeavesFinWait2AfterAMinute() {
    var connection = established()
    connection.orphan()
    connection.close(now: 10)
    connection.receive(
      sequence: SequenceNumber(5001), acknowledgment: SequenceNumber(1002), flags: .ack, window: 65535,
      maximumSegmentSize: nil, payload: [], now: 20)
    #expect(connection.state == .finWait2)
    connection.tick(now: 20 + TcpConnection.orphanFinWait2 - 1)
    #expect(connection.state == .finWait2)
    connection.tick(now: 20 + TcpConnection.orphanFinWait2)
    #expect(connection.state == .closed)
  }
}

@Suite struct TcpSynCookieTests {
  let cookies = TcpSynCookies(secret: 0x1234_5678_9ABC_DEF0)
  let local = IPv4Address(value: 0x0A00_040F)
  let remote = IPv4Address(value: 0x0A00_0402)

  func make(mss: UInt16?, now: UInt64, peer: UInt32 = 777) -> SequenceNumber {
    cookies.make(
      local: local, localPort: 80, remote: remote, remotePort: 40000, peerSequence: SequenceNumber(peer),
      maximumSegment: mss, now: now)
  }

  func check(_ cookie: SequenceNumber, now: UInt64, peer: UInt32 = 777, port: UInt16 = 40000) -> UInt16? {
    cookies.check(
      local: local, localPort: 80, remote: remote, remotePort: port, sequence: SequenceNumber(peer) + 1,
      acknowledgment: cookie + 1, now: now)
  }

  @Test func aCookieIsAcceptedForItsConnectionAndTime() {
    let cookie = make(mss: 1460, now: 1_000)
    #expect(check(cookie, now: 1_000) == 1460)
    #expect(check(cookie, now: 127_000) == 1460, "the previous period counts too")
    #expect(check(cookie, now: 129_000) == nil, "two periods later it is stale")
    #expect(check(cookie, now: 1_000, peer: 778) == nil, "another initial sequence")
    #expect(check(cookie, now: 1_000, port: 40001) == nil, "another port")
    #expect(check(cookie + 8, now: 1_000) == nil, "another number")
    #expect(check(make(mss: 1300, now: 5), now: 5) == 1220, "segment sizes round down")
    #expect(check(make(mss: nil, now: 5), now: 5) == 536)
    #expect(check(make(mss: 100, now: 5), now: 5) == 536)
    let accepted = (0..<10_000).filter {
      check(SequenceNumber(UInt32($0) &* 2_654_435_761), now: 1_000) != nil
    }
    #expect(accepted.isEmpty, "guesses are refused")
  }

  @Test func aConnectionMadeFromACookieIsEstablishedByTheAck() {
    let cookie = make(mss: 1460, now: 0)
    var connection = TcpConnection(
      cookie: cookie, peerSequence: SequenceNumber(777), peerMaximumSegment: 1460)
    connection.receive(
      sequence: SequenceNumber(778), acknowledgment: cookie + 1, flags: .ack | .psh, window: 65535,
      maximumSegmentSize: nil, payload: Array("hello".utf8), now: 1)
    #expect(connection.state == .established && connection.events.contains(.connected))
    #expect(connection.read(100) == Array("hello".utf8))
    var wrong = TcpConnection(cookie: cookie, peerSequence: SequenceNumber(777), peerMaximumSegment: 1460)
    wrong.receive(
      sequence: SequenceNumber(778), acknowledgment: cookie + 5, flags: .ack, window: 65535,
      maximumSegmentSize: nil, payload: [], now: 1)
    #expect(wrong.state != .established && wrong.outgoing.contains { $0.flags == .rst })
  }
}

@Suite struct TcpWindowScaleTests {
  /// A connection made by a peer's SYN carrying `scale` (nil: no window scale option).
  func accepted(scale: UInt8?) -> (TcpConnection, OutgoingSegment?) {
    var connection = answeredSyn(windowScale: scale)
    let synAcknowledgment = connection.outgoing.last
    connection.receive(
      sequence: SequenceNumber(5001), acknowledgment: SequenceNumber(1001), flags: .ack, window: 65535,
      maximumSegmentSize: nil, payload: [], now: 1)
    connection.outgoing.removeAll()
    return (connection, synAcknowledgment)
  }

  /// Bytes sent after `send` of 10,000 when the peer's last ACK had window field `field`.
  func sentInto(field: UInt16, _ connection: inout TcpConnection) -> Int {
    connection.receive(
      sequence: SequenceNumber(5001), acknowledgment: SequenceNumber(1001), flags: .ack, window: field,
      maximumSegmentSize: nil, payload: [], now: 2)
    _ = connection.send([UInt8](repeating: 5, count: 10_000), now: 3)
    return connection.outgoing.reduce(0) { $0 + $1.payload.count }
  }

  @Test func bothOfferingItTheWindowCountsInScaledUnits() {
    var (connection, synAcknowledgment) = accepted(scale: 7)
    #expect(synAcknowledgment?.windowScale == 0, "our SYN-ACK offers scaling (shift 0)")
    #expect(sentInto(field: 10, &connection) == 1_280, "10 units of 128 bytes")
  }

  @Test func withoutThePeersOptionNothingIsScaled() {
    var (connection, synAcknowledgment) = accepted(scale: nil)
    #expect(synAcknowledgment?.windowScale == nil, "no option in the SYN-ACK either")
    #expect(sentInto(field: 10, &connection) == 10)
  }

  @Test func anActiveOpenOffersItAndUsesThePeersShift() {
    var connection = TcpConnection(initialSequence: SequenceNumber(1000))
    connection.open(now: 0)
    #expect(connection.outgoing.first?.windowScale == 0, "the SYN offers scaling")
    connection.outgoing.removeAll()
    // The SYN-ACK's own window (1) is not scaled; the ACKs' windows after it are.
    connection.receive(
      sequence: SequenceNumber(5000), acknowledgment: SequenceNumber(1001), flags: .syn | .ack, window: 1,
      maximumSegmentSize: 1460, payload: [], now: 1, windowScale: 4)
    #expect(connection.state == .established)
    #expect(sentInto(field: 100, &connection) == 1_600, "100 units of 16 bytes")
  }

  @Test func aShiftOver14IsTakenAs14() {
    var (connection, _) = accepted(scale: 200)
    // 16,384 bytes allowed (the initial congestion window sends about 3 segments of it); a
    // shift of 200 taken as it came would have made the window 0.
    #expect(sentInto(field: 1, &connection) > 2 * 1_460)
  }

  @Test func aConnectionFromACookieDoesNotScale() {
    var connection = TcpConnection(
      cookie: SequenceNumber(1000), peerSequence: SequenceNumber(5000), peerMaximumSegment: 1460)
    connection.receive(
      sequence: SequenceNumber(5001), acknowledgment: SequenceNumber(1001), flags: .ack, window: 65535,
      maximumSegmentSize: nil, payload: [], now: 1)
    connection.outgoing.removeAll()
    #expect(sentInto(field: 10, &connection) == 10)
  }
}
