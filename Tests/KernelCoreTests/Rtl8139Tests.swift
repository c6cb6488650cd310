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
}
