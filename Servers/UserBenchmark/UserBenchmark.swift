// UserBenchmark: instruction counts of the user-mode paths, measured like Benchmark (the
// time-stamp counter under -icount shift=0; the empty loop subtracted).

import KernelCore
import ServerRuntime
import TesseraABI
import _Volatile

let iterations: UInt32 = 20_000

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
    let kernelTarget = Required.kernelTarget

    func measure(_ body: (UInt32) -> UInt32) -> UInt64 {
      let start = tessera_timestamp()
      var index: UInt32 = 0
      while index < iterations {
        sink.store(body(index))
        index &+= 1
      }
      return tessera_timestamp() &- start
    }

    _ = measure { $0 }
    _ = measure { (try? target.compute(a: UInt($0), b: 2, c: 3)).map { UInt32(truncatingIfNeeded: $0) } ?? 0 }
    let empty = measure { $0 }
    let null = measure { tessera_null_call() &+ $0 }
    let interSpace = measure {
      (try? target.compute(a: UInt($0), b: 2, c: 3)).map { UInt32(truncatingIfNeeded: $0) } ?? 0
    }
    let toKernel = measure {
      (try? kernelTarget.compute(a: UInt($0), b: 2, c: 3)).map { UInt32(truncatingIfNeeded: $0) } ?? 0
    }
    report("null_syscall", null, minus: empty)
    report("inter_as_call", interSpace, minus: empty)
    report("user_to_kernel_call", toKernel, minus: empty)
    return 0
  }
}

func start() -> Program {
  Program.export(Runner())!
}
