// ServerRuntime: what every server links besides its own code: call errors, references,
// and the bookkeeping of exported objects.
//
// Contract: servers never touch handles' tables or the kernel ABI directly; generated
// proxies and export functions use this module. An exported object is retained by the
// kernel's reference (through an `ObjectBox`) and released when the kernel calls
// `tessera_destroy`, after the last reference to it is gone.

import TesseraABI

/// Why a call through a reference failed.
public enum CallError: Error, Equatable {
  /// The handle is not in the caller's reference table.
  case invalidHandle
  /// The object behind the handle does not implement the interface the caller expects.
  case wrongInterface
  /// A block exceeds its declared maximum, or `filled` exceeds the block.
  case blockTooLarge
  /// A block's memory is not accessible to the caller.
  case badBlock
  /// A method declared to return a reference returned none.
  case nullReference
  /// The kernel ran out of memory or table space for the call.
  case outOfResources
  /// The server behind the reference is gone (unloaded or failed).
  case serverUnavailable
  /// A status this runtime does not know.
  case unknown(UInt32)

  /// The error for a nonzero status word.
  public init(status: UInt32) {
    switch status {
    case 1: self = .invalidHandle
    case 2: self = .wrongInterface
    case 3: self = .blockTooLarge
    case 4: self = .badBlock
    case 5: self = .nullReference
    case 6: self = .outOfResources
    case 7: self = .serverUnavailable
    default: self = .unknown(status)
    }
  }

  /// The result word of a call, or the call's error.
  @inline(__always)
  public static func check(_ result: UInt64) throws(CallError) -> UInt32 {
    let status = UInt32(truncatingIfNeeded: result >> 32)
    guard status == 0 else { throw CallError(status: status) }
    return UInt32(truncatingIfNeeded: result)
  }
}

/// A typed reference: a handle in this server's table.
public protocol InterfaceReference {
  /// The handle.
  var handle: UInt32 { get }
  /// Wraps a handle.
  init(handle: UInt32)
}

extension InterfaceReference {
  /// Adds a count to the reference, so one more `release` is needed to drop it.
  public func acquire() throws(CallError) {
    let status = tessera_acquire(handle)
    guard status == 0 else { throw CallError(status: status) }
  }

  /// Drops one count; the reference is gone at zero. Returns false if the handle was not
  /// a valid reference of this server (nothing happens then).
  @discardableResult
  public func release() -> Bool {
    tessera_release(handle) == 0
  }
}

/// The base of the boxes that keep exported objects alive for the kernel.
open class ObjectBox {
  /// An empty box; subclasses hold the object.
  public init() {}
}

/// Registers `object` (a box, or the implementing object itself) with the kernel as an
/// object of manifest interface `interfaceIndex`; returns the new handle, or 0 (then the
/// object is released at once).
public func exportObject(_ object: AnyObject, interfaceIndex: Int) -> UInt32 {
  let context = Unmanaged.passRetained(object).toOpaque()
  let handle = tessera_export(UInt32(interfaceIndex), context)
  if handle == 0 { Unmanaged<AnyObject>.fromOpaque(context).release() }
  return handle
}

/// Called by the kernel when the last reference to an exported object is gone.
@_cdecl("tessera_destroy")
public func tessera_destroy(_ context: UnsafeMutableRawPointer) {
  Unmanaged<AnyObject>.fromOpaque(context).release()
}
