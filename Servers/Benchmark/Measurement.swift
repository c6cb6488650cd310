// Measurement: the loop and the report every call benchmark server uses (Benchmark, and
// UserBenchmark through a link to this file).
//
// Contract: under `make bench` QEMU runs with `-icount shift=0`, so time-stamp-counter
// deltas are guest instructions. `measure` runs its body `iterations` times and stores
// each result through a volatile pointer, so the compiler can neither drop the body nor
// merge iterations; benchmarks subtract the same loop without an operation. A body that
// throws stops the loop, and `report` then prints `@@BENCH failed NAME: ERROR` instead
// of a figure, which fails `tessera bench-report` (so `make bench`) and the smoke test.
// `report` prints one `@@BENCH` line (the format `tessera bench-report` reads) on the
// console slot every benchmark server has.

import KernelCore
import ServerRuntime
import TesseraABI
import _Volatile

/// Iterations of every measured loop: 100,000, or the composition's `set iterations N`
/// (the smoke test runs a few thousand), set by `readIterations` before anything runs.
nonisolated(unsafe) var iterations: UInt32 = 100_000

/// Sets `iterations` from the composition's `iterations` setting, if it has one (a
/// decimal number, 1 or more).
func readIterations() {
  let text = setting("iterations") { name, value throws(CallError) in
    try Required.settings.value(name: name, value: value)
  }
  if let count = decimalNumber(text, maximumDigits: 7), count > 0 { iterations = UInt32(count) }
}

/// `empty` (a loop of `iterations` rounds) scaled to a loop of `count` rounds.
func scaled(_ empty: Measured, to count: UInt32) -> Measured {
  Measured(total: empty.total &* UInt64(count) / UInt64(max(iterations, 1)), error: empty.error)
}

/// What one measured loop took, or the error that stopped it.
struct Measured {
  /// Instructions for all iterations, loop included.
  var total: UInt64
  /// The error a call of the loop returned (the loop stopped there).
  var error: CallError?
}

/// A volatile word the measured loops store into.
final class Measurement {
  private let memory = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
  private var sink: VolatileMappedRegister<UInt32> {
    VolatileMappedRegister<UInt32>(unsafeBitPattern: UInt(bitPattern: memory))
  }

  deinit { memory.deallocate() }

  /// Stores `value` where the compiler must assume someone reads it.
  func store(_ value: UInt32) { sink.store(value) }

  /// Instructions `count` rounds of `body` take, loop included; the first error stops it.
  /// The body gets the rounds left (count ... 1) as its varying argument: counting down
  /// to zero needs no register for the limit, so a loop around a call keeps the sink's
  /// address in a register as the empty loop does (counting up, the calls' loops spilled
  /// it and every figure carried one instruction the empty loop did not).
  func measure(count: UInt32 = iterations, _ body: (UInt32) throws(CallError) -> UInt32) -> Measured {
    let start = tessera_timestamp()
    var remaining = count
    while remaining != 0 {
      do {
        sink.store(try body(remaining))
      } catch {
        return Measured(total: 0, error: error)
      }
      remaining &-= 1
    }
    return Measured(total: tessera_timestamp() &- start, error: nil)
  }
}

/// What a measured body throws when a call succeeded but its result was wrong.
let wrongAnswer: UInt32 = 0x100

/// Prints `name` with the instructions per iteration of `measured` minus `baseline`, or
/// the error that stopped either loop.
func report(_ name: StaticString, _ measured: Measured, minus baseline: Measured, count: UInt32 = iterations)
{
  let line: KernelMessage
  if let error = measured.error ?? baseline.error {
    if case .unknown(let status) = error, status >= wrongAnswer {
      line = "@@BENCH failed \(name): the call succeeded, but its answer was wrong"
    } else {
      line = "@@BENCH failed \(name): \(error.description)"
    }
  } else {
    line = benchmarkLine("\(name)", total: measured.total, minus: baseline.total, iterations: UInt64(count))
  }
  line.withBytes { _ = try? Required.console.write(text: UnsafeRawBufferPointer($0)) }
}

/// The result word of `compute(a, 2, 3)` on `target`.
@inline(__always)
func computeWord(_ target: Compute, _ a: UInt32) throws(CallError) -> UInt32 {
  UInt32(truncatingIfNeeded: try target.compute(a: UInt(a), b: 2, c: 3))
}

/// Measures the three marshaled calls of `Transfer` on `target` (a 64-byte block in, a
/// 4 KiB block out, a reference passed) and reports them as `marshaled_*_PLACEMENT`.
/// `reference` is what is passed (the callee releases its handle of it).
func measureMarshaled(
  _ loop: Measurement, target: Transfer, reference: Compute, empty: Measured,
  names: (input: StaticString, output: StaticString, reference: StaticString)
) {
  let input = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 16)
  let output = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
  defer {
    input.deallocate()
    output.deallocate()
  }
  input.initializeMemory(as: UInt8.self, repeating: 1)
  let count = iterations
  let absorbed = loop.measure(count: count) { index throws(CallError) in
    let word = try target.absorb(data: UnsafeRawBufferPointer(input))
    guard word == 2 else { throw .unknown(wrongAnswer) }  // the block did not arrive intact
    return UInt32(truncatingIfNeeded: word) &+ index
  }
  let filled = loop.measure(count: count) { index throws(CallError) in
    output[4095] = 0
    guard try target.fill(data: output) == 4096, output[4095] == 0x5A else { throw .unknown(wrongAnswer) }
    return index
  }
  let held = loop.measure(count: count) { index throws(CallError) in
    guard try target.hold(target: reference) == 1 else { throw .unknown(wrongAnswer) }
    return index
  }
  report(names.input, absorbed, minus: empty, count: count)
  report(names.output, filled, minus: empty, count: count)
  report(names.reference, held, minus: empty, count: count)
}
