// KernelImports: every function a server file may import, by name, in one table: the
// kernel-mode binding (the kernel's KernelABI), the user-mode binding (UserABI and the
// thunk codes, CallABI.swift) and the host test that compares it with
// Servers/Runtime/include/TesseraABI.h all read it.
//
// Contract: `KernelImport(name:)` answers for exactly the names servers may import; any
// other name is nil, and the loader refuses the file. `userCode` is the thunk code a
// user-mode server's import is bound to; nil for the imports a user-mode server binds in
// its own image (its allocator) or that every server links in (the string functions).

/// One importable function.
public enum KernelImport: Equatable, Sendable {
  /// `tessera_call0` ... `tessera_call8`: a call through a reference (the table's gate).
  case call(words: Int)
  /// `tessera_bound_callW_SLOT_METHOD`: a call through a required slot (BoundCallImport).
  case boundCall(BoundCallImport)
  /// `tessera_bound_acquire_SLOT`, `tessera_bound_release_SLOT`: a required slot's count
  /// (the same arguments as `tessera_acquire`, `tessera_release`).
  case boundAcquire(slot: Int), boundRelease(slot: Int)
  /// `tessera_export(interfaceIndex, context)`.
  case export
  /// `tessera_acquire(handle)`.
  case acquire
  /// `tessera_release(handle)`.
  case release
  /// `putchar(character)` (the embedded Swift runtime's output).
  case putchar
  /// `tessera_heap_start()`, `tessera_heap_grow(end, bytes)`, `tessera_heap_shrink(old, new)`:
  /// a user-mode server's heap (never called in kernel mode).
  case heapStart, heapGrow, heapShrink
  /// `tessera_null_call()`: enters and leaves the kernel (benchmarks).
  case nullCall
  /// `tessera_pause()`: sleeps one timer tick.
  case pause
  /// `posix_memalign` and `free`: the server's heap (the kernel's in kernel mode, the
  /// server's own allocator in user mode).
  case posixMemalign, free
  /// `memcpy`, `memmove`, `memset`, `memcmp`, for files that do not carry their own.
  case memcpy, memmove, memset, memcmp

  /// The names with one import each (the calls and bound calls have many: see `init`).
  public static let fixedNames: [(name: StaticString, kind: KernelImport)] = [
    ("tessera_export", .export), ("tessera_acquire", .acquire), ("tessera_release", .release),
    ("putchar", .putchar), ("tessera_heap_start", .heapStart), ("tessera_heap_grow", .heapGrow),
    ("tessera_heap_shrink", .heapShrink), ("tessera_null_call", .nullCall), ("tessera_pause", .pause),
    ("posix_memalign", .posixMemalign), ("free", .free), ("memcpy", .memcpy), ("memmove", .memmove),
    ("memset", .memset), ("memcmp", .memcmp),
  ]

  /// The import named `name`, or nil if servers may not import it.
  public init?(name: UnsafeBufferPointer<UInt8>) {
    if name.count == 13, equals(UnsafeBufferPointer(rebasing: name[0..<12]), "tessera_call"),
      name[12] >= UInt8(ascii: "0"), name[12] <= UInt8(ascii: "8")
    {
      self = .call(words: Int(name[12] - UInt8(ascii: "0")))
      return
    }
    if BoundImport.hasPrefix(name) {
      switch BoundImport.parse(name) {
      case .call(let call): self = .boundCall(call)
      case .acquire(let slot): self = .boundAcquire(slot: slot)
      case .release(let slot): self = .boundRelease(slot: slot)
      case nil: return nil
      }
      return
    }
    for entry in Self.fixedNames where equals(name, entry.name) {
      self = entry.kind
      return
    }
    return nil
  }

  /// The code of the user thunk a user-mode server's import is bound to (a bound call
  /// takes the thunk of `tessera_callN`, a bound acquire or release that of
  /// `tessera_acquire` or `tessera_release`); nil if a user-mode server binds it otherwise.
  public var userCode: UInt32? {
    switch self {
    case .call(let words): UInt32(words)
    case .boundCall(let bound): UInt32(bound.words)
    case .export: UserCallCode.export
    case .acquire, .boundAcquire: UserCallCode.acquire
    case .release, .boundRelease: UserCallCode.release
    case .putchar: UserCallCode.putchar
    case .heapStart: UserCallCode.heapStart
    case .heapGrow: UserCallCode.heapGrow
    case .heapShrink: UserCallCode.heapShrink
    case .nullCall: UserCallCode.null
    case .pause: UserCallCode.pause
    case .posixMemalign, .free, .memcpy, .memmove, .memset, .memcmp: nil
    }
  }
}
