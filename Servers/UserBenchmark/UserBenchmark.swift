// UserBenchmark: instruction counts of the user-mode paths, measured like Benchmark
// (Measurement.swift): a null system call, calls into another user address space, and
// calls into a kernel-mode server.

import ServerRuntime
import TesseraABI

final class Runner: ProgramImplementation {
  func run() -> UInt {
    let loop = Measurement()
    let target = Required.target
    let kernelTarget = Required.kernelTarget
    // Warm up once so every path (and every stack page) has been used before it is measured.
    _ = loop.measure { $0 }
    _ = loop.measure { computeWord(target, $0) }
    let empty = loop.measure { $0 }
    let null = loop.measure { tessera_null_call() &+ $0 }
    let interSpace = loop.measure { computeWord(target, $0) }
    let toKernel = loop.measure { computeWord(kernelTarget, $0) }
    report("null_syscall", null, minus: empty)
    report("inter_as_call", interSpace, minus: empty)
    report("user_to_kernel_call", toKernel, minus: empty)
    return 0
  }
}

func start() -> Program {
  Program.export(Runner())!
}
