// Measurement: the loop and the report every benchmark server uses (Benchmark, and
// UserBenchmark through a link to this file).
//
// Contract: under `make bench` QEMU runs with `-icount shift=0`, so time-stamp-counter
// deltas are guest instructions. `measure` runs its body `iterations` times and stores
// each result through a volatile pointer, so the compiler can neither drop the body nor
// merge iterations; benchmarks subtract the same loop without an operation. `report`
// prints one `@@BENCH` line (the format `tessera bench-report` reads) on the console
// slot every benchmark server has.

import KernelCore
import ServerRuntime
import TesseraABI
import _Volatile

/// Iterations of every measured loop.
let iterations: UInt32 = 100_000

/// A volatile word the measured loops store into.
final class Measurement {
  private let memory = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
  private var sink: VolatileMappedRegister<UInt32> {
    VolatileMappedRegister<UInt32>(unsafeBitPattern: UInt(bitPattern: memory))
  }

  deinit { memory.deallocate() }

  /// Stores `value` where the compiler must assume someone reads it.
  func store(_ value: UInt32) { sink.store(value) }

  /// Instructions `iterations` rounds of `body` take, loop included.
  func measure(_ body: (UInt32) -> UInt32) -> UInt64 {
    let start = tessera_timestamp()
    var index: UInt32 = 0
    while index < iterations {
      sink.store(body(index))
      index &+= 1
    }
    return tessera_timestamp() &- start
  }
}

/// Prints `name` with the instructions per iteration of `total` minus `baseline`.
func report(_ name: StaticString, _ total: UInt64, minus baseline: UInt64) {
  benchmarkLine("\(name)", total: total, minus: baseline, iterations: UInt64(iterations)).withBytes {
    _ = try? Required.console.write(text: UnsafeRawBufferPointer($0))
  }
}

/// The result word of `compute(a, 2, 3)` on `target`, or 0 if the call failed.
func computeWord(_ target: Compute, _ a: UInt32) -> UInt32 {
  (try? target.compute(a: UInt(a), b: 2, c: 3)).map { UInt32(truncatingIfNeeded: $0) } ?? 0
}
