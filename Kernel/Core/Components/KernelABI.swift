// KernelABI: the functions a server file may import, and how the loader binds them.
//
// Contract: `address(of:table:)` binds exactly the names KernelImport lists (the names in
// Servers/Runtime/include/TesseraABI.h plus the C functions the embedded Swift runtime
// uses); anything else is refused and the server file rejected.
// `UserABI` binds the same names for a server loaded in user mode. Allocation is charged to the server whose code is
// running (the top of the call chain), from that server's own heap.

import I686CodeGeneration
import KernelCore

enum KernelABI {
  /// The generated code of one reference table.
  struct TableEntries {
    var gate: UInt32
    var acquire: UInt32
    var release: UInt32
    /// The windows of the acquire and release code (CountWindow).
    var windows: [CountWindow]

    /// Writes the gate and the acquire/release fast paths of `table`.
    static func write(into writer: inout CodeBuffer, table: TableLayout) -> TableEntries {
      let gate = writer.address
      CallStubs.writeGate(into: &writer, table: table, chain: CallChain.layout)
      let acquire = CallStubs.writeAcquire(into: &writer, table: table)
      let release = CallStubs.writeRelease(
        into: &writer, table: table, lastCount: KernelABI.releaseLastAddress)
      return TableEntries(
        gate: gate, acquire: acquire.start, release: release.0.start,
        windows: [acquire, release.0, release.1])
    }
  }

  /// The kernel address bound to import `name` of the server owning `table` (bound calls
  /// are resolved by the server itself, to its stubs: Server.load).
  static func address(of name: UnsafeBufferPointer<UInt8>, table: TableEntries) -> UInt32? {
    guard let kind = KernelImport(name: name) else { return nil }
    switch kind {
    case .call: return table.gate
    case .boundCall, .boundAcquire, .boundRelease: return nil
    case .export: return address(tesseraKernelExport as @convention(c) (UInt32, UInt32) -> UInt32)
    case .acquire: return table.acquire
    case .release: return table.release
    case .posixMemalign:
      return address(
        serverPosixMemalign
          as @convention(c) (UnsafeMutablePointer<UnsafeMutableRawPointer?>, Int, Int) -> Int32)
    case .free: return address(serverFree as @convention(c) (UnsafeMutableRawPointer?) -> Void)
    case .putchar: return address(putchar as @convention(c) (Int32) -> Int32)
    case .nullCall, .pause: return address(tesseraKernelNullCall as @convention(c) () -> UInt32)
    // The user-mode heap's calls: a kernel-mode server's runtime never makes them.
    case .heapStart, .heapGrow, .heapShrink:
      return address(tesseraKernelNoHeap as @convention(c) () -> UInt32)
    case .memcpy, .memmove, .memset, .memcmp: return Processor.stringFunction(name.baseAddress)
    }
  }

  /// The kernel's release of a last count, where generated release code jumps.
  static var releaseLastAddress: UInt32 {
    address(tesseraKernelReleaseLast as @convention(c) (UInt32) -> UInt32)
  }

  /// The address of marshal_call, which marshaling stubs call.
  static var marshalCallAddress: UInt32 {
    address(marshalCall as @convention(c) (UnsafeMutableRawPointer, UnsafeMutablePointer<UInt32>) -> UInt64)
  }

  /// The address of user_call_words, which user-mode servers' words-only stubs call.
  static var userCallWordsAddress: UInt32 {
    address(userCallWords as @convention(c) (UnsafeMutableRawPointer, UnsafeMutablePointer<UInt32>) -> UInt64)
  }

  static func address<Function>(_ function: Function) -> UInt32 {
    UInt32(UInt(bitPattern: unsafeBitCast(function, to: UnsafeRawPointer.self)))
  }
}

/// What a user-mode server's imports are bound to.
enum UserABI {
  /// The user address bound to import `name` of a user-mode server whose image (`file`)
  /// is loaded at `base`: a user thunk, or for posix_memalign and free the file's own
  /// user-mode allocator.
  static func address(of name: UnsafeBufferPointer<UInt8>, file: ServerFile, base: UInt32) -> UInt32? {
    guard let kind = KernelImport(name: name) else { return nil }
    // A user-mode caller's bound calls take the general path (the thunk of tessera_callN).
    if let code = kind.userCode { return AddressSpace.thunks.thunks[Int(truncatingIfNeeded: code)] }
    switch kind {
    case .posixMemalign: return file.functionAddress("tessera_user_posix_memalign").map { base + $0 }
    case .free: return file.functionAddress("tessera_user_free").map { base + $0 }
    default: return nil  // the string functions: every server file links its own
    }
  }
}

@_cdecl("tessera_kernel_null_call")
func tesseraKernelNullCall() -> UInt32 { 0 }

@_cdecl("tessera_kernel_no_heap")
func tesseraKernelNoHeap() -> UInt32 { 1 }

/// The running server, which every ABI function acts for.
private func caller() -> Server {
  guard let server = CallChain.currentServer else { panic("kernel ABI called outside any server") }
  return server
}

@_cdecl("tessera_kernel_export")
func tesseraKernelExport(_ interfaceIndex: UInt32, _ context: UInt32) -> UInt32 {
  let server = caller()
  guard let index = Int(exactly: interfaceIndex),
    let object = server.makeObject(interfaceIndex: index, context: context)
  else {
    // Debug only: the caller gets 0, and a hostile loop must not flood the console.
    Log.debug("\(server.name): tessera_export of interface \(interfaceIndex), which it does not export")
    return 0
  }
  let handle = Machine.withInterruptsDisabled { server.table.install(object) }
  if handle == 0 {
    Log.error("\(server.name): reference table full")
    object.destroy()
  }
  return handle
}

/// Where a server's generated tessera_release goes when it took an entry's last count.
@_cdecl("tessera_kernel_release_last")
func tesseraKernelReleaseLast(_ handle: UInt32) -> UInt32 {
  let server = caller()
  return Machine.withInterruptsDisabled { server.table.freeIfUnheld(handle) }
    ? 0 : CallABI.statusInvalidHandle
}

@_cdecl("tessera_server_posix_memalign")
func serverPosixMemalign(
  _ result: UnsafeMutablePointer<UnsafeMutableRawPointer?>, _ alignment: Int, _ byteCount: Int
) -> Int32 {
  guard alignment >= MemoryLayout<UInt>.size, alignment & (alignment - 1) == 0 else { return 22 }
  let server = caller()
  guard
    let pointer = Machine.withInterruptsDisabled({
      server.heap?.allocate(byteCount: byteCount, alignment: alignment)
    })
  else {
    Log.error("\(server.name): heap exhausted allocating \(byteCount) bytes")
    return 12
  }
  result.pointee = pointer
  return 0
}

@_cdecl("tessera_server_free")
func serverFree(_ pointer: UnsafeMutableRawPointer?) {
  guard let pointer else { return }
  let server = caller()
  Machine.withInterruptsDisabled {
    do throws(HeapError) {
      try server.heap?.free(pointer)
    } catch {
      panic("\(server.name): \(error.message)")
    }
  }
}
