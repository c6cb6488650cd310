// SymbolMapAndCommandLineTests: symbol lookup for backtraces and kernel command-line options.

import Testing

@testable import KernelCore

@Suite struct SymbolMapTests {
  static let map = """
    00100000 00000010 _start
    00100010 00000000 memcpy
    00100040 00000020 Kernel.panic(_:)
    garbage line that is not a symbol
    00100080 00000010 Log.info(_:)

    """

  func lookup(_ address: UInt32) -> String? {
    withText(Self.map) { bytes in
      SymbolMap(bytes: UnsafeRawBufferPointer(bytes)).lookup(address).map {
        "\(String(decoding: $0.name, as: UTF8.self))+\($0.offset)"
      }
    }
  }

  @Test func findsTheSymbolContainingAnAddress() {
    #expect(lookup(0x100000) == "_start+0")
    #expect(lookup(0x10000F) == "_start+15")
    #expect(lookup(0x100045) == "Kernel.panic(_:)+5")
    #expect(lookup(0x100085) == "Log.info(_:)+5")
  }

  @Test func zeroSizedSymbolsExtendToTheNextSymbol() {
    #expect(lookup(0x10003F) == "memcpy+47")
  }

  @Test func addressesOutsideEverySymbolHaveNoName() {
    #expect(lookup(0xFFFFF) == nil)
    #expect(lookup(0x100060) == nil)  // after Kernel.panic's 0x20 bytes
    #expect(lookup(0x100090) == nil)
  }

  @Test func writesLinesItCanReadBack() {
    let line = withText("name") { SymbolMap.line(address: 0xABC, size: 0x10, name: $0).string }
    #expect(line == "00000abc 00000010 name")
  }
}

@Suite struct BootCommandLineTests {
  func value(_ key: StaticString, in text: String) -> String? {
    withText(text) { bytes in
      BootCommandLine(bytes: bytes).value(of: key).map { String(decoding: $0, as: UTF8.self) }
    }
  }

  @Test func findsValuesAndFlags() {
    let text = "build/kernel.elf loglevel=debug  test=heap.stress verbose"
    #expect(value("loglevel", in: text) == "debug")
    #expect(value("test", in: text) == "heap.stress")
    #expect(value("verbose", in: text) == "")
    #expect(value("log", in: text) == nil, "a prefix of a key is not the key")
    #expect(value("missing", in: text) == nil)
  }

  @Test func theKernelPathIsNotAnOption() {
    #expect(value("kernel", in: "kernel") == nil)
    #expect(value("on-panic", in: "on-panic=exit") == "exit", "an option may come first")
  }

  @Test func laterOccurrencesWin() {
    #expect(value("loglevel", in: "k loglevel=info loglevel=error") == "error")
    withText("k on-panic=exit") { bytes in
      #expect(BootCommandLine(bytes: bytes).has("on-panic", equalTo: "exit"))
      #expect(!BootCommandLine(bytes: bytes).has("on-panic", equalTo: "halt"))
    }
  }
}
