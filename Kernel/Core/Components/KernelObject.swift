// KernelObject: an object that references can point to; one per exported server object
// and per kernel-provided service.
//
// Contract: `references` counts the table entries that hold it (an entry's own count,
// changed by acquire/release, is the entry's business). When no entry holds it the
// object is destroyed: its server is told through `tessera_destroy(context)` (inside the
// server, so any memory it frees is charged to it) and the kernel forgets it.

import CPU
import KernelCore

final class KernelObject: ReferencedObject {
  /// The server implementing the object; nil for kernel services.
  let owner: Server?
  /// The interface it implements (bytes owned by the owner's manifest or the kernel).
  let interface: InterfaceDescriptor
  /// The digest of `interface`, cached for the gate.
  let digest: UInt32
  /// Passed to every dispatch function as the first argument.
  let context: UInt32
  /// The address of the vector of method entries, one per method.
  let methods: UInt32
  /// Table entries holding the object.
  var references = 0

  /// Server objects created and destroyed since boot, for the kernel's reports (kernel
  /// services are not counted: they live for good).
  nonisolated(unsafe) static var created = 0
  nonisolated(unsafe) static var destroyed = 0

  init(owner: Server?, interface: InterfaceDescriptor, context: UInt32, methods: UInt32) {
    self.owner = owner
    self.interface = interface
    digest = interface.digest
    self.context = context
    self.methods = methods
    if let owner {
      Self.created += 1
      owner.objectCount += 1
    }
  }

  /// What a table entry holding the object says to generated code. The call-chain value
  /// of a kernel object is its context with bit 0 set (a kernel service record, not a
  /// server; see CallChain): a thread inside one of its methods names it, which keeps it.
  var entryWords: (context: UInt, methods: UInt, digest: UInt, methodCount: UInt, chainValue: UInt) {
    (
      UInt(context), UInt(methods), UInt(digest), UInt(interface.methodCount),
      owner.map { UInt(bitPattern: Unmanaged.passUnretained($0).toOpaque()) } ?? UInt(context | 1)
    )
  }

  /// Kernel objects whose last reference went while a thread was inside one of their
  /// methods; freed once no call chain names them (the supervisor looks).
  nonisolated(unsafe) static var waiting: [KernelObject] = []
  /// How often a kernel object's freeing waited for a thread inside it, since boot.
  nonisolated(unsafe) static var deferredFrees = 0

  /// Called when the last count is gone.
  func destroy() {
    guard let owner else {
      // An object a kernel service made (services themselves are never destroyed). A
      // thread inside one of its methods (another thread of the same server calling it,
      // or blocked in a semaphore's wait) still uses its memory: freed when it has left.
      let inUse = Machine.withInterruptsDisabled {
        guard CallChain.anyThreadInside(chainValue: context | 1) else { return false }
        Self.waiting.append(self)
        Self.deferredFrees += 1
        return true
      }
      if inUse {
        Supervisor.wake()
      } else {
        freeKernelObject()
      }
      return
    }
    do {
      Self.destroyed += 1
      owner.objectCount -= 1
      // A failed server's objects die with it: its code is not run again.
      if owner.destroyFunction != 0, !owner.failed {
        _ = owner.enter(owner.destroyFunction, context: context)
      }
    }
  }

  /// Releases what a kernel service made for this object.
  private func freeKernelObject() {
    Unmanaged<AnyObject>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(context))!).release()
  }

  /// Frees the waiting kernel objects no call chain names any more; whether any still
  /// wait (Supervisor).
  static func freeUnused() -> Bool {
    let ready: [KernelObject] = Machine.withInterruptsDisabled {
      let free = waiting.filter { !CallChain.anyThreadInside(chainValue: $0.context | 1) }
      waiting.removeAll { object in free.contains { $0 === object } }
      if waiting.isEmpty { waiting = [] }
      return free
    }
    for object in ready { object.freeKernelObject() }
    return Machine.withInterruptsDisabled { !waiting.isEmpty }
  }
}
