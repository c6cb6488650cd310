// BenchmarkLine: the `@@BENCH` line benchmark servers print and `tessera bench-report`
// reads (BenchmarkReport.swift), written in one place.

/// `@@BENCH NAME instructions=N.NN total=TOTAL iterations=COUNT`: `total` instructions
/// (less `baseline`) over `iterations`, to the hundredth.
public func benchmarkLine(
  _ name: KernelMessage, total: UInt64, minus baseline: UInt64 = 0, iterations: UInt64
)
  -> KernelMessage
{
  // Outside -icount (a benchmark server booted by hand) the clock is wall time: a loop may
  // take less than the baseline, which counts as 0, and no figure may trap the benchmark.
  let difference = total > baseline ? total - baseline : 0
  let (hundredths, overflow) = difference.multipliedReportingOverflow(by: 100)
  let perOperation = (overflow ? UInt64.max : hundredths) / max(iterations, 1)
  let padding: StaticString = perOperation % 100 < 10 ? "0" : ""
  return
    "@@BENCH \(name) instructions=\(perOperation / 100).\(padding)\(perOperation % 100) total=\(total) iterations=\(iterations)"
}
