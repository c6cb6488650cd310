// HostileSystemTests: a user-mode server attacks the kernel (Servers/Hostile), servers
// fault inside their start functions, and a program faults on every run until its
// restart limit; the kernel must refuse or contain each, keep running, and give every
// byte of heap and every frame back (systems/tests/hostile.system).

import Foundation
import Testing

@Suite struct HostileSystemTests {
  @Test func attacksFromUserModeAreRefusedOrContained() throws {
    let result = try bootComposition(
      "systems/tests/hostile.system", test: "attacksFromUserModeAreRefusedOrContained",
      until: "composition done")
    let output = result.output
    let counts: [(String, Int)] = [
      ("export-index", 5), ("allocate-bytes", 6), ("map-pager-bytes", 1), ("spawn-priority", 4),
      ("spawn-many", 1), ("memory-quota", 1), ("heap-quota", 1), ("timer-quota", 1),
      ("semaphore-overflow", 1), ("rebind-handle", 4), ("map-table-full", 1), ("gate-race", 1),
      ("semaphore-race", 1),
      ("nest-deep", 1), ("bound-stack", 1), ("entry-flags", 1),
    ]
    for (name, expected) in counts {
      let lines = result.lines.filter { $0.contains("@@ATTACK name=\(name) ") }
      #expect(lines.count == expected, "\(name): \(lines.count) attacks reported, \(expected) expected")
      for line in lines { #expect(line.hasSuffix("ok=true"), "\(line)") }
    }
    #expect(output.contains("@@ATTACK done failures=0"), "\(result.tail(30))")
    // The semaphore race freed semaphores only after the signals inside them returned.
    let deferred = try #require(
      output.firstMatch(of: /system: (\d+) objects ended only after waiting for the threads inside them/)
    )
    #expect(Int(deferred.1)! > 0)
    // Quotas from its composition lines: refused with a log line each, not a panic.
    #expect(
      output.contains("quota: Hostile may start threads of priority 3 at most, not 2147483647; refused"))
    #expect(
      output.contains(
        "quota: Hostile reached its memory limit (1048576 of 1048576 held, 4096 more asked); refused"))
    #expect(output.contains("quota: Hostile reached its timers limit (4 of 4 held, 1 more asked); refused"))
    let fuzz = try #require(
      output.firstMatch(of: /@@FUZZ seed=0x[0-9a-f]+ calls=(\d+) refused=(\d+) accepted=(\d+)/),
      "\(result.tail(30))")
    #expect(Int(fuzz.1)! == 100_000 && Int(fuzz.2)! + Int(fuzz.3)! == 100_000, "\(fuzz.0)")
    #expect(Int(fuzz.2)! > 10_000 && Int(fuzz.3)! > 10_000, "both refused and accepted calls: \(fuzz.0)")
    // Last, the attacker's own destroy faults (on its worker thread, while its run
    // sleeps): it is stopped, and its run, aborted at its next kernel call, ends with
    // serverUnavailable (the aborted frames held no reference:
    // the heap check below once found the server's object leaked here).
    let stops = result.lines.filter { $0.contains("server Hostile stopped") }
    #expect(stops.count == 1 && stops[0].contains("Page fault"), "\(stops)")
    #expect(!output.contains("@@ATTACK not reached"))
    #expect(output.contains("system: hostile finished with 0 (status 7)"))
    // Five instances fault in start: each refused, none left behind.
    #expect(output.components(separatedBy: "FaultsAtStart: start returned no object").count == 6)
    // The crash loop runs until the restart limit, then the composition goes on.
    #expect(output.contains("system: loop failed; restarting it (restart 100)"), "\(result.tail(30))")
    #expect(output.contains("system: loop finished with 0 (status 7)"))
    // An interrupt line: the holder attaches (a second attach is refused), fails holding
    // it, and the restarted holder gets it back; the intruder (holding the same line) can
    // neither detach nor attach; detach, detach again (refused), attach again, detach.
    #expect(output.contains("@@LINE round=1 attach=1 again=0"), "\(result.tail(30))")
    #expect(output.contains("irq 4: LineHolder failed; its handler is detached"))
    #expect(
      output.contains(
        "@@LINE round=2 attach=1 again=0 intruder=0 detach=1 detach-again=0 reattach=1 last=1"))
    #expect(output.contains("system: holder finished with 0 (status 0)"))
    #expect(output.contains("system: composition done, 5 errors"))
    expectGroupsGiveBack(result, groups: 3)
  }

  @Test func swiftTrapsInKernelModeServersAreContained() throws {
    let result = try bootComposition(
      "systems/tests/kernel-trap.system", test: "swiftTrapsInKernelModeServersAreContained",
      until: "composition done")
    let output = result.output
    // Called from user mode: the caller gets serverUnavailable, the server is restarted.
    for kind in [3, 2, 3] {
      #expect(
        output.contains(
          "@@KTRAP direct kind=\(kind) result=serverUnavailable dead=serverUnavailable rebound=true after=value 6"
        ),
        "kind \(kind):\n\(result.tail(30))")
    }
    #expect(
      output.contains(
        /server Fragile stopped: Swift runtime trap \(ud2\) in kernel mode at eip 0x[0-9a-f]+ \(image offset 0x[0-9a-f]+\)/
      ))
    #expect(output.contains("server backtrace: Fragile <- TrapProbe <- kernel"))
    // A kernel-mode server whose user-mode server below it fails traps on its `try!`.
    #expect(output.contains("server backtrace: Fragile <- Relay <- TrapProbe <- kernel"))
    #expect(output.contains("server Relay stopped: Swift runtime trap (ud2) in kernel mode"))
    #expect(output.contains("@@KTRAP relay result=serverUnavailable rebound=true after=serverUnavailable"))
    #expect(output.contains("@@KTRAP done failures=0"))
    #expect(output.contains("system: probe finished with 0 (status 0)"))
    // A kernel-mode caller has no resume point of its own: its call is abandoned too.
    #expect(output.contains("server TrapProbe stopped: its call into Fragile was abandoned"))
    #expect(output.contains("system: kprobe finished with 0 (status 7)"))
    #expect(output.contains("system: composition done, 0 errors"))
    let heaps = output.matches(of: /kernel heap back to its base: (\d+) bytes in use, \1 before/)
    #expect(heaps.count == 2, "\(result.tail(30))")
  }

  @Test func aSleepingTimerCallbackHoldsOnlyItsOwnServer() throws {
    // Guest time follows instructions (-icount): the order below does not depend on the host.
    let result = try bootComposition(
      "systems/tests/timers.system", test: "aSleepingTimerCallbackHoldsOnlyItsOwnServer",
      until: "composition done", countInstructions: true)
    let steps = [
      "@@TIMER sleepy callback starts sleeping", "@@TIMER quick callback fired",
      "@@TIMER the witness's timer fired while the sleepy callback slept: true",
      "@@TIMER sleepy callback woke",
    ]
    let positions = steps.map { result.output.range(of: $0)?.lowerBound }
    #expect(positions.allSatisfy { $0 != nil }, "\(result.tail(20))")
    let found = positions.compactMap { $0 }
    #expect(found == found.sorted(), "in this order: \(steps)")
    #expect(result.output.contains("system: sleeper finished with 0 (status 0)"))
    #expect(result.output.contains(/kernel heap back to its base: (\d+) bytes in use, \1 before/))
  }

  /// Object lifetimes and server locks (systems/tests/lifetimes.system, Servers/LifetimeProbe):
  /// each failed on the kernel before these rules (destroyed under a thread inside it, the
  /// supervisor held up by a sleeping destroy, a silent deadlock).
  @Test func objectLifetimesAndLockCyclesHold() throws {
    let result = try bootComposition(
      "systems/tests/lifetimes.system", test: "objectLifetimesAndLockCyclesHold", until: "composition done")
    let output = result.output
    for name in ["inside", "sleepy", "cycle"] {
      let lines = result.lines.filter { $0.contains("@@LIFE \(name) ") }
      #expect(lines.count == 2, "\(name): \(lines)")  // victims in user mode, then in kernel mode
      for line in lines { #expect(line.hasSuffix("ok=true"), "\(line)") }
    }
    #expect(result.lines.filter { $0.contains("@@LIFE done failures=0") }.count == 2, "\(result.tail(30))")
    #expect(output.components(separatedBy: "refused (wouldDeadlock)").count == 3)
    #expect(output.contains("system: composition done, 0 errors"))
    expectGroupsGiveBack(result, groups: 2)
  }

  /// Attacks on server workers, locks and lifetimes (systems/tests/workers.system): each
  /// once hung, starved or panicked the kernel, or broke a lock or a semaphore.
  @Test func workerAndLockAttacksAreContained() throws {
    let result = try bootComposition(
      "systems/tests/workers.system", test: "workerAndLockAttacksAreContained", until: "composition done")
    let output = result.output
    func count(_ text: String) -> Int { result.lines.filter { $0.contains(text) }.count }
    #expect(count("@@ATK cycle3 finished=3 results=0,0,8") == 2, "\(result.tail(30))")
    #expect(count("@@ATK victims.ping answered 1: no hang") == 1)
    #expect(count("@@ATK sleepy destroy finished without wake(): false") == 1)
    #expect(count("@@ATK second sleepy destroyed after wake(): true") == 1)
    #expect(count("@@ATK sleep-in-callback asked=500") == 2)
    #expect(
      result.lines.filter { $0.contains("@@ATK sleep-in-callback") }.allSatisfy { $0.hasSuffix("ok=true") })
    #expect(count("@@ATK main woke: lock handover survived") == 2)
    #expect(count("@@ATK stale-flag threads finished=2 of 2 ok=true") == 1)
    #expect(count("(callback traps in kernel mode)") == 2)
    #expect(count("server TrapDestroy stopped: Swift runtime trap (ud2) in kernel mode") == 3)
    #expect(output.contains("system: keeper has no thread to start on yet; its start waits for one"))
    let fill = try #require(output.firstMatch(of: /destroyedAfter=(\d+) keeperCrashed=true rebound=(\d+)/))
    #expect(fill.1 == "1" && Int(fill.2)! > 0, "\(fill.0)")
    // The hogs meet the kernel's frame reserve: a heap growth, a stack page or a whole
    // load is refused (which one first depends on where the last frames go).
    #expect(
      output.contains("heap growth refused: the kernel keeps its last 1024 frames")
        || output.contains("out of memory loading HeapHog.srv"), "\(result.tail(30))")
    #expect(count("@@ATK restarted start sleeps for ever") == 1)
    #expect(count("@@ATK released the object a thread sleeps inside for ever") == 2)
    // The only errors are the hogs' and their driver's (how many is up to where the last
    // frames go: a load, a start or the driver's run is refused).
    #expect(output.contains(/system: composition done, \d+ errors/))
    for line in result.lines where line.contains("error: system line") {
      #expect(
        line.contains("HeapHog") || line.contains("HogDriver") || line.contains("instance d to run"),
        "\(line)")
    }
    // Twelve groups give back every byte and frame; the last four keep what their stuck
    // start, their threads inside for ever and their spinning destroy hold.
    expectGroupsGiveBack(result, groups: 16, checked: 12)
  }

}
