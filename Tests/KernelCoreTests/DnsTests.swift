// DnsTests: the stub resolver's messages against a real exchange (Captures/slirp.txt: a
// query for deb.debian.org through slirp to the host's resolver, and its answer), a real
// "no such name" answer, and hostile names.

import KernelCore
import Testing

@Suite struct DnsTests {
  let capture = SlirpCaptureTests()

  /// The UDP payload of captured frame `index` (checksums verified on the way).
  func payload(_ index: Int) throws -> [UInt8] { try capture.dhcpPayload(index) }

  func emitQuery(_ name: String, identifier: UInt16 = 0x7E55) -> [UInt8]? {
    var buffer = [UInt8](repeating: 0, count: 12 + 255 + 4)
    let length = buffer.withUnsafeMutableBytes { out in
      Array(name.utf8).withUnsafeBytes { DnsQuery.emit(into: out, identifier: identifier, name: $0) }
    }
    return length.map { Array(buffer.prefix($0)) }
  }

  func reason(_ bytes: [UInt8], identifier: UInt16 = 0x7E55) -> String {
    bytes.withUnsafeBytes { raw in
      do throws(PacketError) {
        _ = try DnsResponse(raw, identifier: identifier)
        return "accepted"
      } catch { return error.reason.description }
    }
  }

  @Test func theQueryEmittedHereIsTheOneAnsweredAndTheAnswerReads() throws {
    #expect(emitQuery("deb.debian.org") == (try payload(8)))
    #expect(emitQuery("deb.debian.org.") == (try payload(8)), "a trailing dot changes nothing")
    let answer = try payload(9)
    try answer.withUnsafeBytes { bytes in
      let response = try DnsResponse(bytes, identifier: 0x7E55)
      #expect(response.responseCode == 0 && response.addresses.count == 1)
      #expect(response.addresses.first?.address == IPv4Address(203, 0, 113, 80))
      #expect(response.addresses.first?.timeToLive == 60)
    }
  }

  @Test func noSuchNameIsAnAnswerWithoutAddresses() throws {
    // The host's resolver's bytes for "localhost" (identifier 0x1234): rcode 3.
    let literal: [UInt8] = [
      0x12, 0x34, 0x81, 0x83, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, 0x6C, 0x6F, 0x63, 0x61,
      0x6C,
      0x68, 0x6F, 0x73, 0x74, 0x00, 0x00, 0x01, 0x00, 0x01,
    ]
    try literal.withUnsafeBytes { bytes in
      let response = try DnsResponse(bytes, identifier: 0x1234)
      #expect(response.responseCode == 3 && response.addresses.isEmpty)
    }
  }

  @Test func invalidNamesAreNotQueried() {
    #expect(emitQuery("a..b") == nil && emitQuery("") == nil && emitQuery(".") == nil)
    #expect(emitQuery(String(repeating: "x", count: 64) + ".org") == nil)
    #expect(emitQuery(String(repeating: "x", count: 63) + ".org") != nil)
    #expect(emitQuery(Array(repeating: "abc", count: 64).joined(separator: ".")) == nil, "over 253 bytes")
  }

  @Test func hostileAnswersAreRefusedWithTheirReasons() throws {
    let answer = try payload(9)
    func changed(_ edits: [(Int, UInt8)]) -> [UInt8] {
      var copy = answer
      for (index, value) in edits { copy[index] = value }
      return copy
    }
    #expect(reason(answer) == "accepted")
    #expect(reason(Array(answer.prefix(11))) == "shorter than a DNS header")
    #expect(reason(answer, identifier: 1) == "DNS identifier differs")
    #expect(reason(changed([(2, 0x01)])) == "DNS message is not a response")
    #expect(reason(changed([(5, 2)])) == "DNS response has not one question")
    // The answer's name is a pointer (c0 0c) at offset 32: point it forward, or at itself.
    let answerName = 12 + 16 + 4
    #expect(answer[answerName] == 0xC0)
    #expect(reason(changed([(answerName + 1, 0x40)])) == "DNS name pointer loops or points forward")
    #expect(
      reason(changed([(answerName + 1, UInt8(answerName))])) == "DNS name pointer loops or points forward")
    #expect(reason(changed([(12, 0x80)])) == "DNS label type unknown")
    #expect(reason(Array(answer.prefix(answer.count - 2))) == "DNS answer runs past the message")
    #expect(reason(changed([(7, 9)])) == "DNS name runs past the message", "nine answers claimed, one there")
  }

  @Test func fuzzedAnswersNeverReachOutside() throws {
    let answer = try payload(9)
    var state: UInt64 = 0xA5A5_5A5A_1234_8765
    func next() -> UInt64 {
      state ^= state << 13
      state ^= state >> 7
      state ^= state << 17
      return state
    }
    for _ in 0..<20_000 {
      var bytes = answer
      for _ in 0..<(1 + next() % 6) {
        bytes[Int(next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: next())
      }
      bytes = Array(bytes.prefix(Int(next() % UInt64(bytes.count + 1))))
      bytes.withUnsafeBytes { raw in
        if let response = try? DnsResponse(raw, identifier: 0x7E55) {
          #expect(response.addresses.count <= DnsResponse.maximumAddresses)
        }
      }
    }
  }

  // From a review: each failed before its fix.

  @Test func namesLongerThan255BytesAndTopBitTtlsAreHandled() throws {
    let answer = try payload(9)
    // A question name of 20 labels of 63 bytes (1,281 bytes) in place of deb.debian.org.
    let label: [UInt8] = [63] + [UInt8](repeating: 0x61, count: 63)
    let long: [UInt8] = (0..<20).flatMap { _ in label } + [0]
    var bytes: [UInt8] = Array(answer[0..<12]) + long + Array(answer[(12 + 16)...])
    bytes[7] = 0  // no answers: the long question alone
    #expect(reason(bytes) == "DNS name longer than 255 bytes")
    // A TTL of 0x80000000 counts as 0; a huge one is capped at a day.
    let ttl = answer.count - 10
    var topBit = answer
    topBit[ttl] = 0x80
    var huge = answer
    huge[ttl] = 0x7F
    for (bytes, expected) in [(topBit, UInt32(0)), (huge, UInt32(86_400))] {
      let ttl = try bytes.withUnsafeBytes { raw throws(PacketError) in
        try DnsResponse(raw, identifier: 0x7E55).addresses.first?.timeToLive
      }
      #expect(ttl == expected)
    }
    // A 253-character name with the trailing dot (254) is valid.
    let name =
      Array(repeating: String(repeating: "a", count: 49), count: 5).joined(separator: ".") + "." + "abc"
    #expect(name.count == 253 && emitQuery(name) != nil && emitQuery(name + ".") != nil)
  }

  @Test func anAnswerMustRepeatTheQuestionAsked() throws {
    let query = try payload(8)
    let answer = try payload(9)
    func check(_ bytes: [UInt8]) -> String {
      bytes.withUnsafeBytes { raw in
        query.withUnsafeBytes { sent in
          do throws(PacketError) {
            _ = try DnsResponse(raw, identifier: 0x7E55, query: sent)
            return "accepted"
          } catch { return error.reason.description }
        }
      }
    }
    #expect(check(answer) == "accepted")
    var upper = answer
    upper[13] = UInt8(ascii: "D")  // "Deb": the same name
    #expect(check(upper) == "accepted")
    var other = answer
    other[14] = UInt8(ascii: "x")  // "dxb.debian.org": not what was asked
    #expect(check(other) == "DNS question differs from the query")
  }
}
