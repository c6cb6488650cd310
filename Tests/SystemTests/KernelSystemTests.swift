// KernelSystemTests: boots the kernel images under QEMU and checks what they report.

import Foundation
import Testing

/// The in-kernel tests that must be reported, so a test that silently disappears fails.
private let requiredKernelTests: Set<String> = [
  "frames.allocate_and_free", "frames.boot_memory_reserved", "paging.map_translate_unmap",
  "paging.null_page_unmapped", "paging.device_window_uncached", "heap.stress", "heap.alignment",
  "heap.swift_objects",
  "heap.out_of_memory", "interrupts.timer_ticks", "interrupts.handler_registration",
  "interrupts.sse_state_preserved", "interrupts.spurious_irq7", "symbols.names_in_backtraces",
  "loader.hostile_server_files",
]

/// Boots `image` and records an issue naming `test` if the guest hung.
private func bootChecked(
  _ test: String, image: String = "kernel-test", modules: [String] = [], append: String = "",
  countInstructions: Bool = false, timeout: TimeInterval = 60, until: ((Substring) -> Bool)? = nil
) throws -> BootResult {
  let result = try QEMU.boot(
    image: image, modules: modules, append: append, countInstructions: countInstructions, timeout: timeout,
    log: test, until: until)
  if result.timedOut {
    Issue.record(
      "\(test): the guest did not finish within \(Int(timeout)) s and was killed; last output:\n\(result.tail())"
    )
  }
  return result
}

@Suite struct KernelSystemTests {
  @Test func inKernelTestSuitePasses() throws {
    // The timer test checks tick counts: guest time follows instructions, not the host.
    // The loader test mutates a small server file (the first `.srv` module) on i686.
    let result = try bootChecked(
      "inKernelTestSuitePasses", modules: ["build/servers/ComputeTarget.srv"], countInstructions: true,
      timeout: 120)
    var begun: [String] = []
    var passed: Set<String> = []
    for line in result.lines {
      let words = line.split(separator: " ", maxSplits: 1).map(String.init)
      guard words.count == 2 else { continue }
      switch words[0] {
      case "@@TEST-BEGIN": begun.append(words[1])
      case "@@TEST-PASS": passed.insert(words[1])
      case "@@TEST-CHECK", "@@TEST-FAIL": Issue.record("in-kernel: \(line)")
      default: break
      }
    }
    #expect(result.status == GuestStatus.success, "exit status \(result.status); output:\n\(result.tail())")
    #expect(Set(begun) == passed, "tests begun but not passed: \(Set(begun).subtracting(passed).sorted())")
    #expect(
      requiredKernelTests.isSubset(of: passed), "missing: \(requiredKernelTests.subtracting(passed).sorted())"
    )
    #expect(result.output.contains("@@TEST-SUMMARY passed=\(passed.count) failed=0"))
    let fuzz = try #require(
      result.output.firstMatch(
        of: /@@LOADER-FUZZ file=\S+ chosen=(\d+) random=(\d+) accepted=(\d+) rejected=(\d+)/))
    #expect(Int(fuzz.1)! + Int(fuzz.2)! == Int(fuzz.3)! + Int(fuzz.4)!, "every case counted: \(fuzz.0)")
    #expect(Int(fuzz.2)! >= 10_000)
  }

  @Test func unknownTestNameIsReportedAsFailure() throws {
    let result = try bootChecked("unknownTestNameIsReportedAsFailure", append: "test=no.such.test")
    #expect(result.status == GuestStatus.failure)
    #expect(result.output.contains("@@TEST-CHECK no.such.test: no such test"))
  }

  @Test func aHundredBootModulesBoot() throws {
    // Every server file four times over (more than 100 modules): once, 31 modules
    // overflowed the boot reservations and panicked, so adding servers broke `make run`.
    let modules = ["systems/template.system"] + Array(repeating: QEMU.serverModules, count: 4).flatMap { $0 }
    #expect(modules.count > 100)
    let result = try bootChecked(
      "aHundredBootModulesBoot", image: "kernel", modules: modules, append: "on-panic=exit",
      until: { $0.contains("idling") })
    #expect(result.output.contains("Tessera 0.1.0 (i686)"), "\(result.tail())")
    #expect(result.output.contains("system: composition done, 0 errors"), "\(result.tail())")
    #expect(!result.output.contains("KERNEL PANIC"))
  }

  @Test func kernelStackOverflowIsReportedNamingTheThread() throws {
    // The guard page below each kernel stack turns an overflow into a double fault,
    // which runs on a stack of its own and names the thread (once, the overflow wrote
    // the kernel heap silently).
    let result = try bootChecked(
      "kernelStackOverflowIsReportedNamingTheThread", append: "test=fault.kernel_stack_overflow on-panic=exit"
    )
    #expect(result.status == GuestStatus.panic, "\(result.tail())")
    #expect(
      result.output.contains(/Double fault: kernel stack overflow of thread \d+ \(deep recursion\)/),
      "\(result.tail())")
    #expect(result.output.contains("recurse"), "the backtrace names the recursing function")
  }

  @Test func pageFaultPrintsPanicReport() throws {
    let result = try bootChecked("pageFaultPrintsPanicReport", append: "test=fault.page_fault on-panic=exit")
    #expect(result.status == GuestStatus.panic, "exit status \(result.status)")
    let report = result.output
    #expect(report.contains("KERNEL PANIC"))
    #expect(report.contains("Page fault (vector 14), error code 0x0002"))
    #expect(report.contains("faulting address (cr2) 0xdeadb000: page not present, write in kernel mode"))
    #expect(report.contains(/eip 0x[0-9a-f]{8}  test_write_to \+ 0x/))
    #expect(report.contains(/eax 0x[0-9a-f]{8}  ebx 0x[0-9a-f]{8}/))
    #expect(
      report.contains(/#1 0x[0-9a-f]{8} triggerPageFault\(_:\) \+ 0x/),
      "backtrace names Swift frames:\n\(report)")
    #expect(report.contains("runSystem()"))
    #expect(report.contains("kernel_main"))
  }

  @Test func divisionByZeroPrintsPanicReport() throws {
    let result = try bootChecked(
      "divisionByZeroPrintsPanicReport", append: "test=fault.divide_by_zero on-panic=exit")
    #expect(result.status == GuestStatus.panic, "exit status \(result.status)")
    #expect(result.output.contains("Division error (vector 0)"))
    #expect(result.output.contains(/#0 0x[0-9a-f]{8} test_divide_by_zero \+ 0x/))
    #expect(result.output.contains("runSystem()"))
  }

  @Test func swiftTrapPrintsPanicReport() throws {
    let result = try bootChecked("swiftTrapPrintsPanicReport", append: "test=fault.swift_trap on-panic=exit")
    #expect(result.status == GuestStatus.panic, "exit status \(result.status)")
    #expect(result.output.contains("Invalid opcode (vector 6)"))
    #expect(result.output.contains("a Swift runtime trap"))
    #expect(result.output.contains(/#0 0x[0-9a-f]{8} triggerSwiftTrap\(\) \+ 0x/))
  }

  @Test func explicitPanicPrintsReasonAndBacktrace() throws {
    let result = try bootChecked(
      "explicitPanicPrintsReasonAndBacktrace", append: "test=fault.panic on-panic=exit")
    #expect(result.status == GuestStatus.panic, "exit status \(result.status)")
    #expect(result.output.contains("KERNEL PANIC\n") || result.output.contains("KERNEL PANIC ="))
    #expect(result.output.contains("deliberate panic from fault.panic"))
    #expect(result.output.contains(/#\d 0x[0-9a-f]{8} runSystem\(\) \+ 0x/))
  }

  @Test func defaultImageBootsToBanner() throws {
    let result = try bootChecked("defaultImageBootsToBanner", image: "kernel", timeout: 30) { line in
      line.contains("idling")
    }
    #expect(result.stoppedByMatch, "the default image never reached its idle loop:\n\(result.tail())")
    let banner = try #require(result.lines.first { $0.contains("Tessera") }, "no banner:\n\(result.tail())")
    #expect(
      banner.contains(
        /^\[ *\d+\.\d{6}\] info: Tessera \d+\.\d+\.\d+ \(i686\): \d+ MiB usable memory, booted in \d+ ms at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/
      ), "banner: \(banner)")
    let mebibytes = Int(banner.firstMatch(of: /(\d+) MiB/)!.1)!
    #expect(mebibytes > 100 && mebibytes <= 128, "QEMU was given 128 MiB; the kernel found \(mebibytes)")
  }

  @Test func hungGuestIsKilledAfterTimeout() throws {
    // The default image idles forever; the harness must end it and say so.
    let result = try QEMU.boot(image: "kernel", timeout: 3)
    #expect(result.timedOut)
    #expect(result.output.contains("Tessera"))
  }
}
