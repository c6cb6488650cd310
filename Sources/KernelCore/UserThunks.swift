// UserThunks: the user-mode side of the kernel ABI: the code a server loaded in user mode
// calls instead of the kernel functions, and the codes that name each kernel call.
//
// Contract: `writeUserThunks` writes one page of position-dependent code for the address
// it will run at (every user address space maps the same page at `Paging.userStart`).
// Each thunk loads its code into EAX and enters the kernel with `sysenter` (ECX = the
// user stack, where the thunk saved EBX below the caller's return address and the
// arguments; EDX = where to resume). The kernel returns the result in EAX and the status
// in EBX, which the thunk moves to EDX, so a thunk returns exactly what the kernel-mode
// function it replaces returns. The return trampoline is where every upcall's user
// function returns to: it hands EAX back to the kernel (EAX = `UserCallCode.return`).

/// The codes of the kernel calls a user-mode server makes (EAX at `sysenter`).
public enum UserCallCode {
  /// `tessera_callN` is code N (0...8).
  public static let maximumCall: UInt32 = 8
  /// `tessera_export(interfaceIndex, context)`.
  public static let export: UInt32 = 9
  /// `tessera_acquire(handle)`.
  public static let acquire: UInt32 = 10
  /// `tessera_release(handle)`.
  public static let release: UInt32 = 11
  /// `putchar(character)`.
  public static let putchar: UInt32 = 12
  /// `tessera_heap_start()`: where the server's heap begins.
  public static let heapStart: UInt32 = 13
  /// `tessera_heap_grow(end, bytes)`: backs more of the heap; 0 on success.
  public static let heapGrow: UInt32 = 14
  /// `tessera_heap_shrink(oldEnd, newEnd)`: gives pages at the top back.
  public static let heapShrink: UInt32 = 15
  /// `tessera_null_call()`: enters and leaves the kernel, nothing else (benchmarks).
  public static let null: UInt32 = 16
  /// `tessera_pause()`: sleeps one timer tick.
  public static let pause: UInt32 = 17
  /// The number of codes.
  public static let count = 18
  /// What the return trampoline passes: the upcall's function has returned.
  public static let `return`: UInt32 = 0xFFFF_FFFF

  /// The code of the kernel call that replaces import `name` in user mode, if any.
  public static func code(forImport name: UnsafeBufferPointer<UInt8>) -> UInt32? {
    if name.count == 13, equals(UnsafeBufferPointer(rebasing: name[0..<12]), "tessera_call"),
      name[12] >= UInt8(ascii: "0"), name[12] <= UInt8(ascii: "8")
    {
      return UInt32(name[12] - UInt8(ascii: "0"))
    }
    if equals(name, "tessera_export") { return export }
    if equals(name, "tessera_acquire") { return acquire }
    if equals(name, "tessera_release") { return release }
    if equals(name, "putchar") { return putchar }
    if equals(name, "tessera_heap_start") { return heapStart }
    if equals(name, "tessera_heap_grow") { return heapGrow }
    if equals(name, "tessera_heap_shrink") { return heapShrink }
    if equals(name, "tessera_null_call") { return null }
    if equals(name, "tessera_pause") { return pause }
    return nil
  }
}

/// Where the thunks of a user thunk page are.
public struct UserThunkAddresses {
  /// The return trampoline (the return address of every upcall).
  public var returnTrampoline: UInt32 = 0
  /// The thunk of each `UserCallCode`.
  public var thunks: InlineArray<18, UInt32> = .init(repeating: 0)

  /// An empty table (filled by `writeUserThunks`).
  public init() {}
}

extension CallStubs {
  /// Bytes at most of the user thunk page's code.
  public static let userThunksSize = 16 + 16 + UserCallCode.count * 10

  /// Writes the user thunk page (see the file comment) and returns where each thunk is.
  public static func writeUserThunks(into code: inout CodeBuffer) -> UserThunkAddresses {
    var addresses = UserThunkAddresses()
    addresses.returnTrampoline = code.address
    code.emit(0x89, 0xC2)  // mov edx, eax             the result word
    code.emit(0xB8)
    code.emit32(UserCallCode.return)  // mov eax, -1
    code.emit(0x0F, 0x34)  // sysenter                 (never resumes here)
    code.emit(0x0F, 0x0B)  // ud2
    let common = code.address
    code.emit(0x53)  // push ebx                 the status comes back in EBX
    code.emit(0x89, 0xE1)  // mov ecx, esp             arguments at ecx+8
    code.emit(0xBA)
    let back = code.count
    code.emit32(0)  // mov edx, back
    code.emit(0x0F, 0x34)  // sysenter
    let backAddress = code.address
    code.emit(0x89, 0xDA)  // back: mov edx, ebx       the status
    code.emit(0x5B)  // pop ebx
    code.emit(0xC3)  // ret
    code.memory.storeBytes(of: backAddress.littleEndian, toByteOffset: back, as: UInt32.self)
    for index in 0..<UserCallCode.count {
      addresses.thunks[index] = code.address
      code.emit(0xB8)
      code.emit32(UInt32(index))  // mov eax, code
      code.emit(0xE9)
      code.emitRelative(to: common)  // jmp common
    }
    return addresses
  }
}
