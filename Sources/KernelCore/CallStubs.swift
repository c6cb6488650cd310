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

/// A place in code that jumps go to, bound once (`CodeBuffer.bind`); jumps written before
/// it is bound are patched then.
public struct CodeLabel {
  fileprivate let index: Int
}

/// The conditions of the jumps the generators use (x86 condition codes).
public enum JumpCondition: UInt8 {
  /// Unsigned below (carry set).
  case below = 0x2
  /// Unsigned above or equal (carry clear).
  case aboveOrEqual = 0x3
  /// Equal, zero.
  case equal = 0x4
  /// Not equal, not zero.
  case notEqual = 0x5
  /// Sign set (negative).
  case sign = 0x8
  /// Sign clear.
  case notSign = 0x9
}

/// Bytes of machine code being written for a known run address.
public struct CodeBuffer {
  /// Where the code will be placed.
  public let memory: UnsafeMutableRawBufferPointer
  /// The address the first byte will run at.
  public let base: UInt32
  /// Bytes written so far.
  public private(set) var count = 0
  /// Each label's position once bound.
  private var labels: [Int?] = []
  /// Jumps to labels not bound yet: the label, where the displacement is, and its size.
  private var pending: [(label: Int, position: Int, short: Bool)] = []

  /// A new label, to bind later at the place it names.
  public mutating func label() -> CodeLabel {
    labels.append(nil)
    return CodeLabel(index: labels.count - 1)
  }

  /// Binds `label` here and patches the jumps already written to it.
  public mutating func bind(_ label: CodeLabel) {
    precondition(labels[label.index] == nil, "a label is bound once")
    labels[label.index] = count
    for jump in pending where jump.label == label.index { patch(jump.position, short: jump.short, to: count) }
    pending.removeAll { $0.label == label.index }
  }

  /// Writes a jump to `label` (unconditional when `condition` is nil): two bytes when
  /// `short` (the generator knows the distance fits in -128...127; a patch that does not
  /// fit traps, which the host tests would show), else five or six.
  public mutating func jump(_ condition: JumpCondition? = nil, to label: CodeLabel, short: Bool = false) {
    switch (condition, short) {
    case (nil, true): emit(0xEB)
    case (nil, false): emit(0xE9)
    case (let condition?, true): emit(0x70 | condition.rawValue)
    case (let condition?, false): emit(0x0F, 0x80 | condition.rawValue)
    }
    let position = count
    if short { emit(0) } else { emit32(0) }
    if let target = labels[label.index] {
      patch(position, short: short, to: target)
    } else {
      pending.append((label.index, position, short))
    }
  }

  /// Writes the displacement at `position` to reach byte `target` of this buffer.
  private mutating func patch(_ position: Int, short: Bool, to target: Int) {
    if short {
      let distance = target - (position + 1)
      precondition(distance >= -128 && distance <= 127, "a short jump's target is out of reach")
      memory[position] = UInt8(bitPattern: Int8(distance))
    } else {
      patchRelative(at: position, to: base &+ UInt32(truncatingIfNeeded: target))
    }
  }

  /// Whether every label jumped to has been bound (generators check before they finish).
  public var isComplete: Bool { pending.isEmpty }

  /// A buffer writing into `memory`, which will run at `base`.
  public init(memory: UnsafeMutableRawBufferPointer, base: UInt32) {
    self.memory = memory
    self.base = base
  }

  /// The run address of the next byte.
  public var address: UInt32 { base + UInt32(count) }

  /// Appends bytes; traps when the buffer is full (sizes are computed in advance).
  public mutating func emit(_ bytes: UInt8...) {
    for byte in bytes {
      precondition(count < memory.count, "code buffer too small")
      memory[count] = byte
      count += 1
    }
  }

  /// Fills with `int3` up to `count` bytes.
  public mutating func pad(to count: Int) {
    while self.count < count { emit(0xCC) }
  }

  /// Appends a little-endian 32-bit value.
  public mutating func emit32(_ value: UInt32) {
    emit(UInt8(value & 0xFF), UInt8((value >> 8) & 0xFF), UInt8((value >> 16) & 0xFF), UInt8(value >> 24))
  }

  /// Appends a 32-bit displacement to `target`, relative to the end of the field.
  public mutating func emitRelative(to target: UInt32) { emit32(target &- (address &+ 4)) }

  /// Rewrites the 32-bit displacement at `position` to reach `target`.
  private mutating func patchRelative(at position: Int, to target: UInt32) {
    let value = target &- (base &+ UInt32(position) &+ 4)
    memory.storeBytes(of: value.littleEndian, toByteOffset: position, as: UInt32.self)
  }
}

/// Addresses of the call chain (see the kernel's CallChain) baked into generated code.
public struct CallChainLayout {
  /// Address of the depth word.
  public var depth: UInt32
  /// Address of the records: 8 bytes each, the caller's return address then the callee.
  public var records: UInt32
  /// Address of the lock flags: one word per record, 1 if that call took the lock.
  public var lockFlags: UInt32
  /// Address of the lock stubs' return slots: one word per record.
  public var innerReturns: UInt32
  /// Address of the running thread's number (what a lock holds while it is taken).
  public var threadNumber: UInt32

  /// A layout.
  public init(depth: UInt32, records: UInt32, lockFlags: UInt32, innerReturns: UInt32, threadNumber: UInt32) {
    self.depth = depth
    self.records = records
    self.lockFlags = lockFlags
    self.innerReturns = innerReturns
    self.threadNumber = threadNumber
  }
}

/// Addresses of one reference table's header: the words holding the entries' address
/// and the number of entries.
public struct TableLayout {
  /// Address of the word holding the entries' address.
  public var base: UInt32
  /// Address of the word holding the number of entries.
  public var capacity: UInt32

  /// A layout.
  public init(base: UInt32, capacity: UInt32) {
    self.base = base
    self.capacity = capacity
  }
}

/// The generators of call-path machine code, and the layouts they share with the kernel.
public enum CallStubs {
  /// log2 of the bytes of one reference-table entry.
  public static let entryShift: UInt8 = 6
  /// Words of one entry (the rest of the 64 bytes are the kernel's bookkeeping).
  public static let entryWords = 16
  /// Word offsets inside an entry that generated code reads.
  public enum Entry {
    /// The callee object's context (for a free entry: the next free handle).
    public static let context = 0
    /// The address of the object's method vector.
    public static let methods = 1
    /// The digest of the object's interface.
    public static let digest = 2
    /// The number of methods; 0 marks a free entry.
    public static let methodCount = 3
    /// The callee's call-chain value (its Server, or 0 for a kernel service).
    public static let server = 4
    /// The KernelObject (kernel bookkeeping).
    public static let object = 5
    /// The entry's count: how often the owner of the table holds this reference.
    public static let count = 6
  }
  /// Calls that may be nested in one call chain.
  public static let chainCapacity: UInt32 = 64
  /// Status words returned in EDX (and by acquire/release in EAX); ServerRuntime's
  /// CallError names them for servers.
  /// The handle is not a live entry of the caller's table.
  public static let statusInvalidHandle: UInt32 = 1
  /// The selector names a method of another interface.
  public static let statusWrongInterface: UInt32 = 2
  /// A block exceeds its declared maximum (or `filled` exceeds the block).
  public static let statusBlockTooLarge: UInt32 = 3
  /// A block's memory is not the caller's to pass.
  public static let statusBadBlock: UInt32 = 4
  /// A method declared to return a reference returned none.
  public static let statusNullReference: UInt32 = 5
  /// The call chain or a table is full.
  public static let statusOutOfResources: UInt32 = 6
  /// The callee's server has failed (it faulted and was stopped).
  public static let statusServerUnavailable: UInt32 = 7
  /// The callee's server is not thread-safe and its lock is held by a thread that waits,
  /// directly or through others, for a lock this thread holds: waiting would deadlock.
  public static let statusWouldDeadlock: UInt32 = 8
  /// Upper bounds of the sizes, for allocating code memory (host tests check them).
  /// Bytes at most: A table's gate.
  public static let gateSize = 160
  /// Bytes at most: one method entry (an upcall stub, the largest, a lock stub or a
  /// marshaling stub).
  public static let methodEntrySize = 512
  /// Bytes at most: A table's acquire code.
  public static let acquireSize = 64
  /// Bytes at most: A table's release code.
  public static let releaseSize = 64

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
    code.emit32(statusInvalidHandle)  // mov eax, 1
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
    code.emit(0xC1, 0xE0, entryShift)  // shl eax, 6
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
    code.emit(0x2B, 0x48, displacement(Entry.digest))  // sub ecx, [eax+digest]    method index
    code.emit(0x3B, 0x48, displacement(Entry.methodCount))  // cmp ecx, [eax+count]
    code.jump(.aboveOrEqual, to: wrong)  // jae wrong
    code.emit(0x8B, 0x50, displacement(Entry.context))  // mov edx, [eax+context]
    code.emit(0x89, 0x54, 0x24, 0x08)  // mov [esp+8], edx         handle -> context
    code.emit(0x8B, 0x50, displacement(Entry.methods))  // mov edx, [eax+methods]
    code.emit(0x8B, 0x0C, 0x8A)  // mov ecx, [edx+ecx*4]     the method's entry
    code.emit(0x8B, 0x15)
    code.emit32(chain.depth)  // mov edx, [depth]
    code.emit(0x83, 0xFA, UInt8(chainCapacity))  // cmp edx, capacity
    code.jump(.aboveOrEqual, to: overflow)  // jae overflow
    code.emit(0x8B, 0x40, displacement(Entry.server))  // mov eax, [eax+server]
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
    returnFailure(&code, status: statusOutOfResources)
    // wrong: a free entry has no methods, so it is an invalid handle, not a wrong interface.
    code.bind(wrong)
    code.emit(0x83, 0x78, displacement(Entry.methodCount), 0x00)  // cmp dword [eax+count], 0
    code.jump(.equal, to: invalid, short: true)  // je invalid
    code.emit(0x9D)  // popfd
    returnFailure(&code, status: statusWrongInterface)
    code.bind(invalid)
    code.emit(0x9D)  // popfd
    returnFailure(&code, status: statusInvalidHandle)
    precondition(code.isComplete)
  }

  /// The bit a lock word carries while threads wait for it (the rest is the owner's
  /// thread number).
  public static let lockContended: UInt32 = 0x8000_0000

  /// Writes the entry of one method of a server that is not thread-safe. The lock word
  /// holds the owning thread's number (0 when free, `lockContended` set while threads
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
    code.emit32(~lockContended)  // busy: and eax, ~contended     the owner
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
  /// called by a gate like any entry, it returns 0 with `statusServerUnavailable` straight
  /// to the gate's caller, popping the call-chain record itself (as a marshaling stub does).
  public static func writeUnavailableEntry(into code: inout CodeBuffer, chain: CallChainLayout) {
    code.emit(0x83, 0xC4, 0x04)  // add esp, 4               drop the gate's return address
    code.emit(0x31, 0xC0)  // xor eax, eax
    code.emit(0xBA)
    code.emit32(statusServerUnavailable)  // mov edx, 7
    popRecordAndReturn(&code, chain: chain)
  }

  /// Writes a table's `tessera_acquire(handle)`: one more count on the entry. Returns 0,
  /// 1 for an invalid handle, or `statusOutOfResources` when the count is at its largest
  /// (it never wraps to 0, which would free the entry under its holders).
  public static func writeAcquire(into code: inout CodeBuffer, table: TableLayout) {
    let invalid = code.label()
    let full = code.label()
    loadEntry(&code, table: table, invalid: invalid)
    code.emit(0x83, 0x78, displacement(Entry.methodCount), 0x00)  // cmp dword [eax+count], 0
    code.jump(.equal, to: invalid, short: true)  // je invalid
    code.emit(0x83, 0x40, displacement(Entry.count), 0x01)  // add dword [eax+entry count], 1
    code.jump(.below, to: full, short: true)  // jc full
    code.emit(0x31, 0xC0)  // xor eax, eax
    code.emit(0xC3)  // ret
    code.bind(full)
    code.emit(0xFF, 0x48, displacement(Entry.count))  // full: dec dword [eax+entry count]
    code.emit(0xB8)
    code.emit32(statusOutOfResources)  // mov eax, 6
    code.emit(0xC3)  // ret
    code.bind(invalid)
    returnInvalidHandle(&code)
    precondition(code.isComplete)
  }

  /// Writes a table's `tessera_release(handle)`: one `dec` of the entry's count (a single
  /// instruction, so a thread switch cannot split it); when that was the last count it
  /// jumps to `lastCount`, the kernel, which frees the entry (perhaps destroying an
  /// object or unloading a server) with the same arguments. Returns 0, or 1 for an
  /// invalid handle.
  public static func writeRelease(into code: inout CodeBuffer, table: TableLayout, lastCount: UInt32) {
    let invalid = code.label()
    let last = code.label()
    loadEntry(&code, table: table, invalid: invalid)
    code.emit(0x83, 0x78, displacement(Entry.methodCount), 0x00)  // cmp dword [eax+count], 0
    code.jump(.equal, to: invalid, short: true)  // je invalid
    code.emit(0xFF, 0x48, displacement(Entry.count))  // dec dword [eax+entry count]
    code.jump(.equal, to: last, short: true)  // jz last
    code.emit(0x31, 0xC0)  // xor eax, eax
    code.emit(0xC3)  // ret
    code.bind(last)
    code.emit(0xE9)
    code.emitRelative(to: lastCount)  // last: jmp lastCount
    code.bind(invalid)
    returnInvalidHandle(&code)
    precondition(code.isComplete)
  }
}
