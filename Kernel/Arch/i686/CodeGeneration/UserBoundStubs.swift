// UserBoundStubs: the stub the kernel generates for each bound-call code of a user-mode
// server (UserCallCode.boundBase + k), which UserMode.S's `sysenter` entry jumps to: a
// call into another user address space in one piece of code, from the caller's `sysenter`
// to the callee's `sysexit` and back.
//
// Contract: `writeUserBoundStub` and `writeUserBoundRedirect` write position-dependent
// code for its run address; the kernel (Server.bindSlots, Server.entryFreeing) writes the
// redirect at load and over a live stub's first bytes, and the stub once the slot is bound
// to a thread-safe user-mode server in another space. The stub runs with interrupts
// disabled from the `sysenter` to the `sysexit` each way, so no thread is ever switched
// away inside it: rewriting its start never meets a thread there. Its frame on the kernel
// stack is arch_upcall's (UserMode.S), so the return trampoline and arch_upcall_abort end
// it as they end any upcall.

import KernelCore

/// The kernel's addresses an upcall stub bakes in, whoever calls.
public struct UpcallKernel {
  /// The call chain.
  public var chain: CallChainLayout
  /// The address of `user_mode_state` (CPU.h: word 0 the entry stack, 1 the user ticks,
  /// 3 the active directory, 4 the running user-mode server's words).
  public var state: UInt32
  /// The address of the TSS's esp0 (kept equal to the entry stack).
  public var taskStackPointer: UInt32
  /// The address of arch_resume_point (the innermost resume frame; an upcall saves it).
  public var resumePoint: UInt32
  /// The return trampoline's user address (the upcall's return address).
  public var trampoline: UInt32
  /// The kernel function to call after an upcall into a server that has failed.
  public var failedAfterUpcall: UInt32

  /// The addresses.
  public init(
    chain: CallChainLayout, state: UInt32, taskStackPointer: UInt32, resumePoint: UInt32, trampoline: UInt32,
    failedAfterUpcall: UInt32
  ) {
    self.chain = chain
    self.state = state
    self.taskStackPointer = taskStackPointer
    self.resumePoint = resumePoint
    self.trampoline = trampoline
    self.failedAfterUpcall = failedAfterUpcall
  }
}

/// The method of a thread-safe user-mode server that a bound stub enters directly.
public struct UpcallCallee {
  /// The callee's server words (its failed word and threads-inside count are read).
  public var serverWords: UInt32
  /// Its page directory.
  public var directory: UInt32
  /// Its space's user stack pointers (one word per thread number).
  public var stackPointers: UInt32
  /// Its space's count of threads inside.
  public var spaceThreadsInside: UInt32
  /// The bound object's call-chain value (its record pins it).
  public var chainValue: UInt32
  /// The object's context, the method's first argument.
  public var context: UInt32
  /// The method's selector (the interface's digest plus the method's index).
  public var selector: UInt32
  /// The method's dispatch function in the callee's image.
  public var dispatch: UInt32
  /// Call words of the method (after the context and the selector).
  public var callWords: Int

  /// A callee.
  public init(
    serverWords: UInt32, directory: UInt32, stackPointers: UInt32, spaceThreadsInside: UInt32,
    chainValue: UInt32, context: UInt32, selector: UInt32, dispatch: UInt32, callWords: Int
  ) {
    self.serverWords = serverWords
    self.directory = directory
    self.stackPointers = stackPointers
    self.spaceThreadsInside = spaceThreadsInside
    self.chainValue = chainValue
    self.context = context
    self.selector = selector
    self.dispatch = dispatch
    self.callWords = callWords
  }
}

/// What a user-to-user bound stub has baked in (see `CallStubs.writeUserBoundStub`).
public struct UserBoundTarget {
  /// The kernel's addresses.
  public var kernel: UpcallKernel
  /// The method called.
  public var callee: UpcallCallee
  /// The calling server's words (the running server again on the way back).
  public var callerWords: UInt32
  /// The caller's page directory.
  public var callerDirectory: UInt32
  /// The caller's space's user stack pointers.
  public var callerStackPointers: UInt32
  /// arch_bound_call_general (UserMode.S): the general path, `tessera_callN` with N in EAX.
  public var general: UInt32

  /// A target.
  public init(
    kernel: UpcallKernel, callee: UpcallCallee, callerWords: UInt32, callerDirectory: UInt32,
    callerStackPointers: UInt32, general: UInt32
  ) {
    self.kernel = kernel
    self.callee = callee
    self.callerWords = callerWords
    self.callerDirectory = callerDirectory
    self.callerStackPointers = callerStackPointers
    self.general = general
  }
}

/// Instructions of generated code that touch user memory the kernel may fail to back (a
/// stack page, when frames are short): a page fault there that the kernel cannot serve
/// resumes at `fixup`, which undoes what the code did and refuses the call
/// (Server.faultFixup, Exceptions).
public struct FaultFixup: Equatable, Sendable {
  /// The first such instruction.
  public var start: UInt32
  /// The address after the last.
  public var end: UInt32
  /// Where a fault between them resumes, with the registers of the fault.
  public var fixup: UInt32

  /// A range and its fixup.
  public init(start: UInt32, end: UInt32, fixup: UInt32) {
    self.start = start
    self.end = end
    self.fixup = fixup
  }

  /// Whether `address` lies in the range.
  public func contains(_ address: UInt32) -> Bool { address >= start && address < end }
}

/// Addresses inside a written user-to-user bound stub, for the kernel's fault handling and
/// for tests.
public struct UserBoundStubAddresses: Equatable, Sendable {
  /// The reads of the caller's words (their fixup refuses with `statusInvalidHandle`
  /// before anything changed; its `sti` 17 bytes on).
  public var argumentReads: FaultFixup
  /// The writes of the callee's frame, with CR3 switched (their fixup undoes the call
  /// through the stub's way back with `statusOutOfResources`).
  public var frameWrites: FaultFixup
  /// The `sti` before the `sysexit` into the callee.
  public var enter: UInt32
  /// Where the upcall's frame returns to (the trampoline's or an abort's return).
  public var continuation: UInt32
  /// The `sti` before the `sysexit` back to the caller.
  public var leave: UInt32
  /// The refusal of a user stack outside the thread's slot (`statusBadBlock`; its `sti`
  /// 9 bytes on).
  public var offStack: UInt32
  /// The refusal of a full call chain (`statusOutOfResources`; its `sti` 17 bytes on).
  public var overflow: UInt32
}

extension CallStubs {
  /// Bytes at most of one user-mode bound-call stub (host tests check the largest).
  public static let userBoundStubSize = 576

  /// Bytes `writeUserBoundRedirect` writes: fewer than the stub's first instructions.
  public static let userBoundRedirectSize = 10

  /// Writes the stub of a bound-call code that only takes the general path:
  /// `mov eax, words; jmp general` (arch_bound_call_general, which enters the caller's gate
  /// as `tessera_callN` would; the gate checks the handle and selector the proxy pushed).
  public static func writeUserBoundRedirect(into code: inout CodeBuffer, words: Int, general: UInt32) {
    code.emit(0xB8)
    code.emit32(UInt32(truncatingIfNeeded: words))  // mov eax, words
    code.emit(0xE9)
    code.emitRelative(to: general)  // jmp general
  }

  /// Writes the stub of a bound-call code whose slot has a kernel bound stub
  /// (`writeBoundStub`, which redirects itself to the gate when the slot's entry is freed):
  /// the call entry's work without its gate lookup. It pushes the user's registers as the
  /// entry does and goes to `direct` (arch_bound_call_direct) with ESI the caller's words,
  /// EBP `boundStub` and EAX the call words.
  public static func writeUserDirectStub(
    into code: inout CodeBuffer, callerWords: UInt32, boundStub: UInt32, words: Int, direct: UInt32
  ) {
    code.emit(0x55, 0x57, 0x56, 0x52, 0x51)  // push ebp, edi, esi, edx, ecx
    code.emit(0xBE)
    code.emit32(callerWords)  // mov esi, caller words
    code.emit(0xBD)
    code.emit32(boundStub)  // mov ebp, bound stub
    code.emit(0xB8)
    code.emit32(UInt32(truncatingIfNeeded: words))  // mov eax, words
    code.emit(0xE9)
    code.emitRelative(to: direct)  // jmp direct
  }

  /// Writes the stub of a bound call from a user-mode server into a thread-safe user-mode
  /// server in another space. Entered from UserMode.S's `sysenter` entry with interrupts
  /// disabled, ESP the entry stack, ECX the caller's user stack (saved EBX, return
  /// address, handle, selector, words), EDX its resume address, and the caller's ESI, EDI
  /// and EBP. It
  ///
  /// - refuses a user stack outside the thread's slot, or too close to its top for the
  ///   arguments (`statusBadBlock`), as the general entry does;
  /// - takes the general path (the caller's gate, which refuses or waits) for a failed
  ///   callee and for a callee stack too deep for the frame (`UserStacks.claim`);
  /// - pushes and counts the call-chain record naming the object (a full chain returns
  ///   `statusOutOfResources`);
  /// - records the caller's stack pointer in its space (nested upcalls into the caller
  ///   start below it) and claims the frame in the callee's, switches CR3, writes the
  ///   trampoline, context, selector and words there, counts the thread in;
  /// - builds arch_upcall's frame (with the caller's ESI, EDI and EBP in it) and enters the
  ///   dispatch function with no register of the caller's or the kernel's left.
  ///
  /// A page fault the kernel cannot serve (no frame to back a stack page) in its reads of
  /// the caller's words refuses the call (`argumentReads`); in its writes of the callee's
  /// frame, returns `statusOutOfResources` through the way back (`frameWrites`).
  ///
  /// On the way back (the trampoline's `sysenter`, or an abort) it undoes it all and
  /// returns to the caller's resume address with the result in EAX and the status in EBX;
  /// so do its refusals.
  public static func writeUserBoundStub(into code: inout CodeBuffer, target: UserBoundTarget)
    -> UserBoundStubAddresses
  {
    let kernel = target.kernel
    let callee = target.callee
    let words = UInt32(truncatingIfNeeded: callee.callWords)
    let chain = kernel.chain
    let argumentBytes = 16 + 4 * words  // saved EBX, return address, handle, selector, words
    let fresh = code.label()
    let have = code.label()
    let general = code.label()
    let deep = code.label()
    let offStack = code.label()
    let overflow = code.label()
    let leave = code.label()
    // The caller's stack: ECX - bottom(thread) in 0...slot - guard - arguments.
    code.emit(0xA1)
    code.emit32(chain.threadNumber)  // mov eax, [thread]
    code.emit(0x89, 0xC3)  // mov ebx, eax
    code.emit(0xC1, 0xE3, UserStacks.shift)  // shl ebx, shift
    precondition(code.count >= userBoundRedirectSize, "the redirect covers whole instructions")
    code.emit(0x81, 0xC3)
    code.emit32(UserStacks.bottom(thread: 0))  // add ebx, bottom(0)       bottom(thread)
    code.emit(0x29, 0xD9)  // sub ecx, ebx
    code.emit(0x81, 0xF9)
    code.emit32(UserStacks.slotBytes - UserStacks.guardBytes - argumentBytes)  // cmp ecx, room
    code.jump(.above, to: offStack)  // ja off stack
    code.emit(0x01, 0xD9)  // add ecx, ebx
    compareFailed(&code, callee)
    code.jump(.notEqual, to: general)  // jne general             (its gate refuses)
    code.emit(0x52)  // push edx                  where the caller resumes
    // The claim in the callee's space, as UserStacks.claim.
    code.emit(0x8B, 0x14, 0x85)
    code.emit32(callee.stackPointers)  // mov edx, [callee pointers+eax*4]
    code.emit(0x85, 0xD2)  // test edx, edx
    code.jump(.equal, to: fresh)  // jz fresh
    code.bind(have)
    code.emit(0x81, 0xEA)
    code.emit32(UserStacks.frameBytes(arguments: callee.callWords + 2))  // have: sub edx, frame
    code.emit(0x8D, 0x5B, UInt8(UserStacks.slack))  // lea ebx, [ebx + slack]    the lowest frame
    code.emit(0x39, 0xDA)  // cmp edx, ebx
    code.jump(.below, to: deep)  // jb deep                (the general path refuses)
    code.emit(0x51)  // push ecx                  the caller's stack, for the way back
    code.emit(0xFF, 0x34, 0x85)
    code.emit32(target.callerStackPointers)  // push dword [caller pointers+eax*4]
    code.emit(0xFF, 0x34, 0x85)
    code.emit32(callee.stackPointers)  // push dword [callee pointers+eax*4]
    // The words, last first; a fault here changed nothing yet.
    let readsStart = code.address
    for word in (0..<words).reversed() {
      code.emit(0xFF, 0x71, UInt8(16 + 4 * word))  // push dword [ecx+16+4k]
    }
    let readsEnd = code.address
    code.emit(0x8B, 0x1D)
    code.emit32(chain.depth)  // mov ebx, [depth]         this record's index
    code.emit(0x83, 0xFB, UInt8(CallABI.chainCapacity))  // cmp ebx, capacity
    code.jump(.aboveOrEqual, to: overflow)  // jae overflow
    code.emit(0xC7, 0x04, 0xDD)
    code.emit32(chain.records + 4)
    code.emit32(callee.chainValue)  // mov dword [records+ebx*8+4], object
    code.emit(0xC7, 0x04, 0xDD)
    code.emit32(chain.records)
    let recordReturn = code.count
    code.emit32(0)  // mov dword [records+ebx*8], continuation   (backtraces)
    code.emit(0xFF, 0x05)
    code.emit32(chain.depth)  // inc dword [depth]        the record counts
    code.emit(0x89, 0x14, 0x85)
    code.emit32(callee.stackPointers)  // mov [callee pointers+eax*4], edx
    code.emit(0x83, 0xE1, 0xF0)  // and ecx, -16
    code.emit(0x89, 0x0C, 0x85)
    code.emit32(target.callerStackPointers)  // mov [caller pointers+eax*4], ecx
    switchSpace(&code, kernel, to: callee.directory)
    let writesStart = code.address
    writeFrameStart(&code, kernel, callee)
    for word in 0..<words {
      code.emit(0x8F, 0x42, UInt8(12 + 4 * word))  // pop dword [edx+12+4k]
    }
    let writesEnd = code.address
    countThread(&code, callee, in: true)
    code.emit(0xC7, 0x05)
    code.emit32(kernel.state + 16)
    code.emit32(callee.serverWords)  // mov dword [running server], callee
    let (frameReturn, enter) = enterUser(&code, kernel, callee, fromUser: true)
    // Back from the upcall: EAX the result, EDX the status, the caller's ESI, EDI, EBP.
    let continuationAt = code.address
    code.emit(0xC7, 0x05)
    code.emit32(kernel.state + 16)
    code.emit32(target.callerWords)  // continuation: mov dword [running server], caller
    countThread(&code, callee, in: false)
    switchSpace(&code, kernel, to: target.callerDirectory)
    code.emit(0x8B, 0x0D)
    code.emit32(chain.threadNumber)  // mov ecx, [thread]
    code.emit(0x8F, 0x04, 0x8D)
    code.emit32(callee.stackPointers)  // pop dword [callee pointers+ecx*4]
    code.emit(0x8F, 0x04, 0x8D)
    code.emit32(target.callerStackPointers)  // pop dword [caller pointers+ecx*4]
    code.emit(0xFF, 0x0D)
    code.emit32(chain.depth)  // dec dword [depth]        the record is popped
    let failedAfter = code.label()
    compareFailed(&code, callee)
    code.jump(.notEqual, to: failedAfter, short: true)  // jne failed after
    code.bind(leave)
    code.emit(0x89, 0xD3)  // leave: mov ebx, edx       the status
    code.emit(0x59)  // pop ecx                   the caller's stack
    code.emit(0x5A)  // pop edx                   where it resumes
    let leaveAt = code.address
    code.emit(0xFB)  // sti
    code.emit(0x0F, 0x35)  // sysexit
    code.bind(failedAfter)
    callKeepingResult(&code, kernel.failedAfterUpcall)  // failed after:
    code.jump(to: leave, short: true)  // jmp leave
    code.bind(fresh)
    code.emit(0x8D, 0x93)
    code.emit32(UserStacks.slotBytes - UserStacks.guardBytes)  // fresh: lea edx, [ebx + top - bottom]
    code.jump(to: have)  // jmp have
    code.bind(deep)
    code.emit(0x5A)  // deep: pop edx
    code.bind(general)
    writeUserBoundRedirect(into: &code, words: callee.callWords, general: target.general)  // general:
    code.bind(offStack)
    let offStackAt = code.address
    code.emit(0x01, 0xD9)  // off stack: add ecx, ebx
    refuse(&code, status: CallABI.statusBadBlock)
    // The pushes made so far go: the next sysenter starts on the entry stack again.
    code.bind(overflow)
    let overflowAt = code.address
    resumeFromEntryStack(&code, state: kernel.state)  // overflow:
    refuse(&code, status: CallABI.statusOutOfResources)
    let readsFixup = code.address
    resumeFromEntryStack(&code, state: kernel.state)  // reads fixup:
    refuse(&code, status: CallABI.statusInvalidHandle)
    // The frame could not be written: as if the upcall had returned the status, with the
    // entry stack as the way back expects it and the thread counted in.
    let writesFixup = code.address
    code.emit(0x8B, 0x25)
    code.emit32(kernel.state)  // writes fixup: mov esp, [entry stack]
    code.emit(0x83, 0xEC, 0x10)  // sub esp, 16                the four pushes
    countThread(&code, callee, in: true)
    returnStatus(&code, CallABI.statusOutOfResources, to: continuationAt)
    precondition(code.isComplete)
    code.memory.storeBytes(of: continuationAt.littleEndian, toByteOffset: recordReturn, as: UInt32.self)
    code.memory.storeBytes(of: continuationAt.littleEndian, toByteOffset: frameReturn, as: UInt32.self)
    return UserBoundStubAddresses(
      argumentReads: FaultFixup(start: readsStart, end: readsEnd, fixup: readsFixup),
      frameWrites: FaultFixup(start: writesStart, end: writesEnd, fixup: writesFixup), enter: enter,
      continuation: continuationAt, leave: leaveAt, offStack: offStackAt, overflow: overflowAt)
  }

  /// Writes the bound stub of a kernel-mode server's slot bound to a thread-safe user-mode
  /// server's words-only method: the bound stub (`writeBoundStub`), the method's upcall
  /// stub (`writeUpcallStub`) and arch_upcall in one. Called as a bound stub is, with
  /// interrupts on; the same window up to the record's count (and the same redirect over
  /// its first bytes once the slot's entry is freed). It claims the frame as
  /// `UserStacks.claim` says, saves the space, the running server and the claimed slot's
  /// old value, switches CR3, writes the frame, counts the thread in and enters the
  /// dispatch function through arch_upcall's frame (the caller's EBX, ESI, EDI, EBP and
  /// flags in it). A failed callee or a stack too deep takes the method's `entry` (its
  /// upcall stub, whose general path refuses); a full chain, or a frame the kernel cannot
  /// back a stack page for (`frameWrites`), returns `statusOutOfResources`. It returns to
  /// the caller with the result in EAX and the
  /// status in EDX (an abort's, or 0).
  @discardableResult
  public static func writeKernelToUserBoundStub(
    into code: inout CodeBuffer, kernel: UpcallKernel, callee: UpcallCallee, entry: UInt32
  ) -> (window: CountWindow, enter: UInt32, continuation: UInt32, frameWrites: FaultFixup) {
    let chain = kernel.chain
    let start = code.address
    let overflow = code.label()
    let general = code.label()
    let fresh = code.label()
    let have = code.label()
    let failedAfter = code.label()
    let done = code.label()
    code.emit(0x8B, 0x15)
    code.emit32(chain.depth)  // mov edx, [depth]          this record's index
    precondition(code.address - start >= UInt32(boundRedirectSize), "the redirect covers whole instructions")
    code.emit(0x83, 0xFA, UInt8(CallABI.chainCapacity))  // cmp edx, capacity
    code.jump(.aboveOrEqual, to: overflow)  // jae overflow
    code.emit(0xC7, 0x04, 0xD5)
    code.emit32(chain.records + 4)
    code.emit32(callee.chainValue)  // mov dword [records+edx*8+4], object
    let commit = code.address
    code.emit(0xFF, 0x05)
    code.emit32(chain.depth)  // inc dword [depth]        the record counts
    code.emit(0x8F, 0x04, 0xD5)
    code.emit32(chain.records)  // pop [records+edx*8]      caller's return address
    compareFailed(&code, callee)
    code.jump(.notEqual, to: general)  // jne general
    code.emit(0xA1)
    code.emit32(chain.threadNumber)  // mov eax, [thread]
    code.emit(0x8B, 0x14, 0x85)
    code.emit32(callee.stackPointers)  // mov edx, [callee pointers+eax*4]
    code.emit(0x85, 0xD2)  // test edx, edx
    code.jump(.equal, to: fresh)  // jz fresh
    code.bind(have)
    code.emit(0x81, 0xEA)
    code.emit32(UserStacks.frameBytes(arguments: callee.callWords + 2))  // have: sub edx, frame
    code.emit(0x89, 0xC1)  // mov ecx, eax
    code.emit(0xC1, 0xE1, UserStacks.shift)  // shl ecx, shift
    code.emit(0x81, 0xC1)
    code.emit32(UserStacks.bottom(thread: 0) &+ UserStacks.slack)  // add ecx, lowest(0)
    code.emit(0x39, 0xCA)  // cmp edx, ecx
    code.jump(.below, to: general)  // jb general             (too deep: it refuses)
    code.emit(0xFF, 0x34, 0x85)
    code.emit32(callee.stackPointers)  // push dword [callee pointers+eax*4]
    code.emit(0x89, 0x14, 0x85)
    code.emit32(callee.stackPointers)  // mov [callee pointers+eax*4], edx
    code.emit(0xFF, 0x35)
    code.emit32(kernel.state + 12)  // push dword [active directory]
    code.emit(0xFF, 0x35)
    code.emit32(kernel.state + 16)  // push dword [running server]
    switchSpace(&code, kernel, to: callee.directory)
    let writesStart = code.address
    writeFrameStart(&code, kernel, callee)
    for word in 0..<UInt8(truncatingIfNeeded: callee.callWords) {
      code.emit(0x8B, 0x4C, 0x24, 20 + 4 * word)  // mov ecx, [esp+20+4k]     (3 pushes, handle, selector)
      code.emit(0x89, 0x4A, 12 + 4 * word)  // mov [edx+12+4k], ecx
    }
    let writesEnd = code.address
    countThread(&code, callee, in: true)
    code.emit(0xC7, 0x05)
    code.emit32(kernel.state + 16)
    code.emit32(callee.serverWords)  // mov dword [running server], callee
    let (frameReturn, enter) = enterUser(&code, kernel, callee, fromUser: false)
    // Back from the upcall (interrupts as the caller had them): EAX the result, EDX the
    // status, the caller's EBX, ESI, EDI and EBP.
    let continuationAt = code.address
    code.emit(0x8F, 0x05)
    code.emit32(kernel.state + 16)  // continuation: pop dword [running server]
    countThread(&code, callee, in: false)
    code.emit(0x59)  // pop ecx                   the caller's directory
    code.emit(0x89, 0x0D)
    code.emit32(kernel.state + 12)  // mov [active directory], ecx
    code.emit(0x0F, 0x22, 0xD9)  // mov cr3, ecx
    code.emit(0x8B, 0x0D)
    code.emit32(chain.threadNumber)  // mov ecx, [thread]
    code.emit(0x8F, 0x04, 0x8D)
    code.emit32(callee.stackPointers)  // pop dword [callee pointers+ecx*4]
    compareFailed(&code, callee)
    code.jump(.notEqual, to: failedAfter, short: true)  // jne failed after
    code.bind(done)
    popRecordAndReturn(&code, chain: chain)  // done:
    code.bind(failedAfter)
    callKeepingResult(&code, kernel.failedAfterUpcall)  // failed after:
    code.jump(to: done, short: true)  // jmp done
    code.bind(fresh)
    code.emit(0x89, 0xC2)  // fresh: mov edx, eax
    code.emit(0xC1, 0xE2, UserStacks.shift)  // shl edx, shift
    code.emit(0x81, 0xC2)
    code.emit32(UserStacks.top(thread: 0))  // add edx, top(0)
    code.jump(to: have)  // jmp have
    code.bind(general)
    code.emit(0xC7, 0x04, 0x24)
    code.emit32(callee.context)  // general: mov dword [esp], context   handle -> context
    code.emit(0xFF, 0x15)
    code.emit32(entry)  // call [entry]             the upcall stub
    code.emit(0x31, 0xD2)  // xor edx, edx             status: success
    popRecordAndReturn(&code, chain: chain)
    code.bind(overflow)
    returnFailure(&code, status: CallABI.statusOutOfResources)  // overflow:
    // The frame could not be written: as if the upcall had returned the status (the stack
    // is as the way back expects it; the thread is counted in first).
    let writesFixup = code.address
    countThread(&code, callee, in: true)  // writes fixup:
    returnStatus(&code, CallABI.statusOutOfResources, to: continuationAt)
    precondition(code.isComplete)
    code.memory.storeBytes(of: continuationAt.littleEndian, toByteOffset: frameReturn, as: UInt32.self)
    return (
      CountWindow(start: start, commit: commit), enter, continuationAt,
      FaultFixup(start: writesStart, end: writesEnd, fixup: writesFixup)
    )
  }

  /// Writes `cmp dword [callee's failed word], 0`.
  private static func compareFailed(_ code: inout CodeBuffer, _ callee: UpcallCallee) {
    code.emit(0x83, 0x3D)
    code.emit32(callee.serverWords + UInt32(4 * ServerWords.failed))
    code.emit(0x00)  // cmp dword [failed], 0
  }

  /// Writes the switch to the page directory `directory` (ECX clobbered).
  private static func switchSpace(_ code: inout CodeBuffer, _ kernel: UpcallKernel, to directory: UInt32) {
    code.emit(0xB9)
    code.emit32(directory)  // mov ecx, directory
    code.emit(0x89, 0x0D)
    code.emit32(kernel.state + 12)  // mov [active directory], ecx
    code.emit(0x0F, 0x22, 0xD9)  // mov cr3, ecx
  }

  /// Writes the upcall frame's first words at EDX: the return trampoline, the context and
  /// the selector (the call words follow at EDX+12).
  private static func writeFrameStart(
    _ code: inout CodeBuffer, _ kernel: UpcallKernel, _ callee: UpcallCallee
  ) {
    code.emit(0xC7, 0x02)
    code.emit32(kernel.trampoline)  // mov dword [edx], trampoline
    code.emit(0xC7, 0x42, 0x04)
    code.emit32(callee.context)  // mov dword [edx+4], context
    code.emit(0xC7, 0x42, 0x08)
    code.emit32(callee.selector)  // mov dword [edx+8], selector
  }

  /// Writes the count of the thread into (or out of) the callee and its space.
  private static func countThread(_ code: inout CodeBuffer, _ callee: UpcallCallee, in entering: Bool) {
    let operation: UInt8 = entering ? 0x05 : 0x0D  // inc or dec dword [address]
    code.emit(0xFF, operation)
    code.emit32(callee.serverWords + UInt32(4 * ServerWords.threadsInside))  // inc/dec [threads inside]
    code.emit(0xFF, operation)
    code.emit32(callee.spaceThreadsInside)  // inc/dec [space's threads inside]
  }

  /// Writes arch_upcall's frame (UserMode.S: return address, flags, EBP, EBX, ESI, EDI,
  /// the enclosing entry stack, user ticks and resume frame), makes it the entry stack and
  /// enters `callee`'s dispatch function on the user stack at EDX with every register but
  /// those two cleared (from user mode, `fromUser`, interrupts are off already and the
  /// caller's ticks restart). Returns
  /// the offset of the return address's field (the continuation, patched by the caller)
  /// and the address of the `sti` before the `sysexit`.
  private static func enterUser(
    _ code: inout CodeBuffer, _ kernel: UpcallKernel, _ callee: UpcallCallee, fromUser: Bool
  ) -> (frameReturn: Int, enter: UInt32) {
    code.emit(0x68)
    let frameReturn = code.count
    code.emit32(0)  // push continuation
    code.emit(0x9C)  // pushfd                    the interrupts it returns with
    code.emit(0x55, 0x53, 0x56, 0x57)  // push ebp, ebx, esi, edi  the caller's, restored on return
    code.emit(0xFF, 0x35)
    code.emit32(kernel.state)  // push dword [entry stack]
    if fromUser {
      code.emit(0x6A, 0x00)  // push 0                    the caller's ticks, restarted
    } else {
      code.emit(0xFF, 0x35)
      code.emit32(kernel.state + 4)  // push dword [user ticks]
    }
    code.emit(0xFF, 0x35)
    code.emit32(kernel.resumePoint)  // push dword [resume point]
    if !fromUser { code.emit(0xFA) }  // cli
    code.emit(0x89, 0x25)
    code.emit32(kernel.state)  // mov [entry stack], esp
    code.emit(0x89, 0x25)
    code.emit32(kernel.taskStackPointer)  // mov [tss.esp0], esp
    code.emit(0xC7, 0x05)
    code.emit32(kernel.state + 4)
    code.emit32(0)  // mov dword [user ticks], 0
    code.emit(0x89, 0xD1)  // mov ecx, edx               the callee's stack
    code.emit(0xBA)
    code.emit32(callee.dispatch)  // mov edx, dispatch
    code.emit(0x31, 0xC0, 0x31, 0xDB)  // xor eax, eax; xor ebx, ebx   no kernel value leaks
    code.emit(0x31, 0xF6, 0x31, 0xFF, 0x31, 0xED)  // xor esi, esi; xor edi, edi; xor ebp, ebp
    let enter = code.address
    code.emit(0xFB)  // sti                       (after the sysexit)
    code.emit(0x0F, 0x35)  // sysexit
    return (frameReturn, enter)
  }

  /// Writes a jump to `target` with result 0 and `status` in EDX.
  static func returnStatus(_ code: inout CodeBuffer, _ status: UInt32, to target: UInt32) {
    code.emit(0x31, 0xC0)  // xor eax, eax
    code.emit(0xBA)
    code.emit32(status)  // mov edx, status
    code.emit(0xE9)
    code.emitRelative(to: target)  // jmp target
  }

  /// Writes a C call of `function` (no arguments) that keeps EAX and EDX, the result.
  static func callKeepingResult(_ code: inout CodeBuffer, _ function: UInt32) {
    code.emit(0x55)  // push ebp
    code.emit(0x89, 0xE5)  // mov ebp, esp
    code.emit(0x83, 0xE4, 0xF0)  // and esp, -16             (a C call)
    code.emit(0x50, 0x52)  // push eax, edx
    code.emit(0x83, 0xEC, 0x08)  // sub esp, 8
    code.emit(0xE8)
    code.emitRelative(to: function)  // call function
    code.emit(0x83, 0xC4, 0x08)  // add esp, 8
    code.emit(0x5A, 0x58)  // pop edx, eax
    code.emit(0x89, 0xEC)  // mov esp, ebp
    code.emit(0x5D)  // pop ebp
  }

  /// Writes `edx` = the caller's resume address, the first word the stub pushed on the
  /// entry stack (interrupts are off: the words below ESP stay).
  private static func resumeFromEntryStack(_ code: inout CodeBuffer, state: UInt32) {
    code.emit(0x8B, 0x25)
    code.emit32(state)  // mov esp, [entry stack]
    code.emit(0x8B, 0x54, 0x24, 0xFC)  // mov edx, [esp-4]
  }

  /// Writes a refused user-mode call's return to the caller: result 0 and `status` in EBX,
  /// ECX and EDX the caller's stack and resume address.
  private static func refuse(_ code: inout CodeBuffer, status: UInt32) {
    code.emit(0x31, 0xC0)  // xor eax, eax
    code.emit(0xBB)
    code.emit32(status)  // mov ebx, status
    code.emit(0xFB)  // sti
    code.emit(0x0F, 0x35)  // sysexit
  }
}
