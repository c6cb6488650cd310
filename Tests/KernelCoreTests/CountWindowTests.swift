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
    windows.append(CountWindow(start: 0x100, commit: 0x110))
    windows.append(CountWindow(start: 0x140, commit: 0x150))
    windows.append(CountWindow(start: 0x400, commit: 0x40C))
    #expect(windows.resumeAddress(interruptedAt: 0x108) == 0x100)
    #expect(windows.resumeAddress(interruptedAt: 0x14A) == 0x140)
    #expect(windows.resumeAddress(interruptedAt: 0x40C) == 0x400)
    #expect(windows.resumeAddress(interruptedAt: 0x120) == 0x120, "between two windows")
    #expect(
      windows.resumeAddress(interruptedAt: 0x40D) == 0x40D
        && windows.resumeAddress(interruptedAt: 0x10) == 0x10)
    #expect(windows.all.count == 3)
  }
}
