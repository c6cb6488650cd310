// KernelObject: an object that references can point to; one per exported server object
// and per kernel-provided service.
//
// Contract: `references` counts the table entries that hold it (an entry's own count,
// changed by acquire/release, is the entry's business). When no entry holds it and no
// thread is inside one of its methods, the object is destroyed: its server is told
// through `tessera_destroy(context)` on the server's own worker thread (inside the
// server, with its lock if it is not thread-safe, so any memory it frees is charged to
// it) and the kernel forgets it.

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
  /// names the object itself (CallChain.value(of:)): a thread inside one of its methods
  /// pins it.
  var entryWords: (context: UInt, methods: UInt, digest: UInt, methodCount: UInt, chainValue: UInt) {
    (
      UInt(context), UInt(methods), UInt(digest), UInt(interface.methodCount),
      UInt(CallChain.value(of: self))
    )
  }

  /// Objects whose last reference went while a thread was inside one of their methods
  /// (or whose server's worker could not be started); the supervisor hands them on once
  /// no call chain names them (`handOnUnused`).
  nonisolated(unsafe) static var waiting: [KernelObject] = []
  /// Objects handed on after waiting (for the threads inside them, or for a worker), since
  /// boot.
  nonisolated(unsafe) static var deferredFrees = 0

  /// Called when the last count is gone (with interrupts disabled or not). Nothing of the
  /// object's server runs here: this may be any thread, the supervisor's or the timer
  /// thread's included, with interrupts disabled and in the middle of a table change. A
  /// server's object goes to its server's worker (ServerWorker), which runs the server's
  /// destroy; an object a kernel service made is freed. Either waits while a thread is
  /// inside one of the object's methods (another thread of the caller's server, or one
  /// blocked in a semaphore's wait): its memory, and for a server's object the server's
  /// own state of it, are still in use.
  func destroy() {
    // One interrupts-disabled region from the last reference to the hand-on, so the
    // supervisor never sees the system idle in between (the group's end measures then).
    Machine.withInterruptsDisabled {
      if let owner {
        // Counted as gone now; its server stays loaded while its destroy is pending: the
        // server's code and words must outlive the call.
        Self.destroyed += 1
        owner.objectCount -= 1
        owner.pendingDestroys += 1
      }
      if CallChain.anyThreadInside(self) {
        Self.waiting.append(self)
        Supervisor.wake()
      } else {
        handOn()
      }
    }
  }

  /// Frees the object (a kernel service's) or posts its destroy to its server's worker;
  /// if no worker can be started it waits with the others.
  private func handOn() {
    guard let owner else {
      freeKernelObject()
      return
    }
    guard ServerWorker.post(.destroy(self), for: owner.account) else {
      Machine.withInterruptsDisabled { Self.waiting.append(self) }
      Supervisor.wake()
      return
    }
  }

  /// Runs the server's destroy of the object (on its server's worker): the objects of a
  /// failed server, or of one unloaded meanwhile (its own table held them), die with it;
  /// its code is not run again. An unload that waited for the destroy goes on (the
  /// supervisor does it).
  func runDestroy() {
    guard let owner else { return }
    if owner.isLoaded, owner.destroyFunction != 0, !owner.failed {
      _ = owner.enter(owner.destroyFunction, context: context, locked: !owner.file.manifest.isThreadSafe)
    }
    let unloadWaits = Machine.withInterruptsDisabled {
      owner.pendingDestroys -= 1
      return owner.pendingDestroys == 0 && owner.unloadPending
    }
    if unloadWaits { Supervisor.wake() }
  }

  /// Releases what a kernel service made for this object.
  private func freeKernelObject() {
    Unmanaged<AnyObject>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(context))!).release()
  }

  /// Hands on the waiting objects no call chain names any more; whether any still wait
  /// (Supervisor).
  static func handOnUnused() -> Bool {
    Machine.withInterruptsDisabled {
      let ready = waiting.filter { !CallChain.anyThreadInside($0) }
      waiting.removeAll { object in ready.contains { $0 === object } }
      if waiting.isEmpty { waiting = [] }
      for object in ready {
        deferredFrees += 1
        object.handOn()  // back on the list if its worker cannot be made yet
      }
      return !waiting.isEmpty
    }
  }
}
