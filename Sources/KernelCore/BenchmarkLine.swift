// BenchmarkLine: the `@@BENCH` line benchmark servers print and `tessera bench-report`
// reads (BenchmarkReport.swift), written in one place.

/// `@@BENCH NAME instructions=N.NN total=TOTAL iterations=COUNT`: `total` instructions
/// (less `baseline`) over `iterations`, to the hundredth.
public func benchmarkLine(
  _ name: KernelMessage, total: UInt64, minus baseline: UInt64 = 0, iterations: UInt64
)
  -> KernelMessage
{
  let perOperation = (total &- baseline) * 100 / max(iterations, 1)
  let padding: StaticString = perOperation % 100 < 10 ? "0" : ""
  return
    "@@BENCH \(name) instructions=\(perOperation / 100).\(padding)\(perOperation % 100) total=\(total) iterations=\(iterations)"
}
