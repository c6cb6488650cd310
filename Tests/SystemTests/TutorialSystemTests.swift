// TutorialSystemTests: what docs/TUTORIAL.md promises, booted: the greeter and its client
// in kernel mode (step 2), the greeter in user mode crashing and restarted (steps 3 and
// 4), and the crash's backtrace named by `tessera symbolize` (step 5).

import Foundation
import TesseraTools
import Testing

@Suite struct TutorialSystemTests {
  @Test func kernelModeGreetsAndATrapTakesItsKernelModeCaller() throws {
    let result = try bootComposition(
      "systems/tutorial.system", test: "kernelModeGreetsAndATrapTakesItsKernelModeCaller",
      until: "composition done")
    let output = result.output
    #expect(output.contains("GreeterClient: Hello, world!"), "\(result.tail(20))")
    #expect(output.contains("GreeterClient: Hello, Tessera!"))
    #expect(output.contains("GreeterClient: greetings so far: 2"))
    #expect(output.contains("server Greeter stopped: Swift runtime trap (ud2) in kernel mode"))
    #expect(output.contains("server GreeterClient stopped: its call into Greeter was abandoned"))
    #expect(output.contains("system: client finished with 0 (status 7)"))
    expectHeapBackToBase(output, composition: "systems/tutorial.system")
  }

  @Test func userModeGreeterCrashesIsRestartedAndItsBacktraceIsNamed() throws {
    let result = try bootComposition(
      "systems/tutorial-user.system", test: "userModeGreeterCrashesIsRestartedAndItsBacktraceIsNamed",
      until: "composition done")
    let output = result.output
    #expect(output.contains("loaded Greeter from Greeter.srv as greeter in user mode"))
    #expect(output.contains("GreeterClient: greetings so far: 2"), "\(result.tail(20))")
    #expect(output.contains("server Greeter stopped: Swift runtime trap (ud2) at eip"))
    #expect(output.contains("server backtrace: Greeter <- GreeterClient <- kernel"))
    #expect(
      output.contains(
        "GreeterClient: crash: serverUnavailable (status 7): the server behind the reference is gone (unloaded or failed)"
      ))
    #expect(output.contains("system: greeter failed; restarting it (restart 1)"))
    #expect(output.contains("GreeterClient: rebound to the restarted greeter"))
    #expect(output.contains("GreeterClient: Hello, again!"))
    #expect(output.contains("GreeterClient: greetings so far: 1"), "a new instance counts from 0")
    #expect(output.contains("system: client finished with 0 (status 0)"))
    expectHeapBackToBase(output, composition: "systems/tutorial-user.system")
    // Step 5: the offset in the fault line, named.
    let named = symbolize(
      log: output, serverDirectory: QEMU.root.appendingPathComponent("build/servers").path)
    let frames = named.split(separator: "\n").drop { !$0.contains("server Greeter stopped") }.dropFirst()
      .prefix { $0.hasPrefix("    at ") }
    #expect(frames.contains { $0.contains("Swift runtime failure: Index out of range") }, "\(named)")
    #expect(
      frames.contains {
        $0.contains("FriendlyGreeter.crash()") && $0.contains("Servers/Greeter/Greeter.swift:")
      })
  }
}
