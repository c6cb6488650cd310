// CountWindowTests: where a thread preempted in generated acquire or release code resumes
// (the code itself, preempted at every instruction, runs in StubExecutionTests).

import Testing

@testable import KernelCore

@Suite struct CountWindowTests {
  @Test func onlyAddressesUpToTheCommitStartAgain() {
    let window = CountWindow(start: 0x100, commit: 0x110)
    #expect(window.resumeAddress(interruptedAt: 0x100) == 0x100, "not started: nothing to undo")
    #expect(window.resumeAddress(interruptedAt: 0x105) == 0x100)
    #expect(window.resumeAddress(interruptedAt: 0x110) == 0x100, "the commit has not run yet")
    #expect(window.resumeAddress(interruptedAt: 0x113) == 0x113, "the count changed: going on")
    #expect(window.resumeAddress(interruptedAt: 0xFF) == 0xFF)
  }

  @Test func aServersWindowsAnswerForTheirOwnCodeOnly() {
    var windows = CountWindows()
    #expect(windows.resumeAddress(interruptedAt: 0x100) == 0x100, "no windows")
    // Appended out of order, as the loader and the binding of slots do.
    windows.append(CountWindow(start: 0x400, commit: 0x40C))
    windows.append(CountWindow(start: 0x100, commit: 0x110))
    windows.append(CountWindow(start: 0x140, commit: 0x150))
    #expect(windows.resumeAddress(interruptedAt: 0x108) == 0x100)
    #expect(windows.resumeAddress(interruptedAt: 0x14A) == 0x140)
    #expect(windows.resumeAddress(interruptedAt: 0x40C) == 0x400)
    #expect(windows.resumeAddress(interruptedAt: 0x120) == 0x120, "between two windows")
    #expect(
      windows.resumeAddress(interruptedAt: 0x40D) == 0x40D
        && windows.resumeAddress(interruptedAt: 0x10) == 0x10)
  }

  @Test func lookupAgreesWithEveryWindowAtEveryAddress() {
    var windows = CountWindows()
    var plain: [CountWindow] = []
    var start: UInt32 = 0x1000
    for length in [5, 1, 30, 12, 7, 48, 2] as [UInt32] {
      plain.append(CountWindow(start: start, commit: start + length))
      start += length + 9
    }
    for window in plain.reversed() { windows.append(window) }
    for address in UInt32(0xFF0)...start + 4 {
      let expected = plain.first { $0.resumeAddress(interruptedAt: address) != address }?.start ?? address
      #expect(windows.resumeAddress(interruptedAt: address) == expected, "at \(address)")
    }
  }
}
