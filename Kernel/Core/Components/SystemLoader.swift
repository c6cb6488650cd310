// SystemLoader: loads the boot composition: servers, bindings, runs; and reports.
//
// Contract: every problem (a missing or corrupt server file, an unknown slot, a binding
// whose interface does not match, a failed start) is logged as an error naming the
// composition line and the reason, and only the affected server is skipped; the rest of
// the system loads. A `run` line ends a group: when the program returns, the kernel drops
// its references to every instance loaded so far, so servers nobody uses any more are
// unloaded, and it reports the group's objects and whether the kernel heap is back where
// it was when the group began. (Later lines cannot bind to instances of an ended group.)

import KernelCore

enum SystemLoader {
  private struct Instance {
    var name: UnsafeBufferPointer<UInt8>
    var server: Server
    /// The main object's handle in the kernel's table.
    var handle: UInt32
  }

  private struct Pending {
    var name: UnsafeBufferPointer<UInt8>
    var file: UnsafeBufferPointer<UInt8>
    var placement: ServerPlacement
    var restart: Bool
    var server: Server
    var line: Int
    var bindings: [KernelObject?]
    var quotas = Quotas()
    var settings: [Setting] = []
  }

  /// An instance whose line says `restart`: what it takes to load it again. The kernel
  /// table keeps its bindings and its current main object alive for good.
  private struct Supervised {
    var name: UnsafeBufferPointer<UInt8>
    var file: UnsafeBufferPointer<UInt8>
    var placement: ServerPlacement
    var bindings: [UInt32]
    var server: Server
    var mainHandle: UInt32
    var quotas: Quotas
    var settings: [Setting]
    var restarts = 0
  }

  // Read and written only with interrupts disabled: the supervisor thread restarts
  // instances while the composition's thread and servers' threads (rebind) read it.
  nonisolated(unsafe) private static var supervised: [Supervised] = []
  /// Set while the supervisor restarts an instance; the group's end waits for it, since
  /// the restart uses the kernel handles the end releases.
  nonisolated(unsafe) private static var restarting = 0

  nonisolated(unsafe) private static var instances: [Instance] = []
  nonisolated(unsafe) private static var pending: Pending?
  nonisolated(unsafe) private static var errors = 0
  // After a `server` line that failed, its `bind` lines are skipped without more errors.
  nonisolated(unsafe) private static var skippingBindings = false

  /// Loads and runs the composition in the boot module named `moduleName`; returns the
  /// number of errors.
  static func run(moduleName: UnsafeBufferPointer<UInt8>) -> Int {
    guard let text = BootModules.bytes(named: moduleName) else {
      Log.error("system: no boot module named \(text: moduleName)")
      return 1
    }
    // Create what lives for good first, so the heap can be compared before and after.
    // The kernel's table at its largest from the start: servers fill it (mappings,
    // timers, lent references), and an array that moved under a running gate, or heap
    // kept by its growth, would be their doing.
    KernelReferences.table.reserve(entries: ReferenceTable<KernelObject>.maximumCapacity)
    _ = CallChain.layout
    _ = KernelReferences.gate
    KernelServices.createAll()
    AddressSpace.makeThunkPage()
    startGroup()
    Log.info("system: loading composition \(text: moduleName)")
    for (line, statement) in Composition(text: text.bindMemory(to: UInt8.self)) {
      switch statement {
      case .failure(let error):
        report(line, "\(error.reason)")
      case .success(.server(let instance, let file, let placement, let restart)):
        finishPending()
        load(instance: instance, file: file, placement: placement, restart: restart, line: line)
        skippingBindings = pending == nil
      case .success(.bind(let slot, let source)):
        if !skippingBindings { bind(slot: slot, source: source, line: line) }
      case .success(.limit(let resource, let value)):
        if skippingBindings {
        } else if pending == nil {
          report(line, "limit without a loaded server before it")
        } else {
          pending!.quotas[resource] = value
        }
      case .success(.setting(let name, let value)):
        if skippingBindings {
        } else if pending == nil {
          report(line, "set without a loaded server before it")
        } else if pending!.settings.contains(where: {
          equal(UnsafeRawBufferPointer($0.name), UnsafeRawBufferPointer(name))
        }) {
          report(line, "setting \(text: name) is set twice")
        } else {
          pending!.settings.append(Setting(name: name, value: value))
        }
      case .success(.run(let instance)):
        finishPending()
        skippingBindings = false
        runProgram(instance, line: line)
        finishGroup()
      }
    }
    finishPending()
    if !instances.isEmpty { finishGroup() }
    Log.info("system: composition done, \(errors) errors")
    return errors
  }

  nonisolated(unsafe) private static var groupHeapBase = 0
  nonisolated(unsafe) private static var groupFreeFrames = 0
  nonisolated(unsafe) private static var groupHeapPages = 0
  nonisolated(unsafe) private static var groupDeferredFrees = 0
  nonisolated(unsafe) private static var groupCreated = 0
  nonisolated(unsafe) private static var groupDestroyed = 0

  private static func startGroup() {
    groupHeapBase = KernelHeap.statistics.bytesInUse
    groupFreeFrames = PhysicalMemory.statistics.freeFrames
    groupHeapPages = KernelHeap.statistics.regionBytes / 4096
    groupDeferredFrees = KernelObject.deferredFrees
    groupCreated = KernelObject.created
    groupDestroyed = KernelObject.destroyed
  }

  /// Drops the kernel's references to the instances loaded so far and reports.
  private static func finishGroup() {
    releaseGroupReferences()
    // The supervisor (failures, unloads that waited for threads, kernel objects freed once
    // no thread is inside) settles what the group left before it is measured.
    for _ in 0..<100 where !Supervisor.isIdle { Scheduler.sleep(ticks: 1) }
    if KernelObject.deferredFrees != groupDeferredFrees {
      Log.info(
        "system: \(KernelObject.deferredFrees - groupDeferredFrees) objects ended only after waiting for the threads inside them (or for a worker thread)"
      )
    }
    let created = KernelObject.created - groupCreated
    let destroyed = KernelObject.destroyed - groupDestroyed
    let heap = KernelHeap.statistics.bytesInUse
    Log.info(
      "system: \(created) server objects created, \(destroyed) destroyed, \(created - destroyed) alive; \(Server.loaded.count) servers still loaded"
    )
    let verdict: StaticString = heap == groupHeapBase ? "back to its base" : "NOT back to its base"
    Log.info(
      "system: kernel heap \(verdict): \(heap) bytes in use, \(groupHeapBase) before; \(errors) errors")
    // Frames: server images, heaps, stacks, page tables and memory objects are in them, and
    // so are the kernel heap's pages, which come and go with its slack (up to 16 KiB kept
    // past the top block), so the heap's mapped pages are given too: a frame missing from
    // both is lost.
    Log.info(
      "system: \(PhysicalMemory.statistics.freeFrames) frames free, \(groupFreeFrames) before; kernel heap maps \(KernelHeap.statistics.regionBytes / 4096) pages, \(groupHeapPages) before"
    )
    startGroup()
  }

  /// Drops the kernel's references to the group's instances and (the group's restart
  /// policies end with it) to what the supervised ones were bound to. A function of its
  /// own, so no temporary of it is alive when the heap is measured.
  @inline(never)
  private static func releaseGroupReferences() {
    // Checked and done at once: a restart must not begin loading between the two.
    while true {
      let done = Machine.withInterruptsDisabled {
        guard restarting == 0 else { return false }
        for instance in instances { _ = KernelReferences.table.release(instance.handle) }
        for entry in supervised {
          for handle in entry.bindings + [entry.mainHandle] { _ = KernelReferences.table.release(handle) }
        }
        supervised = []
        return true
      }
      if done { break }
      Scheduler.sleep(ticks: 1)
    }
    instances = []
  }

  private static func report(_ line: Int, _ message: KernelMessage) {
    errors += 1
    Log.error("system line \(line): \(message)")
  }

  private static func instance(named name: UnsafeBufferPointer<UInt8>) -> Instance? {
    instances.first { equal(UnsafeRawBufferPointer($0.name), UnsafeRawBufferPointer(name)) }
  }

  /// The address space for `placement`: nil for kernel mode; a new one for `user`; the
  /// named one (made on first use) for `user:SPACE`. nil with `failed` set when out of memory.
  /// The space comes pinned (counted as one more server), so the supervisor unloading the
  /// last server of a shared space meanwhile cannot free it under the load; `unpin` it
  /// once the load is done (a loaded server counts itself).
  private static func addressSpace(for placement: ServerPlacement) -> (space: AddressSpace?, failed: Bool) {
    var space: AddressSpace?
    switch placement {
    case .kernel: return (nil, false)
    case .user:
      space = AddressSpace.make(name: "")
    case .sharedUser(let name):
      space = Machine.withInterruptsDisabled {
        let found = AddressSpace.named(name)
        found?.servers += 1
        return found
      }
      if space != nil { return (space, false) }
      space = AddressSpace.make(name: "\(text: name)")
    }
    if let space { Machine.withInterruptsDisabled { space.servers += 1 } }
    return (space, space == nil)
  }

  /// Drops the pin `addressSpace(for:)` took, freeing the space if no server is in it.
  private static func unpin(_ space: AddressSpace?) {
    guard let space else { return }
    Machine.withInterruptsDisabled { space.servers -= 1 }
    space.destroyIfUnused()
  }

  private static func load(
    instance name: UnsafeBufferPointer<UInt8>, file: UnsafeBufferPointer<UInt8>, placement: ServerPlacement,
    restart: Bool, line: Int
  ) {
    guard instance(named: name) == nil else { return report(line, "instance \(text: name) is defined twice") }
    guard let bytes = BootModules.bytes(named: file) else {
      return report(line, "\(text: name): no boot module named \(text: file)")
    }
    let (space, noSpace) = addressSpace(for: placement)
    guard !noSpace else { return report(line, "\(text: name): out of memory for an address space") }
    switch Server.load(bytes: bytes, space: space) {
    case .failure(.file(let error)):
      report(line, "\(text: name): server file \(text: file) rejected: \(error.message)")
    case .failure(.noHeapSlot):
      report(line, "\(text: name): no heap slot left (at most \(Server.heapSlotCount) kernel-mode servers)")
    case .failure(.outOfMemory): report(line, "\(text: name): out of memory loading \(text: file)")
    case .success(let server):
      server.instanceName = name
      var mode: KernelMessage = space == nil ? "kernel mode" : "user mode"
      if case .sharedUser(let spaceName) = placement { mode.append(message: " (space \(text: spaceName))") }
      Log.info(
        "loaded \(server.name) from \(text: file) as \(text: name) in \(mode): image \(server.file.imageSize / 1024) KiB at \(hex: server.imageAddress, width: 8), \(server.file.manifest.slotCount) slots"
      )
      pending = Pending(
        name: name, file: file, placement: placement, restart: restart, server: server, line: line,
        bindings: [KernelObject?](repeating: nil, count: server.file.manifest.slotCount))
    }
    unpin(space)  // freed here if no server is in it (this one did not load)
  }

  private static func bind(slot: UnsafeBufferPointer<UInt8>, source: BindingSource, line: Int) {
    guard var current = pending else { return report(line, "bind without a loaded server before it") }
    let manifest = current.server.file.manifest
    var index = 0
    while index < manifest.slotCount
      && !equal(UnsafeRawBufferPointer(manifest.slot(index).name), UnsafeRawBufferPointer(slot))
    {
      index += 1
    }
    guard index < manifest.slotCount else {
      return report(line, "\(current.server.name) has no slot \(text: slot)")
    }
    guard current.bindings[index] == nil else { return report(line, "slot \(text: slot) is bound twice") }
    let provider: KernelObject
    switch source {
    case .kernel(let service):
      guard let object = KernelServices.service(named: service) else {
        return report(
          line, "the kernel offers no service \(text: service) (it offers: \(KernelServices.names))")
      }
      // A single-keeper service (configuration space) is bound to one loaded server.
      if KernelServiceCatalog.services.contains(where: { $0.singleKeeper && equals(service, $0.name) }),
        let holder = slotHolder(of: object, other: current.server)
      {
        return report(
          line,
          "cannot bind \(text: current.name).\(text: slot): kernel.\(text: service) is bound to \(holder.name) already, and one server at a time may keep it"
        )
      }
      provider = object
    case .instance(let other):
      guard let found = instance(named: other), let object = KernelReferences.table.object(found.handle)
      else {
        return report(line, "no loaded instance \(text: other)")
      }
      provider = object
    case .method(let other, let methodName, let arguments):
      guard let found = instance(named: other), let object = KernelReferences.table.object(found.handle)
      else {
        return report(line, "no loaded instance \(text: other)")
      }
      guard
        let returned = callReturningReference(
          found.handle, object, methodName, arguments, for: current.name, slot: slot,
          requiring: manifest.interface(manifest.slot(index).interface), line: line)
      else {
        return
      }
      provider = returned
    case .none:
      // Left empty on purpose: no interface to check.
      current.bindings[index] = KernelServices.absent
      pending = current
      return
    }
    let required = manifest.interface(manifest.slot(index).interface)
    if let difference = required.firstDifference(from: provider.interface) {
      var detail: KernelMessage = "interface names differ"
      if difference >= 0 {
        detail =
          difference < min(required.methodCount, provider.interface.methodCount)
          ? "first difference in method \(difference) (\(text: required.method(difference).name))"
          : "they have \(required.methodCount) and \(provider.interface.methodCount) methods"
      }
      return report(
        line,
        "cannot bind \(text: current.name).\(text: slot): it requires \(text: required.name), the source provides \(text: provider.interface.name): \(detail)"
      )
    }
    // The interfaces the slot's methods pass and return, all the way down: a caller and a
    // callee that agree on a name but not on its methods would misread each other's blocks.
    if let nested = InterfaceMatching.firstMismatch(
      required: required, provided: provider.interface,
      requiredLookup: { name in manifest.interfaceIndex(named: name).map { manifest.interface($0) } },
      providedLookup: { name in
        guard let owner = provider.owner else { return KernelServices.descriptor(named: name) }
        return owner.file.manifest.interfaceIndex(named: name).map { owner.file.manifest.interface($0) }
      })
    {
      return report(
        line,
        "cannot bind \(text: current.name).\(text: slot): the interface \(text: nested) it uses differs between the two sides"
      )
    }
    current.bindings[index] = provider
    pending = current
  }

  /// A loaded server other than `other` that has `object` bound to one of its slots.
  private static func slotHolder(of object: KernelObject, other: Server) -> Server? {
    Server.loaded.first { server in
      server !== other && !server.failed
        && (0..<server.file.manifest.slotCount).contains { server.table.object(UInt32($0 + 1)) === object }
    }
  }

  /// Calls a method taking words (the binding's arguments) and returning a reference; the
  /// result stays in the kernel table.
  private static func callReturningReference(
    _ handle: UInt32, _ object: KernelObject, _ name: UnsafeBufferPointer<UInt8>,
    _ arguments: MethodArguments,
    for instance: UnsafeBufferPointer<UInt8>, slot: UnsafeBufferPointer<UInt8>,
    requiring required: InterfaceDescriptor,
    line: Int
  ) -> KernelObject? {
    var index = 0
    while index < object.interface.methodCount
      && !equal(UnsafeRawBufferPointer(object.interface.method(index).name), UnsafeRawBufferPointer(name))
    {
      index += 1
    }
    guard index < object.interface.methodCount else {
      report(line, "\(text: object.interface.name) has no method \(text: name)")
      return nil
    }
    let method = object.interface.method(index)
    guard method.parameters.allSatisfy({ $0.kind == .word }),
      method.result == .reference || method.result == .optionalReference
    else {
      report(line, "\(text: name) must take only words and return a reference")
      return nil
    }
    guard method.parameterCount == arguments.count else {
      report(line, "\(text: name) takes \(method.parameterCount) words; the binding gives \(arguments.count)")
      return nil
    }
    // The declared result must suit the slot before the method runs: a call with a side
    // effect (taking a device) must not happen for a binding that is refused anyway.
    if let resultName = method.resultInterface, let owner = object.owner,
      let resultIndex = owner.file.manifest.interfaceIndex(named: resultName),
      required.firstDifference(from: owner.file.manifest.interface(resultIndex)) != nil
    {
      report(
        line,
        "cannot bind \(text: instance).\(text: slot): it requires \(text: required.name), \(text: name) returns \(text: resultName); not called"
      )
      return nil
    }
    let result = arguments.withWords { KernelReferences.call(handle, method: index, words: $0) }
    let returnedHandle = UInt32(truncatingIfNeeded: result)
    guard result >> 32 == 0 else {
      report(line, "\(text: name) failed with status \(result >> 32)")
      return nil
    }
    guard let returned = KernelReferences.table.object(returnedHandle) else {
      report(
        line,
        "cannot bind \(text: instance).\(text: slot): \(text: name) returned no reference (nil: nothing matched, or it is handed out already)"
      )
      return nil
    }
    // Keep it alive through the kernel table until the end of the composition.
    instances.append(
      Instance(name: UnsafeBufferPointer(start: nil, count: 0), server: object.owner!, handle: returnedHandle)
    )
    return returned
  }

  private static func finishPending() {
    guard let current = pending else { return }
    pending = nil
    let manifest = current.server.file.manifest
    for (index, binding) in current.bindings.enumerated() where binding == nil {
      report(
        current.line,
        "\(text: current.name): slot \(text: manifest.slot(index).name) is not bound; not started")
    }
    guard current.bindings.allSatisfy({ $0 != nil }) else {
      current.server.unload()
      return
    }
    // Interrupts off: the objects' servers are running, and installing counts on them.
    Machine.withInterruptsDisabled {
      for binding in current.bindings { _ = current.server.table.install(binding!) }
    }
    current.server.bindSlots()
    current.server.account.limits = current.quotas
    current.server.settings = current.settings
    let handle = current.server.start()
    guard let main = current.server.table.object(handle) else {
      report(current.line, "\(current.server.name): start returned no object")
      current.server.unload()
      return
    }
    // The server's threads may run from `start` on, changing its table and the kernel's:
    // tables are changed with interrupts disabled (one processor), as everywhere else.
    let kernelHandle = Machine.withInterruptsDisabled { () -> UInt32 in
      let installed = KernelReferences.table.install(main)
      _ = current.server.table.release(handle)
      return installed
    }
    instances.append(Instance(name: current.name, server: current.server, handle: kernelHandle))
    if current.restart {
      Machine.withInterruptsDisabled {
        supervised.append(
          Supervised(
            name: current.name, file: current.file, placement: current.placement,
            bindings: current.bindings.map { KernelReferences.table.install($0!) }, server: current.server,
            mainHandle: KernelReferences.table.install(main), quotas: current.quotas,
            settings: current.settings))
      }
    }
  }

  /// The most restarts of one instance; then it stays failed (a server failing at start
  /// would otherwise restart for ever).
  static let maximumRestarts = 100

  /// The kernel handle of the restarted instance `name`'s main object, once the
  /// supervisor has restarted it (waiting up to 100 ms); nil if it is not restarted.
  private static func restartedMainHandle(named name: UnsafeBufferPointer<UInt8>) -> UInt32? {
    for _ in 0..<100 {
      let state: (handle: UInt32, ready: Bool)? = Machine.withInterruptsDisabled {
        guard
          let entry = supervised.first(where: {
            equal(UnsafeRawBufferPointer($0.name), UnsafeRawBufferPointer(name))
          }), entry.restarts < maximumRestarts
        else { return nil }
        return (entry.mainHandle, entry.server.isLoaded && !entry.server.failed)
      }
      guard let state else { return nil }
      if state.ready { return state.handle }
      Scheduler.sleep(ticks: 1)
    }
    return nil
  }

  /// Told by the supervisor that `server` failed: restarts it if its instance says so.
  static func serverFailed(_ server: Server) {
    // Taken with interrupts disabled, and written back below by identity: the list may
    // change while the instance is loaded and started.
    let found: Supervised? = Machine.withInterruptsDisabled {
      guard let index = supervised.firstIndex(where: { $0.server === server }),
        supervised[index].restarts < maximumRestarts
      else { return nil }
      supervised[index].restarts += 1
      restarting += 1
      return supervised[index]
    }
    guard let entry = found else {
      Log.warning("system: \(server.name) failed; its composition line does not restart it (any more)")
      return
    }
    // Loading and binding use the kernel handles the group's end releases and the entry it
    // empties: it waits while `restarting` counts loads in progress. The start runs later,
    // on the new instance's worker, not on the supervisor's thread, and nothing waits for
    // it: a start that sleeps or never returns holds up its own instance only (the group's
    // end reports what it left behind, and an instance started after it is let go).
    Log.info("system: \(text: entry.name) failed; restarting it (restart \(entry.restarts))")
    let (space, noSpace) = addressSpace(for: entry.placement)
    defer { unpin(space) }
    guard !noSpace, let bytes = BootModules.bytes(named: entry.file),
      case .success(let fresh) = Server.load(bytes: bytes, space: space)
    else {
      Machine.withInterruptsDisabled { restarting -= 1 }
      Log.error("system: \(text: entry.name) could not be loaded again; it stays failed")
      return
    }
    Machine.withInterruptsDisabled {  // as at the first load
      for handle in entry.bindings { _ = fresh.table.install(KernelReferences.table.object(handle)!) }
    }
    fresh.bindSlots()
    fresh.account.limits = entry.quotas
    fresh.settings = entry.settings
    fresh.instanceName = entry.name
    start(PendingStart(fresh: fresh, replacing: server, entry: entry), first: true)
    Machine.withInterruptsDisabled { restarting -= 1 }
  }

  /// A restarted instance loaded and bound, to be started on its worker.
  private struct PendingStart {
    var fresh: Server
    var replacing: Server
    var entry: Supervised
  }

  /// Restarted instances whose worker could not be made yet (the thread table was full);
  /// the supervisor posts them again (`postPendingStarts`). Interrupts disabled to change.
  nonisolated(unsafe) private static var pendingStarts: [PendingStart] = []

  /// Whether a restarted instance waits for a thread to start on (Supervisor.isIdle).
  static var hasPendingStarts: Bool { Machine.withInterruptsDisabled { !pendingStarts.isEmpty } }

  /// Posts `pending`'s start to its worker, or keeps it for later when no thread is free.
  private static func start(_ pending: PendingStart, first: Bool) {
    let posted = ServerWorker.post(
      .run { startRestarted(pending.fresh, replacing: pending.replacing, entry: pending.entry) },
      for: pending.fresh.account)
    guard !posted else { return }
    if first {
      Log.warning(
        "system: \(text: pending.entry.name) has no thread to start on yet; its start waits for one")
    }
    Machine.withInterruptsDisabled { pendingStarts.append(pending) }
    Supervisor.wake()
  }

  /// Posts the starts that waited for a thread; whether any still waits (Supervisor).
  static func postPendingStarts() -> Bool {
    let pending: [PendingStart] = Machine.withInterruptsDisabled {
      let taken = pendingStarts
      pendingStarts = []
      return taken
    }
    for start in pending { Self.start(start, first: false) }
    return hasPendingStarts
  }

  /// Starts `fresh`, the new instance of supervised `entry`, and makes it the one its
  /// instance name stands for (unless the group ended meanwhile: then it is let go).
  private static func startRestarted(_ fresh: Server, replacing server: Server, entry: Supervised) {
    var entry = entry
    let handle = fresh.start()
    guard let main = fresh.table.object(handle) else {
      Log.error("system: \(text: entry.name) returned no object when restarted; it stays failed")
      fresh.unload()
      return
    }
    let old = entry.mainHandle
    let installed = Machine.withInterruptsDisabled {
      guard let index = supervised.firstIndex(where: { $0.server === server }) else {
        _ = fresh.table.release(handle)  // its group has ended: nobody wants it now
        return false
      }
      entry.mainHandle = KernelReferences.table.install(main)
      _ = fresh.table.release(handle)
      guard entry.mainHandle != 0 else { return false }
      entry.server = fresh
      supervised[index] = entry
      _ = KernelReferences.table.release(old)
      return true
    }
    guard installed else {
      Log.info(
        "system: \(text: entry.name) was restarted after its group ended (or the kernel table was full); let go"
      )
      fresh.unload()
      return
    }
    Log.info("system: \(text: entry.name) restarted")
  }

  /// A new handle, in the running server's table, to the current main object of the
  /// supervised instance whose failed main object `object` is; 0 if there is none.
  static func rebind(_ object: KernelObject) -> UInt32 {
    guard let owner = object.owner, owner.failed, let caller = CallChain.currentServer else { return 0 }
    return Machine.withInterruptsDisabled {
      guard
        let entry = supervised.first(where: { entry in
          equal(UnsafeRawBufferPointer(entry.name), UnsafeRawBufferPointer(owner.instanceName))
        }), entry.server.isLoaded, !entry.server.failed,
        let main = KernelReferences.table.object(entry.mainHandle)
      else { return 0 }
      return caller.table.install(main)
    }
  }

  /// How often the supervised instance called `name` was restarted (0 if it is not
  /// supervised).
  static func restarts(of name: UnsafeBufferPointer<UInt8>) -> Int {
    Machine.withInterruptsDisabled {
      supervised.first { equal(UnsafeRawBufferPointer($0.name), UnsafeRawBufferPointer(name)) }?.restarts ?? 0
    }
  }

  /// Runs the Program instance `name` of the running group on the calling thread (the
  /// shell's `run`); what happened, as a line.
  static func runFromShell(named name: UnsafeBufferPointer<UInt8>) -> KernelMessage {
    guard let found = instance(named: name), let object = KernelReferences.table.object(found.handle) else {
      return "no instance called \(text: name) (see servers; run takes the instances of the shell's group)"
    }
    guard equals(object.interface.name, "Program"), object.interface.methodCount >= 1 else {
      return "\(text: name) does not provide Program: nothing to run"
    }
    guard !CallChain.isInChain(found.server) else {
      return "\(text: name) is running already (it called run)"
    }
    // The live instance: after a restart, the group's handle names the failed one.
    var handle = found.handle
    if found.server.failed, let restarted = restartedMainHandle(named: name) { handle = restarted }
    var result = KernelReferences.call(handle, method: 0)
    // Failing while it runs, a supervised program runs again once restarted (as `run` lines do).
    if UInt32(truncatingIfNeeded: result >> 32) == CallABI.statusServerUnavailable,
      let restarted = restartedMainHandle(named: name)
    {
      result = KernelReferences.call(restarted, method: 0)
    }
    let status = UInt32(truncatingIfNeeded: result >> 32)
    guard status == 0 else {
      let reason: StaticString =
        status == CallABI.statusServerUnavailable ? "serverUnavailable" : "a call error"
      return "\(text: name) failed (status \(status), \(reason))"
    }
    return "\(text: name) finished with \(UInt32(truncatingIfNeeded: result))"
  }

  private static func runProgram(_ name: UnsafeBufferPointer<UInt8>, line: Int) {
    guard let found = instance(named: name), let object = KernelReferences.table.object(found.handle) else {
      return report(line, "no loaded instance \(text: name) to run")
    }
    guard equals(object.interface.name, "Program"), object.interface.methodCount >= 1 else {
      return report(line, "\(text: name) does not provide Program")
    }
    let switchesBefore = Scheduler.switches
    var result = KernelReferences.call(found.handle, method: 0)
    // A program that failed and was restarted (its line says `restart`) runs again.
    while UInt32(truncatingIfNeeded: result >> 32) == CallABI.statusServerUnavailable,
      let restarted = restartedMainHandle(named: name)
    {
      Log.info("system: \(text: name) failed while running; running the restarted instance")
      result = KernelReferences.call(restarted, method: 0)
    }
    Log.info(
      "system: \(text: name) finished with \(UInt32(truncatingIfNeeded: result)) (status \(result >> 32)), \(Scheduler.switches - switchesBefore) thread switches"
    )
  }
}

/// The boot modules by file name (the last path component of their command line).
enum BootModules {
  /// The bytes of the module whose file name is `name`.
  static func bytes(named name: UnsafeBufferPointer<UInt8>) -> UnsafeRawBufferPointer? {
    guard let modules = Boot.moduleTable else { return nil }
    for module in modules
    where module.commandLineAddress != 0
      && equal(UnsafeRawBufferPointer(fileName(module)), UnsafeRawBufferPointer(name))
    {
      return physicalBytes(module.start, Int(module.size))
    }
    return nil
  }

  /// The file name of the first module whose name ends with `suffix`.
  static func firstName(endingWith suffix: StaticString) -> UnsafeBufferPointer<UInt8>? {
    guard let modules = Boot.moduleTable else { return nil }
    for module in modules where module.commandLineAddress != 0 {
      let name = fileName(module)
      let length = suffix.utf8CodeUnitCount
      if name.count >= length, equals(UnsafeBufferPointer(rebasing: name[(name.count - length)...]), suffix) {
        return name
      }
    }
    return nil
  }

  private static func fileName(_ module: BootModule) -> UnsafeBufferPointer<UInt8> {
    let path = cString(at: module.commandLineAddress)
    var start = path.count
    while start > 0 && path[start - 1] != UInt8(ascii: "/") { start -= 1 }
    var end = start
    while end < path.count && path[end] != UInt8(ascii: " ") { end += 1 }
    return UnsafeBufferPointer(rebasing: path[start..<end])
  }
}
