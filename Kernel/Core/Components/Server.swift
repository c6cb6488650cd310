// Server: a loaded server file: its image, heap, reference table, lock and generated code.
//
// Contract: `Server.load` validates the file (ServerFile), copies and relocates it into
// kernel memory (kernel mode) or into a user address space (user mode), generates its
// table's gate and acquire/release code, binds its imports (to the kernel ABI,
// KernelABI.swift, or to the user thunks and the file's own allocator, UserCalls.swift),
// and fills the method vector of every exported interface (dispatch functions, lock
// stubs or marshaling stubs in kernel mode; in user mode an upcall stub per words-only
// method and a marshaling stub for the others, see CallStubs). The same file loads
// either way. It does not run any server code; the composition binds the required slots
// (handles 1...n) and then calls `start`.
// `unload` runs when no other table references the server any more: it releases the
// server's own table (which may unload others), then frees image, code, table and heap.

import I686CodeGeneration
import KernelCore

final class Server: ReferenceOwner {
  /// Servers loaded and not yet unloaded, for reports and the shell.
  nonisolated(unsafe) static var loaded: [Server] = []
  /// Heap slots in use (one bit each).
  nonisolated(unsafe) private static var heapSlots: UInt32 = 0
  /// Each server's heap has its own 4 MiB of address space in the server heap range.
  static let heapSlotSize: UInt32 = 4 << 20
  /// The server heap range holds exactly this many slots (checked when the first server
  /// loads; `tessera check` applies the same limit).
  static let heapSlotCount = KernelLimits.kernelModeServers

  let name: KernelMessage
  let file: ServerFile
  /// The address space of a user-mode server; nil in kernel mode.
  let space: AddressSpace?
  /// The generated code of the server's table (its imports' targets).
  private(set) var entries = KernelABI.TableEntries(gate: 0, acquire: 0, release: 0, windows: [])
  /// The windows of the server's acquire and release code (general and bound) and of its
  /// bound-call stubs (up to the record's count), where a preempted thread starts again
  /// (CountWindow). A user-mode server's acquire and release run the general code too, in
  /// the kernel, on its behalf (UserCalls).
  private(set) var countWindows = CountWindows()
  /// Set when the server faulted: every call into it fails from then on.
  var failed: Bool { words[ServerWords.failed] != 0 }
  /// Whether the supervisor has dealt with the failure (released its references).
  var failureHandled = false
  /// Set when the server was to be unloaded while a thread was still inside it.
  var unloadPending = false
  /// Upcalls into the server in progress.
  var threadsInside: UInt32 {
    get { words[ServerWords.threadsInside] }
    set { words[ServerWords.threadsInside] = newValue }
  }
  /// Memory the server has mapped (MemoryObjects.swift).
  var mappings: [Mapping] = []
  /// The composition's name for the instance.
  var instanceName = UnsafeBufferPointer<UInt8>(start: nil, count: 0)
  /// The composition's `set NAME VALUE` lines for this instance (views of the composition
  /// module, which stays for good), read through `kernel.settings`.
  var settings: [Setting] = []
  /// A user-mode server's heap: its range and the end backed so far.
  private(set) var userHeapStart: UInt32 = 0
  private var userHeapEnd: UInt32 = 0
  private var userHeapLimit: UInt32 = 0
  /// Whether a heap growth refused for the kernel's reserve was logged.
  private var heapRefusalLogged = false
  /// Bytes of address range a user-mode server's heap may grow to.
  static let userHeapSize: UInt32 = 8 << 20
  var table: ReferenceTable<KernelObject>
  /// A kernel-mode server's heap, which the kernel runs for it in a slot of the server heap
  /// range (nil in user mode: the server runs its own heap, see userHeapStart).
  var heap: HeapAllocator<PagedRegionBacking>?
  private let heapSlot: Int?
  private let image: UnsafeMutableRawPointer
  private let code: UnsafeMutableRawPointer
  private let codeSize: Int
  private var marshalInformation: [UnsafeMutablePointer<MarshalInformation>] = []
  /// The server's kernel words (ServerWords: lock, failed flag, threads inside, and what
  /// the generated user-mode paths read); their address is baked into generated code.
  let words: UnsafeMutablePointer<UInt32>
  /// The lock of a server that is not thread-safe (see ServerLock): the first word.
  var lock: UnsafeMutablePointer<UInt32> { words + ServerWords.lock }
  /// Threads waiting for the lock, in arrival order.
  var lockWaiters = ThreadQueue()
  /// Entries in other tables that hold this server's objects.
  var inboundReferences = 0
  /// Method vectors by manifest interface index (0 where the interface is not exported).
  private(set) var methodVectors: [UInt32]
  let startFunction: UInt32
  let destroyFunction: UInt32
  /// Objects of this server alive.
  var objectCount = 0
  /// Objects of this server whose destroy is queued or running on its worker: the server
  /// is not unloaded until they are done (interrupts disabled to change).
  var pendingDestroys = 0
  /// What the kernel holds for the server, against its quotas (ResourceAccount).
  let account: ResourceAccount
  /// False once unloaded: the words, table and image are gone.
  private(set) var isLoaded = true

  /// Why loading failed.
  enum LoadError: Error {
    case file(ServerFileError)
    case noHeapSlot
    case outOfMemory
  }

  private init(
    name: KernelMessage, file: ServerFile, heapSlot: Int?, image: UnsafeMutableRawPointer,
    code: UnsafeMutableRawPointer, codeSize: Int, space: AddressSpace?
  ) {
    self.codeSize = codeSize
    self.name = name
    self.file = file
    self.space = space
    self.heapSlot = heapSlot
    heap = heapSlot.map { slot in
      let heapStart = UInt(Paging.serverHeapStart) + UInt(slot) * UInt(Self.heapSlotSize)
      return HeapAllocator(
        start: heapStart, backing: PagedRegionBacking(end: heapStart + UInt(Self.heapSlotSize)))
    }
    self.image = image
    self.code = code
    account = ResourceAccount(name: name)
    words = .allocate(capacity: ServerWords.count)
    words.initialize(repeating: 0, count: ServerWords.count)
    methodVectors = []
    let base = UInt32(UInt(bitPattern: image))
    startFunction = base + file.functionAddress("tessera_start")!
    destroyFunction = base + file.functionAddress("tessera_destroy")!
    table = ReferenceTable<KernelObject>(owner: nil)
    table.attach(owner: self)
    words[ServerWords.server] = UInt32(UInt(bitPattern: Unmanaged.passUnretained(self).toOpaque()))
    if let space {
      words[ServerWords.stackPointers] = space.stackPointersAddress
      words[ServerWords.directory] = space.directory
      words[ServerWords.spaceThreadsInside] = space.threadsInsideAddress
    }
  }

  /// Loads the server file in `bytes` (a boot module that stays in memory), in kernel
  /// mode, or in user mode in `space`.
  static func load(bytes: UnsafeRawBufferPointer, space: AddressSpace? = nil) -> Result<Server, LoadError> {
    let file: ServerFile
    do throws(ServerFileError) {
      file = try ServerFile(bytes: bytes)
    } catch { return .failure(.file(error)) }
    var slot: Int? = nil
    if space == nil {
      guard
        UInt64(heapSlotCount) * UInt64(heapSlotSize) <= UInt64(Paging.serverHeapEnd - Paging.serverHeapStart)
      else { panic("the server heap range is smaller than \(heapSlotCount) slots") }
      var free = 0
      while free < heapSlotCount && heapSlots & (1 << UInt32(free)) != 0 { free += 1 }
      guard free < heapSlotCount else { return .failure(.noHeapSlot) }
      slot = free
    }

    // Code: gate, acquire, release, a stub per bound-call import (kernel mode) or per
    // bound-call code (user mode: its first `boundCallCapacity` bound-call imports; the
    // rest go to the thunks of tessera_callN), then a vector and an entry per exported
    // method.
    var methods = 0
    for export in 0..<file.manifest.exportCount {
      methods += file.manifest.interface(file.manifest.export(export)).methodCount
    }
    var boundCalls: [BoundCallImport] = []
    var boundCounts: [BoundImport] = []  // bound acquires and releases
    var userBoundCalls: [BoundCallImport] = []
    file.forEachBoundImport { bound in
      switch (bound, space) {
      case (.call(let call), nil): boundCalls.append(call)
      case (.call(let call), _?):
        if userBoundCalls.count < UserCallCode.boundCallCapacity && !userBoundCalls.contains(call) {
          userBoundCalls.append(call)
          boundCalls.append(call)  // its kernel bound stub, which the call entry calls
        }
      case (_, nil): boundCounts.append(bound)
      case (_, _?): break  // a user-mode server's acquires and releases go to their thunks
      }
    }
    let codeSize =
      CallStubs.gateSize + CallStubs.acquireSize + CallStubs.releaseSize + boundCalls.count
      * CallStubs.boundStubSize + boundCounts.count * CallStubs.boundCountSize + userBoundCalls.count
      * CallStubs.userBoundStubSize + methods * (CallStubs.methodEntrySize + 4)
    guard let code = KernelHeap.allocate(byteCount: codeSize, alignment: 16) else {
      return .failure(.outOfMemory)
    }
    let imageAddress: UInt32
    if let space {
      // The image, then (past a guard page) the heap's range, in the user space.
      guard let start = space.reserve(bytes: file.imageSize + Paging.pageSize + userHeapSize),
        space.back(start: start, bytes: file.imageSize)
      else {
        KernelHeap.free(code)
        return .failure(.outOfMemory)
      }
      imageAddress = start
    } else {
      guard let image = KernelHeap.allocate(byteCount: Int(file.imageSize), alignment: 4096) else {
        KernelHeap.free(code)
        return .failure(.outOfMemory)
      }
      image.initializeMemory(as: UInt8.self, repeating: 0, count: Int(file.imageSize))
      imageAddress = UInt32(UInt(bitPattern: image))
    }
    if let slot { heapSlots |= 1 << UInt32(slot) }
    let image = UnsafeMutableRawPointer(bitPattern: UInt(imageAddress))!
    let server = Server(
      name: "\(text: file.manifest.name)", file: file, heapSlot: slot, image: image, code: code,
      codeSize: codeSize, space: space)
    if let space {
      Machine.withInterruptsDisabled { space.servers += 1 }
      server.userHeapStart = imageAddress + file.imageSize + Paging.pageSize
      server.userHeapEnd = server.userHeapStart
      server.userHeapLimit = server.userHeapStart + userHeapSize
    }

    var writer = CodeBuffer(
      memory: UnsafeMutableRawBufferPointer(start: code, count: codeSize),
      base: UInt32(UInt(bitPattern: code)))
    let entries = KernelABI.TableEntries.write(into: &writer, table: server.table.layout)
    server.entries = entries
    server.words[ServerWords.gate] = entries.gate
    for window in entries.windows { server.countWindows.append(window) }
    for call in boundCalls {
      let start = writer.count
      server.boundStubs.append(BoundStub(call: call, address: writer.address))
      CallStubs.writeBoundRedirect(into: &writer, gate: entries.gate)
      writer.pad(to: start + CallStubs.boundStubSize)
    }
    for (index, call) in userBoundCalls.enumerated() {
      let start = writer.count
      server.userBoundStubs.append(BoundStub(call: call, address: writer.address))
      server.words[ServerWords.boundCalls + index] = writer.address
      CallStubs.writeUserBoundRedirect(
        into: &writer, words: call.words, general: Processor.boundCallGeneralAddress)
      writer.pad(to: start + CallStubs.userBoundStubSize)
    }
    if !userBoundCalls.isEmpty {
      server.words[ServerWords.boundCallLimit] = UserCallCode.boundBase + UInt32(userBoundCalls.count)
    }
    if !boundCounts.isEmpty {
      // The bound acquires and releases read the slot's entry without a capacity check:
      // the table has room for every slot before any of the server's code runs.
      server.table.reserve(entries: file.manifest.slotCount + 1)
    }
    for bound in boundCounts {
      let start = writer.count
      server.boundCounts.append(BoundCount(bound: bound, address: writer.address))
      switch bound {
      case .call: break  // not collected above
      case .acquire(let slot):
        server.countWindows.append(
          CallStubs.writeBoundAcquire(into: &writer, table: server.table.layout, slot: slot))
      case .release(let slot):
        let (count, undo) = CallStubs.writeBoundRelease(
          into: &writer, table: server.table.layout, slot: slot, lastCount: KernelABI.releaseLastAddress)
        server.countWindows.append(count)
        server.countWindows.append(undo)
      }
      writer.pad(to: start + CallStubs.boundCountSize)
    }
    let previous = Paging.activeDirectory
    if let space { Paging.activate(space.directory) }  // the image is written where it runs
    do throws(ServerFileError) {
      try file.load(
        into: UnsafeMutableRawBufferPointer(start: image, count: Int(file.imageSize)),
        base: imageAddress,
        resolve: { name in
          if space == nil, let bound = BoundImport.parse(name) {
            if case .call(let call) = bound { return server.boundStubs.first { $0.call == call }?.address }
            return server.boundCounts.first { $0.bound == bound }?.address
          }
          if space != nil, let call = BoundCallImport.parse(name),
            let index = server.userBoundStubs.firstIndex(where: { $0.call == call })
          {
            return AddressSpace.thunks.boundThunks[index]
          }
          return space == nil
            ? KernelABI.address(of: name, table: entries)
            : UserABI.address(of: name, file: file, base: imageAddress)
        })
    } catch {
      Paging.activate(previous)
      server.release()
      return .failure(.file(error))
    }
    Paging.activate(previous)
    server.generateMethodEntries(&writer)
    loaded.append(server)
    if let name = file.manifest.name.baseAddress {
      DebuggerHook.serverLoaded(
        image: imageAddress, name: name, length: UInt32(truncatingIfNeeded: file.manifest.name.count))
    }
    return .success(server)
  }

  private func generateMethodEntries(_ writer: inout CodeBuffer) {
    let manifest = file.manifest
    let imageBase = UInt32(UInt(bitPattern: image))
    methodVectors = [UInt32](repeating: 0, count: manifest.interfaceCount)
    for export in 0..<manifest.exportCount {
      let index = manifest.export(export)
      let interface = manifest.interface(index)
      let vector = UnsafeMutablePointer<UInt32>(bitPattern: UInt(writer.address))!
      for _ in 0..<interface.methodCount { writer.emit32(0) }
      methodVectors[index] = UInt32(UInt(bitPattern: vector))
      for method in 0..<interface.methodCount {
        let dispatch =
          imageBase + file.functionAddress(
            ServerFile.dispatchSymbol(interface: interface.name, method: method))!
        let wordsOnly = interface.method(method).isWordsOnly
        if wordsOnly && space != nil {
          // The whole upcall in generated code; user_call_words only for the rare cases.
          let information = MarshalInformation.make(
            server: self, interface: interface, method: method, dispatch: dispatch)
          marshalInformation.append(information)
          vector[method] = writer.address
          faultFixups.append(
            CallStubs.writeUpcallStub(
              into: &writer,
              layout: UserCalls.upcallLayout(
                self, dispatch: dispatch, method: interface.method(method), locked: !manifest.isThreadSafe),
              information: UInt32(UInt(bitPattern: information)), slow: KernelABI.userCallWordsAddress))
        } else if !wordsOnly || space != nil {
          // Marshaling, or an upcall into user mode: a stub that calls the kernel, which
          // for a user-mode words-only method only copies the words.
          let information = MarshalInformation.make(
            server: self, interface: interface, method: method, dispatch: dispatch)
          marshalInformation.append(information)
          vector[method] = writer.address
          CallStubs.writeMarshalStub(
            into: &writer, chain: CallChain.layout, information: UInt32(UInt(bitPattern: information)),
            marshal: wordsOnly ? KernelABI.userCallWordsAddress : KernelABI.marshalCallAddress)
        } else if manifest.isThreadSafe {
          vector[method] = dispatch  // nothing to add: the gate calls the server directly
        } else {
          vector[method] = writer.address
          lockedEntries.append(
            LockedEntry(entry: UInt32(UInt(bitPattern: vector + method)), dispatch: dispatch))
          CallStubs.writeLockStub(
            into: &writer, chain: CallChain.layout, dispatch: dispatch, lock: UInt32(UInt(bitPattern: lock)),
            wait: ServerLock.waitAddress, release: ServerLock.releaseAddress)
        }
      }
    }
  }

  /// The stub of one bound-call import (BoundStubs) or bound-call code (UserBoundStubs): a
  /// redirect until its slot is bound (`bindSlots`) and again once the slot's entry is
  /// freed.
  struct BoundStub {
    var call: BoundCallImport
    var address: UInt32
  }
  /// The stubs of the server's bound-call imports (a user-mode server's: of its bound-call
  /// codes, which the call entry calls).
  private var boundStubs: [BoundStub] = []

  /// The stubs of a user-mode server's bound-call codes, code `boundBase + index`
  /// (UserBoundStubs): a redirect to the general path until the slot is bound
  /// (`bindSlots`), and again once the slot's entry is freed.
  private var userBoundStubs: [BoundStub] = []

  /// The ranges of this server's generated code that write or read user stacks with a
  /// fixup for a page fault the kernel cannot serve (`faultFixup`).
  private var faultFixups: [FaultFixup] = []

  /// The code of one bound acquire or release (kernel mode only; written once, at load).
  struct BoundCount {
    var bound: BoundImport
    var address: UInt32
  }
  /// The server's bound acquires and releases.
  private var boundCounts: [BoundCount] = []

  /// A method-vector word holding a lock stub, and the dispatch function it calls.
  struct LockedEntry {
    var entry: UInt32
    var dispatch: UInt32
  }
  /// The lock stubs of a kernel-mode server that is not thread-safe (its words-only
  /// methods), for callers' bound stubs that take the lock themselves.
  private var lockedEntries: [LockedEntry] = []

  /// What a bound stub calling the method whose vector word is at `entry` needs to take
  /// this server's lock itself; nil when that word is no lock stub.
  func boundLock(entry: UInt32) -> CallStubs.BoundLock? {
    guard let locked = lockedEntries.first(where: { $0.entry == entry }) else { return nil }
    return CallStubs.BoundLock(
      lock: UInt32(UInt(bitPattern: lock)), failed: UInt32(UInt(bitPattern: words + ServerWords.failed)),
      dispatch: locked.dispatch, release: ServerLock.releaseAddress)
  }

  /// Specializes the bound-call stubs once the composition has installed the slots
  /// (handles 1...n) and before the server runs: each calls its method of the object
  /// bound to its slot directly. A stub whose slot holds something else than an object of
  /// the slot's interface (`bind SLOT none`: an object without methods) stays a redirect
  /// to the gate, which refuses the call as it would any.
  func bindSlots() {
    let manifest = file.manifest
    var specialized: [BoundCallImport] = []
    for stub in boundStubs {
      guard let object = table.object(UInt32(stub.call.slot)) else { continue }
      let required = manifest.interface(manifest.slot(stub.call.slot - 1).interface)
      guard object.digest == required.digest, stub.call.method < object.interface.methodCount else {
        continue
      }
      let words = object.entryWords
      var writer = CodeBuffer(
        memory: UnsafeMutableRawBufferPointer(
          start: UnsafeMutableRawPointer(bitPattern: UInt(stub.address)), count: CallStubs.boundStubSize),
        base: stub.address)
      let entry = UInt32(truncatingIfNeeded: words.methods) &+ UInt32(4 * stub.call.method)
      if let (callee, _) = Self.upcallCallee(object, method: stub.call.method, words: stub.call.words) {
        // Into a thread-safe user-mode server: the upcall in the stub itself.
        let (window, _, _, writes) = CallStubs.writeKernelToUserBoundStub(
          into: &writer, kernel: UserCalls.upcallKernel, callee: callee, entry: entry)
        countWindows.append(window)
        faultFixups.append(writes)
      } else {
        let window = CallStubs.writeBoundStub(
          into: &writer, chain: CallChain.layout,
          target: CallStubs.BoundTarget(
            chainValue: UInt32(truncatingIfNeeded: words.chainValue),
            context: UInt32(truncatingIfNeeded: words.context), entry: entry,
            lock: object.owner?.boundLock(entry: entry)))
        countWindows.append(window)
      }
      specialized.append(stub.call)
    }
    // A user-mode server's bound codes: into another space's thread-safe server in one
    // stub; else through the call entry to the kernel bound stub just written.
    for index in userBoundStubs.indices {
      let stub = userBoundStubs[index]
      guard let space, specialized.contains(stub.call), let object = table.object(UInt32(stub.call.slot))
      else {
        continue
      }
      var writer = CodeBuffer(
        memory: UnsafeMutableRawBufferPointer(
          start: UnsafeMutableRawPointer(bitPattern: UInt(stub.address)), count: CallStubs.userBoundStubSize),
        base: stub.address)
      if let (callee, calleeSpace) = Self.upcallCallee(
        object, method: stub.call.method, words: stub.call.words),
        calleeSpace !== space
      {
        let addresses = CallStubs.writeUserBoundStub(
          into: &writer,
          target: UserBoundTarget(
            kernel: UserCalls.upcallKernel, callee: callee, callerWords: UInt32(UInt(bitPattern: words)),
            callerDirectory: space.directory, callerStackPointers: space.stackPointersAddress,
            general: Processor.boundCallGeneralAddress))
        faultFixups.append(addresses.argumentReads)
        faultFixups.append(addresses.frameWrites)
      } else if let bound = boundStubs.first(where: { $0.call == stub.call }) {
        CallStubs.writeUserDirectStub(
          into: &writer, callerWords: UInt32(UInt(bitPattern: words)), boundStub: bound.address,
          words: stub.call.words, direct: Processor.boundCallDirectAddress)
      }
    }
  }

  /// Method `method` of `object` (with `words` call words, its slot's interface checked)
  /// as a bound stub enters it directly, and its space; nil unless the object's server is
  /// a thread-safe user-mode server and the method takes words only (a kernel-mode callee,
  /// a lock to take or blocks to copy go through the method's entry).
  private static func upcallCallee(_ object: KernelObject, method: Int, words: Int) -> (
    UpcallCallee, AddressSpace
  )? {
    guard let callee = object.owner, let space = callee.space, callee.file.manifest.isThreadSafe,
      method < object.interface.methodCount, object.interface.method(method).isWordsOnly,
      object.interface.method(method).callWords == words,
      let dispatch = callee.file.functionAddress(
        ServerFile.dispatchSymbol(interface: object.interface.name, method: method))
    else { return nil }
    let entry = object.entryWords
    return (
      UpcallCallee(
        serverWords: UInt32(UInt(bitPattern: callee.words)), directory: space.directory,
        stackPointers: space.stackPointersAddress, spaceThreadsInside: space.threadsInsideAddress,
        chainValue: UInt32(truncatingIfNeeded: entry.chainValue),
        context: UInt32(truncatingIfNeeded: entry.context),
        selector: object.digest &+ UInt32(truncatingIfNeeded: method),
        dispatch: callee.imageAddress &+ dispatch,
        callWords: words),
      space
    )
  }

  /// Where a page fault in kernel mode at `address`, which the kernel could not serve,
  /// resumes if it lies in generated code that reads or writes a user stack (a bound stub's
  /// reads of its caller's words, an upcall's writes of its frame); nil otherwise.
  static func faultFixup(at address: UInt32) -> UInt32? {
    for server in loaded {
      guard let (_, generated) = server.locate(address), generated else { continue }
      return server.faultFixups.first { $0.contains(address) }?.fixup
    }
    return nil
  }

  /// The entry of `handle` is being freed: its bound-call stubs go back to the gate (see
  /// `CallStubs.writeBoundRedirect` for why rewriting a live stub is safe). Their windows
  /// stay: a thread at the redirect is at a window's start, which nothing moves. A user-mode
  /// server's stubs go back to the general path; no thread is ever switched away inside
  /// their first bytes (they run with interrupts disabled up to the `sysexit`).
  func entryFreeing(handle: UInt32) {
    Machine.withInterruptsDisabled {
      for index in userBoundStubs.indices
      where UInt32(truncatingIfNeeded: userBoundStubs[index].call.slot) == handle {
        let stub = userBoundStubs[index]
        var writer = CodeBuffer(
          memory: UnsafeMutableRawBufferPointer(
            start: UnsafeMutableRawPointer(bitPattern: UInt(stub.address)),
            count: CallStubs.userBoundRedirectSize),
          base: stub.address)
        CallStubs.writeUserBoundRedirect(
          into: &writer, words: stub.call.words, general: Processor.boundCallGeneralAddress)
      }
      for stub in boundStubs where UInt32(truncatingIfNeeded: stub.call.slot) == handle {
        var writer = CodeBuffer(
          memory: UnsafeMutableRawBufferPointer(
            start: UnsafeMutableRawPointer(bitPattern: UInt(stub.address)), count: CallStubs.boundRedirectSize
          ),
          base: stub.address)
        CallStubs.writeBoundRedirect(into: &writer, gate: entries.gate)
      }
    }
  }

  /// Where a thread preempted in kernel mode before executing `address` resumes: the start
  /// of the acquire, release or bound stub it was inside, if it had not changed the count
  /// yet (CountWindow), else `address`. Only the running server's windows are looked at:
  /// only its code calls its table's acquire and release (a user-mode server's through the
  /// kernel, which runs them for it) and its bound stubs, which run before their record
  /// names the callee.
  static func resumeAddress(preemptedAt address: UInt32) -> UInt32 {
    guard let resumed = CallChain.currentServer?.countWindows.resumeAddress(interruptedAt: address),
      resumed != address
    else { return address }
    windowRestarts &+= 1
    return resumed
  }

  /// How often a preempted thread was sent back to a window's start since boot (the
  /// `threads` report prints it; ConcurrencyTest makes it happen).
  nonisolated(unsafe) static var windowRestarts: UInt32 = 0

  /// Where the image starts (in the kernel, or in the server's user address space).
  var imageAddress: UInt32 { UInt32(UInt(bitPattern: image)) }

  /// `(offset, isGeneratedCode)` if `address` lies in this server's image or in the code
  /// the kernel generated for it.
  func locate(_ address: UInt32) -> (offset: UInt32, generated: Bool)? {
    let imageStart = UInt32(UInt(bitPattern: image))
    if address >= imageStart && address - imageStart < file.imageSize { return (address - imageStart, false) }
    let codeStart = UInt32(UInt(bitPattern: code))
    if address >= codeStart && address - codeStart < UInt32(codeSize) { return (address - codeStart, true) }
    return nil
  }

  /// Creates an object of manifest interface `index` around `context`; nil if the
  /// interface is not exported by this server.
  func makeObject(interfaceIndex index: Int, context: UInt32) -> KernelObject? {
    guard index < methodVectors.count, methodVectors[index] != 0 else { return nil }
    return KernelObject(
      owner: self, interface: file.manifest.interface(index), context: context, methods: methodVectors[index])
  }

  /// Runs `tessera_start` and returns the handle (in this server's table) it gave.
  func start() -> UInt32 {
    UInt32(truncatingIfNeeded: enter(startFunction, context: 0))
  }

  /// Calls server function `function(context, 0)` from the kernel, with the server's
  /// call-chain record (and its lock, when `locked`, as a call through a gate would take
  /// it); a status in the high word if it failed.
  func enter(_ function: UInt32, context: UInt32, locked: Bool = false) -> UInt64 {
    guard !failed else { return UInt64(CallABI.statusServerUnavailable) << 32 }
    guard CallChain.push(self) else { return UInt64(CallABI.statusOutOfResources) << 32 }
    defer { CallChain.pop() }
    let acquisition = locked ? ServerLock.acquire(lock) : .reentered
    guard acquisition != .wouldDeadlock else { return UInt64(CallABI.statusWouldDeadlock) << 32 }
    let tookLock = acquisition.took
    CallChain.setTookLock(tookLock, at: CallChain.depth - 1)
    defer {
      if tookLock {
        CallChain.setTookLock(false, at: CallChain.depth - 1)
        ServerLock.release(lock)
      }
    }
    guard space != nil else { return Processor.callWordsWithRecordPushed(function, context, 0, nil, 0) }
    var arguments: InlineArray<2, UInt32> = [context, 0]
    return arguments.withMutableBuffer { buffer in
      UserCalls.upcall(self, entry: function, arguments: buffer)
    }
  }

  /// Stops the server after a fault: every call into it fails from now on, and the
  /// supervisor releases what it holds and restarts it if the composition says so. A
  /// user-mode server's generated entries check the failed word; a kernel-mode server's
  /// method vectors, which the gate calls directly, are switched to an entry that
  /// returns `serverUnavailable`.
  func fail() {
    words[ServerWords.failed] = 1
    words[ServerWords.boundCallLimit] = 0  // its bound codes take the general entry, which stops the thread
    // Threads blocked in a semaphore wait this server made would wait for good (its code
    // will never signal again), and the server could never unload: their waits end now,
    // without a unit, and they leave as threads inside a failed server do. A wait in a
    // server this one called is that server's own, and stays.
    // A thread inside it that is not blocked may be on its way into a wait (it entered the
    // kernel before the failure): it is marked, and gives the wait up when it gets there.
    Machine.withInterruptsDisabled {
      _ = Scheduler.anyThread { thread in
        guard let record = CallChain.innermostServerRecord(of: thread), record.server === self else {
          return false
        }
        if thread.state == .blocked || thread.state == .sleeping, let semaphore = thread.waitingSemaphore {
          semaphore.abandon(thread)
        } else {
          thread.failedRecord = (record.level, record.word)
        }
        return false
      }
    }
    if space == nil {
      let unavailable = Self.unavailableEntry
      for index in methodVectors.indices where methodVectors[index] != 0 {
        let vector = UnsafeMutablePointer<UInt32>(bitPattern: UInt(methodVectors[index]))!
        for method in 0..<file.manifest.interface(index).methodCount { vector[method] = unavailable }
      }
    }
    Supervisor.wake()
  }

  /// The method entry of every method of a failed kernel-mode server (made once, at boot).
  static let unavailableEntry: UInt32 = {
    let size = CallStubs.unavailableEntrySize
    let code = KernelHeap.allocate(byteCount: size, alignment: 16)!
    var writer = CodeBuffer(
      memory: UnsafeMutableRawBufferPointer(start: code, count: size), base: UInt32(UInt(bitPattern: code)))
    CallStubs.writeUnavailableEntry(into: &writer, chain: CallChain.layout)
    return UInt32(UInt(bitPattern: code))
  }()

  /// Backs `[end, end+bytes)` of a user-mode server's heap, charged to its memory quota;
  /// false if that is not the heap's end, leaves its range, exceeds the quota, or memory
  /// is short.
  /// Like Memory objects, a heap never takes the kernel's last `MemoryObject.reservedFrames`
  /// frames. With interrupts disabled: two threads of a server growing and shrinking at
  /// once must not interleave the check, the charge and the update.
  func growUserHeap(at end: UInt32, by bytes: UInt32) -> Bool {
    Machine.withInterruptsDisabled {
      guard let space, end == userHeapEnd, bytes <= userHeapLimit - end else { return false }
      let pages = Int(truncatingIfNeeded: (bytes + Paging.pageSize - 1) / Paging.pageSize)
      guard PhysicalMemory.statistics.freeFrames >= MemoryObject.reservedFrames + pages else {
        if !heapRefusalLogged {  // once: a server looping on refusals must not flood the log
          heapRefusalLogged = true
          Log.warning(
            "\(name): heap growth refused: the kernel keeps its last \(MemoryObject.reservedFrames) frames")
        }
        return false
      }
      guard account.charge(.memory, bytes) else { return false }
      guard space.back(start: end, bytes: bytes) else {
        account.uncharge(.memory, bytes)
        return false
      }
      userHeapEnd = end + bytes
      return true
    }
  }

  /// Gives back the pages of `[newEnd, oldEnd)` at the top of a user-mode server's heap.
  func shrinkUserHeap(from oldEnd: UInt32, to newEnd: UInt32) {
    Machine.withInterruptsDisabled {
      guard let space, oldEnd == userHeapEnd, newEnd >= userHeapStart, newEnd <= oldEnd else { return }
      space.unback(start: (newEnd + Paging.pageSize - 1) & ~(Paging.pageSize - 1), end: oldEnd)
      account.uncharge(.memory, oldEnd - newEnd)
      userHeapEnd = newEnd
    }
  }

  /// Bytes of heap the server has (mapped pages).
  var heapBytes: Int {
    heap?.statistics.regionBytes ?? Int(userHeapEnd - userHeapStart)
  }

  /// Unloads the server: releases its references, destroys its objects, frees its memory.
  func unload() {
    // Claimed with interrupts disabled: the composition's thread and the supervisor may
    // both try (a server failing in its start), and only one may free it.
    guard Machine.withInterruptsDisabled({ claimUnload() }) else { return }
    // Pinned so releases below cannot re-enter unload (changed with interrupts disabled,
    // as every other change of the count is).
    Machine.withInterruptsDisabled {
      inboundReferences += 1
      table.releaseAll()
    }
    for mapping in mappings { MemoryObjects.remove(mapping, of: self) }
    mappings = []
    let timers = TimerService.cancelAll(for: account)
    if timers > 0 { Log.info("\(name): \(timers) timers it set end with it") }
    Machine.withInterruptsDisabled { inboundReferences -= 1 }
    if objectCount != 0 { Log.warning("server \(name) unloaded with \(objectCount) objects alive") }
    Log.info("unloaded \(name): heap of \(heapBytes / 1024) KiB returned")
    release()
  }

  /// Whether this caller may unload the server now (then it is marked unloaded); else why
  /// not is recorded (interrupts disabled).
  private func claimUnload() -> Bool {
    // Only when nothing outside holds its objects: a server whose start failed may have
    // handed one out already (a thread's work, a timer's callback), and the lifetime rules
    // unload it when the last such reference goes.
    guard isLoaded, inboundReferences == 0 else {
      unloadPending = false
      return false
    }
    // A failed server may still have a thread inside (looping until the watchdog stops
    // it); its memory and code must outlive that thread. The supervisor, woken when the
    // last thread leaves, unloads it then.
    if failed && threadsInside > 0 {
      if !unloadPending {
        Log.info("\(name) failed with \(threadsInside) threads inside; unloading it when they have left")
      }
      unloadPending = true
      return false
    }
    // Any thread with a call into it in its chain (running it, blocked in it, or calling
    // out of it) returns into its code, and so does a destroy its worker has yet to run:
    // the supervisor unloads it once none has.
    let threadInside = CallChain.anyThreadInside(self)
    if threadInside || pendingDestroys > 0 {
      if !unloadPending && threadInside {
        Log.info("\(name) has threads inside; unloading it when they have left")
      }
      unloadPending = true
      Supervisor.wake()
      return false
    }
    isLoaded = false
    // Nothing is left for the supervisor to release once the server is unloaded.
    failureHandled = true
    return true
  }

  private func release() {
    // Out of the list first: other threads look servers up there and read their words.
    Machine.withInterruptsDisabled {
      if let index = Self.loaded.firstIndex(where: { $0 === self }) { Self.loaded.remove(at: index) }
    }
    heap?.releaseAll()
    if let heapSlot { Self.heapSlots &= ~(1 << UInt32(heapSlot)) }
    for information in marshalInformation { information.deallocate() }
    marshalInformation = []
    table.deallocate()
    words.deallocate()
    if let space {
      let start = UInt32(UInt(bitPattern: image))
      space.unback(start: start, end: userHeapLimit)
      account.uncharge(.memory, userHeapEnd - userHeapStart)
      Machine.withInterruptsDisabled { space.servers -= 1 }
      space.destroyIfUnused()
    } else {
      KernelHeap.free(image)
    }
    KernelHeap.free(code)
    // The list keeps the room KernelServices.createAll reserved: reallocated while some
    // servers stay loaded, its storage would make a group's heap measurement inexact.
  }
}

/// One `set NAME VALUE` line of a composition.
struct Setting {
  var name: UnsafeBufferPointer<UInt8>
  var value: UnsafeBufferPointer<UInt8>
}
