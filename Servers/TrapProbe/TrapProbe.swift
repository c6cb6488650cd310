// TrapProbe: see TrapProbe.server. Prints one `@@KTRAP` line per attempt.

import KernelCore
import ServerRuntime

func report(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}

func outcome(_ body: () throws(CallError) -> UInt) -> KernelMessage {
  do throws(CallError) {
    return "value \(try body())"
  } catch .serverUnavailable {
    return "serverUnavailable"
  } catch {
    return "error \(error.status)"
  }
}

/// Waits (up to a second) for the restarted instance behind `reference` and switches to it.
func rebind(_ reference: inout Fragile) -> Bool {
  for _ in 0..<100 {
    if let handle = try? Required.supervision.rebind(reference: UInt(reference.handle)), handle != 0 {
      _ = reference.release()
      reference = Fragile(handle: UInt32(handle))
      return true
    }
    try? Required.clock.sleep(milliseconds: 10)
  }
  return false
}

final class Probe: ProgramImplementation {
  func run() -> UInt {
    var failures = 0
    var fragile = Required.fragile
    var relay = Required.relay
    // Fragile in kernel mode: 3 overflows (a Swift trap), 2 divides by zero (checked: a trap).
    for kind: UInt in [3, 2, 3] {
      let result = outcome { () throws(CallError) in try fragile.misbehave(kind: kind, address: 0) }
      let dead = outcome { () throws(CallError) in try fragile.compute(a: 1, b: 2, c: 3) }
      let rebound = rebind(&fragile)
      let after = outcome { () throws(CallError) in try fragile.compute(a: 1, b: 2, c: 3) }
      report("@@KTRAP direct kind=\(kind) result=\(result) dead=\(dead) rebound=\(rebound) after=\(after)")
      if !(rebound && after == "value 6") { failures += 1 }
    }
    // Relay (kernel mode, try!) over a user-mode Fragile that faults: the relay traps.
    // The restarted relay is bound to the same (failed) Fragile, as restarts are (nothing
    // is redirected behind a server's back), so its next call traps and is contained too.
    let result = outcome { () throws(CallError) in try relay.misbehave(kind: 1, address: 0) }
    let rebound = rebind(&relay)
    let after = outcome { () throws(CallError) in try relay.compute(a: 1, b: 2, c: 3) }
    report("@@KTRAP relay result=\(result) rebound=\(rebound) after=\(after)")
    if !(result == "serverUnavailable" && rebound && after == "serverUnavailable") { failures += 1 }
    report("@@KTRAP done failures=\(failures)")
    return UInt(failures)
  }
}

func start() -> Program {
  Program.export(Probe())!
}
