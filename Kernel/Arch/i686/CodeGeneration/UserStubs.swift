// UserStubs: the user-mode side of the kernel ABI: the thunks a server loaded in user mode
// calls instead of the kernel functions (their codes are CallABI's UserCallCode), and the
// upcall stub through which the kernel calls a user-mode server's method.
//
// Contract: `writeUserThunks` writes one page of position-dependent code for the address
// it will run at (every user address space maps the same page at `Paging.userStart`).
// Each thunk loads its code into EAX and enters the kernel with `sysenter` (ECX = the
// user stack, where the thunk saved EBX below the caller's return address and the
// arguments; EDX = where to resume). The kernel returns the result in EAX and the status
// in EBX, which the thunk moves to EDX, so a thunk returns exactly what the kernel-mode
// function it replaces returns. The return trampoline is where every upcall's user
// function returns to: it hands EAX back to the kernel (EAX = `UserCallCode.return`).
// `writeUpcallStub` writes the method entry of a user-mode server's words-only method; it
// claims the user stack as KernelCore's `UserStacks.claim` says (UpcallStubExecutionTests
// hold it to that).

import KernelCore

/// Where the thunks of a user thunk page are.
public struct UserThunkAddresses {
  /// The return trampoline (the return address of every upcall).
  public var returnTrampoline: UInt32 = 0
  /// The thunk of each `UserCallCode`.
  public var thunks: InlineArray<18, UInt32> = .init(repeating: 0)
  /// The thunk of each bound-call code (`UserCallCode.boundBase + k`), which a user-mode
  /// server's k-th bound-call import is resolved to.
  public var boundThunks: InlineArray<64, UInt32> = .init(repeating: 0)

  /// An empty table (filled by `writeUserThunks`).
  public init() {}
}

extension CallStubs {
  /// Bytes at most of the user thunk page's code.
  public static let userThunksSize = 16 + 16 + (UserCallCode.count + UserCallCode.boundCallCapacity) * 10

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
    func thunk(_ callCode: UInt32) -> UInt32 {
      let address = code.address
      code.emit(0xB8)
      code.emit32(callCode)  // mov eax, code
      code.emit(0xE9)
      code.emitRelative(to: common)  // jmp common
      return address
    }
    for index in 0..<UserCallCode.count { addresses.thunks[index] = thunk(UInt32(index)) }
    precondition(addresses.boundThunks.count == UserCallCode.boundCallCapacity)
    for index in 0..<UserCallCode.boundCallCapacity {
      addresses.boundThunks[index] = thunk(UserCallCode.boundBase + UInt32(index))
    }
    return addresses
  }
}

/// What a user-mode upcall stub has baked in (see `CallStubs.writeUpcallStub`).
public struct UpcallLayout {
  /// The kernel's addresses (the chain, `user_mode_state`, the trampoline, the function
  /// called after an upcall into a failed server), as the bound stubs that enter user mode
  /// bake them in.
  public var kernel: UpcallKernel
  /// The callee's server words.
  public var serverWords: UInt32
  /// The user function to enter (the method's dispatch function).
  public var dispatch: UInt32
  /// arch_upcall.
  public var upcall: UInt32
  /// Call words of the method (after the context and the selector).
  public var words: Int
  /// For a server that is not thread-safe, the kernel function that hands its lock
  /// (the server words' first word) to a waiter (ServerLock's release); nil otherwise.
  public var lockRelease: UInt32?

  /// A layout.
  public init(
    kernel: UpcallKernel, serverWords: UInt32, dispatch: UInt32, upcall: UInt32, words: Int,
    lockRelease: UInt32? = nil
  ) {
    self.kernel = kernel
    self.serverWords = serverWords
    self.dispatch = dispatch
    self.upcall = upcall
    self.words = words
    self.lockRelease = lockRelease
  }
}

extension CallStubs {
  /// Writes the method entry of a words-only method of a user-mode server: the whole
  /// upcall in generated code. A server that is not thread-safe has its lock taken with
  /// one `lock cmpxchg` when it is free (and freed with one `xchg`, handing it to a waiter
  /// through `lockRelease` if there is one); a lock held by anyone, this thread included,
  /// takes the general path, which waits or re-enters. Entered from a gate (record pushed), it claims
  /// a frame below the thread's current user stack pointer in the callee's space,
  /// switches CR3, writes the return trampoline, context, selector and words there,
  /// counts the thread in, enters the function through `upcall` (arch_upcall), undoes it
  /// all and returns to the gate's caller with arch_upcall's status. A failed server, or
  /// a stack that would overflow, takes the general path: `slow` (user_call_words with
  /// `information`, like a marshaling stub).
  ///
  /// A page fault the kernel cannot serve in its writes of the frame (no frame to back a
  /// stack page; the range it returns) undoes the upcall as if it had returned
  /// `statusOutOfResources`.
  @discardableResult
  public static func writeUpcallStub(
    into code: inout CodeBuffer, layout: UpcallLayout, information: UInt32, slow: UInt32
  ) -> FaultFixup {
    let words = layout.serverWords
    let failed = words + UInt32(4 * ServerWords.failed)
    let inside = words + UInt32(4 * ServerWords.threadsInside)
    let activeDirectory = layout.kernel.state + 12
    let runningServer = layout.kernel.state + 16
    // The claim follows UserStacks.claim (the kernel's Swift upcall claims with it).
    let frameBytes = UserStacks.frameBytes(arguments: layout.words + 2)
    let slowPath = code.label()
    let have = code.label()
    let overflowOrBusy = code.label()
    let same = code.label()
    let sameAgain = code.label()
    let done = code.label()
    code.emit(0x83, 0xC4, 0x04)  // add esp, 4                 drop the gate's return address
    code.emit(0x83, 0x3D)
    code.emit32(failed)
    code.emit(0x00)  // cmp dword [failed], 0
    code.jump(.notEqual, to: slowPath)  // jne slow
    code.emit(0x53, 0x56, 0x57, 0x55)  // push ebx, esi, edi, ebp
    code.emit(0x89, 0xE6)  // mov esi, esp               context at [esi+16]
    code.emit(0x8B, 0x3D)
    code.emit32(layout.kernel.chain.threadNumber)  // mov edi, [thread]
    code.emit(0x8B, 0x2D)
    code.emit32(words + UInt32(4 * ServerWords.stackPointers))  // mov ebp, [stack pointers]
    code.emit(0x8D, 0x6C, 0xBD, 0x00)  // lea ebp, [ebp+edi*4+0]   this thread's slot
    code.emit(0x8B, 0x45, 0x00)  // mov eax, [ebp]
    code.emit(0x85, 0xC0)  // test eax, eax
    code.jump(.notEqual, to: have, short: true)  // jnz have
    code.emit(0x89, 0xF8)  // mov eax, edi
    code.emit(0xC1, 0xE0, UserStacks.shift)  // shl eax, shift
    code.emit(0x05)
    code.emit32(UserStacks.top(thread: 0))  // add eax, top of slot 0
    code.bind(have)
    code.emit(0x2D)
    code.emit32(frameBytes)  // have: sub eax, frame
    code.emit(0x89, 0xF9)  // mov ecx, edi
    code.emit(0xC1, 0xE1, UserStacks.shift)  // shl ecx, shift
    code.emit(0x81, 0xC1)
    code.emit32(UserStacks.bottom(thread: 0) &+ UserStacks.slack)  // add ecx, lowest usable + slack
    code.emit(0x39, 0xC8)  // cmp eax, ecx
    code.jump(.below, to: overflowOrBusy)  // jb overflow
    if layout.lockRelease != nil {
      code.emit(0x89, 0xC1)  // mov ecx, eax              the new user stack pointer
      code.emit(0x31, 0xC0)  // xor eax, eax
      code.emit(0xF0, 0x0F, 0xB1, 0x3D)
      code.emit32(words)  // lock cmpxchg [lock], edi  take it if free
      code.jump(.notEqual, to: overflowOrBusy)  // jne busy
      code.emit(0x89, 0xC8)  // mov eax, ecx
      code.emit(0x8B, 0x15)
      code.emit32(layout.kernel.chain.depth)  // mov edx, [depth]
      code.emit(0x4A)  // dec edx
      code.emit(0xC7, 0x04, 0x95)
      code.emit32(layout.kernel.chain.lockFlags)
      code.emit32(1)  // mov dword [flags+edx*4], 1   this call took the lock
    }
    code.emit(0xFF, 0x75, 0x00)  // push dword [ebp]          the slot's value, restored after
    code.emit(0x55)  // push ebp
    code.emit(0x89, 0x45, 0x00)  // mov [ebp], eax            nested upcalls start below
    code.emit(0x8B, 0x15)
    code.emit32(activeDirectory)  // mov edx, [active directory]
    code.emit(0x52)  // push edx
    let directory = words + UInt32(4 * ServerWords.directory)
    code.emit(0x3B, 0x15)
    code.emit32(directory)  // cmp edx, [directory]
    code.jump(.equal, to: same, short: true)  // je same
    code.emit(0x8B, 0x15)
    code.emit32(directory)  // mov edx, [directory]
    code.emit(0x89, 0x15)
    code.emit32(activeDirectory)  // mov [active directory], edx
    code.emit(0x0F, 0x22, 0xDA)  // mov cr3, edx
    code.bind(same)
    let writesStart = code.address
    code.emit(0xC7, 0x00)
    code.emit32(layout.kernel.trampoline)  // same: mov dword [eax], trampoline
    for word in 0..<(layout.words + 2) {
      code.emit(0x8B, 0x4E, UInt8(16 + 4 * word))  // mov ecx, [esi+16+4k]
      code.emit(0x89, 0x48, UInt8(4 + 4 * word))  // mov [eax+4+4k], ecx
    }
    let writesEnd = code.address
    code.emit(0xFF, 0x05)
    code.emit32(inside)  // inc dword [threads inside]
    code.emit(0x8B, 0x0D)
    code.emit32(words + UInt32(4 * ServerWords.spaceThreadsInside))  // mov ecx, [space's count]
    code.emit(0xFF, 0x01)  // inc dword [ecx]
    code.emit(0xFF, 0x35)
    code.emit32(runningServer)  // push dword [running server]
    code.emit(0xC7, 0x05)
    code.emit32(runningServer)
    code.emit32(words)  // mov dword [running server], words
    code.emit(0x50)  // push eax                  the user stack
    code.emit(0x68)
    code.emit32(layout.dispatch)  // push dispatch
    code.emit(0xE8)
    code.emitRelative(to: layout.upcall)  // call arch_upcall          edx:eax
    let returned = code.address
    code.emit(0x83, 0xC4, 0x08)  // add esp, 8
    code.emit(0x8F, 0x05)
    code.emit32(runningServer)  // pop dword [running server]
    code.emit(0xFF, 0x0D)
    code.emit32(inside)  // dec dword [threads inside]
    code.emit(0x8B, 0x0D)
    code.emit32(words + UInt32(4 * ServerWords.spaceThreadsInside))  // mov ecx, [space's count]
    code.emit(0xFF, 0x09)  // dec dword [ecx]
    code.emit(0x59)  // pop ecx                   the caller's directory
    code.emit(0x3B, 0x0D)
    code.emit32(activeDirectory)  // cmp ecx, [active directory]
    code.jump(.equal, to: sameAgain, short: true)  // je same2
    code.emit(0x89, 0x0D)
    code.emit32(activeDirectory)  // mov [active directory], ecx
    code.emit(0x0F, 0x22, 0xD9)  // mov cr3, ecx
    code.bind(sameAgain)
    code.emit(0x59)  // same2: pop ecx            the slot
    code.emit(0x8F, 0x01)  // pop dword [ecx]
    if let release = layout.lockRelease {
      code.emit(0x8B, 0x0D)
      code.emit32(layout.kernel.chain.depth)  // mov ecx, [depth]
      code.emit(0x49)  // dec ecx
      code.emit(0xC7, 0x04, 0x8D)
      code.emit32(layout.kernel.chain.lockFlags)
      code.emit32(0)  // mov dword [flags+ecx*4], 0
      code.emit(0x31, 0xC9)  // xor ecx, ecx
      code.emit(0x87, 0x0D)
      code.emit32(words)  // xchg [lock], ecx          free it
      code.emit(0x85, 0xC9)  // test ecx, ecx
      let freed = code.label()
      code.jump(.notSign, to: freed, short: true)  // jns freed
      code.emit(0x50, 0x52)  // push eax, edx
      callKernel(&code, release, with: words)  // a waiter gets it
      code.emit(0x5A, 0x58)  // pop edx, eax
      code.bind(freed)
    }
    code.emit(0x83, 0x3D)
    code.emit32(failed)
    code.emit(0x00)  // cmp dword [failed], 0
    code.jump(.equal, to: done, short: true)  // je done
    callKeepingResult(&code, layout.kernel.failedAfterUpcall)  // call failed-after-upcall
    code.bind(done)
    code.emit(0x5D, 0x5F, 0x5E, 0x5B)  // done: pop ebp, edi, esi, ebx
    popRecordAndReturn(&code, chain: layout.kernel.chain)
    code.bind(overflowOrBusy)
    code.emit(0x5D, 0x5F, 0x5E, 0x5B)  // overflow, busy: pop ebp, edi, esi, ebx
    code.bind(slowPath)
    writeMarshalStubBody(into: &code, chain: layout.kernel.chain, information: information, marshal: slow)
    // The frame could not be written: as if arch_upcall had returned the status, with the
    // thread counted in and the running server and arch_upcall's two arguments pushed.
    let writesFixup = code.address
    code.emit(0xFF, 0x05)
    code.emit32(inside)  // writes fixup: inc dword [threads inside]
    code.emit(0x8B, 0x0D)
    code.emit32(words + UInt32(4 * ServerWords.spaceThreadsInside))  // mov ecx, [space's count]
    code.emit(0xFF, 0x01)  // inc dword [ecx]
    code.emit(0xFF, 0x35)
    code.emit32(runningServer)  // push dword [running server]
    code.emit(0x83, 0xEC, 0x08)  // sub esp, 8
    returnStatus(&code, CallABI.statusOutOfResources, to: returned)
    precondition(code.isComplete)
    return FaultFixup(start: writesStart, end: writesEnd, fixup: writesFixup)
  }
}
