// ComponentSystemTests: boots compositions of real servers and checks what the kernel and
// the servers report: the file-system demo, refused bindings, rejected server files,
// object destruction and memory returned.

import Foundation
import TesseraTools
import Testing

/// Boots the default kernel image with `composition` and every server file; returns once
/// a line contains `until` (by default: the kernel is idle, the composition is done), or
/// kills the guest after `timeout` seconds.
func bootComposition(
  _ composition: String, test: String, input: (after: String, text: String)? = nil,
  until marker: String = "idling", countInstructions: Bool = false, devices: [String] = [],
  arguments: [String] = [], timeout: TimeInterval = 60
) throws -> BootResult {
  let name = URL(fileURLWithPath: composition).deletingPathExtension().lastPathComponent
  let result = try QEMU.boot(
    image: "kernel", modules: [composition] + QEMU.serverModules, append: "on-panic=exit", input: input,
    countInstructions: countInstructions, timeout: timeout, log: "\(test)-\(name)", devices: devices,
    arguments: arguments
  ) { $0.contains(marker) }
  if result.timedOut {
    Issue.record(
      "\(test) (\(composition)): the guest did not finish within \(Int(timeout)) s and was killed; last output:\n\(result.tail())"
    )
  }
  #expect(
    result.stoppedByMatch, "\(test) (\(composition)): never printed \"\(marker)\":\n\(result.tail(30))")
  #expect(!result.output.contains("KERNEL PANIC"), "\(test) (\(composition)): panic:\n\(result.tail(30))")
  return result
}

/// The composition's group reports (heap and frames), `groups` of them; the first
/// `checked` must give back every byte of kernel heap and every frame (frames the kernel
/// heap maps count as its; the first group may also keep a few page tables made on first
/// use).
func expectGroupsGiveBack(_ result: BootResult, groups: Int, checked: Int? = nil) {
  let reports = result.output.matches(
    of:
      /kernel heap (NOT )?back to its base: (\d+) bytes in use, (\d+) before[^\n]*\n[^\n]*system: (\d+) frames free, (\d+) before; kernel heap maps (\d+) pages, (\d+) before/
  )
  #expect(reports.count == groups, "\(result.tail(30))")
  for (index, report) in reports.prefix(checked ?? groups).enumerated() {
    let lost = (Int(report.5)! + Int(report.7)!) - (Int(report.4)! + Int(report.6)!)
    #expect(report.1 == nil && report.2 == report.3, "group \(index): \(report.0)")
    #expect(lost < (index == 0 ? 8 : 1), "group \(index): \(report.0)")
  }
}

/// The kernel heap is back exactly where it was before the group.
func expectHeapBackToBase(_ output: String, composition: String) {
  #expect(
    output.contains(/kernel heap back to its base: (\d+) bytes in use, \1 before; \d+ errors/),
    "\(composition): the kernel heap is not back to its base")
}

@Suite struct ComponentSystemTests {
  @Test(arguments: ["systems/default.system", "systems/isolated.system", "systems/tests/shared-space.system"])
  func fileSystemDemoRunsAndEverythingIsReleased(composition: String) throws {
    // The default and isolated systems have a network card to drive.
    let result = try bootComposition(
      composition, test: "fileSystemDemoRunsAndEverythingIsReleased",
      until: composition.contains("shared") ? "idling" : "Tessera shell: type help",
      devices: composition.contains("shared") ? [] : ["rtl8139"])
    let output = result.output
    #expect(
      output.contains("FileClient: fs-demo: created /docs/paper.txt (1500 bytes), /src/main.swift, /README"))
    #expect(
      output.contains("FileClient: fs-demo: read back /docs/paper.txt: 1500 bytes, contents equal: true"))
    #expect(output.contains("FileClient: fs-demo: directory /docs"))
    #expect(output.contains("FileClient: fs-demo: directory /src"))
    #expect(output.contains("FileClient: fs-demo: forged handle refused: invalidHandle"))
    #expect(
      output.contains("FileClient: fs-demo: oversized and unmapped blocks refused: blockTooLarge, badBlock"))
    #expect(output.contains("FileClient: fs-demo: PASS"), "demo output:\n\(result.tail(30))")
    #expect(!output.contains("fs-demo: FAIL"))
    #expect(output.contains("system: client finished with 0 (status 0)"))
    for server in ["RamDisk", "SimpleFS", "FileClient"] {
      #expect(output.contains("unloaded \(server): heap of"), "\(server) was not unloaded")
    }
    let objects = try #require(
      output.firstMatch(
        of: /system: (\d+) server objects created, (\d+) destroyed, 0 alive; 0 servers still loaded/))
    #expect(Int(objects.1)! >= 10 && objects.1 == objects.2, "objects: \(objects.0)")
    expectHeapBackToBase(output, composition: composition)
    if composition.contains("isolated") {
      #expect(
        output.contains("loaded SimpleFS from SimpleFS.srv as fs in user mode: image 44 KiB at 0x40100000"))
    }
    if composition.contains("shared") {
      // One space: the second server's image follows the first one's region.
      #expect(
        output.contains(/loaded RamDisk .* in user mode \(space storage\): image \d+ KiB at 0x40100000/))
      #expect(
        output.contains(
          /loaded SimpleFS .* in user mode \(space storage\): image \d+ KiB at 0x40[2-9a-f][0-9a-f]{5}/),
        "\(result.tail(30))")
      #expect(output.contains(/loaded FileClient .* in user mode: image \d+ KiB at 0x40100000/))
    }
  }

  @Test(arguments: [("systems/tests/disagreements.system", 9), ("systems/tests/mismatch.system", 4)])
  func theKernelAndCheckAgree(composition: String, problems: Int) throws {
    // A slot bound twice, a server bound to itself, a binding to an ended group, a limit
    // with no server line before it, one kernel-mode server too many, a mismatched
    // binding (which leaves the slot unbound), an unknown service: the kernel and
    // `tessera check` report each on the same line with the same words (they once
    // disagreed on all but the last two, and worded that one differently).
    let result = try bootComposition(composition, test: "theKernelAndCheckAgree", until: "composition done")
    let kernel = result.lines.compactMap { line -> String? in
      guard let match = line.firstMatch(of: /error: system line (\d+): (.*)$/) else { return nil }
      return "\(match.1): \(match.2)"
    }
    let checked = try checkComposition(
      path: QEMU.root.appendingPathComponent(composition).path,
      serverDirectories: [QEMU.root.appendingPathComponent("build/servers").path],
      interfaces: try loadInterfaces(directory: QEMU.root.appendingPathComponent("Interfaces").path)
    ).map { $0.replacingOccurrences(of: QEMU.root.appendingPathComponent(composition).path + ":", with: "") }
    #expect(kernel.count == problems, "\(kernel)")
    #expect(
      kernel.sorted() == checked.sorted(),
      "kernel:\n\(kernel.joined(separator: "\n"))\ncheck:\n\(checked.joined(separator: "\n"))")
  }

  @Test func mismatchedBindingIsRefusedAndTheRestLoads() throws {
    let result = try bootComposition(
      "systems/tests/mismatch.system", test: "mismatchedBindingIsRefusedAndTheRestLoads")
    #expect(
      result.output.contains(
        "error: system line 7: cannot bind oldfs.device: it requires BlockDevice, the source provides BlockDevice: first difference in method 1 (blockCount)"
      ))
    #expect(result.output.contains("oldfs: slot device is not bound; not started"))
    #expect(result.output.contains("FileClient: fs-demo: PASS"))
    #expect(
      result.output.contains(
        "the kernel offers no service printer (it offers: console, clock, threads, sync, com1, irq4, system, timers, supervision, memory, pci, settings)"
      ))
    expectHeapBackToBase(result.output, composition: "systems/tests/mismatch.system")
    #expect(result.output.contains("system: composition done, 4 errors"))
  }

  @Test func corruptServerFilesAreRejectedAndTheRestLoads() throws {
    let result = try bootComposition(
      "systems/tests/corrupt.system", test: "corruptServerFilesAreRejectedAndTheRestLoads")
    let output = result.output
    #expect(
      output.contains(
        "truncated: server file Truncated.srv rejected: program or section header table lies outside the file"
      ))
    #expect(
      output.contains(
        "lying: server file Lying.srv rejected: program or section header table lies outside the file"))
    #expect(
      output.contains(
        "badmanifest: server file BadManifest.srv rejected: manifest: manifest does not start with TSRV version 1"
      ))
    #expect(output.contains("missing: no boot module named NoSuchFile.srv"))
    #expect(output.contains("FileClient: fs-demo: PASS"))
    #expect(output.contains("system: composition done, 4 errors"))
    expectHeapBackToBase(output, composition: "systems/tests/corrupt.system")
  }

  @Test func templateServerUsesTheKernelsConsoleAndClock() throws {
    let result = try bootComposition(
      "systems/template.system", test: "templateServerUsesTheKernelsConsoleAndClock")
    let line = try #require(
      result.output.firstMatch(of: /Template: hello from the template server, (\d+) ms after boot/))
    #expect(Int(line.1)! > 0, "the clock counts from boot")
    expectHeapBackToBase(result.output, composition: "systems/template.system")
  }

  @Test(arguments: ["systems/tests/concurrency.system", "systems/tests/concurrency-isolated.system"])
  func threadsLocksSemaphoresAndSleeping(composition: String) throws {
    // Instruction counting makes preemption points independent of the host's load.
    let result = try bootComposition(
      composition, test: "threadsLocksSemaphoresAndSleeping", countInstructions: true)
    let output = result.output
    let serialized = try #require(
      output.firstMatch(of: /serialized counter (\d+) of (\d+) increments, at most (\d+) thread inside/))
    #expect(
      serialized.1 == serialized.2 && Int(serialized.2)! > 0, "a server that is not thread-safe lost updates")
    #expect(serialized.3 == "1")
    let racy = try #require(
      output.firstMatch(
        of: /thread-safe-declared counter (\d+) of (\d+) increments, at most (\d+) threads inside/))
    #expect(
      Int(racy.1)! < Int(racy.2)!,
      "the wrongly thread-safe counter must lose updates, or the test proves nothing")
    #expect(Int(racy.3)! > 1, "a thread-safe server must be entered concurrently")
    let pairs = try #require(
      output.firstMatch(
        of:
          /(\d+) acquire-release pairs by 8 threads, (\d+) refused, (\d+) preempted threads started one again/
      ))
    #expect(Int(pairs.1)! > 0 && pairs.2 == "0", "every acquire and release from many threads succeeds")
    if !composition.contains("isolated") {
      // In kernel mode the counting code is most of the loop: under -icount the timer
      // preempts threads inside it, and the kernel must have started them again (a
      // user-mode server's counting runs in the kernel for a few instructions of hundreds).
      #expect(Int(pairs.3)! > 0, "no thread was preempted inside acquire or release: the test proves nothing")
    }
    #expect(output.contains("concurrency: queue passed 100000 items, 0 out of order, sum 5000050000"))
    #expect(output.contains(/one-shot timer of 30 ms fired after 3[0-2] ms/))
    #expect(output.contains(/slept until \d+ ms, woke at \d+ ms/))
    #expect(output.contains(/periodic 10 ms timer fired [56] times, 0 after cancel/))
    #expect(output.contains("concurrency: PASS"), "\(result.tail(20))")
    expectHeapBackToBase(output, composition: composition)
    #expect(output.contains(/system: 0 servers still loaded|0 alive; 0 servers still loaded/))
  }

  @Test func faultInsideAServerIsReportedWithItsServerBacktrace() throws {
    let result = try QEMU.boot(
      image: "kernel", modules: ["systems/tests/fault.system"] + QEMU.serverModules, append: "on-panic=exit",
      timeout: 60)
    #expect(!result.timedOut, "the guest hung:\n\(result.tail())")
    #expect(result.status == GuestStatus.panic, "exit status \(result.status)")
    let report = result.output
    #expect(report.contains("faulting address (cr2) 0xdead0006: page not present, write in kernel mode"))
    #expect(
      report.contains(/#0 0x[0-9a-f]{8} server Crasher \+ 0x/),
      "frames inside a server are named:\n\(result.tail(25))")
    #expect(report.contains("thread 1 (boot)"))
    #expect(report.contains("server backtrace (innermost first):\n  #0 Crasher"))
  }

  @Test(arguments: ["systems/default.system", "systems/isolated.system"])
  func shellAnswersOverTheInterruptDrivenSerialLine(composition: String) throws {
    // Typed at once, as a terminal sends it: commands, mistakes, then line editing with
    // escape sequences (history, Home, the right arrow, backspace, Tab on a command and on
    // an instance name, Ctrl-C, a line past the limit), a program run, and a command in
    // capitals after spaces.
    let script = [
      "help\r", "servers\r", "threads\r", "refs shell\r", "mem\r", "\u{1B}[A\r", "bogus\r", "refs\r",
      "servers x\r", "rfs shell\u{1B}[H\u{1B}[Ce\r", "memx\u{7F}\r", "thr\t\r", "refs she\t\r", "crash\u{3}",
      String(repeating: "x", count: 210) + "\r", "run hello\r", "run nope\r", "pci\r", "  UPTIME\r",
    ]
    let input = (after: "tessera> ", text: script.joined())
    let result = try bootComposition(
      composition, test: "shellAnswersOverTheInterruptDrivenSerialLine", input: input, until: "up ",
      devices: ["rtl8139"])
    let output = result.output
    func count(_ text: String) -> Int { output.components(separatedBy: text).count - 1 }
    #expect(
      output.contains("tessera> help\nhelp        this list"),
      "typed characters are echoed:\n\(result.tail(40))")
    let mode = composition.contains("isolated") ? "user" : "kernel"
    // Instances by their composition names, placement, restarts and bindings, in columns.
    #expect(
      output.contains(
        try Regex(
          "serial +SerialDriver +\(mode) +\\d+ +2 +\\d+ +serialized +0 +ports=kernel\\(IOPorts\\) irq=")),
      "servers lists the driver:\n\(result.tail(40))")
    #expect(
      output.contains(try Regex("shell +Shell +\(mode) +\\d+ +1 +\\d+ +serialized +\\d+ +terminal=serial ")))
    #expect(output.contains(/\d+ +3 +blocked +\d+ +irq/), "threads shows the interrupt thread")
    #expect(
      output.contains(/1 +2 +running +\d+ +boot +\(kernel service <- Shell <- kernel\)/),
      "threads shows each thread's servers:\n\(result.tail(30))")
    #expect(count("(servers it is in, innermost first)") == 2, "threads, and thr<Tab>")
    #expect(
      output.matches(of: /1 +1 +CharacterDevice +serial \(SerialDriver\)/).count == 3,
      "refs shell, the edited rfs shell, and refs she<Tab>:\n\(result.tail(60))")
    #expect(
      output.matches(of: /frames: \d+ free of \d+/).count == 3, "mem, mem from history, memx<backspace>")
    // Every server's quota use against its limits (the defaults here; a user-mode
    // server's heap counts against its memory) and its heap (bytes in use in kernel mode,
    // where the kernel runs the allocator).
    let memory = mode == "kernel" ? "0" : "[1-9][0-9]*"
    let heap = mode == "kernel" ? "[0-9]+ bytes in [0-9]+ allocations" : "[0-9]+ KiB backed"
    #expect(
      output.contains(
        try Regex(
          "SerialDriver: memory \(memory)/16384 KiB, threads 0/16 \\(priority at most 2\\), timers 0/32, mappings 0/256, heap \(heap)\n"
        )),
      "mem shows quotas:\n\(result.tail(40))")
    #expect(output.contains("unknown command 'bogus' (type help)"))
    #expect(output.contains("refs: missing NAME\nusage: refs NAME"))
    #expect(output.contains("servers takes no arguments\nusage: servers"))
    #expect(output.contains("crash^C") && !output.contains("crashing on purpose"), "Ctrl-C abandons the line")
    #expect(output.contains("line longer than 200 characters: not run"))
    #expect(output.contains("Template: hello from the template server"))
    #expect(output.contains("hello finished with 0"))
    #expect(
      output.contains("no instance called nope (see servers; run takes the instances of the shell's group)"))
    // pci: the bus server's enumeration, like lspci, with the BARs sized.
    #expect(output.contains("00:00.0 Host bridge [0600]: 8086:1237"), "\(result.tail(30))")
    #expect(
      output.contains(
        /00:0\d\.0 Ethernet controller \[0200\]: 10ec:8139 \(rev 20\) irq \d+ \(INTA\) bar0 io 0x[0-9a-f]+ size 256 bar1 mem 0x[0-9a-f]+ size 256/
      ), "the RTL8139 is found")
    #expect(output.contains(/up \d+\.\d s/))
  }

  @Test func userModeFaultsAreContainedAndTheServerRestarted() throws {
    let result = try QEMU.boot(
      image: "kernel", modules: ["systems/tests/containment.system"] + QEMU.serverModules,
      append: "on-panic=exit", countInstructions: true, timeout: 120
    ) { $0.contains("idling") }
    let output = result.output
    #expect(!result.timedOut, "the guest hung:\n\(result.tail())")
    #expect(!output.contains("KERNEL PANIC"), "a user-mode fault reached the kernel:\n\(result.tail(30))")
    // Refused: a forged handle (1), blocks in kernel memory, unmapped or straddling (4),
    // an oversized block (3), kernel calls made on a stack that is not the thread's (4),
    // a call whose arguments lie past the end of the stack (1); the server keeps serving.
    for (kind, status) in [(7, 1), (8, 4), (9, 4), (10, 3), (11, 4), (16, 4), (17, 4), (18, 1)] {
      #expect(
        output.contains("@@PROBE refused kind=\(kind) result=value \(status) then=value 6"),
        "kind \(kind):\n\(result.tail(40))")
    }
    #expect(output.contains("@@PROBE secret kind=6 result=fault secret-seen=false"))
    // Faults: wild write, division by zero, overflow trap, endless loop, kernel read,
    // write to read-only memory, jump into the kernel, an I/O and a privileged
    // instruction; three rounds, restarted each time.
    for kind in [1, 2, 3, 4, 5, 12, 13, 14, 15, 19] {
      for round in 1...3 {
        #expect(
          output.contains(
            "@@PROBE fault kind=\(kind) round=\(round) result=serverUnavailable dead=serverUnavailable rebound=true after=value 6"
          ), "kind \(kind) round \(round):\n\(result.tail(40))")
      }
    }
    #expect(output.contains("watchdog: running for 2 seconds without calling out of its server"))
    #expect(output.contains("server Fragile stopped: General protection fault"))
    #expect(output.contains("server backtrace: Fragile <- Prober <- kernel"))
    #expect(output.contains("system: fragile failed; restarting it (restart 31)"))
    #expect(output.contains("@@PROBE done failures=0"))
    #expect(output.contains("system: prober finished with 0 (status 0)"))
    #expect(output.contains(/(\d+) server objects created, \1 destroyed, 0 alive; 0 servers still loaded/))
    expectHeapBackToBase(output, composition: "systems/tests/containment.system")
    // 28 restarts each load a fresh address space; a frame lost per restart would show.
    // (Frames the kernel heap maps are counted as its; a first group also keeps a few
    // page tables made on first use: under 8.)
    let frames = try #require(
      output.firstMatch(
        of: /system: (\d+) frames free, (\d+) before; kernel heap maps (\d+) pages, (\d+) before/))
    let lost = (Int(frames.2)! + Int(frames.4)!) - (Int(frames.1)! + Int(frames.3)!)
    #expect(lost < 8, "frames: \(frames.0)")
  }

  @Test func aFailedServerOutlivesItsLastReferenceWhileAThreadIsInside() throws {
    let result = try bootComposition(
      "systems/tests/lingering.system", test: "aFailedServerOutlivesItsLastReferenceWhileAThreadIsInside",
      until: "unloaded Fragile", countInstructions: true)
    let output = result.output
    let steps = [
      "@@LINGER fault while the worker is inside: serverUnavailable",
      "Fragile failed with 1 threads inside; unloading it when they have left",
      "Fragile (failed): a thread still inside it stopped: watchdog",
      "@@LINGER worker left the failed server: serverUnavailable",
      "unloaded Fragile",
    ]
    let positions = steps.map { output.range(of: $0)?.lowerBound }
    #expect(positions.allSatisfy { $0 != nil }, "\(result.tail(20))")
    let found = positions.compactMap { $0 }
    #expect(found == found.sorted(), "in this order: \(steps)")
  }

  @Test func memoryReferencesPagersOnDemandAndCopyOnWrite() throws {
    let result = try bootComposition(
      "systems/tests/paging.system", test: "memoryReferencesPagersOnDemandAndCopyOnWrite",
      countInstructions: true)
    let output = result.output
    // 64 pages mapped; two reads allocate two pages, a write to one of them none, a write
    // to a third page one: allocated only when touched.
    #expect(
      output.contains(
        "@@PAGING zero mapped=64 before=0 after-2-reads=2 after-2-writes=3 zeroes=true written-back=true"),
      "\(result.tail(20))")
    // Eight template pages all read: no copies; three writes to two pages: two copies.
    #expect(
      output.contains(
        "@@PAGING cow pages=8 template-read=true copies-after-reads=0 copies-after-writes=2 writes-kept=true rest-unchanged=true"
      ))
    #expect(
      output.contains(
        "@@PAGING shared size=12288 physical-aligned=true seen-through-second-mapping=true alive-while-mapped=true pages-taken=3 pages-returned=3"
      ))
    #expect(output.contains("@@PAGING done failures=0"))
    #expect(!output.contains("@@PAGING FAIL"))
    #expect(output.contains(/(\d+) server objects created, \1 destroyed, 0 alive; 0 servers still loaded/))
    expectHeapBackToBase(output, composition: "systems/tests/paging.system")
  }

  @Test func theIsolatedShellIsRestartedEachTimeItCrashes() throws {
    let input = (after: "tessera> ", text: "crash\rcrash\rcrash\rservers\ruptime\r")
    let result = try bootComposition(
      "systems/isolated.system", test: "theIsolatedShellIsRestartedEachTimeItCrashes", input: input,
      until: "up ", devices: ["rtl8139"])
    let output = result.output
    for restart in 1...3 {
      #expect(
        output.contains("system: shell failed; restarting it (restart \(restart))"), "\(result.tail(40))")
    }
    #expect(output.contains("server Shell stopped: Page fault"))
    #expect(output.contains("system: shell failed while running; running the restarted instance"))
    #expect(output.components(separatedBy: "Tessera shell: type help").count == 5, "four shells started")
    #expect(output.contains(/up \d+\.\d s/), "the fourth shell answers")
    // servers shows the live instance with its restart count, not the failed ones. (The
    // kernel's log shares the serial line: a line of it may land inside the table.)
    let table = output.replacing(/\[ *\d+\.\d+\] [^\n]*\n/, with: "")
    #expect(
      table.contains(/shell +Shell +user +\d+ +\d+ +\d+ +serialized +3 +terminal=serial/),
      "\(result.tail(30))")
    #expect(!output.contains(/shell +Shell +FAILED/))
    #expect(!output.contains("KERNEL PANIC"))
  }

  @Test func aFloodOfInputDoesNotLoseTheSystem() throws {
    // 4,000 characters arrive as fast as the UART takes them: thousands of interrupts.
    let flood = String(repeating: "x", count: 4000)
    let input = (after: "tessera> ", text: flood + "\ruptime\r")
    let result = try bootComposition(
      "systems/default.system", test: "aFloodOfInputDoesNotLoseTheSystem", input: input, until: "up ",
      devices: ["rtl8139"])
    #expect(result.output.contains(/up \d+\.\d s/), "the shell stopped answering:\n\(result.tail(10))")
    #expect(!result.output.contains("KERNEL PANIC"))
  }
}
