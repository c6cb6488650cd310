// DhcpClientTests: the client's state machine against slirp's real offer and ack
// (Captures/slirp.txt), then renewing, rebinding, expiry, NAK and back-off on a
// simulated clock.

import KernelCore
import Testing

@Suite struct DhcpClientTests {
  let client = MacAddress(0x02, 0, 0, 0, 0, 0x42)
  let capture = SlirpCaptureTests()

  /// The message and destination of a send action (nil if it is not one).
  func sent(_ action: DhcpClient.Action?) -> (message: [UInt8], to: IPv4Address?)? {
    if case .send(let message, let to) = action { return (message, to) }
    return nil
  }

  func received(_ payload: [UInt8], by dhcp: inout DhcpClient, now: UInt64) throws -> [DhcpClient.Action] {
    try payload.withUnsafeBytes { bytes in dhcp.receive(try DhcpMessage(bytes), now: now) }
  }

  /// `payload` (a server reply) with its transaction set to `transaction` and its type to `type`.
  func reply(_ payload: [UInt8], transaction: UInt32, type: UInt8? = nil) -> [UInt8] {
    var copy = payload
    for index in 0..<4 {
      copy[4 + index] = UInt8(truncatingIfNeeded: transaction >> (24 - 8 * UInt32(index)))
    }
    if let type { copy[242] = type }  // option 53 is slirp's first: code, length, value
    return copy
  }

  /// A client bound to slirp's lease at time 0.
  func bound() throws -> DhcpClient {
    var dhcp = DhcpClient(hardware: client, transaction: 0x5445_5353)
    _ = dhcp.start(now: 0)
    _ = try received(capture.dhcpPayload(1), by: &dhcp, now: 10)
    _ = try received(capture.dhcpPayload(3), by: &dhcp, now: 0)
    _ = dhcp.probed(inUse: false, now: 0)
    return dhcp
  }

  @Test func aLeaseFromSlirpsOfferAndAckWithTheBytesSlirpAnswered() throws {
    var dhcp = DhcpClient(hardware: client, transaction: 0x5445_5353)
    let discover = dhcp.start(now: 0)
    let slirpsDiscover = try capture.dhcpPayload(0)
    let slirpsRequest = try capture.dhcpPayload(2)
    #expect(dhcp.state == .selecting && sent(discover.first)?.message == slirpsDiscover)
    let request = try received(capture.dhcpPayload(1), by: &dhcp, now: 10)
    #expect(dhcp.state == .requesting && sent(request.first)?.message == slirpsRequest)
    let acknowledged = try received(capture.dhcpPayload(3), by: &dhcp, now: 20)
    guard case .probe(let probed) = acknowledged.first, dhcp.state == .checking else {
      Issue.record("a new address is not probed first: \(acknowledged)")
      return
    }
    let bound = dhcp.probed(inUse: false, now: 21)
    guard case .configure(let lease) = bound.first, lease == probed else {
      Issue.record("no lease: \(bound)")
      return
    }
    #expect(dhcp.state == .bound)
    #expect(lease.address == IPv4Address(10, 0, 2, 15) && lease.mask == IPv4Address(255, 255, 255, 0))
    #expect(lease.router == IPv4Address(10, 0, 2, 2) && lease.dnsServer == IPv4Address(10, 0, 2, 3))
    #expect(lease.server == IPv4Address(10, 0, 2, 2) && lease.seconds == 86_400)
  }

  @Test func renewsAtT1WithItsServerRebindsAtT2AndLetsGoAtTheEnd() throws {
    var dhcp = try bound()
    #expect(dhcp.tick(now: 43_199_999).isEmpty)
    let renew = dhcp.tick(now: 43_200_000)  // half of 86,400 s
    #expect(dhcp.state == .renewing && sent(renew.first)?.to == IPv4Address(10, 0, 2, 2))
    let renewal = try #require(sent(renew.first)?.message)
    #expect(Array(renewal[12..<16]) == [10, 0, 2, 15], "ciaddr: the address being renewed")
    // Again after half the time left to T2 (RFC 2131 4.4.5; it once asked every few seconds).
    #expect(dhcp.tick(now: 59_399_999).isEmpty && sent(dhcp.tick(now: 59_400_000).first) != nil, "retried")
    let rebind = dhcp.tick(now: 75_600_000)  // seven eighths
    #expect(
      dhcp.state == .rebinding && sent(rebind.first) != nil && sent(rebind.first)?.to == nil, "broadcast")
    let end = dhcp.tick(now: 86_400_000)
    guard case .unconfigure = end.first else {
      Issue.record("the address was not dropped: \(end)")
      return
    }
    #expect(dhcp.state == .selecting && dhcp.lease == nil && sent(end.last) != nil, "starts over")
  }

  @Test func anAckWhileRenewingExtendsTheLease() throws {
    var dhcp = try bound()
    _ = dhcp.tick(now: 43_200_000)
    // slirp's ack, for the renewal's transaction (the first one's successor).
    let ack = reply(try capture.dhcpPayload(3), transaction: 0x5445_5354)
    let actions = try received(ack, by: &dhcp, now: 43_200_500)
    #expect(dhcp.state == .bound && actions.isEmpty, "same lease: nothing to reconfigure")
    #expect(dhcp.tick(now: 86_400_000).isEmpty, "the old end is gone")
    #expect(sent(dhcp.tick(now: 43_200_500 + 43_200_000).first) != nil, "renews again half a lease later")
  }

  @Test func aNakStartsOverAndForeignRepliesAreIgnored() throws {
    var dhcp = DhcpClient(hardware: client, transaction: 0x5445_5353)
    _ = dhcp.start(now: 0)
    // Another transaction's offer: ignored.
    let foreign = try received(reply(capture.dhcpPayload(1), transaction: 1), by: &dhcp, now: 5)
    #expect(foreign.isEmpty)
    _ = try received(capture.dhcpPayload(1), by: &dhcp, now: 10)
    let nak = reply(
      try capture.dhcpPayload(3), transaction: 0x5445_5353, type: DhcpMessage.MessageType.negativeAcknowledge)
    let actions = try received(nak, by: &dhcp, now: 20)
    #expect(dhcp.state == .selecting && sent(actions.first) != nil)
  }

  @Test func discoversBackOffAndUnansweredRequestsStartOver() throws {
    var dhcp = DhcpClient(hardware: client, transaction: 9)
    _ = dhcp.start(now: 0)
    var times: [UInt64] = []
    var now: UInt64 = 0
    while times.count < 6 {
      now += 500
      if sent(dhcp.tick(now: now).first) != nil { times.append(now) }
    }
    #expect(times == [4_000, 12_000, 28_000, 60_000, 124_000, 188_000], "4, 8, 16, 32, 64, 64 s")
    // An offer, then requests nobody answers: after four, a discover again.
    var requesting = DhcpClient(hardware: client, transaction: 0x5445_5353)
    _ = requesting.start(now: 0)
    _ = try received(capture.dhcpPayload(1), by: &requesting, now: 0)
    now = 0
    while requesting.state == .requesting && now < 1_000_000 {
      now += 1_000
      _ = requesting.tick(now: now)
    }
    #expect(requesting.state == .selecting && now == 60_000)
  }

  /// RFC 2131 4.4.1: an address another host answers for is declined, not used, and the
  /// client starts over after 10 s.
  @Test func anAddressInUseIsDeclinedAndTheClientStartsOver() throws {
    var dhcp = DhcpClient(hardware: client, transaction: 0x5445_5353)
    _ = dhcp.start(now: 0)
    _ = try received(capture.dhcpPayload(1), by: &dhcp, now: 10)
    _ = try received(capture.dhcpPayload(3), by: &dhcp, now: 20)
    let actions = dhcp.probed(inUse: true, now: 1_000)
    #expect(dhcp.state == .declined && dhcp.lease == nil && actions.count == 1)
    guard let decline = sent(actions.first) else {
      Issue.record("no decline sent: \(actions)")
      return
    }
    #expect(decline.message[0] == 1 && decline.to == nil, "a client's message, broadcast")
    // A decline (option 53 = 4) names the address (option 50) and the server (option 54).
    let options = Array(decline.message[240...])
    #expect(options.starts(with: [53, 1, 4, 50, 4, 10, 0, 2, 15, 54, 4, 10, 0, 2, 2]))
    #expect(dhcp.tick(now: 10_999).isEmpty, "not before 10 s")
    let again = dhcp.tick(now: 11_000)
    #expect(dhcp.state == .selecting && sent(again.first) != nil)
  }
}
