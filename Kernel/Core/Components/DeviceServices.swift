// DeviceServices: the kernel services drivers are given: I/O port ranges and interrupt
// lines, with interrupts delivered as calls; and SystemInfo, the kernel's state as text.
//
// Contract: a driver touches hardware only through these objects, bound to its slots by
// the composition (`kernel.com1`, `kernel.irq4`): a port outside the range it was given is
// refused, and it cannot claim a line it was not given. Each interrupt is acknowledged at
// the PIC at once and the line stays masked until the driver's handler, called on the
// line's own kernel thread (high priority), returns.

import CPU
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
    return UInt(cpu_inb(base + UInt16(truncatingIfNeeded: offset)))
  }

  func write8(offset: UInt, value: UInt) -> UInt {
    guard offset < count else { return 0 }
    cpu_outb(base + UInt16(truncatingIfNeeded: offset), UInt8(truncatingIfNeeded: value))
    return 1
  }
}

/// One IRQ line; interrupts become calls to the attached handler.
final class InterruptLineService: InterruptLineImplementation {
  nonisolated(unsafe) static var lines: InlineArray<16, UInt> = .init(repeating: 0)

  let line: Int
  private var handler: UInt32 = 0
  private var pending = 0
  private var deliverer: Thread?

  init(line: Int) { self.line = line }

  func attach(handler reference: InterruptHandler) -> UInt {
    let handle = reference.handle  // lent to the kernel's table for this call: keep it
    guard handler == 0, Machine.withInterruptsDisabled({ KernelReferences.table.acquire(handle) }) else {
      return 0
    }
    handler = handle
    Self.lines[line] = UInt(bitPattern: Unmanaged.passUnretained(self).toOpaque())
    deliverer = Scheduler.spawn(name: "irq", priority: Scheduler.highPriority) { [self] in self.deliver() }
    InterruptController.register(
      line: line,
      handler: { line in
        let address = InterruptLineService.lines[Int(truncatingIfNeeded: line)]
        guard address != 0 else { return }
        Unmanaged<InterruptLineService>.fromOpaque(UnsafeRawPointer(bitPattern: address)!)
          .takeUnretainedValue().fired()
      })
    return 1
  }

  func detach() {
    InterruptController.unregister(line: line)
    Self.lines[line] = 0
    // The delivering thread keeps its loop; it sees no more interrupts.
  }

  /// In the interrupt: mask the line and wake the delivering thread.
  private func fired() {
    InterruptController.mask(line: line)
    pending += 1
    if let deliverer, deliverer.state == .blocked { Scheduler.wake(deliverer) }
  }

  /// The delivering thread: one call per burst, then unmask.
  private func deliver() {
    while true {
      Machine.withInterruptsDisabled {
        while pending == 0 { Scheduler.block() }
        pending = 0
      }
      _ = KernelReferences.call(handler, method: 0)
      InterruptController.unmask(line: line)
    }
  }
}

/// The kernel's state as text, for the shell.
final class SystemInfoService: SystemInfoImplementation {
  /// Writes lines into `buffer`; returns the bytes written (stops, marked, when full).
  private func write(_ buffer: UnsafeMutableRawBufferPointer, _ lines: (inout TextWriter) -> Void) -> Int {
    var writer = TextWriter(buffer: buffer)
    Machine.withInterruptsDisabled { lines(&writer) }
    return writer.count
  }

  func servers(text: UnsafeMutableRawBufferPointer) -> Int {
    write(text) { out in
      out.line("server            mode    heap KiB  objects  inbound  references  locking")
      for server in Server.loaded {
        let locking: StaticString = server.file.manifest.isThreadSafe ? "thread-safe" : "serialized"
        let mode: StaticString = server.failed ? "FAILED" : (server.space == nil ? "kernel" : "user")
        out.line(
          "\(server.name)  \(mode)  \(server.heapBytes / 1024)  \(server.objectCount)  \(server.inboundReferences)  \(server.table.used)  \(locking)"
        )
      }
    }
  }

  func threads(text: UnsafeMutableRawBufferPointer) -> Int {
    write(text) { out in
      out.line("thread  priority  state     ticks  name  (servers it is in, innermost first)")
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
          "\(thread.number)  \(thread.priority)  \(state)  \(thread.ticks)  \(thread.name)  (\(CallChain.describe(saved: thread.chain)))"
        )
      }
    }
  }

  func references(name: UnsafeRawBufferPointer, text: UnsafeMutableRawBufferPointer) -> Int {
    write(text) { out in
      guard
        let server = Server.loaded.first(where: {
          $0.name.withBytes { equal(UnsafeRawBufferPointer($0), name) }
        })
      else {
        out.line("no server called \(text: name.bindMemory(to: UInt8.self))")
        return
      }
      out.line("handle  count  interface  implemented by")
      var handle: UInt32 = 1
      while UInt(handle) < UInt(server.table.capacity) {
        if let object = server.table.object(handle) {
          let owner: KernelMessage = object.owner?.name ?? "kernel"
          out.line("\(handle)  \(server.table.count(handle))  \(text: object.interface.name)  \(owner)")
        }
        handle += 1
      }
    }
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
    }
  }
}

/// Appends lines of text to a buffer without allocating.
struct TextWriter {
  let buffer: UnsafeMutableRawBufferPointer
  private(set) var count = 0

  init(buffer: UnsafeMutableRawBufferPointer) { self.buffer = buffer }

  mutating func line(_ message: KernelMessage) {
    message.withBytes { bytes in
      for byte in bytes where count < buffer.count {
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
