// KernelObject: an object that references can point to; one per exported server object
// and per kernel-provided service.
//
// Contract: `references` counts table entries' counts across all tables. When it drops to
// zero the object is destroyed: its server is told through `tessera_destroy(context)`
// (inside the server, so any memory it frees is charged to it) and the kernel forgets it.

import CPU
import KernelCore

final class KernelObject {
  /// The server implementing the object; nil for kernel services.
  let owner: Server?
  /// The interface it implements (bytes owned by the owner's manifest or the kernel).
  let interface: InterfaceDescriptor
  /// The digest of `interface`, cached for the gate.
  let digest: UInt32
  /// Passed to every dispatch function as the first argument.
  let context: UInt32
  /// The address of the vector of method stubs, one per method.
  let stubs: UInt32
  /// Counts held by all reference tables together.
  var references = 0

  /// Server objects created and destroyed since boot, for the kernel's reports (kernel
  /// services are not counted: they live for good).
  nonisolated(unsafe) static var created = 0
  nonisolated(unsafe) static var destroyed = 0

  init(owner: Server?, interface: InterfaceDescriptor, context: UInt32, stubs: UInt32) {
    self.owner = owner
    self.interface = interface
    digest = interface.digest
    self.context = context
    self.stubs = stubs
    if let owner {
      Self.created += 1
      owner.objectCount += 1
    }
  }

  /// Called when the last count is gone.
  func destroy() {
    if let owner {
      Self.destroyed += 1
      owner.objectCount -= 1
      if owner.destroyFunction != 0, CallChain.push(owner) {
        _ = arch_call_words(owner.destroyFunction, context, 0, nil, 0)
        CallChain.pop()
      }
    }
  }
}
