// ReassemblyTests: IPv4 reassembly on the three fragments Linux sent for a 3,072-byte UDP
// datagram (Captures/linux-veth.txt): in order, reversed, duplicated; overlaps refused;
// incomplete datagrams expired; limits on datagrams and memory; fuzzed fragments.

import KernelCore
import Testing

@Suite struct ReassemblyTests {
  /// Linux's fragments, as IPv4 packets (without the Ethernet header).
  let fragments = NetworkHeaderTests.captured[4...6].map { Array($0[14...]) }
  /// What the datagram carried: the UDP header, then bytes 0...255 twelve times.
  var expectedTail: [UInt8] { Array((0..<12).flatMap { _ in (0...255).map { UInt8($0) } }) }

  /// Adds `packet` (IPv4 bytes) at `now`.
  func add(_ packet: [UInt8], to reassembly: inout IPv4Reassembly, now: UInt64 = 0) -> IPv4Reassembly.Outcome
  {
    packet.withUnsafeBytes { bytes in reassembly.add(try! IPv4Packet(bytes), now: now) }
  }

  func isIncomplete(_ outcome: IPv4Reassembly.Outcome) -> Bool {
    if case .incomplete = outcome { return true }
    return false
  }

  func reason(_ outcome: IPv4Reassembly.Outcome) -> String {
    if case .refused(let reason) = outcome { return reason.description }
    return "not refused"
  }

  /// `packet` with its fragment field set to `offset` bytes (and "more fragments" if
  /// `more`), its identification to `identification` if given, and its checksum redone.
  func refragment(_ packet: [UInt8], offset: Int, more: Bool, identification: UInt16? = nil) -> [UInt8] {
    var copy = packet
    let word = (more ? 0x2000 : 0) | (offset / 8)
    copy[6] = UInt8(word >> 8)
    copy[7] = UInt8(word & 0xFF)
    if let identification {
      copy[4] = UInt8(identification >> 8)
      copy[5] = UInt8(identification & 0xFF)
    }
    copy[10] = 0
    copy[11] = 0
    let sum = ~copy.withUnsafeBytes { InternetChecksum.sum(UnsafeRawBufferPointer(rebasing: $0[0..<20])) }
    copy[10] = UInt8(sum >> 8)
    copy[11] = UInt8(sum & 0xFF)
    return copy
  }

  @Test func linuxsFragmentsReassembleInAnyOrder() {
    for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0], [0, 0, 2, 2, 1]] {
      var reassembly = IPv4Reassembly()
      var result: IPv4Reassembly.Reassembled?
      for (step, index) in order.enumerated() {
        let outcome = add(fragments[index], to: &reassembly)
        if case .complete(let datagram) = outcome {
          result = datagram
          #expect(step == order.count - 1, "complete too early in \(order)")
        } else {
          #expect(isIncomplete(outcome), "\(order): \(reason(outcome))")
        }
      }
      guard let datagram = result else {
        Issue.record("never complete in order \(order)")
        continue
      }
      #expect(datagram.payload.count == 8 + 3072 && Array(datagram.payload[8...]) == expectedTail, "\(order)")
      #expect(datagram.protocolNumber == IPv4Packet.udp && datagram.source == IPv4Address(10, 9, 0, 1))
      #expect(datagram.header.count == 20 && reassembly.inProgress == 0 && reassembly.bytesHeld == 0)
    }
  }

  @Test func overlappingFragmentsDropTheDatagram() {
    var reassembly = IPv4Reassembly()
    #expect(isIncomplete(add(fragments[0], to: &reassembly)))
    // The second fragment moved 8 bytes back: it overlaps the first.
    let overlapping = refragment(fragments[1], offset: 1472, more: true)
    #expect(reason(add(overlapping, to: &reassembly)) == "overlapping fragments")
    #expect(reassembly.inProgress == 0 && reassembly.bytesHeld == 0)
    // What comes after starts a new datagram, which never completes with a hole in it.
    #expect(isIncomplete(add(fragments[2], to: &reassembly)))
    #expect(isIncomplete(add(fragments[1], to: &reassembly)))
  }

  @Test func malformedFragmentsAreRefused() {
    var reassembly = IPv4Reassembly()
    // A middle fragment whose length is not a multiple of 8.
    var odd = Array(fragments[1].prefix(20 + 1001))
    odd[2] = UInt8((20 + 1001) >> 8)
    odd[3] = UInt8((20 + 1001) & 0xFF)
    #expect(
      reason(add(refragment(odd, offset: 1480, more: true), to: &reassembly))
        == "fragment length not a multiple of 8")
    // Past 65,535 bytes.
    #expect(
      reason(add(refragment(fragments[2], offset: 65_528, more: false), to: &reassembly))
        == "fragment past 65,535 bytes")
    // Two last fragments that disagree, and data past the last one.
    #expect(isIncomplete(add(fragments[2], to: &reassembly)))
    #expect(
      reason(add(refragment(fragments[2], offset: 4000, more: false), to: &reassembly))
        == "two last fragments disagree")
    #expect(isIncomplete(add(fragments[2], to: &reassembly)))
    #expect(
      reason(add(refragment(fragments[1], offset: 4000, more: true), to: &reassembly))
        == "data past the last fragment")
  }

  @Test func incompleteDatagramsExpireAndSayWhetherTheFirstFragmentCame() {
    var reassembly = IPv4Reassembly()
    _ = add(fragments[0], to: &reassembly, now: 1_000)
    _ = add(
      refragment(fragments[2], offset: 2960, more: false, identification: 7), to: &reassembly, now: 20_000)
    #expect(reassembly.inProgress == 2)
    #expect(reassembly.expire(now: 31_000).isEmpty, "none is 30 s old at 30 s")
    let expired = reassembly.expire(now: 31_001)
    #expect(expired.count == 1 && expired[0].header.count == 20 && expired[0].data.count == 1480)
    let later = reassembly.expire(now: 50_001)
    #expect(later.count == 1 && later[0].header.isEmpty, "the first fragment never came")
    #expect(reassembly.inProgress == 0 && reassembly.bytesHeld == 0)
  }

  @Test func datagramsAndMemoryAreBoundedByEvictingTheOldest() {
    var reassembly = IPv4Reassembly()
    for identification in 0..<UInt16(IPv4Reassembly.maximumDatagrams) {
      #expect(
        isIncomplete(
          add(
            refragment(fragments[0], offset: 0, more: true, identification: identification), to: &reassembly,
            now: UInt64(identification)))
      )
    }
    // A ninth datagram evicts the oldest (identification 0) instead of being refused.
    #expect(
      isIncomplete(add(refragment(fragments[0], offset: 0, more: true, identification: 99), to: &reassembly)))
    #expect(reassembly.inProgress == IPv4Reassembly.maximumDatagrams && reassembly.evicted == 1)
    // Memory: 8 datagrams of fragments of 1,480 bytes fill 64 KiB before they are whole.
    var full = IPv4Reassembly()
    for index in 0..<60 {
      _ = add(
        refragment(
          fragments[1], offset: 1480 * (1 + index / 8), more: true, identification: UInt16(index % 8)),
        to: &full, now: UInt64(index))
      #expect(full.bytesHeld <= IPv4Reassembly.maximumBytes)
    }
    #expect(full.evicted > 0)
  }

  @Test func fuzzedFragmentsStayWithinTheLimits() {
    var state: UInt64 = 0xDEAD_BEEF_1234_5678
    func next() -> UInt64 {
      state ^= state << 13
      state ^= state >> 7
      state ^= state << 17
      return state
    }
    var reassembly = IPv4Reassembly()
    for round in 0..<20_000 {
      let source = fragments[Int(next() % 3)]
      let length = 20 + 8 * Int(next() % 185)
      var packet = Array(source.prefix(min(length, source.count)))
      packet[2] = UInt8(packet.count >> 8)
      packet[3] = UInt8(packet.count & 0xFF)
      packet = refragment(
        packet, offset: 8 * Int(next() % 1000), more: next() % 4 != 0, identification: UInt16(next() % 12))
      _ = add(packet, to: &reassembly, now: UInt64(round) * 10)
      #expect(reassembly.bytesHeld <= IPv4Reassembly.maximumBytes)
      #expect(reassembly.inProgress <= IPv4Reassembly.maximumDatagrams)
      if round % 1000 == 0 { _ = reassembly.expire(now: UInt64(round) * 10) }
    }
  }

  /// A fragment of `length` bytes at `offset` (made from Linux's second fragment's header).
  func fragment(offset: Int, length: Int, more: Bool, identification: UInt16 = 1) -> [UInt8] {
    var packet = Array(fragments[1].prefix(20)) + [UInt8](repeating: 0xAB, count: length)
    packet[2] = UInt8(packet.count >> 8)
    packet[3] = UInt8(packet.count & 0xFF)
    return refragment(packet, offset: offset, more: more, identification: identification)
  }

  // From a review: each of these failed before its fix.

  @Test func aDuplicateOfMergedDataIsIgnored() {
    var reassembly = IPv4Reassembly()
    _ = add(fragments[0], to: &reassembly)
    _ = add(fragments[1], to: &reassembly)
    #expect(isIncomplete(add(fragments[0], to: &reassembly)), "once refused as an overlap")
    guard case .complete = add(fragments[2], to: &reassembly) else {
      Issue.record("the datagram was lost")
      return
    }
  }

  @Test func fragmentsFarOutCostWhatTheyCarry() {
    var reassembly = IPv4Reassembly()
    for identification in 0..<UInt16(8) {
      #expect(
        isIncomplete(
          add(
            fragment(offset: 65_000, length: 8, more: true, identification: identification), to: &reassembly))
      )
    }
    #expect(reassembly.bytesHeld == 8 * (8 + 64), "eight 8-byte fragments far out once held 512 KiB")
  }

  /// From an attack review: one 8-byte fragment at offset 64,000 once filled the memory
  /// budget for 30 s, and eight one-fragment datagrams the datagram slots; a datagram that
  /// does complete must get through either way.
  @Test func fragmentsThatNeverCompleteDoNotBlockTheOnesThatDo() {
    var reassembly = IPv4Reassembly()
    _ = add(fragment(offset: 64_000, length: 8, more: true, identification: 0x9999), to: &reassembly)
    for identification in 0..<UInt16(8) {
      _ = add(
        fragment(offset: 8, length: 8, more: true, identification: 0x100 + identification), to: &reassembly)
    }
    var completed = false
    for piece in fragments {
      if case .complete = add(piece, to: &reassembly, now: 10) { completed = true }
    }
    #expect(completed)
  }

  @Test func emptyFragmentsAreRefused() {
    var reassembly = IPv4Reassembly()
    #expect(reason(add(fragment(offset: 8, length: 0, more: true), to: &reassembly)) == "empty fragment")
    // They once stalled a whole datagram: [8,16), then an empty one at 8, then the rest.
    _ = add(fragment(offset: 8, length: 8, more: true), to: &reassembly)
    _ = add(fragment(offset: 8, length: 0, more: true), to: &reassembly)
    _ = add(fragment(offset: 0, length: 8, more: true), to: &reassembly)
    guard case .complete = add(fragment(offset: 16, length: 8, more: false), to: &reassembly) else {
      Issue.record("not complete")
      return
    }
  }

  @Test func manySmallFragmentsStayWithinTheBudget() {
    var reassembly = IPv4Reassembly()
    var accepted = 0
    for index in 0..<8_191
    where isIncomplete(add(fragment(offset: index * 16, length: 8, more: true), to: &reassembly)) {
      accepted += 1
    }
    #expect(
      reassembly.bytesHeld <= IPv4Reassembly.maximumBytes && accepted < 2_000,
      "\(accepted) accepted, \(reassembly.bytesHeld) held")
  }
}
