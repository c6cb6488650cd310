// Prober: asks Fragile to misbehave in every way, checks the outcome of each, and prints
// one `@@PROBE` line per attempt for the system test to assert on.
//
// Refused attempts must come back with their status while Fragile keeps serving. Faults
// must stop Fragile: the call fails with serverUnavailable, the old reference stays dead,
// and after the composition restarts Fragile a rebind gives a working reference. Every
// fault kind runs `rounds` times, so Fragile is restarted many times over.

import KernelCore
import ServerRuntime

/// The name of a call's outcome.
func outcome(_ result: Result<UInt, CallError>) -> KernelMessage {
  switch result {
  case .success(let value): "value \(value)"
  case .failure(.serverUnavailable): "serverUnavailable"
  case .failure(.invalidHandle): "invalidHandle"
  case .failure(let error): "error \(error.status)"
  }
}

func report(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}

final class Probe: ProgramImplementation {
  var fragile = Required.fragile
  let rounds = 3

  func call(_ body: () throws(CallError) -> UInt) -> Result<UInt, CallError> {
    do throws(CallError) { return .success(try body()) } catch { return .failure(error) }
  }

  func run() -> UInt {
    // A secret in this server's memory, which Fragile (another address space) must not see.
    let secret = UnsafeMutablePointer<UInt>.allocate(capacity: 1)
    secret.pointee = 0x5EC2_E7ED
    let secretAddress = UInt(bitPattern: secret)
    for kind: UInt in [7, 8, 9, 10, 11, 16, 17, 18] {
      let result = call { () throws(CallError) in try fragile.misbehave(kind: kind, address: 0) }
      let alive = call { () throws(CallError) in try fragile.compute(a: 1, b: 2, c: 3) }
      report("@@PROBE refused kind=\(kind) result=\(outcome(result)) then=\(outcome(alive))")
    }
    let peek = call { () throws(CallError) in try fragile.misbehave(kind: 6, address: secretAddress) }
    var seen = false
    if case .success(let value) = peek { seen = value == secret.pointee }
    let how: StaticString = peek.isFailure ? "fault" : "read"
    report("@@PROBE secret kind=6 result=\(how) secret-seen=\(seen)")
    if peek.isFailure { rebind() }
    var failures = 0
    for round in 1...rounds {
      for kind: UInt in [1, 2, 3, 4, 5, 12, 13, 14, 15, 19] {
        let result = call { () throws(CallError) in try fragile.misbehave(kind: kind, address: 0x0010_0000) }
        let dead = call { () throws(CallError) in try fragile.compute(a: 1, b: 2, c: 3) }
        let rebound = rebind()
        let after = call { () throws(CallError) in try fragile.compute(a: 1, b: 2, c: 3) }
        report(
          "@@PROBE fault kind=\(kind) round=\(round) result=\(outcome(result)) dead=\(outcome(dead)) rebound=\(rebound) after=\(outcome(after))"
        )
        if case .success(6) = after {} else { failures += 1 }
      }
    }
    report("@@PROBE done failures=\(failures)")
    secret.deallocate()
    return UInt(failures)
  }

  /// Waits (up to a second) for the restarted Fragile and switches to it.
  @discardableResult
  func rebind() -> Bool {
    for _ in 0..<100 {
      if let handle = try? Required.supervision.rebind(reference: UInt(fragile.handle)), handle != 0 {
        fragile.release()
        fragile = Fragile(handle: UInt32(handle))
        return true
      }
      try? Required.clock.sleep(milliseconds: 10)
    }
    return false
  }
}

extension Result {
  var isFailure: Bool {
    if case .failure = self { return true }
    return false
  }
}

func start() -> Program {
  Program.export(Probe())!
}
