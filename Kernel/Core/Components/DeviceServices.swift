// DeviceServices: the kernel services drivers are given: I/O port ranges and interrupt
// lines, with interrupts delivered as calls; and SystemInfo, the kernel's state as text.
//
// Contract: a driver touches hardware only through these objects, bound to its slots by
// the composition (`kernel.com1`, `kernel.irq4`): a port outside the range it was given is
// refused, and it cannot claim a line it was not given. Each interrupt is acknowledged at
// the PIC at once and the line stays masked until the driver's handler, called on the
// line's own kernel thread (high priority), returns.

import KernelCore

/// A range of I/O ports.
final class IOPortsService: IOPortsImplementation {
  let base: UInt16
  let count: UInt

  init(base: UInt16, count: UInt) {
    self.base = base
    self.count = count
  }

  func read8(offset: UInt) -> UInt {
    guard offset < count else { return UInt(UInt32.max) }
    return UInt(Processor.readPort8(base + UInt16(truncatingIfNeeded: offset)))
  }

  func write8(offset: UInt, value: UInt) -> UInt {
    guard offset < count else { return 0 }
    Processor.writePort8(base + UInt16(truncatingIfNeeded: offset), UInt8(truncatingIfNeeded: value))
    return 1
  }

  /// The port of a `width`-byte access at `offset`, if it lies wholly in the range.
  private func port(_ offset: UInt, width: UInt) -> UInt16? {
    guard offset < count, width <= count - offset else { return nil }
    return base &+ UInt16(truncatingIfNeeded: offset)
  }

  func read16(offset: UInt) -> UInt {
    guard let port = port(offset, width: 2) else { return UInt(UInt32.max) }
    return UInt(Processor.readPort16(port))
  }

  func write16(offset: UInt, value: UInt) -> UInt {
    guard let port = port(offset, width: 2) else { return 0 }
    Processor.writePort16(port, UInt16(truncatingIfNeeded: value))
    return 1
  }

  func read32(offset: UInt) -> UInt {
    guard let port = port(offset, width: 4) else { return UInt(UInt32.max) }
    return UInt(Processor.readPort32(port))
  }

  func write32(offset: UInt, value: UInt) -> UInt {
    guard let port = port(offset, width: 4) else { return 0 }
    Processor.writePort32(port, UInt32(truncatingIfNeeded: value))
    return 1
  }

  func size() -> UInt { count }
}

/// PCI configuration space through mechanism #1, for the PCI bus server (`kernel.pci`):
/// the only way to it, so a composition decides which server enumerates and configures
/// devices.
final class PciConfigurationService: PciConfigurationImplementation {
  private static let addressPort: UInt16 = 0xCF8
  private static let dataPort: UInt16 = 0xCFC

  /// Made with the kernel's services at boot: the interrupt lines bus 0's functions are
  /// routed to get their objects (and delivering threads) now, so handing one out later
  /// allocates nothing a group's heap measurement would count.
  init() {
    for device: UInt in 0..<32 {
      for function: UInt in 0..<8 {
        let word = UInt32(
          truncatingIfNeeded: read32(bus: 0, device: device, function: function, offset: 0x3C))
        guard word != UInt32.max, (word >> 8) & 0xFF != 0 else { continue }
        _ = InterruptLineService.shared(line: Int(truncatingIfNeeded: word & 0xFF))
      }
    }
  }

  /// The CONFIG_ADDRESS word; nil for an address outside the ranges.
  private static func address(bus: UInt, device: UInt, function: UInt, offset: UInt) -> UInt32? {
    guard bus < 256, device < 32, function < 8, offset < 256, offset & 3 == 0 else { return nil }
    return 0x8000_0000 | UInt32(truncatingIfNeeded: bus << 16 | device << 11 | function << 8 | offset)
  }

  func read32(bus: UInt, device: UInt, function: UInt, offset: UInt) -> UInt {
    guard let address = Self.address(bus: bus, device: device, function: function, offset: offset) else {
      return UInt(UInt32.max)
    }
    return Machine.withInterruptsDisabled {  // the two accesses are one transaction
      Processor.writePort32(Self.addressPort, address)
      return UInt(Processor.readPort32(Self.dataPort))
    }
  }

  func write32(bus: UInt, device: UInt, function: UInt, offset: UInt, value: UInt) -> UInt {
    guard let address = Self.address(bus: bus, device: device, function: function, offset: offset) else {
      return 0
    }
    Machine.withInterruptsDisabled {
      Processor.writePort32(Self.addressPort, address)
      Processor.writePort32(Self.dataPort, UInt32(truncatingIfNeeded: value))
    }
    return 1
  }

  /// BAR `bar` of a function, sized here with the function's decoding off (whatever the
  /// caller believes): its base and size, if it is the kind `isIO` says and decodes
  /// something. Memory BARs: 32-bit ones only (a 64-bit one would need the next BAR).
  private func sizedBar(bus: UInt, device: UInt, function: UInt, bar: UInt, isIO: Bool) -> (
    base: UInt32, size: UInt32
  )? {
    guard bar < 6 else { return nil }
    let offset = UInt(PciOffset.firstBar) + bar * 4
    return Machine.withInterruptsDisabled {
      let command = UInt32(
        truncatingIfNeeded: read32(bus: bus, device: device, function: function, offset: 4))
      let value = UInt32(
        truncatingIfNeeded: read32(bus: bus, device: device, function: function, offset: offset))
      guard value != UInt32.max, isIO ? value & 1 != 0 : value & 0x7 == 0 else { return nil }
      _ = write32(bus: bus, device: device, function: function, offset: 4, value: UInt(command & 0xFFFC))
      _ = write32(bus: bus, device: device, function: function, offset: offset, value: UInt(UInt32.max))
      let readback = UInt32(
        truncatingIfNeeded: read32(bus: bus, device: device, function: function, offset: offset))
      _ = write32(bus: bus, device: device, function: function, offset: offset, value: UInt(value))
      _ = write32(bus: bus, device: device, function: function, offset: 4, value: UInt(command & 0xFFFF))
      let size = PciBar.size(written: readback, kind: isIO ? .io : .memory32(prefetchable: false))
      guard size != 0 else { return nil }
      return (value & (isIO ? ~3 : ~0xF), size)
    }
  }

  func ports(bus: UInt, device: UInt, function: UInt, bar: UInt) -> IOPorts? {
    guard let range = sizedBar(bus: bus, device: device, function: function, bar: bar, isIO: true),
      range.base != 0, range.base <= 0xFFFF, range.size <= 0x1_0000 - range.base
    else { return nil }
    let object = KernelServices.makeObject(
      interface: iOPortsDescriptor, dispatch: iOPortsDispatchAddresses(),
      box: IOPortsBox(IOPortsService(base: UInt16(truncatingIfNeeded: range.base), count: UInt(range.size))))
    return IOPorts(handle: KernelServices.installResult(object))
  }

  func registers(bus: UInt, device: UInt, function: UInt, bar: UInt) -> Memory? {
    guard let range = sizedBar(bus: bus, device: device, function: function, bar: bar, isIO: false) else {
      return nil
    }
    // Whole pages of device memory only: above RAM (a BAR pointed at RAM would hand out
    // the kernel's memory), page-aligned (a page shared with another device's registers
    // would hand those out too), at most a Memory object's largest size.
    let pages = (UInt64(range.size) + UInt64(Paging.pageSize) - 1) / UInt64(Paging.pageSize)
    guard range.base >= Paging.directMapEnd, range.base % Paging.pageSize == 0,
      pages <= UInt64(MemoryObject.maximumPages),
      UInt64(range.base) + pages * UInt64(Paging.pageSize) <= 0xFFFF_F000
    else {
      Log.warning(
        "kernel.pci: BAR \(bar) of \(bus):\(device).\(function) at \(hex: range.base) (\(range.size) bytes) is not whole pages above RAM; not handed out"
      )
      return nil
    }
    let object = KernelServices.makeObject(
      interface: memoryDescriptor, dispatch: memoryDispatchAddresses(),
      box: MemoryBox(MemoryObject.device(base: range.base, pages: Int(truncatingIfNeeded: pages))))
    let handle = KernelServices.installResult(object)
    return handle == 0 ? nil : Memory(handle: handle)
  }

  func interrupt(bus: UInt, device: UInt, function: UInt) -> InterruptLine? {
    let word = UInt32(truncatingIfNeeded: read32(bus: bus, device: device, function: function, offset: 0x3C))
    let line = Int(truncatingIfNeeded: word & 0xFF)
    let pin = (word >> 8) & 0xFF
    guard word != UInt32.max, pin != 0, let service = InterruptLineService.shared(line: line) else {
      return nil
    }
    return InterruptLine(handle: KernelServices.installResult(service))
  }
}

/// One IRQ line; interrupts become calls to the attached handler.
final class InterruptLineService: InterruptLineImplementation {
  nonisolated(unsafe) static var lines: InlineArray<16, UInt> = .init(repeating: 0)
  /// The lines handed out through `kernel.pci`, one object each, made on first use.
  nonisolated(unsafe) private static var pciLines = [KernelObject?](repeating: nil, count: 16)

  /// The kernel object of IRQ `line` for PCI devices (made once, kept for good); nil for
  /// the lines the kernel keeps: 0 (timer), 2 (cascade), 4 (COM1, `kernel.irq4`) and
  /// those above 15.
  static func shared(line: Int) -> KernelObject? {
    guard line > 0, line < 16, line != 2, line != 4 else { return nil }
    if let made = pciLines[line] { return made }
    let made = KernelServices.makeObject(
      interface: interruptLineDescriptor, dispatch: interruptLineDispatchAddresses(),
      box: InterruptLineBox(InterruptLineService(line: line, shared: true)))
    // Held by the kernel's table for good, like every kernel service: the drivers' counts
    // come and go, and the object must never be destroyed under the next one's.
    guard Machine.withInterruptsDisabled({ KernelReferences.table.install(made) }) != 0 else { return nil }
    pciLines[line] = made
    return made
  }

  let line: Int
  /// Whether several handlers may share the line (PCI lines are level-triggered and
  /// shared; COM1's is one driver's).
  let isShared: Bool
  /// The attached handlers' handles in the kernel's table, in attach order.
  private var handlers: [UInt32] = []
  /// The handlers one delivery calls (the deliverer's own; made here, at boot, so the
  /// thread's first run, whenever it comes, allocates nothing a group would count).
  private var delivering: [UInt32] = []
  private var pending = 0
  private var deliverer: Thread?
  /// Set while the delivering thread waits for an interrupt (not while it is blocked
  /// inside a handler, where a wake-up would be a spurious one).
  private var waiting = false

  /// The line's delivering thread starts with the service (at boot, with every kernel
  /// service) and blocks until an interrupt comes: it lives for good, like the service.
  init(line: Int, shared: Bool = false) {
    self.line = line
    isShared = shared
    handlers.reserveCapacity(8)  // at boot: attaching allocates nothing a group would count
    delivering.reserveCapacity(8)
    deliverer = Scheduler.spawn(name: "irq", priority: Scheduler.highPriority) { [self] in self.deliver() }
  }

  /// The server a handler handle's object belongs to.
  private func owner(of handle: UInt32) -> Server? { KernelReferences.table.object(handle)?.owner }

  func attach(handler reference: InterruptHandler) -> UInt {
    let handle = reference.handle  // lent to the kernel's table for this call: keep it
    // Handlers whose server failed will never answer: drop them. (Picked out first:
    // changing `handlers` while iterating it would copy its storage.)
    while let old = handlers.first(where: { owner(of: $0)?.failed ?? false }) {
      Log.info("irq \(line): dropping the handler of a failed server")
      drop(old)
    }
    // Checked and taken at once: two servers attaching together must not both succeed on
    // a line that is not shared, and no server attaches twice.
    let caller = CallChain.currentServer
    let taken = Machine.withInterruptsDisabled {
      guard isShared || handlers.isEmpty, !handlers.contains(where: { owner(of: $0) === caller }),
        handlers.count < 8, KernelReferences.table.acquire(handle)
      else { return false }
      handlers.append(handle)
      return true
    }
    guard taken else { return 0 }
    if handlers.count == 1 {
      Self.lines[line] = UInt(bitPattern: Unmanaged.passUnretained(self).toOpaque())
      InterruptController.register(
        line: line,
        handler: { line in
          let address = InterruptLineService.lines[Int(truncatingIfNeeded: line)]
          guard address != 0 else { return }
          Unmanaged<InterruptLineService>.fromOpaque(UnsafeRawPointer(bitPattern: address)!)
            .takeUnretainedValue().fired()
        })
    }
    return 1
  }

  func detach() -> UInt {
    // Only a server's own handler may be taken off (another holder of the line must not
    // silence a driver).
    let caller = CallChain.currentServer
    guard let own = handlers.first(where: { owner(of: $0) === caller }) else { return 0 }
    drop(own)
    return 1
  }

  /// Releases handler `handle`; with none left, unregisters and masks the line. The
  /// delivering thread stays (blocked) for the next attach.
  private func drop(_ handle: UInt32) {
    let last = Machine.withInterruptsDisabled { () -> Bool in
      if let index = handlers.firstIndex(of: handle) { handlers.remove(at: index) }  // keeps the storage
      return handlers.isEmpty
    }
    if last {
      InterruptController.unregister(line: line)  // masks it
      Self.lines[line] = 0
    }
    Machine.withInterruptsDisabled {
      if last { pending = 0 }
      _ = KernelReferences.table.release(handle)
    }
  }

  /// Drops the handlers of `server`, which failed (the supervisor calls this), so its
  /// lines are free for the restarted instance and the failed server is not kept loaded.
  static func serverFailed(_ server: Server) {
    for index in 0..<lines.count where lines[index] != 0 {
      let service = Unmanaged<InterruptLineService>.fromOpaque(UnsafeRawPointer(bitPattern: lines[index])!)
        .takeUnretainedValue()
      while let handle = service.handlers.first(where: { service.owner(of: $0) === server }) {
        Log.info("irq \(service.line): \(server.name) failed; its handler is detached")
        service.drop(handle)
      }
    }
  }

  /// In the interrupt: mask the line and wake the delivering thread.
  private func fired() {
    InterruptController.mask(line: line)
    pending += 1
    if waiting, let deliverer, deliverer.state == .blocked { Scheduler.wake(deliverer) }
  }

  /// The delivering thread: per burst, one call to each handler in turn (a shared,
  /// level-triggered line stays raised until every device that raised it was served),
  /// then unmask.
  private func deliver() {
    while true {
      // Each handler's handle with a count of its own for the call: a detach meanwhile
      // cannot free (and a new attach re-use) the entry being called.
      Machine.withInterruptsDisabled {
        waiting = true
        while pending == 0 { Scheduler.block() }
        waiting = false
        pending = 0
        delivering.removeAll(keepingCapacity: true)
        for handle in handlers where KernelReferences.table.acquire(handle) { delivering.append(handle) }
      }
      for handle in delivering {
        _ = KernelReferences.call(handle, method: 0)
        Machine.withInterruptsDisabled { _ = KernelReferences.table.release(handle) }
      }
      if !delivering.isEmpty && Machine.withInterruptsDisabled({ !handlers.isEmpty }) {
        InterruptController.unmask(line: line)
      }
    }
  }
}

/// The kernel's state as text, for the shell.
final class SystemInfoService: SystemInfoImplementation {
  /// Writes lines into `buffer`; returns the bytes written (stops, marked, when full).
  private func write(_ buffer: UnsafeMutableRawBufferPointer, _ lines: (inout TextWriter) -> Void) -> Int {
    var writer = TextWriter(buffer: buffer)
    Machine.withInterruptsDisabled { lines(&writer) }
    writer.finish()
    return writer.count
  }

  func servers(text: UnsafeMutableRawBufferPointer) -> Int {
    write(text) { out in
      let widths = [12, 16, 14, 9, 8, 8, 11, 9]
      out.line(
        columns(
          [
            "instance", "server", "placement", "heap KiB", "objects", "inbound", "locking", "restarts",
            "bindings",
          ],
          widths))
      for server in Server.loaded where !(server.failed && isReplaced(server)) {
        let name: KernelMessage =
          server.instanceName.count > 0 ? "\(text: server.instanceName)" : "(\(server.name))"
        var placement: KernelMessage
        if let space = server.space {
          placement = space.name.count > 0 ? "user:\(space.name)" : "user"
        } else {
          placement = "kernel"
        }
        if server.failed { placement = "FAILED" }
        let locking: KernelMessage = server.file.manifest.isThreadSafe ? "thread-safe" : "serialized"
        out.line(
          columns(
            [
              name, "\(server.name)", placement, "\(server.heapBytes / 1024)", "\(server.objectCount)",
              "\(server.inboundReferences)", locking, "\(SystemLoader.restarts(of: server.instanceName))",
              bindings(of: server),
            ], widths))
      }
    }
  }

  /// Whether `server`, failed, was restarted: another loaded instance has its name.
  private func isReplaced(_ server: Server) -> Bool {
    server.instanceName.count > 0
      && Server.loaded.contains { other in
        other !== server && !other.failed
          && equal(UnsafeRawBufferPointer(other.instanceName), UnsafeRawBufferPointer(server.instanceName))
      }
  }

  /// "slot=target ..." for the server's bound slots (handles 1...n of its table).
  private func bindings(of server: Server) -> KernelMessage {
    var text = KernelMessage()
    let manifest = server.file.manifest
    for slot in 0..<manifest.slotCount {
      guard let object = server.table.object(UInt32(truncatingIfNeeded: slot + 1)) else { continue }
      if text.count > 0 { text.append(" ") }
      text.append(text: manifest.slot(slot).name)
      text.append("=")
      if let owner = object.owner {
        if owner.instanceName.count > 0 {
          text.append(text: owner.instanceName)
        } else {
          text.append(message: owner.name)
        }
      } else {
        text.append("kernel(")
        text.append(text: object.interface.name)
        text.append(")")
      }
    }
    return text.count > 0 ? text : "-"
  }

  /// `fields`, each padded to its width (the last one as it is), two spaces apart at least.
  private func columns(_ fields: [KernelMessage], _ widths: [Int]) -> KernelMessage {
    var text = KernelMessage()
    for (index, field) in fields.enumerated() {
      text.append(message: field)
      guard index < widths.count else { break }
      var padding = max(widths[index] - field.count, 1)
      while padding > 0 {
        text.append(" ")
        padding -= 1
      }
    }
    return text
  }

  func instances(text: UnsafeMutableRawBufferPointer) -> Int {
    write(text) { out in
      for server in Server.loaded where server.instanceName.count > 0 && !server.failed {
        out.line("\(text: server.instanceName)")
      }
    }
  }

  func run(name: UnsafeRawBufferPointer, text: UnsafeMutableRawBufferPointer) -> Int {
    var writer = TextWriter(buffer: text)
    writer.line(SystemLoader.runFromShell(named: name.bindMemory(to: UInt8.self)))
    return max(writer.count - 1, 0)  // without the line's newline
  }

  func threads(text: UnsafeMutableRawBufferPointer) -> Int {
    write(text) { out in
      // Timestamps since boot, and how many of them the processor was halted (guest
      // instructions under -icount shift=0: tools/tcp-bench reads busy = elapsed - halted).
      out.line(
        "cpu: \(Machine.timestampsSinceBoot) timestamps since boot, \(Machine.haltedTimestamps) halted")
      out.line("windows: \(Server.windowRestarts) preempted threads started generated counting code again")
      let widths = [8, 10, 10, 10, 14]
      out.line(
        columns(
          ["thread", "priority", "state", "ticks", "name", "(servers it is in, innermost first)"], widths))
      // The running thread's chain is live; save it where the others' are kept.
      if let running = Scheduler.current { CallChain.save(into: running.chain) }
      for thread in Scheduler.all {
        let state: StaticString =
          switch thread.state {
          case .running: "running"
          case .ready: "ready"
          case .blocked: "blocked"
          case .sleeping: "sleeping"
          case .finished: "finished"
          }
        out.line(
          columns(
            [
              "\(thread.number)", "\(thread.priority)", "\(state)", "\(thread.ticks)", thread.name,
              "(\(CallChain.describe(saved: thread.chain)))",
            ], widths))
      }
    }
  }

  func references(name: UnsafeRawBufferPointer, text: UnsafeMutableRawBufferPointer) -> Int {
    write(text) { out in
      // An instance's name first (its live instance, not a failed one), then a server's.
      guard
        let server = Server.loaded.first(where: {
          !$0.failed && equal(UnsafeRawBufferPointer($0.instanceName), name)
        })
          ?? Server.loaded.first(where: { $0.name.withBytes { equal(UnsafeRawBufferPointer($0), name) } })
      else {
        out.line("no instance or server called \(text: name.bindMemory(to: UInt8.self)) (see servers)")
        return
      }
      let widths = [8, 7, 20]
      out.line(columns(["handle", "count", "interface", "implemented by"], widths))
      var handle: UInt32 = 1
      while UInt(handle) < UInt(server.table.capacity) {
        if let object = server.table.object(handle) {
          var owner: KernelMessage = "kernel"
          if let server = object.owner {
            owner =
              server.instanceName.count > 0 ? "\(text: server.instanceName) (\(server.name))" : server.name
          }
          out.line(
            columns(
              ["\(handle)", "\(server.table.count(handle))", "\(text: object.interface.name)", owner], widths)
          )
        }
        handle += 1
      }
    }
  }

  /// Whether a hand-off measurement runs (one at a time: each takes a kernel thread).
  nonisolated(unsafe) private static var measuring = false

  func handOffs(rounds: UInt) -> UInt {
    // At most 200,000 switches a call (about 80 million instructions): the helper is a
    // kernel thread, not charged to the caller, and runs at the caller's priority.
    guard let rounds = Int(exactly: rounds), rounds <= 100_000,
      Machine.withInterruptsDisabled({ () -> Bool in
        guard !Self.measuring else { return false }
        Self.measuring = true
        return true
      })
    else { return 0 }
    defer { Machine.withInterruptsDisabled { Self.measuring = false } }
    // Words are 32 bits: a count of ticks past that reads as 0, like a failure.
    guard let ticks = Scheduler.measureHandOffs(rounds: rounds), let word = UInt(exactly: ticks) else {
      return 0
    }
    return word
  }

  func profile(text: UnsafeMutableRawBufferPointer) -> Int {
    write(text) { out in Profiler.report(&out, lines: 240) }
  }

  func memory(text: UnsafeMutableRawBufferPointer) -> Int {
    write(text) { out in
      let frames = PhysicalMemory.statistics
      let heap = KernelHeap.statistics
      out.line(
        "frames: \(frames.freeFrames) free of \(frames.usableFrames) (\(frames.freeFrames * 4 / 1024) MiB free)"
      )
      out.line(
        "kernel heap: \(heap.regionBytes / 1024) KiB mapped, \(heap.bytesInUse) bytes in \(heap.liveAllocations) allocations, peak \(heap.peakBytesInUse)"
      )
      var serverBytes = 0
      for server in Server.loaded { serverBytes += server.heapBytes }
      out.line("server heaps: \(serverBytes / 1024) KiB mapped in \(Server.loaded.count) servers")
      out.line("quotas (held/limit):")
      // A kernel-mode server's heap is the kernel's allocator: bytes in use are exact. A
      // user-mode server runs its own allocator, so the kernel sees only what it backed.
      for server in Server.loaded {
        if let heap = server.heap?.statistics {
          out.line(
            "  \(server.account.summary), heap \(heap.bytesInUse) bytes in \(heap.liveAllocations) allocations"
          )
        } else {
          out.line("  \(server.account.summary), heap \(server.heapBytes / 1024) KiB backed")
        }
      }
    }
  }
}

/// Appends whole lines of text to a buffer without allocating; a line that does not fit
/// is left out and counted, and `finish` says how many were (nothing is cut silently).
struct TextWriter {
  let buffer: UnsafeMutableRawBufferPointer
  private(set) var count = 0
  /// Lines left out for want of room.
  private(set) var omitted = 0
  /// Room kept for `finish`'s line.
  private static let reserve = 48

  init(buffer: UnsafeMutableRawBufferPointer) { self.buffer = buffer }

  mutating func line(_ message: KernelMessage) {
    let room = buffer.count - min(Self.reserve, buffer.count / 2)
    guard omitted == 0, count + message.count + 1 <= room else {
      omitted += 1
      return
    }
    message.withBytes { bytes in
      for byte in bytes {
        buffer[count] = byte
        count += 1
      }
    }
    buffer[count] = UInt8(ascii: "\n")
    count += 1
  }

  /// Adds "(N more lines did not fit)" if any were left out.
  mutating func finish() {
    guard omitted > 0 else { return }
    let note: KernelMessage = "(\(omitted) more lines did not fit)"
    note.withBytes { bytes in
      for byte in bytes where count < buffer.count - 1 {
        buffer[count] = byte
        count += 1
      }
    }
    if count < buffer.count {
      buffer[count] = UInt8(ascii: "\n")
      count += 1
    }
  }
}
