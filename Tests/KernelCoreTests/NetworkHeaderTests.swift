// NetworkHeaderTests: Ethernet, ARP and IPv4 parsing and emitting on real frames Linux
// sent and received (Captures/linux-veth.txt), and malformed inputs each refused with
// their reason.

import Foundation
import KernelCore
import Testing

@Suite struct NetworkHeaderTests {
  /// The captured frames, in order.
  static let captured: [[UInt8]] = capturedFrames("linux-veth.txt").map(\.bytes)

  let linux = MacAddress(0x42, 0xF4, 0xD3, 0x70, 0x62, 0xA4)  // 10.9.0.1
  let peer = MacAddress(0x3A, 0x03, 0x83, 0xFF, 0x79, 0xA7)  // 10.9.0.2

  @Test func linuxsArpRequestAndReplyParse() throws {
    #expect(Self.captured.count == 8)
    try Self.captured[0].withUnsafeBytes { bytes in
      let frame = try EthernetFrame(bytes)
      #expect(frame.destination == .broadcast && frame.source == linux && frame.type == EtherType.arp)
      let arp = try ArpPacket(frame.payload)
      #expect(arp.operation == ArpPacket.request)
      #expect(arp.senderHardware == linux && arp.senderProtocol == IPv4Address(10, 9, 0, 1))
      #expect(
        arp.targetHardware == MacAddress(0, 0, 0, 0, 0, 0) && arp.targetProtocol == IPv4Address(10, 9, 0, 2))
    }
    try Self.captured[1].withUnsafeBytes { bytes in
      let arp = try ArpPacket(EthernetFrame(bytes).payload)
      #expect(arp.operation == ArpPacket.reply && arp.senderHardware == peer && arp.targetHardware == linux)
    }
  }

  @Test func emittedArpAndEthernetEqualLinuxsBytes() {
    // The reply the peer sent, rebuilt byte for byte.
    var built = [UInt8](repeating: 0, count: 42)
    built.withUnsafeMutableBytes { buffer in
      EthernetFrame.emit(into: buffer, destination: linux, source: peer, type: EtherType.arp)
      ArpPacket.emit(
        into: UnsafeMutableRawBufferPointer(rebasing: buffer[14...]), operation: ArpPacket.reply,
        senderHardware: peer, senderProtocol: IPv4Address(10, 9, 0, 2), targetHardware: linux,
        targetProtocol: IPv4Address(10, 9, 0, 1))
    }
    #expect(built == Self.captured[1])
  }

  @Test func linuxsIpv4PacketsParseWithTheirFragmentsAndPayloads() throws {
    try Self.captured[2].withUnsafeBytes { bytes in
      let ip = try IPv4Packet(EthernetFrame(bytes).payload)
      #expect(ip.protocolNumber == IPv4Packet.udp && ip.totalLength == 47 && ip.headerLength == 20)
      #expect(ip.source == IPv4Address(10, 9, 0, 1) && ip.destination == IPv4Address(10, 9, 0, 2))
      #expect(ip.dontFragment && !ip.isFragment && ip.timeToLive == 64)
      #expect(Array(ip.payload.suffix(19)) == Array("Tessera test vector".utf8))
    }
    // Linux's port unreachable: ICMP type 3 code 3, quoting the datagram's header.
    try Self.captured[3].withUnsafeBytes { bytes in
      let ip = try IPv4Packet(EthernetFrame(bytes).payload)
      #expect(ip.protocolNumber == IPv4Packet.icmp && ip.payload[0] == 3 && ip.payload[1] == 3)
      #expect(InternetChecksum.sum(ip.payload) == 0xFFFF, "ICMP checksum")
    }
    // 3,072 bytes of UDP data in three fragments: offsets 0, 1480, 2960.
    let fragments = try Self.captured[4...6].map { frame in
      try frame.withUnsafeBytes { bytes in
        let ip = try IPv4Packet(EthernetFrame(bytes).payload)
        return (ip.fragmentOffset, ip.moreFragments, ip.payload.count, ip.identification)
      }
    }
    #expect(fragments.map(\.0) == [0, 1480, 2960] && fragments.map(\.1) == [true, true, false])
    #expect(fragments.map(\.2) == [1480, 1480, 120] && Set(fragments.map(\.3)).count == 1)
  }

  @Test func emittedIpv4HeaderEqualsLinuxs() throws {
    let original = try Self.captured[2].withUnsafeBytes { bytes in
      Array(try IPv4Packet(EthernetFrame(bytes).payload).bytes.prefix(20))
    }
    var built = [UInt8](repeating: 0, count: 20)
    built.withUnsafeMutableBytes { buffer in
      IPv4Packet.emit(
        into: buffer, payloadLength: 27, identification: 0x6B89, dontFragment: true,
        protocolNumber: IPv4Packet.udp,
        source: IPv4Address(10, 9, 0, 1), destination: IPv4Address(10, 9, 0, 2))
    }
    #expect(built == original)
  }

  @Test func ethernetPaddingIsNotPartOfTheIpv4Payload() throws {
    var frame = Self.captured[2] + [UInt8](repeating: 0xEE, count: 13)
    try frame.withUnsafeMutableBytes { bytes in
      let ip = try IPv4Packet(EthernetFrame(UnsafeRawBufferPointer(bytes)).payload)
      #expect(ip.payload.count == 27)
    }
  }

  func reason(_ bytes: [UInt8], _ parse: (UnsafeRawBufferPointer) throws(PacketError) -> Void) -> String {
    bytes.withUnsafeBytes { raw in
      do throws(PacketError) {
        try parse(raw)
        return "accepted"
      } catch { return error.reason.description }
    }
  }

  @Test func malformedHeadersAreRefusedWithTheirReasons() {
    let ipv4 = Array(Self.captured[2][14...])
    func changed(_ edit: (inout [UInt8]) -> Void) -> [UInt8] {
      var copy = ipv4
      edit(&copy)
      return copy
    }
    let parseIPv4: (UnsafeRawBufferPointer) throws(PacketError) -> Void = { bytes throws(PacketError) in
      _ = try IPv4Packet(bytes)
    }
    for (bytes, expected) in [
      (Array(ipv4.prefix(19)), "shorter than an IPv4 header"),
      (changed { $0[0] = 0x65 }, "IP version is not 4"),
      (changed { $0[0] = 0x44 }, "IPv4 header length under 20"),
      (Array(changed { $0[0] = 0x4F }.prefix(40)), "IPv4 header longer than the frame"),
      (
        changed {
          $0[2] = 0; $0[3] = 19
        }, "IPv4 total length shorter than its header"
      ),
      (changed { $0[3] = 48 }, "IPv4 total length beyond the frame"),
      (changed { $0[8] = 1 }, "IPv4 header checksum is wrong"),
      (ipv4, "accepted"),
    ] {
      #expect(reason(bytes, parseIPv4) == expected)
    }
    let arp = Array(Self.captured[0][14...])
    let parseArp: (UnsafeRawBufferPointer) throws(PacketError) -> Void = { bytes throws(PacketError) in
      _ = try ArpPacket(bytes)
    }
    func arpChanged(_ index: Int, _ value: UInt8) -> [UInt8] {
      var copy = arp
      copy[index] = value
      return copy
    }
    for (bytes, expected) in [
      (Array(arp.prefix(27)), "shorter than an ARP packet"),
      (arpChanged(1, 6), "ARP hardware type is not Ethernet"),
      (arpChanged(2, 0x86), "ARP protocol type is not IPv4"),
      (arpChanged(5, 16), "ARP address lengths are not 6 and 4"),
      (arpChanged(7, 3), "ARP operation is neither request nor reply"),
      (arp, "accepted"),
    ] {
      #expect(reason(bytes, parseArp) == expected)
    }
    #expect(
      reason(Array(repeating: 0, count: 13)) { bytes throws(PacketError) in _ = try EthernetFrame(bytes) }
        == "shorter than an Ethernet header")
  }

  /// Random bytes and random mutations of real packets: every parse returns or refuses,
  /// and what it accepts stays within the buffer.
  @Test func fuzzedHeadersNeverReachOutsideTheirBytes() {
    var state: UInt64 = 0x1234_5678_9ABC_DEF1
    func next() -> UInt64 {
      state ^= state << 13
      state ^= state >> 7
      state ^= state << 17
      return state
    }
    for round in 0..<20_000 {
      var bytes = Self.captured[Int(next() % 8)]
      if round % 2 == 0 {
        for _ in 0..<(1 + next() % 4) {
          bytes[Int(next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: next())
        }
      } else {
        bytes = (0..<Int(next() % 80)).map { _ in UInt8(truncatingIfNeeded: next()) }
      }
      bytes = Array(bytes.prefix(Int(next() % UInt64(bytes.count + 1))))
      bytes.withUnsafeBytes { raw in
        guard let frame = try? EthernetFrame(raw) else { return }
        if let ip = try? IPv4Packet(frame.payload) {
          #expect(ip.headerLength <= ip.totalLength && ip.totalLength <= frame.payload.count)
          _ = (ip.options.count, ip.payload.count, ip.fragmentOffset, ip.source, ip.destination)
        }
        if let arp = try? ArpPacket(frame.payload) {
          _ = (arp.senderHardware, arp.targetProtocol, arp.operation)
        }
      }
    }
  }

  let here = IPv4Address(10, 9, 0, 1)
  let there = IPv4Address(10, 9, 0, 2)

  @Test func udpChecksumsAreVerifiedAndLinuxsPartialOneIsRefused() throws {
    let ip = Array(Self.captured[2][14...])
    let payload = Array(ip[20...])
    // Linux left the checksum to veth's offload: only the pseudo-header sum is in it.
    #expect(
      reason(payload) { bytes throws(PacketError) in
        _ = try UdpDatagram(bytes, source: here, destination: there)
      } == "UDP checksum is wrong")
    // Rebuilt with the checksum computed, it parses, and everything but the checksum is Linux's.
    var rebuilt = payload
    rebuilt.withUnsafeMutableBytes { buffer in
      UdpDatagram.emit(
        into: buffer, sourcePort: UInt16(payload[0]) << 8 | UInt16(payload[1]), destinationPort: 9,
        payloadLength: payload.count - 8, source: here, destination: there)
    }
    #expect(Array(rebuilt[0..<6]) == Array(payload[0..<6]) && Array(rebuilt[8...]) == Array(payload[8...]))
    try rebuilt.withUnsafeBytes { bytes in
      let udp = try UdpDatagram(bytes, source: here, destination: there)
      #expect(
        udp.destinationPort == 9 && udp.hasChecksum && Array(udp.payload) == Array("Tessera test vector".utf8)
      )
      // The same bytes from another address fail the pseudo-header.
      #expect(throws: PacketError.self) {
        try UdpDatagram(bytes, source: IPv4Address(10, 9, 0, 3), destination: there)
      }
    }
    // No checksum (0) is accepted, as RFC 768 allows.
    var unchecked = rebuilt
    unchecked[6] = 0
    unchecked[7] = 0
    #expect(
      reason(unchecked) { bytes throws(PacketError) in
        _ = try UdpDatagram(bytes, source: here, destination: there)
      } == "accepted")
    for (bytes, expected) in [
      (Array(rebuilt.prefix(7)), "shorter than a UDP header"),
      (
        {
          var b = rebuilt; b[4] = 0; b[5] = 7; return b
        }(), "UDP length under 8"
      ),
      (
        {
          var b = rebuilt; b[5] = 28; return b
        }(), "UDP length beyond the packet"
      ),
    ] {
      #expect(
        reason(bytes) { bytes throws(PacketError) in
          _ = try UdpDatagram(bytes, source: here, destination: there)
        } == expected)
    }
  }

  @Test func linuxsPortUnreachableIsRebuiltByteForByte() throws {
    let linuxIcmp = Array(Self.captured[3][34...])
    let message = try linuxIcmp.withUnsafeBytes { bytes in
      let icmp = try IcmpMessage(bytes)
      return (icmp.type, icmp.code, Array(icmp.body))
    }
    #expect(message.0 == IcmpMessage.destinationUnreachable && message.1 == IcmpMessage.portUnreachable)
    // Linux quoted the whole datagram (47 bytes); quoting the same gives Linux's bytes.
    let offending = Array(Self.captured[2][14...])
    #expect(message.2 == offending)
    var built = [UInt8](repeating: 0, count: 8 + offending.count)
    built.withUnsafeMutableBytes { buffer in
      offending.withUnsafeBytes { quoted in
        IcmpMessage.emitError(
          into: buffer, type: IcmpMessage.destinationUnreachable, code: IcmpMessage.portUnreachable,
          quoting: quoted)
      }
    }
    #expect(built == linuxIcmp)
  }

  @Test func echoRequestsAndRepliesRoundTrip() throws {
    let data = Array("abcdefghijklmnopqrstuvwabcdefghi".utf8)
    var built = [UInt8](repeating: 0, count: 8 + data.count)
    built.withUnsafeMutableBytes { buffer in
      data.withUnsafeBytes {
        IcmpMessage.emitEcho(into: buffer, reply: false, identifier: 0x0200, sequence: 7, data: $0)
      }
    }
    try built.withUnsafeBytes { bytes in
      let echo = try IcmpMessage(bytes)
      #expect(echo.type == IcmpMessage.echoRequest && echo.identifier == 0x0200 && echo.sequence == 7)
      #expect(Array(echo.body) == data)
    }
    built[10] ^= 1
    #expect(
      reason(built) { bytes throws(PacketError) in _ = try IcmpMessage(bytes) } == "ICMP checksum is wrong")
    #expect(
      reason(Array(built.prefix(7))) { bytes throws(PacketError) in _ = try IcmpMessage(bytes) }
        == "shorter than an ICMP header")
  }

  @Test func icmpMessagesRefuseBuffersTooSmall() {
    // From a review: a large echo into a frame-sized buffer once wrote past it.
    var small = [UInt8](repeating: 0, count: 64)
    let data = [UInt8](repeating: 7, count: 1_000)
    let echo = small.withUnsafeMutableBytes { buffer in
      data.withUnsafeBytes {
        IcmpMessage.emitEcho(into: buffer, reply: true, identifier: 1, sequence: 1, data: $0)
      }
    }
    let error = small.withUnsafeMutableBytes { buffer in
      data.withUnsafeBytes {
        IcmpMessage.emitError(into: buffer, type: IcmpMessage.timeExceeded, code: 1, quoting: $0)
      }
    }
    #expect(echo == nil && error == nil && small.allSatisfy { $0 == 0 }, "nothing written")
  }
}

@Suite struct InternetChecksumWordSumTests {
  /// RFC 1071's definition, two bytes at a time (what `sum` did before it summed words).
  func reference(_ bytes: [UInt8], initial: UInt32) -> UInt16 {
    var total = UInt64(initial)
    var index = 0
    while index + 1 < bytes.count {
      total += UInt64(bytes[index]) << 8 | UInt64(bytes[index + 1])
      index += 2
    }
    if index < bytes.count { total += UInt64(bytes[index]) << 8 }
    while total > 0xFFFF { total = (total & 0xFFFF) + (total >> 16) }
    return UInt16(total)
  }

  @Test func theWordSumEqualsTheDefinitionAtEveryLengthAndAlignment() {
    var state: UInt64 = 0x1234_5678
    func next() -> UInt64 {
      state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
      return state >> 33
    }
    for length in 0..<300 {
      for offset in 0..<4 {
        let buffer = (0..<(length + offset)).map { _ in UInt8(truncatingIfNeeded: next()) }
        let initial = UInt32(truncatingIfNeeded: next()) & (length % 3 == 0 ? 0 : 0x3FFFF)
        let bytes = Array(buffer[offset...])
        let fast = buffer.withUnsafeBytes {
          InternetChecksum.sum(UnsafeRawBufferPointer(rebasing: $0[offset...]), initial: initial)
        }
        #expect(fast == reference(bytes, initial: initial), "length \(length), offset \(offset)")
      }
    }
    // All ones and all zeros, the ends of ones' complement arithmetic.
    for bytes in [[UInt8](repeating: 0xFF, count: 1500), [UInt8](repeating: 0, count: 1500)] {
      #expect(bytes.withUnsafeBytes { InternetChecksum.sum($0) } == reference(bytes, initial: 0))
    }
  }
}
