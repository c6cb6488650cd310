// BenchmarkSmokeTests: the benchmark composition (systems/bench.system) boots and
// produces every figure `make bench` reports, each call succeeding; a smoke run, so the
// benchmarks cannot rot between `make bench` runs. No figure is judged here: times and
// instruction counts are `make bench`'s, never a test's.

import Foundation
import TesseraTools
import Testing

@Suite struct BenchmarkSmokeTests {
  /// Every figure bench.system prints.
  static let figures: Set<String> = {
    var names: Set<String> = [
      "empty_loop", "function_call", "kernel_call", "locked_kernel_call", "reference_acquire_release",
      "kernel_to_user_call", "kernel_to_locked_user_call", "thread_switch", "semaphore_signal_wait",
      "null_syscall",
      "inter_as_call", "user_to_kernel_call",
    ]
    for size in ["60", "1514"] {
      for label in ["c_kernel", "c_user", "cplus_kernel", "cplus_user"] {
        for kind in ["send", "receive", "receive_shared"] { names.insert("net_\(kind)_\(size)_\(label)") }
      }
      for placement in ["kernel", "user"] {
        for kind in ["copy", "batch16", "shared"] { names.insert("frames_\(kind)_\(size)_\(placement)") }
      }
    }
    for size in ["64", "1472"] {
      for placement in ["kernel", "user"] {
        for kind in ["echo", "udp"] { names.insert("stack_\(kind)_\(size)_\(placement)") }
      }
    }
    return names
  }()

  @Test func everyBenchmarkFigureIsProducedAndEveryCallSucceeds() throws {
    let result = try bootComposition(
      "systems/bench.system", test: "everyBenchmarkFigureIsProducedAndEveryCallSucceeds",
      until: "composition done", devices: ["rtl8139", "rtl8139"])
    #expect(!result.output.contains("@@BENCH failed"), "\(result.tail(20))")
    let results = try benchmarkResults(fromConsole: result.output, file: "bench console")
    let names = Set(results.map(\.name))
    #expect(
      names == Self.figures,
      "missing: \(Self.figures.subtracting(names).sorted()), unexpected: \(names.subtracting(Self.figures).sorted())"
    )
    #expect(results.allSatisfy { $0.iterations > 0 && $0.total > 0 })
    #expect(result.output.contains("system: composition done, 0 errors"))
  }
}
