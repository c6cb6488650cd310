// ResourceAccount: what one server instance has the kernel hold for it, against the
// limits its composition line gives (Quotas, KernelCore).
//
// Contract: kernel services charge the account of the server that called them (the call
// chain's innermost server) before they make something, and what they made uncharges it
// when it goes; those things hold the account, so it outlives whichever of them and the
// server ends last. A charge beyond a limit is refused and logged once (until the use
// drops again), so a server looping on refused requests cannot flood the console.
// Interrupts are disabled around each change (several threads of a server charge it).

import KernelCore

final class ResourceAccount {
  let name: KernelMessage
  var limits = Quotas()
  private var used: InlineArray<5, UInt32> = .init(repeating: 0)
  private var warned: InlineArray<5, Bool> = .init(repeating: false)

  init(name: KernelMessage) { self.name = name }

  /// How much of `resource` is held now.
  func use(of resource: QuotaResource) -> UInt32 { used[resource.rawValue] }

  /// Charges `amount` of `resource`; false, with a log line, if that would exceed the limit.
  func charge(_ resource: QuotaResource, _ amount: UInt32 = 1) -> Bool {
    Machine.withInterruptsDisabled {
      let index = resource.rawValue
      guard amount <= limits[resource], used[index] <= limits[resource] - amount else {
        if !warned[index] {
          warned[index] = true
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
      warned[index] = false
    }
  }

  /// Whether threads may run at `priority` (a word from the server); logs a refusal.
  func allows(priority: UInt) -> Bool {
    guard priority > UInt(limits[.priority]) else { return true }
    Log.warning(
      "quota: \(name) may start threads of priority \(limits[.priority]) at most, not \(priority); refused")
    return false
  }

  /// One line for the shell's `mem`: each resource's use against its limit.
  var summary: KernelMessage {
    "\(name): memory \(use(of: .memory) / 1024)/\(limits[.memory] / 1024) KiB, threads \(use(of: .threads))/\(limits[.threads]) (priority at most \(limits[.priority])), timers \(use(of: .timers))/\(limits[.timers]), mappings \(use(of: .mappings))/\(limits[.mappings])"
  }
}
