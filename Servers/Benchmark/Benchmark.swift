// Benchmark: instruction counts per operation, measured with the time-stamp counter.
// Under `make bench` QEMU runs with `-icount shift=0`, so TSC deltas are guest
// instructions. Every loop stores its result through a volatile pointer, so the compiler
// can neither drop the loop body nor merge iterations; the empty loop (the same loop
// with no operation) is measured too and subtracted.

import KernelCore
import ServerRuntime
import TesseraABI
import _Volatile

/// A plain function with the same arguments as the cross-server call. Public and never
/// inlined, so the call really happens.
@inline(never)
@_cdecl("benchmark_plain_compute")
public func plainCompute(_ a: UInt32, _ b: UInt32, _ c: UInt32) -> UInt32 { a &+ b &+ c }

let iterations: UInt32 = 100_000

func report(_ name: StaticString, _ total: UInt64, minus baseline: UInt64) {
  let perOperation = (total &- baseline) * 100 / UInt64(iterations)
  let padding: StaticString = perOperation % 100 < 10 ? "0" : ""
  let message: KernelMessage =
    "@@BENCH \(name) instructions=\(perOperation / 100).\(padding)\(perOperation % 100) total=\(total) iterations=\(iterations)"
  message.withBytes { _ = try? Required.console.write(text: UnsafeRawBufferPointer($0)) }
}

final class Runner: ProgramImplementation {
  func run() -> UInt {
    let sinkMemory = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
    defer { sinkMemory.deallocate() }
    let sink = VolatileMappedRegister<UInt32>(unsafeBitPattern: UInt(bitPattern: sinkMemory))
    let target = Required.target

    func measure(_ body: (UInt32) -> UInt32) -> UInt64 {
      let start = tessera_timestamp()
      var index: UInt32 = 0
      while index < iterations {
        sink.store(body(index))
        index &+= 1
      }
      return tessera_timestamp() &- start
    }

    // Warm up once so every path has run before it is measured.
    _ = measure { $0 }
    let empty = measure { $0 }
    let function = measure { plainCompute($0, 2, 3) }
    let call = measure { (try? target.compute(a: UInt($0), b: 2, c: 3)).map { UInt32(truncatingIfNeeded: $0) } ?? 0 }
    let reference = measure { index in
      _ = try? target.acquire()
      target.release()
      return index
    }
    report("empty_loop", empty, minus: 0)
    report("function_call", function, minus: empty)
    report("kernel_call", call, minus: empty)
    report("reference_acquire_release", reference, minus: empty)
    return 0
  }
}

func start() -> Program {
  Program.export(Runner())!
}
