// ResourceAccount: what one server instance has the kernel hold for it, against the
// limits its composition line gives (Quotas, KernelCore).
//
// Contract: kernel services charge the account of the server that called them (the call
// chain's innermost server) before they make something, and what they made uncharges it
// when it goes; those things hold the account, so it outlives whichever of them and the
// server ends last. A charge beyond a limit is refused and logged, at most once a second
// per resource, so a server looping on refused requests cannot flood the console.
// Interrupts are disabled around each change (several threads of a server charge it).

import KernelCore

final class ResourceAccount {
  let name: KernelMessage
  var limits = Quotas()
  private var used: InlineArray<5, UInt32> = .init(repeating: 0)
  /// Per resource, the tick of the last refusal logged (refusals are logged at most once
  /// a second each, so a server looping on refused requests cannot flood the console).
  private var lastWarning: InlineArray<5, UInt64> = .init(repeating: UInt64.max)

  init(name: KernelMessage) { self.name = name }

  /// How much of `resource` is held now.
  func use(of resource: QuotaResource) -> UInt32 { used[resource.rawValue] }

  /// Charges `amount` of `resource`; false, with a log line, if that would exceed the limit.
  func charge(_ resource: QuotaResource, _ amount: UInt32 = 1) -> Bool {
    Machine.withInterruptsDisabled {
      let index = resource.rawValue
      guard amount <= limits[resource], used[index] <= limits[resource] - amount else {
        if shouldWarn(index) {
          Log.warning(
            "quota: \(name) reached its \(resource.name) limit (\(used[index]) of \(limits[resource]) held, \(amount) more asked); refused"
          )
        }
        return false
      }
      used[index] += amount
      return true
    }
  }

  /// Gives back `amount` of `resource`.
  func uncharge(_ resource: QuotaResource, _ amount: UInt32 = 1) {
    Machine.withInterruptsDisabled {
      let index = resource.rawValue
      used[index] = used[index] >= amount ? used[index] - amount : 0
    }
  }

  /// Whether a refusal of resource `index` is logged now (interrupts disabled).
  private func shouldWarn(_ index: Int) -> Bool {
    let now = Timer.ticks
    guard lastWarning[index] == UInt64.max || now &- lastWarning[index] >= 1000 else { return false }
    lastWarning[index] = now
    return true
  }

  /// Whether threads may run at `priority` (a word from the server); logs a refusal.
  func allows(priority: UInt) -> Bool {
    guard priority > UInt(limits[.priority]) else { return true }
    if Machine.withInterruptsDisabled({ shouldWarn(QuotaResource.priority.rawValue) }) {
      Log.warning(
        "quota: \(name) may start threads of priority \(limits[.priority]) at most, not \(priority); refused")
    }
    return false
  }

  /// One line for the shell's `mem`: each resource's use against its limit.
  var summary: KernelMessage {
    "\(name): memory \(use(of: .memory) / 1024)/\(limits[.memory] / 1024) KiB, threads \(use(of: .threads))/\(limits[.threads]) (priority at most \(limits[.priority])), timers \(use(of: .timers))/\(limits[.timers]), mappings \(use(of: .mappings))/\(limits[.mappings])"
  }
}
