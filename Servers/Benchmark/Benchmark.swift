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

/// The object this server exports to itself, so a call through a reference obtained at
/// run time (not a bound slot) can be measured.
final class LocalAdder: ComputeImplementation {
  func compute(a: UInt, b: UInt, c: UInt) -> UInt { a &+ b &+ c }
}

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
      guard (try? ping.wait()) != nil, (try? pong.signal()) != nil else { return }
    }
  }
}

final class Runner: ProgramImplementation {
  let loop = Measurement()

  func run() -> UInt {
    readIterations()
    let target = Required.target
    let locked = Required.locked
    let isolated = Required.isolated
    let isolatedLocked = Required.isolatedLocked
    // Warm up once so every path has run before it is measured.
    _ = loop.measure { $0 }
    let empty = loop.measure { $0 }
    let function = loop.measure { plainCompute($0, 2, 3) }
    let call = loop.measure { index throws(CallError) in try computeWord(target, index) }
    let lockedCall = loop.measure { index throws(CallError) in try computeWord(locked, index) }
    let toUser = loop.measure { index throws(CallError) in try computeWord(isolated, index) }
    let toLockedUser = loop.measure { index throws(CallError) in try computeWord(isolatedLocked, index) }
    let reference = loop.measure { index throws(CallError) in
      try target.acquire()
      guard target.release() else { throw .invalidHandle }
      return index
    }
    report("empty_loop", empty, minus: Measured(total: 0))
    report("function_call", function, minus: empty)
    report("kernel_call_bound", call, minus: empty)
    report("locked_kernel_call_bound", lockedCall, minus: empty)
    report("kernel_to_user_call_bound", toUser, minus: empty)
    report("kernel_to_locked_user_call_bound", toLockedUser, minus: empty)
    report("reference_acquire_release", reference, minus: empty)
    measureRunTimeReference(empty: empty)
    measureMarshaled(
      loop, target: Required.transfer, reference: target, empty: empty,
      names: ("marshaled_in_64_kernel", "marshaled_out_4096_kernel", "marshaled_reference_kernel"))
    measureThreadSwitch(empty: empty)
    measureHandOffs()
    return 0
  }

  /// A call through a reference this server made at run time (its own exported object:
  /// the general gate, which checks handle and interface), and a reference's whole life:
  /// made by `tessera_export`, then released, which frees the entry and destroys the
  /// object (the destroy runs on this server's worker thread, within the measurement).
  private func measureRunTimeReference(empty: Measured) {
    guard let own = Compute.export(LocalAdder()) else {
      return report("kernel_call_reference", Measured(total: 0, error: .outOfResources), minus: empty)
    }
    let call = loop.measure { index throws(CallError) in try computeWord(own, index) }
    own.release()
    report("kernel_call_reference", call, minus: empty)
    let lifetimes = min(iterations, 2_000)
    let lifetime = loop.measure(count: lifetimes) { index throws(CallError) in
      guard let made = Compute.export(LocalAdder()) else { throw .outOfResources }
      guard made.release() else { throw .invalidHandle }
      return index
    }
    report(
      "reference_export_release_destroy", lifetime, minus: scaled(empty, to: lifetimes), count: lifetimes)
  }

  /// The scheduler's switch alone: the kernel hands the processor between this thread and
  /// a kernel thread by waking and blocking, `iterations` times each way, and returns the
  /// instructions all of it took (loop included, a few instructions per switch).
  private func measureHandOffs() {
    let rounds = iterations
    var measured = Measured(total: 0)
    do throws(CallError) {
      let ticks = try Required.system.handOffs(rounds: UInt(rounds))
      if ticks == 0 { measured.error = .outOfResources }
      measured.total = UInt64(ticks)
    } catch {
      measured.error = error
    }
    report("thread_switch_handoff", measured, minus: Measured(total: 0), count: 2 * rounds)
  }

  /// Two threads take turns through two semaphores: each round is two switches and two
  /// signal/wait pairs. The semaphore operations alone (no switch: the unit is there) are
  /// measured too and subtracted, leaving the switch.
  private func measureThreadSwitch(empty: Measured) {
    guard let ping = try? Required.sync.makeSemaphore(count: 0),
      let pong = try? Required.sync.makeSemaphore(count: 0),
      let work = Runnable.export(Ponger(ping: ping, pong: pong))
    else {
      return report("thread_switch", Measured(total: 0, error: .outOfResources), minus: empty)
    }
    _ = try? Required.threads.spawn(work: work, priority: 2)
    work.release()
    let roundTrips = loop.measure { index throws(CallError) in
      try ping.signal()
      try pong.wait()
      return index
    }
    // The same four semaphore calls when no thread has to wait.
    let operations = loop.measure { index throws(CallError) in
      try ping.signal()
      try ping.wait()
      try pong.signal()
      try pong.wait()
      return index
    }
    // Two switches per round trip; the loop is in both measurements, so it cancels.
    // Outside -icount a noisy clock may make the difference negative: it counts as 0.
    let difference = roundTrips.total > operations.total ? roundTrips.total - operations.total : 0
    let switches = Measured(total: difference / 2, error: roundTrips.error ?? operations.error)
    report("thread_switch", switches, minus: Measured(total: 0))
    // Two signal/wait pairs per round.
    report(
      "semaphore_signal_wait", Measured(total: operations.total / 2, error: operations.error),
      minus: Measured(total: empty.total / 2))
    ping.release()
    pong.release()
  }
}

func start() -> Program {
  Program.export(Runner())!
}
