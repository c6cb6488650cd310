// CallStubs: the i686 machine code the kernel generates at load time for calls between
// servers in kernel mode (the paper's "custom code for each server function", section 4).
//
// Contract: every function writes position-dependent code for the address it will run
// at (`CodeBuffer.base`), with the addresses of the kernel data it uses baked in. The
// layouts below are shared with the kernel's Swift code (ReferenceTable, CallChain).
//
// Per reference table: a gate (the target of the owner's tessera_callN imports, which
// checks the call and keeps the call chain), and the fast paths of tessera_acquire and
// tessera_release. Per method of an exported interface, the method vector holds the
// dispatch function itself (thread-safe server, words only), a lock stub (server not
// thread-safe), or a marshaling stub (references or blocks in the signature).

import KernelCore

/// The generators of call-path machine code (the constants they share: CallABI).
public enum CallStubs {
  /// Upper bounds of the sizes, for allocating code memory (host tests check them).
  /// Bytes at most: A table's gate.
  public static let gateSize = 160
  /// Bytes at most: one method entry (an upcall stub, the largest, a lock stub or a
  /// marshaling stub).
  public static let methodEntrySize = 512
  /// Bytes at most: A table's acquire code.
  public static let acquireSize = 64
  /// Bytes at most: A table's release code.
  public static let releaseSize = 128

  private static func displacement(_ word: Int) -> UInt8 { UInt8(word * 4) }

  /// Writes a failed call's return: result 0 and `status` in EDX (8 bytes).
  static func returnFailure(_ code: inout CodeBuffer, status: UInt32) {
    code.emit(0x31, 0xC0)  // xor eax, eax
    code.emit(0xBA)
    code.emit32(status)  // mov edx, status
    code.emit(0xC3)  // ret
  }

  /// Writes `ecx = [depth] - 1`, the index of the innermost call-chain record.
  private static func recordIndexInECX(_ code: inout CodeBuffer, chain: CallChainLayout) {
    code.emit(0x8B, 0x0D)
    code.emit32(chain.depth)  // mov ecx, [depth]
    code.emit(0x49)  // dec ecx
  }

  /// Writes the pop of the innermost call-chain record and the return to the caller's
  /// address it holds.
  ///
  /// The record stays readable after the `dec`: a thread switch saves one record past the
  /// depth (CallChain.save).
  static func popRecordAndReturn(_ code: inout CodeBuffer, chain: CallChainLayout) {
    code.emit(0xFF, 0x0D)
    code.emit32(chain.depth)  // dec dword [depth]
    code.emit(0x8B, 0x0D)
    code.emit32(chain.depth)  // mov ecx, [depth]
    code.emit(0xFF, 0x24, 0xCD)
    code.emit32(chain.records)  // jmp [records+ecx*8]
  }

  /// Writes a C call of the kernel function `target` with the one argument `argument`.
  static func callKernel(_ code: inout CodeBuffer, _ target: UInt32, with argument: UInt32) {
    code.emit(0x68)
    code.emit32(argument)  // push argument
    code.emit(0xE8)
    code.emitRelative(to: target)  // call target
    code.emit(0x83, 0xC4, 0x04)  // add esp, 4
  }

  /// Writes acquire's or release's return for an invalid handle: EAX = 1.
  private static func returnInvalidHandle(_ code: inout CodeBuffer) {
    code.emit(0xB8)
    code.emit32(CallABI.statusInvalidHandle)  // mov eax, 1
    code.emit(0xC3)  // ret
  }

  /// Writes `eax = &entries[handle]` for the handle at [esp+handleOffset], jumping to
  /// `invalid` when the handle is past the table.
  private static func loadEntry(
    _ code: inout CodeBuffer, table: TableLayout, handleOffset: UInt8 = 4, invalid: CodeLabel
  ) {
    code.emit(0x8B, 0x44, 0x24, handleOffset)  // mov eax, [esp+4]         handle
    code.emit(0x3B, 0x05)
    code.emit32(table.capacity)  // cmp eax, [capacity]
    code.jump(.aboveOrEqual, to: invalid)  // jae invalid
    code.emit(0xC1, 0xE0, CallABI.entryShift)  // shl eax, 6
    code.emit(0x03, 0x05)
    code.emit32(table.base)  // add eax, [base]
  }

  /// Writes a table's gate, the target of its owner's tessera_callN imports: it checks the
  /// handle and the selector, replaces the handle argument with the callee's context,
  /// pushes a call-chain record (moving the caller's return address into it, so the
  /// arguments stay where the caller pushed them), calls the method's entry, pops the
  /// record and returns to the caller. Errors return 0 with a status in EDX.
  ///
  /// From reading the entry to counting the record, interrupts are off (the caller's
  /// flags are saved and restored): another thread of the same server releasing or
  /// re-using the entry cannot be switched in between, so the gate never mixes fields of
  /// two objects or reads a freed entry, and once interrupts are back on the callee is
  /// in this thread's call chain, which keeps it loaded (Server.unload waits).
  public static func writeGate(into code: inout CodeBuffer, table: TableLayout, chain: CallChainLayout) {
    let invalid = code.label()
    let wrong = code.label()
    let overflow = code.label()
    code.emit(0x9C)  // pushfd
    code.emit(0xFA)  // cli
    loadEntry(&code, table: table, handleOffset: 8, invalid: invalid)
    code.emit(0x8B, 0x4C, 0x24, 0x0C)  // mov ecx, [esp+12]       selector
    code.emit(0x2B, 0x48, displacement(CallABI.Entry.digest))  // sub ecx, [eax+digest]    method index
    code.emit(0x3B, 0x48, displacement(CallABI.Entry.methodCount))  // cmp ecx, [eax+count]
    code.jump(.aboveOrEqual, to: wrong)  // jae wrong
    code.emit(0x8B, 0x50, displacement(CallABI.Entry.context))  // mov edx, [eax+context]
    code.emit(0x89, 0x54, 0x24, 0x08)  // mov [esp+8], edx         handle -> context
    code.emit(0x8B, 0x50, displacement(CallABI.Entry.methods))  // mov edx, [eax+methods]
    code.emit(0x8B, 0x0C, 0x8A)  // mov ecx, [edx+ecx*4]     the method's entry
    code.emit(0x8B, 0x15)
    code.emit32(chain.depth)  // mov edx, [depth]
    code.emit(0x83, 0xFA, UInt8(CallABI.chainCapacity))  // cmp edx, capacity
    code.jump(.aboveOrEqual, to: overflow)  // jae overflow
    code.emit(0x8B, 0x40, displacement(CallABI.Entry.server))  // mov eax, [eax+server]
    code.emit(0x89, 0x04, 0xD5)
    code.emit32(chain.records + 4)  // mov [records+edx*8+4], eax
    code.emit(0xFF, 0x05)
    code.emit32(chain.depth)  // inc dword [depth]        the record counts
    code.emit(0x9D)  // popfd                    interrupts as the caller had them
    code.emit(0x8F, 0x04, 0xD5)
    code.emit32(chain.records)  // pop [records+edx*8]      caller's return address
    code.emit(0xFF, 0xD1)  // call ecx                 (returns the result word)
    code.emit(0x31, 0xD2)  // xor edx, edx             status: success
    popRecordAndReturn(&code, chain: chain)
    code.bind(overflow)
    code.emit(0x9D)  // popfd
    returnFailure(&code, status: CallABI.statusOutOfResources)
    // wrong: a free entry has no methods, so it is an invalid handle, not a wrong interface.
    code.bind(wrong)
    code.emit(0x83, 0x78, displacement(CallABI.Entry.methodCount), 0x00)  // cmp dword [eax+count], 0
    code.jump(.equal, to: invalid, short: true)  // je invalid
    code.emit(0x9D)  // popfd
    returnFailure(&code, status: CallABI.statusWrongInterface)
    code.bind(invalid)
    code.emit(0x9D)  // popfd
    returnFailure(&code, status: CallABI.statusInvalidHandle)
    precondition(code.isComplete)
  }

  /// Writes the entry of one method of a server that is not thread-safe. The lock word
  /// holds the owning thread's number (0 when free, `CallABI.lockContended` set while threads
  /// wait). The fast path takes a free lock with one `lock cmpxchg` and frees it with one
  /// `xchg`. A thread whose call chain already holds the lock goes straight in (re-entry);
  /// when another thread holds it, `wait(lock)` (the kernel) blocks until the lock is
  /// handed over. A lock found contended when freed goes to `release(lock)`, which hands
  /// it to a waiter. When waiting would close a cycle of threads waiting for each other's
  /// locks, `wait` returns a status instead, which goes back to the gate's caller.
  /// Entered from a gate, with the call-chain record already pushed.
  public static func writeLockStub(
    into code: inout CodeBuffer, chain: CallChainLayout, dispatch: UInt32, lock: UInt32,
    wait: UInt32, release: UInt32
  ) {
    let busy = code.label()
    let enter = code.label()
    let done = code.label()
    let contended = code.label()
    let other = code.label()
    let refused = code.label()
    recordIndexInECX(&code, chain: chain)  // this call's record
    code.emit(0x8F, 0x04, 0x8D)
    code.emit32(chain.innerReturns)  // pop [inner+ecx*4]        the gate's return address
    code.emit(0x8B, 0x15)
    code.emit32(chain.threadNumber)  // mov edx, [thread]
    code.emit(0x31, 0xC0)  // xor eax, eax
    code.emit(0xF0, 0x0F, 0xB1, 0x15)
    code.emit32(lock)  // lock cmpxchg [lock], edx  take it if free
    code.jump(.notEqual, to: busy)  // jne busy
    code.emit(0xC7, 0x04, 0x8D)
    code.emit32(chain.lockFlags)
    code.emit32(1)  // mov dword [flags+ecx*4], 1   this call took the lock
    code.bind(enter)
    code.emit(0xE8)
    code.emitRelative(to: dispatch)  // enter: call dispatch
    recordIndexInECX(&code, chain: chain)
    code.emit(0x83, 0x3C, 0x8D)
    code.emit32(chain.lockFlags)
    code.emit(0x00)  // cmp dword [flags+ecx*4], 0
    code.jump(.equal, to: done, short: true)  // je done
    // The flag is cleared on the way out: a later call at this depth that takes no lock
    // (a thread-safe callee) must not find it set, or a sleep there would release and
    // take again a lock it does not hold.
    code.emit(0xC7, 0x04, 0x8D)
    code.emit32(chain.lockFlags)
    code.emit32(0)  // mov dword [flags+ecx*4], 0
    code.emit(0x31, 0xD2)  // xor edx, edx
    code.emit(0x87, 0x15)
    code.emit32(lock)  // xchg [lock], edx          free it
    code.emit(0x85, 0xD2)  // test edx, edx
    code.jump(.sign, to: contended, short: true)  // js contended
    code.bind(done)
    code.emit(0xFF, 0x24, 0x8D)
    code.emit32(chain.innerReturns)  // done: jmp [inner+ecx*4]
    code.bind(contended)
    code.emit(0x50)  // contended: push eax   the result
    callKernel(&code, release, with: lock)  // wake a waiter
    code.emit(0x58)  // pop eax
    recordIndexInECX(&code, chain: chain)
    code.emit(0xFF, 0x24, 0x8D)
    code.emit32(chain.innerReturns)  // jmp [inner+ecx*4]
    code.bind(busy)
    code.emit(0x25)
    code.emit32(~CallABI.lockContended)  // busy: and eax, ~contended     the owner
    code.emit(0x39, 0xD0)  // cmp eax, edx
    code.jump(.notEqual, to: other, short: true)  // jne other
    code.emit(0xC7, 0x04, 0x8D)
    code.emit32(chain.lockFlags)
    code.emit32(0)  // mov dword [flags+ecx*4], 0   re-entry: not ours to free
    code.jump(to: enter)  // jmp enter
    code.bind(other)
    callKernel(&code, wait, with: lock)  // other: blocks until handed the lock (EAX 0)
    code.emit(0x85, 0xC0)  // test eax, eax
    code.jump(.notEqual, to: refused, short: true)  // jnz refused
    recordIndexInECX(&code, chain: chain)
    code.emit(0xC7, 0x04, 0x8D)
    code.emit32(chain.lockFlags)
    code.emit32(1)  // mov dword [flags+ecx*4], 1
    code.jump(to: enter)  // jmp enter
    // refused: waiting would deadlock; EAX holds the status for the gate's caller (the
    // gate's return address is already off the stack).
    code.bind(refused)
    code.emit(0x89, 0xC2)  // mov edx, eax
    code.emit(0x31, 0xC0)  // xor eax, eax
    popRecordAndReturn(&code, chain: chain)
    precondition(code.isComplete)
  }

  /// Writes the entry of a method that needs marshaling (references or blocks). Called by
  /// a gate, it calls `marshal(information, arguments)` (the kernel's marshal_call, which
  /// returns the result word and a status) and returns straight to the gate's caller,
  /// popping the call-chain record itself, so the status reaches the caller unchanged.
  public static func writeMarshalStub(
    into code: inout CodeBuffer, chain: CallChainLayout, information: UInt32, marshal: UInt32
  ) {
    code.emit(0x83, 0xC4, 0x04)  // add esp, 4               drop the gate's return address
    writeMarshalStubBody(into: &code, chain: chain, information: information, marshal: marshal)
  }

  /// A marshaling stub after dropping the gate's return address (the stack holds the
  /// context, the selector and the words).
  static func writeMarshalStubBody(
    into code: inout CodeBuffer, chain: CallChainLayout, information: UInt32, marshal: UInt32
  ) {
    code.emit(0x89, 0xE2)  // mov edx, esp             the arguments: context, selector, words
    code.emit(0x55)  // push ebp
    code.emit(0x89, 0xE5)  // mov ebp, esp
    code.emit(0x83, 0xE4, 0xF0)  // and esp, -16
    code.emit(0x83, 0xEC, 0x08)  // sub esp, 8
    code.emit(0x52)  // push edx
    code.emit(0x68)
    code.emit32(information)  // push information
    code.emit(0xE8)
    code.emitRelative(to: marshal)  // call marshal
    code.emit(0x89, 0xEC)  // mov esp, ebp
    code.emit(0x5D)  // pop ebp
    popRecordAndReturn(&code, chain: chain)
  }

  /// Bytes at most: the method entry of a failed kernel-mode server.
  public static let unavailableEntrySize = 32

  /// Writes the method entry every method of a failed kernel-mode server is switched to:
  /// called by a gate like any entry, it returns 0 with `CallABI.statusServerUnavailable` straight
  /// to the gate's caller, popping the call-chain record itself (as a marshaling stub does).
  public static func writeUnavailableEntry(into code: inout CodeBuffer, chain: CallChainLayout) {
    code.emit(0x83, 0xC4, 0x04)  // add esp, 4               drop the gate's return address
    code.emit(0x31, 0xC0)  // xor eax, eax
    code.emit(0xBA)
    code.emit32(CallABI.statusServerUnavailable)  // mov edx, 7
    popRecordAndReturn(&code, chain: chain)
  }

  /// Writes a table's `tessera_acquire(handle)`: one more count on the entry. Returns 0,
  /// 1 for an invalid handle, or `CallABI.statusOutOfResources` when the count is at
  /// `CallABI.largestCount`. One unsigned compare refuses a free entry (its count is
  /// `CallABI.freeCount`) and a full count alike, before the one write, the `inc`; the
  /// returned `CountWindow` ends there.
  @discardableResult
  public static func writeAcquire(into code: inout CodeBuffer, table: TableLayout) -> CountWindow {
    let start = code.address
    let invalid = code.label()
    loadEntry(&code, table: table, invalid: invalid)
    return CountWindow(start: start, commit: writeAcquireBody(&code, offset: 0, invalid: invalid))
  }

  /// Writes `tessera_bound_acquire_<slot>`: `writeAcquire` for the entry of handle `slot`,
  /// found from the table's base alone. The handle is not checked against the capacity:
  /// the table holds every slot's entry before the server runs and never shrinks
  /// (Server.load reserves them), and a freed entry is refused as in `writeAcquire`.
  @discardableResult
  public static func writeBoundAcquire(into code: inout CodeBuffer, table: TableLayout, slot: Int)
    -> CountWindow
  {
    let start = code.address
    let invalid = code.label()
    code.emit(0xA1)
    code.emit32(table.base)  // mov eax, [base]
    let commit = writeAcquireBody(&code, offset: UInt32(slot) << UInt32(CallABI.entryShift), invalid: invalid)
    return CountWindow(start: start, commit: commit)
  }

  /// Returns the address of the `inc`.
  private static func writeAcquireBody(_ code: inout CodeBuffer, offset: UInt32, invalid: CodeLabel) -> UInt32
  {
    let refused = code.label()
    // cmp dword [eax+entry count], largest
    entryOperand(&code, opcode: 0x81, extension: 7, field: CallABI.Entry.count, offset: offset)
    code.emit32(CallABI.largestCount)
    code.jump(.aboveOrEqual, to: refused, short: true)  // jae refused    free, or full
    let commit = code.address
    // inc dword [eax+entry count]
    entryOperand(&code, opcode: 0xFF, extension: 0, field: CallABI.Entry.count, offset: offset)
    code.emit(0x31, 0xC0)  // xor eax, eax
    code.emit(0xC3)  // ret
    code.bind(refused)
    // refused: cmp dword [eax+methods], 0       no methods: a free entry
    entryOperand(&code, opcode: 0x83, extension: 7, field: CallABI.Entry.methodCount, offset: offset)
    code.emit(0x00)
    code.jump(.equal, to: invalid, short: true)  // je invalid
    code.emit(0xB8)
    code.emit32(CallABI.statusOutOfResources)  // mov eax, 6               full
    code.emit(0xC3)  // ret
    code.bind(invalid)
    returnInvalidHandle(&code)
    precondition(code.isComplete)
    return commit
  }

  /// Writes a table's `tessera_release(handle)`: one `dec` of the entry's count, the only
  /// write of the way everyone takes; a result above 0 returns 0 at once. Anything else
  /// (the last count gone, a free entry's count or a count of 0 counted down) goes to a
  /// second part that finds the entry again and tells them apart: the last count jumps to
  /// `lastCount`, the kernel, which frees the entry (perhaps destroying an object or
  /// unloading a server) with the same arguments; a count taken again meanwhile returns
  /// 0; a free entry (count back to `CallABI.freeCount`) and a count below 0 (back to 0)
  /// are undone with one store and return 1 for an invalid handle. Returns the two
  /// `CountWindow`s: the `dec`'s and the undo's.
  @discardableResult
  public static func writeRelease(into code: inout CodeBuffer, table: TableLayout, lastCount: UInt32)
    -> (CountWindow, CountWindow)
  {
    writeReleaseBody(&code, lastCount: lastCount) { code, invalid in
      loadEntry(&code, table: table, invalid: invalid)
      return 0
    }
  }

  /// Writes `tessera_bound_release_<slot>`: `writeRelease` for the entry of handle `slot`
  /// (see `writeBoundAcquire`); the last count goes to `lastCount` with the handle
  /// argument set to `slot` (a caller passing another would otherwise leave the slot's
  /// entry at count 0 without freeing it).
  @discardableResult
  public static func writeBoundRelease(
    into code: inout CodeBuffer, table: TableLayout, slot: Int, lastCount: UInt32
  ) -> (CountWindow, CountWindow) {
    writeReleaseBody(&code, lastCount: lastCount, handle: UInt32(slot)) { code, _ in
      code.emit(0xA1)
      code.emit32(table.base)  // mov eax, [base]
      return UInt32(slot) << UInt32(CallABI.entryShift)
    }
  }

  /// `findEntry` writes the code that puts the entry's address less the returned offset
  /// in EAX (it runs twice: the second part reads the table again, which may have grown).
  /// With `handle`, the last count passes that handle to `lastCount` whatever the caller
  /// passed (the entry counted down is the slot's).
  private static func writeReleaseBody(
    _ code: inout CodeBuffer, lastCount: UInt32, handle: UInt32? = nil,
    findEntry: (inout CodeBuffer, CodeLabel) -> UInt32
  ) -> (CountWindow, CountWindow) {
    let invalid = code.label()
    let other = code.label()
    let last = code.label()
    let undo = code.label()
    let taken = code.label()
    let start = code.address
    let offset = findEntry(&code, invalid)
    let commit = code.address
    // dec dword [eax+entry count]
    entryOperand(&code, opcode: 0xFF, extension: 1, field: CallABI.Entry.count, offset: offset)
    code.jump(.lessOrEqual, to: other, short: true)  // jle other
    code.emit(0x31, 0xC0)  // xor eax, eax
    code.emit(0xC3)  // ret
    code.bind(other)
    let otherStart = code.address
    _ = findEntry(&code, invalid)  // other: the entry again
    code.emit(0xB9)
    code.emit32(CallABI.freeCount)  // mov ecx, free count
    // cmp dword [eax+methods], 0
    entryOperand(&code, opcode: 0x83, extension: 7, field: CallABI.Entry.methodCount, offset: offset)
    code.emit(0x00)
    code.jump(.equal, to: undo, short: true)  // je undo                 a free entry
    // cmp dword [eax+entry count], 0
    entryOperand(&code, opcode: 0x83, extension: 7, field: CallABI.Entry.count, offset: offset)
    code.emit(0x00)
    code.jump(.equal, to: last, short: true)  // je last
    code.jump(.greater, to: taken, short: true)  // jg taken                acquired again meanwhile
    code.emit(0x31, 0xC9)  // xor ecx, ecx             below 0: back to 0
    code.bind(undo)
    let undoCommit = code.address
    // undo: mov [eax+entry count], ecx
    entryOperand(&code, opcode: 0x89, extension: 1, field: CallABI.Entry.count, offset: offset)
    code.bind(invalid)
    returnInvalidHandle(&code)
    code.bind(taken)
    code.emit(0x31, 0xC0)  // taken: xor eax, eax
    code.emit(0xC3)  // ret
    code.bind(last)
    if let handle {
      code.emit(0xC7, 0x44, 0x24, 0x04)
      code.emit32(handle)  // last: mov dword [esp+4], slot
    }
    code.emit(0xE9)
    code.emitRelative(to: lastCount)  // jmp lastCount
    precondition(code.isComplete)
    return (CountWindow(start: start, commit: commit), CountWindow(start: otherStart, commit: undoCommit))
  }

  /// Bytes at most: one bound acquire or release.
  public static let boundCountSize = 96

  /// Writes the opcode and operand of `opcode /extension dword [eax + offset + 4 x field]`,
  /// with an 8-bit displacement when it fits.
  private static func entryOperand(
    _ code: inout CodeBuffer, opcode: UInt8, extension: UInt8, field: Int, offset: UInt32
  ) {
    let displacement = offset &+ UInt32(4 * field)
    if displacement < 0x80 {
      code.emit(opcode, 0x40 | `extension` << 3, UInt8(displacement))
    } else {
      code.emit(opcode, 0x80 | `extension` << 3)
      code.emit32(displacement)
    }
  }
}
