// Rtl8139Tests: the receive ring's bookkeeping on literal ring bytes as the card writes
// them (header, length with CRC, 4-byte alignment, CAPR off by 16, the end of the ring
// with WRAP), refused headers, and the transmit descriptors' round robin and completion.

import KernelCore
import Testing

@Suite struct Rtl8139Tests {
  /// A ring buffer with packets written at `offsets` as the card writes them: status,
  /// length (frame + CRC), then frame bytes (their index) and CRC.
  func ring(_ packets: [(offset: Int, status: UInt16, length: Int)]) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: Rtl8139ReceiveRing.size + Rtl8139ReceiveRing.wrapSlack)
    for packet in packets {
      bytes[packet.offset] = UInt8(truncatingIfNeeded: packet.status)
      bytes[packet.offset + 1] = UInt8(truncatingIfNeeded: packet.status >> 8)
      bytes[packet.offset + 2] = UInt8(truncatingIfNeeded: packet.length)
      bytes[packet.offset + 3] = UInt8(truncatingIfNeeded: packet.length >> 8)
      for index in 0..<packet.length where packet.offset + 4 + index < bytes.count {
        bytes[packet.offset + 4 + index] = UInt8(truncatingIfNeeded: index)
      }
    }
    return bytes
  }

  func word(_ bytes: [UInt8]) -> (Int) -> UInt16 {
    { offset in UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8 }
  }

  @Test func packetsAreReadInOrderAndCaprTrailsBy16() {
    // A minimal frame (60 + CRC) at 0, a full one (1514 + CRC) at 68.
    let bytes = ring([(0, 0x0001, 64), (68, 0x0001, 1518)])
    var receive = Rtl8139ReceiveRing()
    #expect(receive.next(read16: word(bytes)) == .frame(offset: 4, length: 60))
    #expect(receive.advance(pastLength: 64) == 52, "(0 + 4 + 64 + 3) & ~3 = 68, less 16")
    #expect(receive.readOffset == 68)
    #expect(receive.next(read16: word(bytes)) == .frame(offset: 72, length: 1514))
    #expect(receive.advance(pastLength: 1518) == 1576 && receive.readOffset == 1592)
  }

  @Test func aPacketAtTheEndRunsPastItAndTheOffsetWraps() {
    // With WRAP set the card writes a packet at 8100 past the ring's end (the slack).
    let bytes = ring([(8100, 0x0001, 1000)])
    var receive = Rtl8139ReceiveRing()
    _ = receive.advance(pastLength: 8100 - 4)  // to 8100
    #expect(receive.readOffset == 8100)
    #expect(receive.next(read16: word(bytes)) == .frame(offset: 8104, length: 996))
    #expect(bytes[8104 + 995] == UInt8(truncatingIfNeeded: 995), "the frame is whole in the slack")
    #expect(receive.advance(pastLength: 1000) == 896 && receive.readOffset == 912, "9104 - 8192")
  }

  @Test func headersThatCannotBeGoodPacketsAreRefused() {
    var receive = Rtl8139ReceiveRing()
    #expect(receive.next(read16: word(ring([(0, 0x0000, 64)]))) == .bad(status: 0, length: 64))
    #expect(receive.next(read16: word(ring([(0, 0x0001, 5000)]))) == .bad(status: 1, length: 5000))
    #expect(receive.next(read16: word(ring([(0, 0x0001, 10)]))) == .bad(status: 1, length: 10))
    receive.reset()
    #expect(receive.readOffset == 0)
  }

  @Test func transmitDescriptorsGoRoundRobinAndComeBackWhenTheCardIsDone() {
    var transmit = Rtl8139TransmitRing()
    // Short frames are padded to 60 in the size field; too long ones are refused.
    #expect(transmit.take(length: 42)! == (0, 60))
    #expect(transmit.take(length: 1514)! == (1, 1514))
    #expect(transmit.take(length: 1793) == nil)
    #expect(transmit.take(length: 100)! == (2, 100))
    #expect(transmit.take(length: 100)! == (3, 100))
    #expect(transmit.take(length: 100) == nil && !transmit.hasRoom, "all four busy")
    #expect(transmit.oldest == 0)
    #expect(transmit.complete(status: 60) == (false, false), "OWN clear: the card still has it")
    #expect(
      transmit.complete(status: Rtl8139TransmitRing.own | Rtl8139TransmitRing.transmitOK | 60) == (
        true, false
      ))
    #expect(transmit.oldest == 1)
    #expect(transmit.complete(status: Rtl8139TransmitRing.own | Rtl8139TransmitRing.aborted) == (true, true))
    // The next frame takes descriptor 0 again: strictly in order.
    #expect(transmit.take(length: 60)! == (0, 60))
  }

  @Test func cPlusReceiveDescriptorsGoBackToTheCardInOrderAndWrapAtTheEndOfTheRing() {
    // Given to the card: owned, the buffer size, end of ring on the last only.
    #expect(Rtl8139ReceiveDescriptors.ready(0) == 0x8000_05F8)
    #expect(Rtl8139ReceiveDescriptors.ready(63) == 0xC000_05F8)
    var ring = Rtl8139ReceiveDescriptors()
    #expect(ring.take(first: 0x8000_05F8) == nil, "still the card's")
    #expect(ring.next == 0)
    // As QEMU leaves a 60-byte frame: ownership cleared, first and last segment, physical
    // match (bit 25), length 64 with the CRC.
    #expect(ring.take(first: 0x3200_0040) == .frame(index: 0, length: 60))
    #expect(ring.take(first: 0x3200_05EE) == .frame(index: 1, length: 1514))
    // A frame split over two descriptors, a CRC error, a runt, impossible lengths: refused.
    #expect(ring.take(first: 0x2200_0100) == .bad(index: 2, status: 0x2200_0100))
    #expect(ring.take(first: 0x3204_0100) == .bad(index: 3, status: 0x3204_0100))
    #expect(ring.take(first: 0x3208_0100) == .bad(index: 4, status: 0x3208_0100))
    #expect(ring.take(first: 0x3200_003F) == .bad(index: 5, status: 0x3200_003F))
    #expect(ring.take(first: 0x3200_05F9) == .bad(index: 6, status: 0x3200_05F9))
    for _ in 7..<63 { _ = ring.take(first: 0x3200_0040) }
    #expect(ring.take(first: 0x7200_0040) == .frame(index: 63, length: 60), "the last one, end of ring")
    #expect(ring.next == 0)
    _ = ring.take(first: 0x3200_0040)
    ring.reset()
    #expect(ring.next == 0)
  }

  @Test func cPlusTransmitDescriptorsCarryLengthSegmentsAndChecksumRequests() {
    var ring = Rtl8139TransmitDescriptors()
    #expect(ring.take(length: 59, checksums: false) == nil, "padded before")
    #expect(ring.take(length: 1537, checksums: false) == nil)
    #expect(ring.take(length: 60, checksums: false)! == (0, 0xB000_003C))
    #expect(ring.take(length: 1514, checksums: true)! == (1, 0xB007_05EA))
    for index in 2..<15 { #expect(ring.take(length: 100, checksums: false)!.index == index) }
    #expect(ring.take(length: 100, checksums: false)! == (15, 0xF000_0064), "end of ring on the last")
    #expect(!ring.hasRoom && ring.take(length: 100, checksums: false) == nil)
    #expect(ring.oldest == 0)
    #expect(ring.complete(first: 0xB000_003C) == (false, false), "the card still owns it")
    #expect(ring.complete(first: 0x3000_003C) == (true, false))
    #expect(ring.complete(first: 0x3080_05EA) == (true, true), "error summary")
    #expect(ring.oldest == 2 && ring.hasRoom)
    #expect(ring.take(length: 60, checksums: false)!.index == 0, "round the ring")
  }

  @Test func multicastAddressesHashToTheBitsZlibsCrcGives() {
    // Literals from the bit-reversed, uninverted zlib CRC-32 (Python), not this code.
    for (address, bit) in [
      ([0x01, 0x00, 0x5E, 0x00, 0x00, 0x01], 31), ([0x01, 0x00, 0x5E, 0x00, 0x00, 0xFB], 15),
      ([0x33, 0x33, 0x00, 0x00, 0x00, 0x01], 62), ([0x01, 0x80, 0xC2, 0x00, 0x00, 0x00], 25),
      ([0x01, 0x00, 0x5E, 0x7F, 0xFF, 0xFF], 23),
    ] as [([UInt8], Int)] {
      #expect(address.withUnsafeBytes { Rtl8139MulticastFilter.bit(for: $0) } == bit, "\(address)")
    }
    let two: [UInt8] = [0x01, 0x00, 0x5E, 0x00, 0x00, 0x01, 0x33, 0x33, 0x00, 0x00, 0x00, 0x01]
    let filter = two.withUnsafeBytes { Rtl8139MulticastFilter.bytes(for: $0) }
    #expect((0..<8).map { filter[$0] } == [0, 0, 0, 0x80, 0, 0, 0, 0x40])
  }
}

@Suite struct InternetChecksumTests {
  /// An Ethernet frame around `packet` (IPv4).
  func frame(_ packet: [UInt8]) -> [UInt8] {
    [0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00] + packet
  }

  /// Whether the ones'-complement sum over `bytes` (plus `initial`) is 0xFFFF, as a receiver checks.
  func verifies(_ bytes: ArraySlice<UInt8>, initial: UInt32 = 0) -> Bool {
    var total = UInt64(initial)
    var index = bytes.startIndex
    while index < bytes.endIndex {
      let high = UInt64(bytes[index])
      let low = index + 1 < bytes.endIndex ? UInt64(bytes[index + 1]) : 0
      total += high << 8 | low
      index += 2
    }
    while total > 0xFFFF { total = (total & 0xFFFF) + (total >> 16) }
    return total == 0xFFFF
  }

  @Test func theIpv4HeaderChecksumMatchesAPublishedExample() {
    // The header of Wikipedia's "IPv4 header checksum" example: checksum 0xB861.
    var bytes = frame(
      [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xC0, 0xA8, 0x00, 0x01, 0xC0,
        0xA8, 0x00, 0xC7,
      ]
        + [UInt8](repeating: 0, count: 0x73 - 20))
    // (The UDP checksum is filled in too; only the header's is published.)
    #expect(bytes.withUnsafeMutableBytes { InternetChecksum.fill(frame: $0) })
    #expect(bytes[24] == 0xB8 && bytes[25] == 0x61)
  }

  @Test func udpAndTcpChecksumsVerifyOverThePseudoHeader() {
    for (protocolNumber, checksumOffset) in [(UInt8(17), 6), (UInt8(6), 16)] {
      var payload =
        [UInt8](repeating: 0, count: protocolNumber == 17 ? 8 : 20) + Array("checksum me, please".utf8)
      if protocolNumber == 17 { payload[5] = UInt8(payload.count) }
      let total = 20 + payload.count
      var bytes = frame(
        [
          0x45, 0, 0, UInt8(total), 0x12, 0x34, 0x40, 0, 64, protocolNumber, 0xAA, 0xAA, 10, 0, 2, 15, 10, 0,
          2, 2,
        ]
          + payload + [0xEE, 0xEE])  // Ethernet padding after the packet stays out
      #expect(bytes.withUnsafeMutableBytes { InternetChecksum.fill(frame: $0) })
      #expect(verifies(bytes[14..<34]))
      let pseudo = UInt32(0x0A00 + 0x020F + 0x0A00 + 0x0202) + UInt32(protocolNumber) + UInt32(payload.count)
      #expect(verifies(bytes[34..<(34 + payload.count)], initial: pseudo), "protocol \(protocolNumber)")
      #expect(bytes[34 + checksumOffset] != 0 || bytes[35 + checksumOffset] != 0)
      #expect(bytes.suffix(2) == [0xEE, 0xEE])
    }
  }

  @Test func fragmentsAndOtherFramesAreLeftAlone() {
    // A fragment (more fragments set): the IP checksum only.
    var fragment = frame(
      [0x45, 0, 0, 28, 0, 1, 0x20, 0, 64, 17, 0, 0, 10, 0, 2, 15, 10, 0, 2, 2, 0, 1, 0, 2, 0, 8, 0x77, 0x77])
    #expect(fragment.withUnsafeMutableBytes { InternetChecksum.fill(frame: $0) })
    #expect(fragment.suffix(2) == [0x77, 0x77])
    // ARP, IPv6, a truncated header, a total length beyond the frame: untouched.
    for original in [
      [0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x06] + [UInt8](repeating: 0x11, count: 28),
      [0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x86, 0xDD] + [UInt8](repeating: 0x60, count: 40),
      frame([0x46, 0, 0, 20] + [UInt8](repeating: 0, count: 16)),
      frame([0x45, 0, 0x05, 0xDC] + [UInt8](repeating: 0, count: 40)),
    ] {
      var bytes = original
      #expect(!bytes.withUnsafeMutableBytes { InternetChecksum.fill(frame: $0) })
      #expect(bytes == original)
    }
  }
}
