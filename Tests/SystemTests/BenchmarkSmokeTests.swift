// BenchmarkSmokeTests: the benchmark composition (systems/bench.system) boots and
// produces every figure `make bench` reports, each call succeeding; a smoke run, so the
// benchmarks cannot rot between `make bench` runs. No figure is judged here: times and
// instruction counts are `make bench`'s, never a test's.

import Foundation
import TesseraTools
import Testing

@Suite struct BenchmarkSmokeTests {
  @Test func everyBenchmarkFigureIsProducedAndEveryCallSucceeds() throws {
    let result = try bootComposition(
      "systems/bench.system", test: "everyBenchmarkFigureIsProducedAndEveryCallSucceeds",
      until: "composition done", devices: ["rtl8139", "rtl8139"])
    #expect(!result.output.contains("@@BENCH failed"), "\(result.tail(20))")
    let results = try benchmarkResults(fromConsole: result.output, file: "bench console")
    try checkExpectedFigures(results, file: "bench console")
    // Every target can be judged (no figure it needs is missing); whether it is met is
    // `make bench`'s business, not a test's.
    #expect(try judgeTargets(results, file: "bench console").count == benchmarkTargets.count)
    #expect(result.output.contains("system: composition done, 0 errors"))
  }
}
