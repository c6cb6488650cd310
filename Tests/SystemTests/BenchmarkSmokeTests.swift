// BenchmarkSmokeTests: the benchmark composition (systems/bench.system, with 2,000 rounds
// per call figure instead of 100,000) boots and produces every figure `make bench`
// reports, each call succeeding; a smoke run, so the benchmarks cannot rot between `make
// bench` runs. No figure is judged here: times and instruction counts are `make bench`'s,
// never a test's. The guest runs under -icount as `make bench`'s does: some figures are the
// difference of two loops (the thread switch), and on a loaded host's wall clock that
// difference can come out as nothing.

import Foundation
import TesseraTools
import Testing

@Suite struct BenchmarkSmokeTests {
  /// systems/bench.system with `set iterations 2000` for the two call benchmarks, in
  /// build/tests (the smoke run needs every figure, not 100,000 rounds of each).
  static func smokeComposition() throws -> String {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent()
    var text = try String(contentsOf: root.appendingPathComponent("systems/bench.system"), encoding: .utf8)
    for line in ["server bench Benchmark.srv\n", "server userbench UserBenchmark.srv user\n"] {
      let range = try #require(text.range(of: line), "bench.system has no line \(line)")
      text.replaceSubrange(range, with: line + "  set iterations 2000\n")
    }
    let path = "build/tests/bench-smoke.system"
    try FileManager.default.createDirectory(
      at: root.appendingPathComponent("build/tests"), withIntermediateDirectories: true)
    try text.write(to: root.appendingPathComponent(path), atomically: true, encoding: .utf8)
    return path
  }

  @Test func everyBenchmarkFigureIsProducedAndEveryCallSucceeds() throws {
    let result = try bootComposition(
      try Self.smokeComposition(), test: "everyBenchmarkFigureIsProducedAndEveryCallSucceeds",
      until: "composition done", countInstructions: true, devices: ["rtl8139", "rtl8139"],
      // About 18 s alone; a CI machine running other guests beside it may need several times that.
      timeout: 180)
    #expect(
      result.output.contains("@@BENCH kernel_call_bound instructions=")
        && result.output.contains("iterations=2000"))
    #expect(!result.output.contains("@@BENCH failed"), "\(result.tail(20))")
    let results = try benchmarkResults(fromConsole: result.output, file: "bench console")
    try checkExpectedFigures(results, file: "bench console")
    // Every target can be judged (no figure it needs is missing); whether it is met is
    // `make bench`'s business, not a test's.
    #expect(try judgeTargets(results, file: "bench console").count == benchmarkTargets.count)
    #expect(result.output.contains("system: composition done, 0 errors"))
  }
}
