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
    let call = measure {
      (try? target.compute(a: UInt($0), b: 2, c: 3)).map { UInt32(truncatingIfNeeded: $0) } ?? 0
    }
    let reference = measure { index in
      _ = try? target.acquire()
      target.release()
      return index
    }
    let locked = Required.locked
    let lockedCall = measure {
      (try? locked.compute(a: UInt($0), b: 2, c: 3)).map { UInt32(truncatingIfNeeded: $0) } ?? 0
    }
    let isolated = Required.isolated
    let toUser = measure {
      (try? isolated.compute(a: UInt($0), b: 2, c: 3)).map { UInt32(truncatingIfNeeded: $0) } ?? 0
    }
    report("empty_loop", empty, minus: 0)
    report("function_call", function, minus: empty)
    report("kernel_call", call, minus: empty)
    report("locked_kernel_call", lockedCall, minus: empty)
    report("reference_acquire_release", reference, minus: empty)
    report("kernel_to_user_call", toUser, minus: empty)
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
    let alone = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
    defer { alone.deallocate() }
    let sink = VolatileMappedRegister<UInt32>(unsafeBitPattern: UInt(bitPattern: alone))
    let operationsStart = tessera_timestamp()
    for index in 0..<iterations {
      try? ping.signal()
      try? ping.wait()
      try? pong.signal()
      try? pong.wait()
      sink.store(index)
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
