// BoundStubs: the stub the kernel generates for each bound-call import of a kernel-mode
// server (BoundCallImport names them), and the redirect that sends it back to the gate.
//
// Contract: see `writeBoundStub` and `writeBoundRedirect`; the kernel (Server.bindSlots)
// writes them, and rewrites a live stub only with the redirect, over its first bytes.

import KernelCore

extension CallStubs {
  /// Bytes at most of one bound-call stub (host tests check it).
  public static let boundStubSize = 512

  /// The lock of a bound object's server that is not thread-safe, in kernel mode: its
  /// stub takes a free lock itself (as a lock stub would) and calls the dispatch function.
  public struct BoundLock: Equatable, Sendable {
    /// The lock word (the server's first word; `writeLockStub` describes its values).
    public var lock: UInt32
    /// The server's failed word: once set, calls take the method's entry (which refuses).
    public var failed: UInt32
    /// The method's dispatch function.
    public var dispatch: UInt32
    /// The kernel's function handing a contended lock to a waiter (ServerLock's release).
    public var release: UInt32

    /// A lock.
    public init(lock: UInt32, failed: UInt32, dispatch: UInt32, release: UInt32) {
      self.lock = lock
      self.failed = failed
      self.dispatch = dispatch
      self.release = release
    }
  }

  /// What a bound stub has baked in.
  public struct BoundTarget: Equatable, Sendable {
    /// The call-chain value of the bound object (what the gate would write: the object's
    /// address with bit 0 set).
    public var chainValue: UInt32
    /// The object's context, which replaces the handle argument.
    public var context: UInt32
    /// The address of the method's word in the object's method vector (read at each call:
    /// a failed server's vector is switched to an entry that refuses).
    public var entry: UInt32
    /// For a words-only method of a kernel-mode server that is not thread-safe: its lock.
    public var lock: BoundLock?

    /// A target.
    public init(chainValue: UInt32, context: UInt32, entry: UInt32, lock: BoundLock? = nil) {
      self.chainValue = chainValue
      self.context = context
      self.entry = entry
      self.lock = lock
    }
  }

  /// Writes a bound stub that only goes to `gate` (the stub of a slot not bound yet, or no
  /// longer): `jmp gate`, 5 bytes. Written over the start of a live stub (with interrupts
  /// disabled), it redirects it safely: no thread switched away is inside the stub's first
  /// 5 bytes, because a thread preempted before its record counts starts the stub again
  /// (the window `writeBoundStub` returns), and the first instruction is 6 bytes long.
  public static func writeBoundRedirect(into code: inout CodeBuffer, gate: UInt32) {
    code.emit(0xE9)
    code.emitRelative(to: gate)  // jmp gate                 (it checks the handle)
  }

  /// Bytes `writeBoundRedirect` writes.
  public static let boundRedirectSize = 5

  /// Writes the stub of one method of a bound slot: the gate's work with the entry's
  /// fields known. It pushes and counts the call-chain record naming the object (so the
  /// object and its server stay while the call runs); then it moves the caller's return
  /// address into the record, replaces the handle argument with the context, calls the
  /// method's entry through the object's method vector, pops the record and returns to
  /// the caller with status 0 (or what the entry returned, for entries that return to the
  /// caller themselves, as lock, marshaling and upcall stubs do). A full call chain
  /// returns `CallABI.statusOutOfResources`.
  ///
  /// Interrupts stay on: up to the `inc` that counts the record, the stub only reads and
  /// writes the uncounted record slot and EDX, so a thread preempted there starts it again
  /// (the returned `CountWindow`, which the kernel applies when it switches the thread
  /// away), and finds the redirect if the slot's entry was freed meanwhile. The gate, whose
  /// window would also have to replace the handle argument, keeps its `cli`.
  ///
  /// With `target.lock`, the stub first tries what the method's lock stub would do on its
  /// fast path: take the free lock with one `lock cmpxchg`, flag the record, call the
  /// dispatch function, clear the flag and free the lock with one `xchg` (handing a
  /// contended one to a waiter through `release`). A lock that is held (by this thread:
  /// re-entry, or another: waiting) and a failed server take the method's entry, whose lock
  /// stub (or refusing entry) does the rest.
  @discardableResult
  public static func writeBoundStub(into code: inout CodeBuffer, chain: CallChainLayout, target: BoundTarget)
    -> CountWindow
  {
    let start = code.address
    let overflow = code.label()
    let general = code.label()
    code.emit(0x8B, 0x15)
    code.emit32(chain.depth)  // mov edx, [depth]          this record's index
    // No thread stops inside the bytes the redirect overwrites.
    precondition(code.address - start >= UInt32(boundRedirectSize))
    code.emit(0x83, 0xFA, UInt8(CallABI.chainCapacity))  // cmp edx, capacity
    code.jump(.aboveOrEqual, to: overflow)  // jae overflow
    code.emit(0xC7, 0x04, 0xD5)
    code.emit32(chain.records + 4)
    code.emit32(target.chainValue)  // mov dword [records+edx*8+4], object
    let commit = code.address
    code.emit(0xFF, 0x05)
    code.emit32(chain.depth)  // inc dword [depth]        the record counts
    code.emit(0x8F, 0x04, 0xD5)
    code.emit32(chain.records)  // pop [records+edx*8]      caller's return address
    code.emit(0xC7, 0x04, 0x24)
    code.emit32(target.context)  // mov dword [esp], context  handle -> context
    if let lock = target.lock {
      let contended = code.label()
      code.emit(0x83, 0x3D)
      code.emit32(lock.failed)
      code.emit(0x00)  // cmp dword [failed], 0
      code.jump(.notEqual, to: general)  // jne general
      code.emit(0x8B, 0x0D)
      code.emit32(chain.threadNumber)  // mov ecx, [thread]
      code.emit(0x31, 0xC0)  // xor eax, eax
      code.emit(0xF0, 0x0F, 0xB1, 0x0D)
      code.emit32(lock.lock)  // lock cmpxchg [lock], ecx  take it if free
      code.jump(.notEqual, to: general)  // jne general              held: the lock stub waits or re-enters
      code.emit(0xC7, 0x04, 0x95)
      code.emit32(chain.lockFlags)
      code.emit32(1)  // mov dword [flags+edx*4], 1   this call took the lock
      code.emit(0xE8)
      code.emitRelative(to: lock.dispatch)  // call dispatch
      // The lock is freed while the record still names the callee: popped first, a
      // preempted thread would hold the lock of a server nothing pins (its words could be
      // freed by an unload before the `xchg`).
      code.emit(0x8B, 0x0D)
      code.emit32(chain.depth)  // mov ecx, [depth]
      code.emit(0x49)  // dec ecx                  this call's record
      code.emit(0xC7, 0x04, 0x8D)
      code.emit32(chain.lockFlags)
      code.emit32(0)  // mov dword [flags+ecx*4], 0   cleared before the lock is freed
      code.emit(0x31, 0xD2)  // xor edx, edx
      code.emit(0x87, 0x15)
      code.emit32(lock.lock)  // xchg [lock], edx          free it
      code.emit(0x85, 0xD2)  // test edx, edx
      code.jump(.sign, to: contended, short: true)  // js contended
      code.emit(0x31, 0xD2)  // xor edx, edx             status: success
      code.emit(0x89, 0x0D)
      code.emit32(chain.depth)  // mov [depth], ecx         the record is popped
      code.emit(0xFF, 0x24, 0xCD)
      code.emit32(chain.records)  // jmp [records+ecx*8]
      code.bind(contended)
      code.emit(0x50)  // contended: push eax      the result
      callKernel(&code, lock.release, with: lock.lock)  // a waiter gets it
      code.emit(0x58)  // pop eax
      code.emit(0x31, 0xD2)  // xor edx, edx
      popRecordAndReturn(&code, chain: chain)
    }
    code.bind(general)
    code.emit(0xFF, 0x15)
    code.emit32(target.entry)  // general: call [entry]
    code.emit(0x31, 0xD2)  // xor edx, edx             status: success
    popRecordAndReturn(&code, chain: chain)
    code.bind(overflow)
    returnFailure(&code, status: CallABI.statusOutOfResources)  // overflow:
    precondition(code.isComplete)
    return CountWindow(start: start, commit: commit)
  }
}
