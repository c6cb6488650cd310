// UserBenchmark: instruction counts of the user-mode paths, measured like Benchmark
// (Measurement.swift): a null system call, calls into another user address space and
// into a kernel-mode server, and marshaled calls into another user address space.

import KernelCore
import ServerRuntime
import TesseraABI

final class Runner: ProgramImplementation {
  func run() -> UInt {
    readIterations()
    let loop = Measurement()
    let target = Required.target
    let kernelTarget = Required.kernelTarget
    // Warm up once so every path (and every stack page) has been used before it is measured.
    _ = loop.measure { $0 }
    _ = loop.measure { index throws(CallError) in try computeWord(target, index) }
    let empty = loop.measure { $0 }
    let null = loop.measure { tessera_null_call() &+ $0 }
    let interSpace = loop.measure { index throws(CallError) in try computeWord(target, index) }
    let toKernel = loop.measure { index throws(CallError) in try computeWord(kernelTarget, index) }
    report("null_syscall", null, minus: empty)
    report("inter_as_call_bound", interSpace, minus: empty)
    report("user_to_kernel_call_bound", toKernel, minus: empty)
    measureMarshaled(
      loop, target: Required.transfer, reference: target, empty: empty,
      names: ("marshaled_in_64_user", "marshaled_out_4096_user", "marshaled_reference_user"))
    return 0
  }
}

func start() -> Program {
  Program.export(Runner())!
}
