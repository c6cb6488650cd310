// ServerRuntime: what every server links besides its own code: call errors, references,
// and the bookkeeping of exported objects.
//
// Contract: servers never touch handles' tables or the kernel ABI directly; generated
// proxies and export functions use this module. An exported object is retained by the
// kernel's reference (through an `ObjectBox`) and released when the kernel calls
// `tessera_destroy`, after the last reference to it is gone.

import KernelCore
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
  /// The callee is not thread-safe and waiting for its lock would close a cycle of
  /// threads each waiting for a lock another holds (the call was not made).
  case wouldDeadlock
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
    case 8: self = .wouldDeadlock
    default: self = .unknown(status)
    }
  }

  /// The status word the kernel reported (the inverse of `init(status:)`).
  public var status: UInt32 {
    switch self {
    case .invalidHandle: 1
    case .wrongInterface: 2
    case .blockTooLarge: 3
    case .badBlock: 4
    case .nullReference: 5
    case .outOfResources: 6
    case .serverUnavailable: 7
    case .wouldDeadlock: 8
    case .unknown(let value): value
    }
  }

  /// The case's name, as the tutorial and the kernel's messages spell it.
  public var name: StaticString {
    switch self {
    case .invalidHandle: "invalidHandle"
    case .wrongInterface: "wrongInterface"
    case .blockTooLarge: "blockTooLarge"
    case .badBlock: "badBlock"
    case .nullReference: "nullReference"
    case .outOfResources: "outOfResources"
    case .serverUnavailable: "serverUnavailable"
    case .wouldDeadlock: "wouldDeadlock"
    case .unknown: "unknown"
    }
  }

  /// What went wrong, in words: "serverUnavailable (status 7): the server behind the
  /// reference is gone (unloaded or failed)". Print it with `\(error.description)` in a
  /// KernelMessage (or `\(error)`, which does the same).
  public var description: KernelMessage {
    let meaning: StaticString =
      switch self {
      case .invalidHandle: "the handle is not a reference of this server"
      case .wrongInterface: "the object does not implement the interface the call expects"
      case .blockTooLarge: "a block exceeds its declared maximum"
      case .badBlock: "a block's memory is not this server's to pass"
      case .nullReference: "a method declared to return a reference returned none"
      case .outOfResources: "the kernel ran out of memory or table space for the call"
      case .serverUnavailable: "the server behind the reference is gone (unloaded or failed)"
      case .wouldDeadlock: "waiting for the callee's lock would deadlock"
      case .unknown: "a status this runtime does not know"
      }
    return "\(name) (status \(status)): \(meaning)"
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

/// The heap of a server in user mode: the kernel backs the pages, the allocator (the same
/// one the kernel uses for itself) runs in the server, so a server can corrupt only its
/// own heap. In kernel mode the kernel binds posix_memalign and free to its own
/// allocator instead and these functions are never called.
private struct UserHeapBacking: HeapBacking {
  mutating func grow(at end: UInt, by byteCount: Int) -> Bool {
    tessera_heap_grow(UInt32(end), UInt32(byteCount)) == 0
  }

  mutating func shrink(from oldEnd: UInt, to newEnd: UInt) {
    tessera_heap_shrink(UInt32(oldEnd), UInt32(newEnd))
  }
}

nonisolated(unsafe) private var userHeap: HeapAllocator<UserHeapBacking>? = nil
nonisolated(unsafe) private var userHeapLock: UInt32 = 0

/// Runs `body` holding the user-mode heap's lock (threads of a thread-safe server
/// allocate concurrently). A thread finding it taken sleeps a tick rather than spin, so
/// a preempted holder of lower priority can finish.
private func withUserHeapLock<Result>(_ body: () -> Result) -> Result {
  while tessera_exchange(&userHeapLock, 1) != 0 { tessera_pause() }
  defer { _ = tessera_exchange(&userHeapLock, 0) }
  return body()
}

/// posix_memalign for a server in user mode.
@_cdecl("tessera_user_posix_memalign")
public func tesseraUserPosixMemalign(
  _ result: UnsafeMutablePointer<UnsafeMutableRawPointer?>, _ alignment: Int, _ byteCount: Int
) -> Int32 {
  guard alignment >= MemoryLayout<UInt>.size, alignment & (alignment - 1) == 0 else { return 22 }
  let pointer = withUserHeapLock {
    if userHeap == nil {
      userHeap = HeapAllocator(start: UInt(tessera_heap_start()), backing: UserHeapBacking())
    }
    return userHeap!.allocate(byteCount: byteCount, alignment: alignment)
  }
  guard let pointer else { return 12 }
  result.pointee = pointer
  return 0
}

/// free for a server in user mode; a pointer the heap did not hand out is a fault of the
/// server (a trap), which the kernel contains.
@_cdecl("tessera_user_free")
public func tesseraUserFree(_ pointer: UnsafeMutableRawPointer?) {
  guard let pointer else { return }
  let failed = withUserHeapLock {
    do throws(HeapError) {
      try userHeap!.free(pointer)
      return false
    } catch {
      return true
    }
  }
  if failed { fatalError("free of a pointer this heap did not hand out") }
}

extension KernelMessage.StringInterpolation {
  /// `"\(error)"` in a KernelMessage: the error's description.
  public mutating func appendInterpolation(_ error: CallError) { appendInterpolation(error.description) }
}

/// The composition's setting `name` for this server (its `set NAME VALUE` line; empty if
/// there is none), read through `value`, the server's `Settings.value`:
/// `setting("mode") { name, value throws(CallError) in try Required.settings.value(name: name, value: value) }`.
public func setting(
  _ name: StaticString,
  _ value: (UnsafeRawBufferPointer, UnsafeMutableRawBufferPointer) throws(CallError) -> Int
) -> [UInt8] {
  var bytes: InlineArray<64, UInt8> = .init(repeating: 0)
  let count = withUnsafeMutableBytes(of: &bytes) { buffer in
    (try? value(UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount), buffer)) ?? 0
  }
  return (0..<min(count, 64)).map { bytes[$0] }
}

/// A lock for the state of a `threadsafe` server (one whose calls the kernel does not
/// serialize): free and uncontended it costs one locked instruction each way; a thread
/// finding it held sleeps on a kernel semaphore until the holder leaves. Never hold it
/// across a call to another server: that server may call back (the network layers call
/// both up and down), and the kernel's cycle detection does not see this lock.
public final class ServerMutex {
  /// Threads inside or waiting.
  private let threads = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
  private let sleep: () -> Void
  private let wake: () -> Void

  /// A free lock whose waiters sleep in `sleep` and are woken by `wake`: a semaphore's
  /// wait and signal, made with count 0
  /// (`ServerMutex(sleep: { try? semaphore.wait() }, wake: { try? semaphore.signal() })`).
  public init(sleep: @escaping () -> Void, wake: @escaping () -> Void) {
    threads.initialize(to: 0)
    self.sleep = sleep
    self.wake = wake
  }

  deinit { threads.deallocate() }

  /// Runs `body` holding the lock.
  @inline(__always)
  public func withLock<Result>(_ body: () -> Result) -> Result {
    if tessera_fetch_add(threads, 1) != 0 { sleep() }
    defer { if tessera_fetch_add(threads, UInt32.max) != 1 { wake() } }
    return body()
  }
}

extension PacketAreas {
  /// The areas of a protocol above IPv4, mapped in this server: `receive` and `reassembly`
  /// read-only, `send` writable, as the IPv4 layer hands them out (nil: it did not), with
  /// `map` (the server's `MemoryService.map`, giving the address or 0). The references are
  /// released afterwards: the mappings keep the memory. Nil if one is missing or unmapped.
  public init?<Area: InterfaceReference>(
    receive: Area?, reassembly: Area?, send: Area?, map: (Area, UInt) -> UInt
  ) {
    guard let receive, let reassembly, let send else { return nil }
    defer { for area in [receive, reassembly, send] { area.release() } }
    let receiveAddress = map(receive, 0)
    let reassemblyAddress = map(reassembly, 0)
    let sendAddress = map(send, 1)
    guard receiveAddress != 0, reassemblyAddress != 0, sendAddress != 0 else { return nil }
    self.init(receive: receiveAddress, reassembly: reassemblyAddress, send: sendAddress)
  }
}

/// Calls `write` with `bytes` in pieces of at most `size` (a device's block bound: the
/// serial line takes 256 bytes a call).
public func writeInPieces(
  _ bytes: UnsafeRawBufferPointer, of size: Int, _ write: (UnsafeRawBufferPointer) -> Void
) {
  var start = 0
  while start < bytes.count {
    let end = min(start + size, bytes.count)
    write(UnsafeRawBufferPointer(rebasing: bytes[start..<end]))
    start = end
  }
}

/// Calls `write` with `text`, its "\n" line ends turned into the terminal's "\r\n".
public func writeTerminalText(_ text: UnsafeRawBufferPointer, _ write: (UnsafeRawBufferPointer) -> Void) {
  let lineEnd: StaticString = "\r\n"
  var start = 0
  for index in 0..<text.count where text[index] == UInt8(ascii: "\n") {
    write(UnsafeRawBufferPointer(rebasing: text[start..<index]))
    write(UnsafeRawBufferPointer(start: lineEnd.utf8Start, count: lineEnd.utf8CodeUnitCount))
    start = index + 1
  }
  if start < text.count { write(UnsafeRawBufferPointer(rebasing: text[start...])) }
}
