// SymbolizeTests: `tessera symbolize` puts the frames behind a server fault's image
// offset under the line that reports it, finding the server file from the log.

import TesseraTools
import Testing

@Suite struct SymbolizeTests {
  let log = """
    [    0.02] info: loaded Greeter from Greeter.srv as greeter in user mode: image 20 KiB at 0x40100000, 0 slots
    [    0.03] error: server Greeter stopped: Swift runtime trap (ud2) at eip 0x401016af (image offset 0x16af), cr2 0x00000000, error code 0x0\r
    [    0.03] error: server backtrace: Greeter <- GreeterClient <- kernel
    """

  @Test func framesFollowTheFaultLine() {
    var asked: [(String, UInt32)] = []
    let result = symbolize(log: log) { file, offset in
      asked.append((file, offset))
      return [
        SymbolizedFrame(
          function: "Swift runtime failure: Index out of range", location: "<compiler-generated>:0"),
        SymbolizedFrame(function: "FriendlyGreeter.crash()", location: "Servers/Greeter/Greeter.swift:30"),
      ]
    }
    #expect(asked.count == 1 && asked[0].0 == "Greeter" && asked[0].1 == 0x16af)
    let lines = result.split(separator: "\n").map(String.init)
    #expect(lines.count == 5)
    #expect(lines[2] == "    at Swift runtime failure: Index out of range (<compiler-generated>:0)")
    #expect(lines[3] == "    at FriendlyGreeter.crash() (Servers/Greeter/Greeter.swift:30)")
    #expect(lines[4].hasSuffix("server backtrace: Greeter <- GreeterClient <- kernel"))
  }

  @Test func symbolizerOutputBecomesFrames() {
    let output = """
      Swift runtime failure: Index out of range
      /<compiler-generated>:0:0
      $e7Greeter08FriendlyA0C5crashyyF
      /work/Servers/Greeter/Greeter.swift:30:22
      ??
      ??:0:0

      """
    let frames = parseSymbolizerOutput(output) { $0 == "$e7Greeter08FriendlyA0C5crashyyF" ? "crash()" : $0 }
    #expect(
      frames == [
        SymbolizedFrame(
          function: "Swift runtime failure: Index out of range", location: "/<compiler-generated>:0"),
        SymbolizedFrame(function: "crash()", location: "/work/Servers/Greeter/Greeter.swift:30"),
      ])
  }

  @Test func aKernelPanicsServerFramesAreNamedToo() {
    let panic = """
      [    0.04] info: loaded Crasher from Crasher.srv as crasher in kernel mode: image 20 KiB at 0x30050000, 1 slots
        #0 0x300515c2 server Crasher + 0x15c2
        #1 0x00161056 specialized static KernelReferences.call(_:method:words:) + 0x125
      """
    var asked: [(String, UInt32)] = []
    let result = symbolize(log: panic) { file, offset in
      asked.append((file, offset))
      return [SymbolizedFrame(function: "Faulty.run()", location: "Servers/Crasher/Crasher.swift:9")]
    }
    #expect(asked.count == 1 && asked[0].0 == "Crasher" && asked[0].1 == 0x15c2)
    #expect(
      result.contains(
        "#0 0x300515c2 server Crasher + 0x15c2\n    at Faulty.run() (Servers/Crasher/Crasher.swift:9)"))
  }

}
