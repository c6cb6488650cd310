// KernelMessageTests: formatting and truncation of kernel messages.

import Testing

@testable import KernelCore

@Suite struct KernelMessageTests {
  @Test func interpolatesIntegersInDecimalAndHex() {
    let value: UInt32 = 0xBEEF
    let message: KernelMessage = "a \(42) b \(-17) c \(hex: value) d \(hex: UInt8(5), width: 4) e \(true)"
    #expect(message.string == "a 42 b -17 c 0xbeef d 0x0005 e true")
  }

  @Test func formatsExtremeValues() {
    let message: KernelMessage = "\(Int64.min) \(UInt64.max) \(hex: UInt64.max) \(0)"
    #expect(message.string == "-9223372036854775808 18446744073709551615 0xffffffffffffffff 0")
  }

  @Test func appendsRawTextAndNestedMessages() {
    let inner: KernelMessage = "inner \(1)"
    let message = withText("name") { name in
      KernelMessage(
        stringInterpolation: {
          var interpolation = KernelMessage.StringInterpolation(literalCapacity: 0, interpolationCount: 2)
          interpolation.appendInterpolation(text: name)
          interpolation.appendLiteral(" / ")
          interpolation.appendInterpolation(inner)
          return interpolation
        }())
    }
    #expect(message.string == "name / inner 1")
  }

  @Test func marksTruncationInsteadOfDroppingSilently() {
    var message = KernelMessage()
    for _ in 0..<300 { message.append(byte: UInt8(ascii: "x")) }
    #expect(message.isTruncated)
    #expect(message.count == KernelMessage.capacity)
    let text = message.string
    #expect(text.count == KernelMessage.capacity)
    #expect(text.hasSuffix("xxx..."))
  }

  @Test func exactlyFullIsNotTruncated() {
    var message = KernelMessage()
    for _ in 0..<KernelMessage.capacity { message.append(byte: UInt8(ascii: "y")) }
    #expect(!message.isTruncated)
    #expect(message.string == String(repeating: "y", count: KernelMessage.capacity))
  }
}
