// Benchmark: instruction counts per operation of the kernel-mode paths, measured with
// the loop in Measurement.swift (the empty loop is measured too and subtracted).

import KernelCore
import ServerRuntime
import TesseraABI

/// A plain function with the same arguments as the cross-server call. Public and never
/// inlined, so the call really happens.
@inline(never)
@_cdecl("benchmark_plain_compute")
public func plainCompute(_ a: UInt32, _ b: UInt32, _ c: UInt32) -> UInt32 { a &+ b &+ c }

/// The other half of the thread-switch ping-pong: waits for `ping`, signals `pong`.
final class Ponger: RunnableImplementation {
  let ping: Semaphore
  let pong: Semaphore
  init(ping: Semaphore, pong: Semaphore) {
    self.ping = ping
    self.pong = pong
  }

  func run() {
    for _ in 0..<iterations {
      try? ping.wait()
      try? pong.signal()
    }
  }
}

final class Runner: ProgramImplementation {
  let loop = Measurement()

  func run() -> UInt {
    let target = Required.target
    let locked = Required.locked
    let isolated = Required.isolated
    // Warm up once so every path has run before it is measured.
    _ = loop.measure { $0 }
    let empty = loop.measure { $0 }
    let function = loop.measure { plainCompute($0, 2, 3) }
    let call = loop.measure { computeWord(target, $0) }
    let reference = loop.measure { index in
      _ = try? target.acquire()
      target.release()
      return index
    }
    let lockedCall = loop.measure { computeWord(locked, $0) }
    let toUser = loop.measure { computeWord(isolated, $0) }
    let isolatedLocked = Required.isolatedLocked
    let toLockedUser = loop.measure { computeWord(isolatedLocked, $0) }
    report("empty_loop", empty, minus: 0)
    report("function_call", function, minus: empty)
    report("kernel_call", call, minus: empty)
    report("locked_kernel_call", lockedCall, minus: empty)
    report("reference_acquire_release", reference, minus: empty)
    report("kernel_to_user_call", toUser, minus: empty)
    report("kernel_to_locked_user_call", toLockedUser, minus: empty)
    measureThreadSwitch(empty: empty)
    return 0
  }

  /// Two threads take turns through two semaphores: each round is two switches and two
  /// signal/wait pairs. The semaphore operations alone (no switch: the unit is there) are
  /// measured too and subtracted, leaving the switch.
  private func measureThreadSwitch(empty: UInt64) {
    guard let ping = try? Required.sync.makeSemaphore(count: 0),
      let pong = try? Required.sync.makeSemaphore(count: 0),
      let work = Runnable.export(Ponger(ping: ping, pong: pong))
    else { return }
    _ = try? Required.threads.spawn(work: work, priority: 2)
    work.release()
    let start = tessera_timestamp()
    for _ in 0..<iterations {
      try? ping.signal()
      try? pong.wait()
    }
    let roundTrips = tessera_timestamp() &- start
    // The same four semaphore calls when no thread has to wait.
    let operationsStart = tessera_timestamp()
    for index in 0..<iterations {
      try? ping.signal()
      try? ping.wait()
      try? pong.signal()
      try? pong.wait()
      loop.store(index)
    }
    let operations = tessera_timestamp() &- operationsStart
    // Two switches per round trip.
    report("thread_switch", (roundTrips &- (operations &- empty)) / 2, minus: 0)
    report("semaphore_signal_wait", operations / 2, minus: empty / 2)
    ping.release()
    pong.release()
  }
}

func start() -> Program {
  Program.export(Runner())!
}
