// BenchmarkLineTests: the `@@BENCH` line, including the wall-clock runs of the smoke test,
// where a loop can take less than its baseline (a noisy clock) and must not trap.

import Testing

@testable import KernelCore

@Suite struct BenchmarkLineTests {
  func line(total: UInt64, minus baseline: UInt64, iterations: UInt64) -> String {
    benchmarkLine("figure", total: total, minus: baseline, iterations: iterations).string
  }

  @Test func figuresAreToTheHundredth() {
    #expect(
      line(total: 3_288, minus: 0, iterations: 100)
        == "@@BENCH figure instructions=32.88 total=3288 iterations=100")
    #expect(line(total: 1_005, minus: 0, iterations: 100).contains("instructions=10.05 "))
  }

  @Test func aLoopFasterThanItsBaselineCountsAsZeroAndAHugeOneDoesNotTrap() {
    #expect(line(total: 100, minus: 200, iterations: 10).contains("instructions=0.00 "))
    #expect(line(total: UInt64.max, minus: 0, iterations: 1).hasPrefix("@@BENCH figure instructions="))
  }
}
