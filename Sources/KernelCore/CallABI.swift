// CallABI: the words the kernel's call path shares between Swift, generated machine code
// and assembly: status codes, reference-table entry offsets, the call chain's capacity,
// the lock word's contended bit, the server words, the user-mode call codes and the
// addresses of the call chain and of a table's header that generated code bakes in.
//
// Contract: these are the one source of truth; `tessera abi-header` writes the ones
// assembly and C need into build/generated/KernelABI.h, and the i686 generators
// (Kernel/Arch/i686/CodeGeneration) and the kernel's Swift code read them from here.

/// The constants of the call path.
public enum CallABI {
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
    /// The entry's count: how often the owner of the table holds this reference (0 to
    /// `largestCount`); `freeCount` in a free entry.
    public static let count = 6
  }
  /// The most counts an entry holds; acquire refuses more. Below 2^31, so that generated
  /// release finds a live count falling to 0, a live count of 0 going negative and a free
  /// entry's count with one signed test.
  public static let largestCount: UInt32 = 0x7FFF_FFFF
  /// The count of a free entry: above `largestCount`, so acquire's one unsigned test
  /// refuses a free entry and a full count alike.
  public static let freeCount: UInt32 = 0x8000_0000
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

  /// The bit a lock word carries while threads wait for it (the rest is the owner's
  /// thread number).
  public static let lockContended: UInt32 = 0x8000_0000
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
  /// A user-mode server's bound call k (a `tessera_bound_call` import) is code
  /// `boundBase + k`: the kernel jumps to the k-th stub in the server's words
  /// (`ServerWords.boundCalls`), written for the slot's target once it is bound.
  public static let boundBase: UInt32 = 0x100
  /// Bound-call codes a user-mode server has at most; further bound imports take the
  /// thunks of `tessera_callN` (the general path, slower, just as correct).
  public static let boundCallCapacity = 64
}

/// Word offsets of a server's kernel words (one small allocation per server whose address
/// generated code has baked in): its lock and what the user-mode call paths read.
public enum ServerWords {
  /// The lock word (CallStubs.writeLockStub).
  public static let lock = 0
  /// The Server object (for the kernel's lock code).
  public static let server = 1
  /// Nonzero once the server has failed.
  public static let failed = 2
  /// Upcalls into the server in progress.
  public static let threadsInside = 3
  /// The address of the server's gate (its tessera_callN target).
  public static let gate = 4
  /// User mode: the address of its space's per-thread user stack pointers.
  public static let stackPointers = 5
  /// User mode: its space's page directory.
  public static let directory = 6
  /// User mode: the address of its space's count of threads inside.
  public static let spaceThreadsInside = 7
  /// User mode: `UserCallCode.boundBase` plus the number of its bound-call stubs (codes
  /// below it are bound calls); 0 once the server has failed, so that every bound code
  /// takes the general entry, which stops the thread.
  public static let boundCallLimit = 8
  /// User mode: the address of the stub of each bound-call code, from here on
  /// (`UserCallCode.boundCallCapacity` words).
  public static let boundCalls = 9
  /// Words in all.
  public static let count = boundCalls + UserCallCode.boundCallCapacity
}
