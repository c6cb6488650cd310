// NetworkTextTests: addresses as people type them, the text writer's limits, and the
// packet areas' bounds checks on words from other servers.

import KernelCore
import Testing

@Suite struct NetworkTextTests {
  func parse(_ text: String) -> UInt32? {
    Array(text.utf8).withUnsafeBufferPointer { IPv4Address(parsing: $0)?.value }
  }

  func prefix(_ text: String) -> String? {
    Array(text.utf8).withUnsafeBufferPointer { buffer in
      IPv4Address.parsingPrefix(buffer).map { "\($0.0.value)/\($0.1)" }
    }
  }

  @Test func parsesDottedAddressesAndNothingElse() {
    #expect(parse("10.0.2.15") == 0x0A00_020F)
    #expect(parse("255.255.255.255") == UInt32.max)
    #expect(parse("0.0.0.0") == 0)
    for bad in [
      "", "10.0.2", "10.0.2.15.1", "10..2.15", "256.0.0.1", "1.2.3.4 ", "+1.2.3.4", "1.2.3.0004", "a.b.c.d",
    ] {
      #expect(parse(bad) == nil, "\(bad) is no address")
    }
    #expect(prefix("10.0.2.15/24") == "\(0x0A00_020F as UInt32)/24")
    #expect(prefix("10.0.2.15") == "\(0x0A00_020F as UInt32)/32")
    for bad in ["10.0.2.15/33", "10.0.2.15/", "10.0.2.15/x", "10.0.2.15/123", "/24"] {
      #expect(prefix(bad) == nil, "\(bad) is refused")
    }
    #expect(IPv4Address.mask(prefixLength: 24) == 0xFFFF_FF00)
    #expect(IPv4Address.mask(prefixLength: 0) == 0 && IPv4Address.mask(prefixLength: 32) == UInt32.max)
  }

  @Test func printsAddressesAsTyped() {
    let message: KernelMessage = "\(IPv4Address(10, 0, 2, 15)) \(MacAddress(0x52, 0x54, 0, 0x12, 0x34, 0x56))"
    #expect(message.string == "10.0.2.15 52:54:00:12:34:56")
  }

  @Test func theTextWriterNeverWritesPastItsBlockAndSaysWhatItLeftOut() {
    var storage = [UInt8](repeating: 0xAA, count: 100)
    let count = storage.withUnsafeMutableBytes { buffer in
      var writer = TextWriter(UnsafeMutableRawBufferPointer(rebasing: buffer[0..<80]))
      for index in 0..<10 { writer.line("line \(index)") }
      return writer.finish()
    }
    let text = String(decoding: storage[0..<count], as: UTF8.self)
    #expect(text.hasPrefix("line 0\nline 1\n"))
    #expect(text.hasSuffix("more lines did not fit)\n"))
    #expect(count <= 80 && storage[80...].allSatisfy { $0 == 0xAA })
  }

  @Test func packetAreasRefuseWordsOutsideThem() {
    let receive = UnsafeMutableRawBufferPointer.allocate(
      byteCount: PacketAreas.receiveBufferCount * PacketAreas.bufferSize, alignment: 16)
    let send = UnsafeMutableRawBufferPointer.allocate(
      byteCount: PacketAreas.sendBufferCount * PacketAreas.bufferSize, alignment: 16)
    defer {
      receive.deallocate()
      send.deallocate()
    }
    let areas = PacketAreas(
      receive: UInt(bitPattern: receive.baseAddress), reassembly: 0, send: UInt(bitPattern: send.baseAddress))
    let size = UInt(receive.count)
    #expect(areas.view(area: 0, offset: 0, length: size)?.count == receive.count)
    #expect(areas.view(area: 0, offset: size, length: 0)?.count == 0)
    #expect(areas.view(area: 0, offset: size, length: 1) == nil)
    #expect(areas.view(area: 0, offset: 1, length: UInt.max) == nil, "no wrap-around")
    #expect(areas.view(area: 0, offset: UInt.max, length: 2) == nil)
    #expect(areas.view(area: 1, offset: 0, length: 1) == nil, "not mapped here")
    #expect(areas.view(area: 2, offset: 0, length: 1) == nil)
    #expect(areas.sendBuffer(0, from: 0) == nil && areas.sendBuffer(17, from: 0) == nil)
    #expect(areas.sendBuffer(16, from: 42)?.count == PacketAreas.bufferSize - 42)
    #expect(areas.sendBuffer(1, from: PacketAreas.bufferSize + 1) == nil)
  }
}

@Suite struct RandomNumbersTests {
  @Test func drawsDifferAndTheStirringMatters() {
    var first = RandomNumbers(seed: 1)
    var second = RandomNumbers(seed: 1)
    let a = (0..<1000).map { first.next(stirring: UInt64($0)) }
    let b = (0..<1000).map { second.next(stirring: UInt64($0) &+ 7) }
    #expect(Set(a).count == 1000)
    #expect(a != b, "the same seed stirred differently gives other numbers")
    var zero = RandomNumbers(seed: 0)
    #expect(zero.next(stirring: 0) != 0)
    // 16-bit fields drawn from it spread over the range.
    let low = Set(a.map { UInt16(truncatingIfNeeded: $0 >> 17) })
    #expect(low.count > 950)
  }
}

@Suite struct UptimeTests {
  @Test func theWrapAfter49DaysDoesNotTurnTimeBack() {
    var uptime = Uptime()
    #expect(uptime.extend(1_000) == 1_000)
    #expect(uptime.extend(1 << 31) == 1 << 31)  // read at least every 24 days
    #expect(uptime.extend(UInt32.max - 10) == UInt64(UInt32.max - 10))
    #expect(uptime.extend(5) == (1 << 32) + 5, "after the wrap")
    // A late reading from before the wrap keeps its epoch; time goes on after it.
    #expect(uptime.extend(UInt32.max - 3) == UInt64(UInt32.max - 3))
    #expect(uptime.extend(20) == (1 << 32) + 20)
    // A reading a little older than the last one is no wrap.
    #expect(uptime.extend(15) == (1 << 32) + 15)
    #expect(uptime.extend(30) == (1 << 32) + 30)
  }
}
