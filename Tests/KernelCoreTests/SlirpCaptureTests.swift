// SlirpCaptureTests: DHCP, ARP and ICMP against frames QEMU's user-mode network (slirp)
// built (Captures/slirp.txt): its checksums verify here, its offer and ack decode to the
// lease slirp gives (10.0.2.15/24, gateway 10.0.2.2, DNS 10.0.2.3, a day), and the
// discover and request this code emits are the very bytes slirp answered.

import Foundation
import KernelCore
import Testing

@Suite struct SlirpCaptureTests {
  /// The captured frames with their direction (0: slirp built it).
  static let captured: [(fromSlirp: Bool, bytes: [UInt8])] = capturedFrames("slirp.txt").map {
    ($0.direction == "0", $0.bytes)
  }

  let client = MacAddress(0x02, 0, 0, 0, 0, 0x42)
  let transaction: UInt32 = 0x5445_5353

  /// The UDP payload of frame `index`, checked on the way (IPv4 header and UDP checksum).
  func dhcpPayload(_ index: Int) throws -> [UInt8] {
    try Self.captured[index].bytes.withUnsafeBytes { bytes in
      let ip = try IPv4Packet(EthernetFrame(bytes).payload)
      let udp = try UdpDatagram(ip.payload, source: ip.source, destination: ip.destination)
      #expect(udp.hasChecksum, "every captured datagram carries a checksum, and it verified")
      return Array(udp.payload)
    }
  }

  @Test func slirpsOfferAndAckDecodeToItsLease() throws {
    #expect(
      Self.captured.map(\.fromSlirp) == [false, true, false, true, false, true, false, true, false, true])
    for (index, type) in [(1, DhcpMessage.MessageType.offer), (3, DhcpMessage.MessageType.acknowledge)] {
      let payload = try dhcpPayload(index)
      try payload.withUnsafeBytes { bytes in
        let message = try DhcpMessage(bytes)
        #expect(message.messageType == type)
        #expect(message.transaction == transaction && message.clientHardware == client)
        #expect(message.yourAddress == IPv4Address(10, 0, 2, 15))
        #expect(message.serverIdentifier == IPv4Address(10, 0, 2, 2))
        #expect(message.subnetMask == IPv4Address(255, 255, 255, 0))
        #expect(message.router == IPv4Address(10, 0, 2, 2) && message.dnsServer == IPv4Address(10, 0, 2, 3))
        #expect(message.leaseTime == 86_400 && message.renewalTime == nil)
      }
    }
  }

  @Test func theDiscoverAndRequestEmittedHereAreWhatSlirpAnswered() throws {
    let discover = try dhcpPayload(0)
    var built = [UInt8](repeating: 0, count: DhcpMessage.maximumEmitted)
    let length = built.withUnsafeMutableBytes { buffer in
      DhcpMessage.emit(
        into: buffer, type: DhcpMessage.MessageType.discover, transaction: transaction, hardware: client)
    }
    #expect(Array(built.prefix(length)) == discover)
    let request = try dhcpPayload(2)
    built = [UInt8](repeating: 0, count: DhcpMessage.maximumEmitted)
    let requestLength = built.withUnsafeMutableBytes { buffer in
      DhcpMessage.emit(
        into: buffer, type: DhcpMessage.MessageType.request, transaction: transaction, hardware: client,
        requested: IPv4Address(10, 0, 2, 15), server: IPv4Address(10, 0, 2, 2))
    }
    #expect(Array(built.prefix(requestLength)) == request)
  }

  @Test func slirpsArpAndEchoRepliesParseAndVerify() throws {
    try Self.captured[5].bytes.withUnsafeBytes { bytes in
      let frame = try EthernetFrame(bytes)
      #expect(
        frame.type == EtherType.arp && frame.payload.count == 50, "slirp pads to 64 with the CRC's room")
      let arp = try ArpPacket(frame.payload)
      #expect(arp.operation == ArpPacket.reply && arp.senderProtocol == IPv4Address(10, 0, 2, 2))
      #expect(
        arp.senderHardware == MacAddress(0x52, 0x55, 0x0A, 0x00, 0x02, 0x02) && arp.targetHardware == client)
    }
    try Self.captured[7].bytes.withUnsafeBytes { bytes in
      let ip = try IPv4Packet(EthernetFrame(bytes).payload)
      let echo = try IcmpMessage(ip.payload)
      #expect(echo.type == IcmpMessage.echoReply && echo.identifier == 0x1234 && echo.sequence == 1)
      #expect(Array(echo.body) == Array("tessera ping data".utf8))
    }
  }

  @Test func malformedDhcpMessagesAreRefusedWithTheirReasons() throws {
    let offer = try dhcpPayload(1)
    func reason(_ bytes: [UInt8]) -> String {
      bytes.withUnsafeBytes { raw in
        do throws(PacketError) {
          _ = try DhcpMessage(raw)
          return "accepted"
        } catch { return error.reason.description }
      }
    }
    func changed(_ index: Int, _ value: UInt8) -> [UInt8] {
      var copy = offer
      copy[index] = value
      return copy
    }
    #expect(reason(offer) == "accepted")
    #expect(reason(Array(offer.prefix(242))) == "shorter than a DHCP message")
    #expect(reason(changed(0, 1)) == "DHCP message is not a reply")
    #expect(reason(changed(1, 6)) == "DHCP hardware is not Ethernet")
    #expect(reason(changed(236, 0)) == "DHCP magic cookie is missing")
    // The first option (53, length 1) claiming 255 bytes runs past the end.
    #expect(reason(Array(changed(241, 255).prefix(300))) == "DHCP option runs past the message")
    // Without option 53: it becomes a pad-free unknown option 52.
    #expect(reason(changed(240, 52)) == "DHCP message type is missing")
  }
}
