// KernelServices: the interfaces the kernel itself implements and offers to servers as
// references (`kernel.NAME` in a composition), and the objects those services make
// (semaphores). A server reaches nothing else of the kernel.
//
// Contract: each service is one KernelObject created at first use and kept for good;
// objects a service makes live while references to them do. Their methods run in the
// kernel through generated dispatch functions (build/generated/KernelInterfaces.swift);
// words-only methods are called directly by the gate, the others through marshaling
// stubs, so their blocks are copied and bounded like any other call. Kernel services act
// for the server that called them (the call chain's innermost server).

import I686CodeGeneration
import KernelCore

/// The kernel's Console: one log line per write, prefixed with the writing server.
final class ConsoleService: ConsoleImplementation {
  func write(text: UnsafeRawBufferPointer) {
    let name: KernelMessage = CallChain.currentServer?.name ?? "kernel"
    Log.info("\(name): \(text: text.bindMemory(to: UInt8.self))")
  }
}

/// The kernel's Clock.
final class ClockService: ClockImplementation {
  func uptimeMilliseconds() -> UInt { UInt(truncatingIfNeeded: Timer.uptimeNanoseconds / 1_000_000) }

  func sleep(milliseconds: UInt) {
    ServerLock.whileReleased { Scheduler.sleep(ticks: Self.ticks(covering: milliseconds)) }
  }

  /// Whole timer ticks covering `milliseconds`, plus the tick already under way.
  static func ticks(covering milliseconds: UInt) -> UInt64 {
    (UInt64(milliseconds) * Timer.inputFrequency + Timer.divisor * 1000 - 1) / (Timer.divisor * 1000) + 1
  }

  func sleepUntil(uptime: UInt) {
    // The first tick at or after `uptime` milliseconds.
    let deadline = (UInt64(uptime) * Timer.inputFrequency + Timer.divisor * 1000 - 1) / (Timer.divisor * 1000)
    guard deadline > Timer.ticks else { return }
    ServerLock.whileReleased { Scheduler.sleep(until: deadline) }
  }
}

/// The kernel's Threads: starts a thread that calls a Runnable of the calling server.
final class ThreadsService: ThreadsImplementation {
  func spawn(work: Runnable, priority: UInt) -> UInt {
    // Priorities above the caller's quota (by default, the kernel's own 3) are refused.
    let account = CallChain.currentServer?.account
    if let account, !account.allows(priority: priority) { return 0 }
    if let account, !account.charge(.threads) { return 0 }
    // `work` is lent to the kernel's table for this call; keep it for the thread.
    let handle = work.handle
    guard Machine.withInterruptsDisabled({ KernelReferences.table.acquire(handle) }) else {
      account?.uncharge(.threads)
      return 0
    }
    let level = Int(truncatingIfNeeded: min(max(priority, 1), UInt(Scheduler.highPriority)))
    let caller: KernelMessage = CallChain.currentServer?.name ?? "kernel"
    let thread = Scheduler.spawn(name: "\(caller) worker", priority: level) {
      _ = KernelReferences.call(handle, method: 0)
      Machine.withInterruptsDisabled { _ = KernelReferences.table.release(handle) }
      account?.uncharge(.threads)
    }
    guard let thread else {
      Machine.withInterruptsDisabled { _ = KernelReferences.table.release(handle) }
      account?.uncharge(.threads)
      return 0
    }
    return UInt(thread.number)
  }
}

/// A semaphore a server made through Synchronization. Its count saturates at `UInt.max`
/// (a signal beyond it is lost, not an overflow).
final class SemaphoreObject: SemaphoreImplementation {
  private var count: UInt
  private var waiters = ThreadQueue()

  init(count: UInt) { self.count = count }

  func wait() {
    Machine.withInterruptsDisabled {
      if count > 0 {
        count -= 1
        return
      }
      guard !callerFailed else { return }
      let thread = Scheduler.current!
      waiters.append(thread.number)
      thread.waitingSemaphore = self
      // The unit is handed over by `signal` (or, if a server the thread is inside failed,
      // the wait is given up: `abandon`); sleep without holding server locks.
      ServerLock.whileReleased { Scheduler.block() }
      thread.waitingSemaphore = nil
    }
  }

  func waitFor(milliseconds: UInt) -> UInt {
    Machine.withInterruptsDisabled {
      if count > 0 {
        count -= 1
        return 1
      }
      guard milliseconds > 0, !callerFailed else { return 0 }
      let thread = Scheduler.current!
      waiters.append(thread.number)
      thread.waitingSemaphore = self
      ServerLock.whileReleased { Scheduler.sleep(ticks: ClockService.ticks(covering: milliseconds)) }
      thread.waitingSemaphore = nil
      // `signal` (or `abandon`) takes the thread off the queue when it wakes it; still
      // queued means the time ran out.
      return waiters.remove(thread.number) ? 0 : 1
    }
  }

  /// Whether the waiting thread is inside a server that failed after the thread entered
  /// the kernel (interrupts disabled). `Server.fail` abandons the waits it finds blocked;
  /// a thread on its way here (preempted before it blocked) would wait for good, holding
  /// the failed server loaded and its restart off, so `fail` marks it and it gives the
  /// wait up here, as `abandon` would. A mark whose record the thread has left is dropped.
  /// A load and a compare when there is no mark (the chain is not decoded: that cost a
  /// blocking wait about 150 instructions).
  private var callerFailed: Bool {
    let thread = Scheduler.current!
    guard let record = thread.failedRecord else { return false }
    if CallChain.holds(level: record.level, word: record.word) { return true }
    thread.failedRecord = nil
    return false
  }

  /// Ends `thread`'s wait without a unit: a server it is inside failed, and nothing may
  /// keep it (the failed server unloads only when no thread is inside). Interrupts
  /// disabled.
  func abandon(_ thread: Thread) {
    guard waiters.remove(thread.number) else { return }
    Scheduler.wake(thread)
  }

  func signal() {
    Machine.withInterruptsDisabled {
      if let number = waiters.removeFirst(), let thread = Scheduler.thread(number) {
        Scheduler.wake(thread)
      } else if count < UInt.max {
        count += 1
      }
    }
  }
}

/// The kernel's Synchronization: makes semaphores.
final class SynchronizationService: SynchronizationImplementation {
  func makeSemaphore(count: UInt) -> Semaphore {
    let object = KernelServices.makeObject(
      interface: semaphoreDescriptor, dispatch: semaphoreDispatchAddresses(),
      box: SemaphoreBox(SemaphoreObject(count: count)))
    // The result moves from the kernel's table to the caller's (see Marshal).
    let handle = KernelServices.installResult(object)
    return Semaphore(handle: handle)
  }
}

/// The kernel's Supervision: new references to restarted instances (SystemLoader).
final class SupervisionService: SupervisionImplementation {
  func rebind(reference: UInt) -> UInt {
    guard let caller = CallChain.currentServer,
      let object = caller.table.object(UInt32(truncatingIfNeeded: reference))
    else {
      return 0
    }
    return UInt(SystemLoader.rebind(object))
  }
}

/// The kernel's Settings: the calling instance's `set NAME VALUE` lines.
final class SettingsService: SettingsImplementation {
  func value(name: UnsafeRawBufferPointer, value: UnsafeMutableRawBufferPointer) -> Int {
    guard let caller = CallChain.currentServer,
      let setting = caller.settings.first(where: { equal(UnsafeRawBufferPointer($0.name), name) })
    else { return 0 }
    let count = min(setting.value.count, value.count)
    value.copyMemory(from: UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(setting.value)[0..<count]))
    return count
  }
}

/// The base of boxes that hold kernel service implementations.
class KernelObjectBox {}

enum KernelServices {
  nonisolated(unsafe) private static var services: [KernelObject?] = []
  // Method vectors per kernel interface, found by descriptor contents (the compiler may
  // give the same array literal different storage at different uses), made once and kept.
  nonisolated(unsafe) private static var vectors: [(vector: UInt32, interface: InterfaceDescriptor)] = []
  nonisolated(unsafe) private static var code: UnsafeMutableRawPointer?
  nonisolated(unsafe) private static var codeUsed = 0
  private static let codeSize = 8192

  /// What `bind SLOT none` binds: an object of an interface without methods ("none"), so
  /// the gate and the marshaling path refuse every call through the slot as they refuse a
  /// free handle (invalidHandle). Made once and kept.
  static let absent: KernelObject = {
    let object = KernelObject(
      owner: nil, interface: kernelInterface([4] + Array("none".utf8) + [0]).interface, context: 0, methods: 0
    )
    object.references += 1
    return object
  }()

  /// The service called `name`, if the kernel offers one.
  static func service(named name: UnsafeBufferPointer<UInt8>) -> KernelObject? {
    if services.isEmpty {
      services = [KernelObject?](repeating: nil, count: KernelServiceCatalog.services.count)
    }
    for (index, entry) in KernelServiceCatalog.services.enumerated() where equals(name, entry.name) {
      if services[index] == nil {
        let object = make(entry)
        object.references += 1  // kept for good
        services[index] = object
      }
      return services[index]
    }
    return nil
  }

  private static func make(_ service: KernelService) -> KernelObject {
    switch service {
    case .console:
      return makeObject(
        interface: consoleDescriptor, dispatch: consoleDispatchAddresses(), box: ConsoleBox(ConsoleService()))
    case .clock:
      return makeObject(
        interface: clockDescriptor, dispatch: clockDispatchAddresses(), box: ClockBox(ClockService()))
    case .threads:
      return makeObject(
        interface: threadsDescriptor, dispatch: threadsDispatchAddresses(), box: ThreadsBox(ThreadsService()))
    case .synchronization:
      return makeObject(
        interface: synchronizationDescriptor, dispatch: synchronizationDispatchAddresses(),
        box: SynchronizationBox(SynchronizationService()))
    case .pciConfiguration:
      return makeObject(
        interface: pciConfigurationDescriptor, dispatch: pciConfigurationDispatchAddresses(),
        box: PciConfigurationBox(PciConfigurationService()))
    case .settings:
      return makeObject(
        interface: settingsDescriptor, dispatch: settingsDispatchAddresses(),
        box: SettingsBox(SettingsService()))
    case .com1:
      return makeObject(
        interface: iOPortsDescriptor, dispatch: iOPortsDispatchAddresses(),
        box: IOPortsBox(IOPortsService(base: 0x3F8, count: 8)))
    case .irq4:
      return makeObject(
        interface: interruptLineDescriptor, dispatch: interruptLineDispatchAddresses(),
        box: InterruptLineBox(InterruptLineService(line: 4)))
    case .system:
      return makeObject(
        interface: systemInfoDescriptor, dispatch: systemInfoDispatchAddresses(),
        box: SystemInfoBox(SystemInfoService()))
    case .timers:
      return makeObject(
        interface: timersDescriptor, dispatch: timersDispatchAddresses(), box: TimersBox(TimerService()))
    case .memory:
      return makeObject(
        interface: memoryServiceDescriptor, dispatch: memoryServiceDispatchAddresses(),
        box: MemoryServiceBox(KernelMemoryService()))
    case .supervision:
      return makeObject(
        interface: supervisionDescriptor, dispatch: supervisionDispatchAddresses(),
        box: SupervisionBox(SupervisionService()))
    }
  }

  /// Creates every service, and the method vectors of the objects they make, now (they
  /// live for good, so a heap measurement after this sees only what a system uses).
  static func createAll() {
    _ = Server.unavailableEntry
    // Room the lists of servers and spaces keep for good, so a group's heap measurement
    // does not see them grow (past this many, they grow as needed).
    Server.loaded.reserveCapacity(128)
    AddressSpace.all.reserveCapacity(128)
    _ = kernelInterface(semaphoreDescriptor, dispatch: semaphoreDispatchAddresses())
    _ = kernelInterface(memoryDescriptor, dispatch: memoryDispatchAddresses())
    for service in KernelServiceCatalog.services {
      let name = service.name
      // The catalog names each service's interface for `tessera check`; the kernel's
      // object must implement that one.
      guard
        let object = self.service(
          named: UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount)),
        equals(object.interface.name, service.interface)
      else {
        panic("kernel service \(name) does not implement \(service.interface), as the catalog says")
      }
    }
  }

  /// Installs `object`, just made for a result, in the kernel's table (the result moves
  /// from there to the caller's, see Marshal); 0, with the object destroyed, when the
  /// table is full.
  static func installResult(_ object: KernelObject) -> UInt32 {
    Machine.withInterruptsDisabled {
      let handle = KernelReferences.table.install(object)
      if handle == 0 {
        Log.warning("kernel table full: a \(text: object.interface.name) made for a server is dropped")
        object.destroy()
      }
      return handle
    }
  }

  /// The names offered, from the catalog, for error messages.
  static var names: KernelMessage {
    var text = KernelMessage()
    for (index, service) in KernelServiceCatalog.services.enumerated() {
      if index > 0 { text.append(", ") }
      text.append(service.name)
    }
    return text
  }

  /// The kernel's descriptor of interface `name` (for checking references passed to it).
  static func descriptor(named name: UnsafeBufferPointer<UInt8>) -> InterfaceDescriptor? {
    for bytes in kernelInterfaceDescriptors {
      let interface = kernelInterface(bytes).interface
      if equal(UnsafeRawBufferPointer(interface.name), UnsafeRawBufferPointer(name)) { return interface }
    }
    return nil
  }

  /// A kernel object implementing the interface `descriptor` with `box`.
  static func makeObject(interface descriptor: [UInt8], dispatch: [UInt], box: KernelObjectBox)
    -> KernelObject
  {
    let (interface, vector) = kernelInterface(descriptor, dispatch: dispatch)
    let context = UInt32(UInt(bitPattern: Unmanaged.passRetained(box).toOpaque()))
    return KernelObject(owner: nil, interface: interface, context: context, methods: vector)
  }

  /// The kernel's copy of `descriptor` and its method vector, made on first use.
  static func kernelInterface(_ descriptor: [UInt8], dispatch: [UInt] = []) -> (
    interface: InterfaceDescriptor, vector: UInt32
  ) {
    // An entry made for the descriptor alone (vector 0) does not serve a caller that needs
    // the vector: it would make a new vector at every call (and objects whose vector is
    // not the one `frames(of:)` compares with).
    let found = descriptor.withUnsafeBytes { bytes in
      vectors.first { equal($0.interface.bytes, bytes) && ($0.vector != 0 || dispatch.isEmpty) }
    }
    if let found { return (found.interface, found.vector) }
    let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: descriptor.count, alignment: 1)
    storage.copyBytes(from: descriptor)
    let interface = try! InterfaceDescriptor(bytes: UnsafeRawBufferPointer(storage))
    var vector: UInt32 = 0
    if !dispatch.isEmpty {
      if code == nil { code = KernelHeap.allocate(byteCount: codeSize, alignment: 16) }
      var writer = CodeBuffer(
        memory: UnsafeMutableRawBufferPointer(start: code! + codeUsed, count: codeSize - codeUsed),
        base: UInt32(UInt(bitPattern: code! + codeUsed)))
      let methods = UnsafeMutablePointer<UInt32>(bitPattern: UInt(writer.address))!
      vector = writer.address
      // Words-only methods: the gate calls the dispatch function directly.
      for method in 0..<interface.methodCount { writer.emit32(UInt32(dispatch[method])) }
      for method in 0..<interface.methodCount where !interface.method(method).isWordsOnly {
        methods[method] = writer.address
        let information = MarshalInformation.make(
          server: nil, interface: interface, method: method, dispatch: UInt32(dispatch[method]))
        CallStubs.writeMarshalStub(
          into: &writer, chain: CallChain.layout, information: UInt32(UInt(bitPattern: information)),
          marshal: KernelABI.marshalCallAddress)
      }
      codeUsed += writer.count
    }
    vectors.append((vector, interface))
    return (interface, vector)
  }
}
