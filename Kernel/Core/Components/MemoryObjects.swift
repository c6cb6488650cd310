// MemoryObjects: memory as references (the kernel's Memory objects and its MemoryService,
// `kernel.memory`), the mappings servers make of them, and page faults served by pagers.
//
// Contract: a Memory object is a run of physically contiguous zeroed frames (contiguous
// so drivers can hand its physical address to a device), freed when the last reference
// to it goes. A mapping holds its own reference (in the kernel's table) to what it maps,
// so memory stays alive while mapped, and is removed by `unmap` or when its server
// unloads. In a user-mode server a mapping is a fresh range of its address space; in a
// kernel-mode server it is the memory's direct-map address. A pager region (user mode
// only) starts empty: the first touch of a page faults, the kernel calls the region's
// Pager with the page's offset and whether it was a write, and maps the first page of
// the Memory it answers with (writable only for a write) and resumes the access; a pager
// that answers nothing, or with something that is not kernel memory, makes the access a
// fault of the server (contained as any other). The kernel itself never touches a pager
// region: a block passed from one that is not mapped yet is refused (badBlock).

import KernelCore

/// A run of frames handed out as a Memory reference.
final class MemoryObject: MemoryImplementation {
  /// Physical (and direct-map) address of the first frame.
  let base: UInt32
  let pages: Int

  /// The server it is charged to (nil: the kernel's own).
  private let account: ResourceAccount?
  /// A device's registers (not RAM): mapped uncached, never freed, zeroed or charged.
  let isDevice: Bool
  /// For a read-only view (`readOnly`): the memory it shows, kept alive by the view.
  private let viewed: MemoryObject?

  nonisolated(unsafe) private static var lastRefusalLogged: UInt64 = 0

  /// Largest object: 4 MiB.
  static let maximumPages = 1024
  /// Frames servers' Memory objects may never take: the kernel's own allocations (heap,
  /// page tables, stacks) keep working whatever servers ask for.
  static let reservedFrames = 1024

  private init(
    base: UInt32, pages: Int, account: ResourceAccount?, isDevice: Bool = false, viewed: MemoryObject? = nil
  ) {
    self.base = base
    self.pages = pages
    self.account = account
    self.isDevice = isDevice
    self.viewed = viewed
  }

  /// A device's memory-mapped registers at `base` (page-aligned, above RAM: the caller
  /// checked), `pages` long.
  static func device(base: UInt32, pages: Int) -> MemoryObject {
    MemoryObject(base: base, pages: pages, account: nil, isDevice: true)
  }

  /// New zeroed memory of `pages` frames charged to `account`, or nil (its memory quota,
  /// or the kernel's reserve, would be exceeded; or no run of frames is free).
  static func make(pages: Int, account: ResourceAccount?) -> MemoryObject? {
    guard pages > 0, pages <= maximumPages else { return nil }
    let bytes = UInt32(pages) * Paging.pageSize
    if let account, !account.charge(.memory, bytes) { return nil }
    guard PhysicalMemory.statistics.freeFrames - pages >= reservedFrames,
      let base = PhysicalMemory.allocateContiguous(count: pages)
    else {
      account?.uncharge(.memory, bytes)
      // At most once a second: a server looping on refused requests must not flood the log.
      if Timer.ticks &- lastRefusalLogged >= 1000 {
        lastRefusalLogged = Timer.ticks
        Log.warning(
          "kernel.memory: \(pages) pages refused (\(PhysicalMemory.statistics.freeFrames) frames free)")
      }
      return nil
    }
    UnsafeMutableRawPointer(bitPattern: UInt(base))!.initializeMemory(
      as: UInt8.self, repeating: 0, count: pages * Int(truncatingIfNeeded: Paging.pageSize))
    return MemoryObject(base: base, pages: pages, account: account)
  }

  deinit {
    guard !isDevice, viewed == nil else { return }  // the viewed object frees its frames
    for page in 0..<pages { PhysicalMemory.freeFrame(base + UInt32(page) * Paging.pageSize) }
    account?.uncharge(.memory, UInt32(pages) * Paging.pageSize)
  }

  func size() -> UInt { UInt(pages) * UInt(Paging.pageSize) }
  func physicalAddress() -> UInt { UInt(base) }
  func isWritable() -> UInt { viewed == nil ? 1 : 0 }

  func readOnly() -> Memory? {
    let view = MemoryObject(
      base: base, pages: pages, account: nil, isDevice: isDevice, viewed: viewed ?? self)
    let object = KernelServices.makeObject(
      interface: memoryDescriptor, dispatch: memoryDispatchAddresses(), box: MemoryBox(view))
    let handle = KernelServices.installResult(object)
    return handle == 0 ? nil : Memory(handle: handle)
  }
}

/// A range of a server's address space showing memory objects.
struct Mapping {
  var address: UInt32
  var pages: Int
  /// Kernel-table handle of the mapped Memory (0 for a pager region).
  var memory: UInt32
  /// A device's registers mapped for a kernel-mode server, in the device window.
  var inDeviceWindow = false
  /// Kernel-table handle of the region's Pager (0 for plain memory).
  var pager: UInt32
  /// Pager regions: per page, the kernel-table handle of the Memory mapped there (0: none).
  var pageMemory: UnsafeMutablePointer<UInt32>?
}

enum MemoryObjects {
  /// The pages `bytes` (a word from a server) needs: nil for 0 and beyond the largest
  /// object, so nothing below overflows.
  static func pages(_ bytes: UInt) -> Int? {
    let limit = UInt(MemoryObject.maximumPages) * UInt(Paging.pageSize)
    guard bytes > 0, bytes <= limit else { return nil }
    return Int(truncatingIfNeeded: (bytes + UInt(Paging.pageSize) - 1) / UInt(Paging.pageSize))
  }

  /// `(base, pages)` of `object` if it is one of the kernel's Memory objects (a server's
  /// object implementing Memory could claim any address, so it is refused).
  static func frames(of object: KernelObject) -> (base: UInt32, pages: Int, device: Bool, writable: Bool)? {
    guard object.owner == nil,
      object.methods
        == KernelServices.kernelInterface(memoryDescriptor, dispatch: memoryDispatchAddresses()).vector
    else { return nil }
    let box = Unmanaged<MemoryBox>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(object.context))!)
      .takeUnretainedValue()
    let memory = box.object
    let base = UInt32(truncatingIfNeeded: memory.physicalAddress())
    // RAM is handed out below the direct map's end only: anything above is a device's.
    return (
      base, Int(truncatingIfNeeded: memory.size() / UInt(Paging.pageSize)), base >= Paging.directMapEnd,
      memory.isWritable() == 1
    )
  }

  /// Serves a user-mode page fault at `address` in a pager region of the running server;
  /// false if it is not in one or the pager gave no memory (interrupts disabled on entry
  /// and exit; enabled while the pager runs).
  static func serveFault(at address: UInt32, write: Bool) -> Bool {
    guard let server = CallChain.currentServer, let space = server.space,
      let index = server.mappings.firstIndex(where: { mapping in
        mapping.pager != 0 && address >= mapping.address
          && address - mapping.address < UInt32(mapping.pages) * Paging.pageSize
      })
    else { return false }
    let mapping = server.mappings[index]
    let page = (address - mapping.address) / Paging.pageSize
    var words: InlineArray<2, UInt32> = [page * Paging.pageSize, write ? 1 : 0]
    Processor.enableInterrupts()
    let result = words.withMutableBuffer { buffer in
      KernelReferences.call(mapping.pager, method: 0, words: UnsafeBufferPointer(buffer))
    }
    Processor.disableInterrupts()
    // The answer lands in the table of the server that faulted (the pager's caller);
    // the mapping keeps it in the kernel's table instead.
    let handle = UInt32(truncatingIfNeeded: result)
    guard result >> 32 == 0, handle != 0, let object = server.table.object(handle) else {
      Log.error("\(server.name): the pager gave no memory for offset \(hex: page * Paging.pageSize)")
      return false
    }
    let kept = KernelReferences.table.install(object)
    _ = server.table.release(handle)
    guard kept != 0, let frames = frames(of: object), !frames.device, frames.writable || !write else {
      if kept != 0 { _ = KernelReferences.table.release(kept) }
      Log.error(
        "\(server.name): the pager answered with something that is not kernel RAM (or read-only memory for a write)"
      )
      return false
    }
    // Another thread of the server may have unmapped the region while the pager ran.
    guard
      server.mappings.contains(where: { $0.address == mapping.address && $0.pageMemory == mapping.pageMemory }
      )
    else {
      _ = KernelReferences.table.release(kept)
      return false
    }
    let virtual = mapping.address + page * Paging.pageSize
    guard
      Paging.map(
        in: space.directory, virtual: virtual, physical: frames.base,
        flags: Paging.user | (write ? Paging.writable : 0))
    else {
      _ = KernelReferences.table.release(kept)
      return false
    }
    let slot = Int(truncatingIfNeeded: page)  // below the region's pages
    let previous = mapping.pageMemory![slot]
    mapping.pageMemory![slot] = kept
    if previous != 0 { _ = KernelReferences.table.release(previous) }
    return true
  }

  /// Removes `mapping` of `server`: unmaps it and drops the references it held.
  static func remove(_ mapping: Mapping, of server: Server) {
    server.account.uncharge(.mappings)
    Machine.withInterruptsDisabled {
      if let space = server.space {
        space.unback(start: mapping.address, end: mapping.address + UInt32(mapping.pages) * Paging.pageSize)
      }
      if mapping.inDeviceWindow {
        DeviceWindow.unmap(start: mapping.address, pages: mapping.pages)
      }
      if mapping.memory != 0 { _ = KernelReferences.table.release(mapping.memory) }
      if mapping.pager != 0 { _ = KernelReferences.table.release(mapping.pager) }
      if let pageMemory = mapping.pageMemory {
        for page in 0..<mapping.pages where pageMemory[page] != 0 {
          _ = KernelReferences.table.release(pageMemory[page])
        }
        pageMemory.deallocate()
      }
    }
  }
}

/// The kernel's MemoryService (`kernel.memory`); it acts for the server that calls it.
final class KernelMemoryService: MemoryServiceImplementation {
  func allocate(bytes: UInt) -> Memory? {
    guard let pages = MemoryObjects.pages(bytes),
      let memory = MemoryObject.make(pages: pages, account: CallChain.currentServer?.account)
    else { return nil }
    let object = KernelServices.makeObject(
      interface: memoryDescriptor, dispatch: memoryDispatchAddresses(), box: MemoryBox(memory))
    let handle = KernelServices.installResult(object)
    return handle == 0 ? nil : Memory(handle: handle)
  }

  func map(memory: Memory, writable: UInt) -> UInt {
    // `memory` is lent to the kernel's table for this call.
    guard let object = KernelReferences.table.object(memory.handle),
      let frames = MemoryObjects.frames(of: object), let server = CallChain.currentServer,
      writable == 0 || frames.writable  // a read-only view maps read-only only
    else { return 0 }
    // The mapping's own reference first: without it the frames could be freed while mapped.
    guard server.account.charge(.mappings) else { return 0 }
    let kept = Machine.withInterruptsDisabled { KernelReferences.table.install(object) }
    guard kept != 0 else {
      server.account.uncharge(.mappings)
      Log.error("\(server.name): cannot map memory: the kernel's reference table is full")
      return 0
    }
    let address: UInt32
    if let space = server.space {
      guard let start = space.reserve(bytes: UInt32(frames.pages) * Paging.pageSize) else {
        Machine.withInterruptsDisabled { _ = KernelReferences.table.release(kept) }
        server.account.uncharge(.mappings)
        return 0
      }
      let flags =
        Paging.user | (writable == 1 ? Paging.writable : 0)
        | (frames.device ? Paging.cacheDisable | Paging.writeThrough : 0)
      for page in 0..<UInt32(frames.pages) {
        guard
          Paging.map(
            in: space.directory, virtual: start + page * Paging.pageSize,
            physical: frames.base + page * Paging.pageSize, flags: flags)
        else {
          space.unback(start: start, end: start + page * Paging.pageSize)
          Machine.withInterruptsDisabled { _ = KernelReferences.table.release(kept) }
          server.account.uncharge(.mappings)
          return 0
        }
      }
      address = start
    } else if frames.device {
      // Device registers are not in the direct map: a kernel-mode driver reaches them in
      // the device window, uncached.
      guard let start = DeviceWindow.map(base: frames.base, pages: frames.pages, writable: writable == 1)
      else {
        Machine.withInterruptsDisabled { _ = KernelReferences.table.release(kept) }
        server.account.uncharge(.mappings)
        // At most once a second: a server looping on refused requests must not flood the log.
        if Timer.ticks &- DeviceWindow.lastRefusalLogged >= 1000 {
          DeviceWindow.lastRefusalLogged = Timer.ticks
          Log.error("\(server.name): cannot map device memory: the device window is full")
        }
        return 0
      }
      address = start
    } else {
      address = frames.base  // the direct map: kernel-mode servers reach it there
    }
    server.mappings.append(
      Mapping(
        address: address, pages: frames.pages, memory: kept,
        inDeviceWindow: frames.device && server.space == nil,
        pager: 0, pageMemory: nil))
    return UInt(address)
  }

  func mapPager(pager: Pager, bytes: UInt) -> UInt {
    guard let pages = MemoryObjects.pages(bytes), let object = KernelReferences.table.object(pager.handle),
      let server = CallChain.currentServer, let space = server.space
    else { return 0 }
    guard server.account.charge(.mappings) else { return 0 }
    let kept = Machine.withInterruptsDisabled { KernelReferences.table.install(object) }
    guard kept != 0, let start = space.reserve(bytes: UInt32(pages) * Paging.pageSize) else {
      if kept != 0 { Machine.withInterruptsDisabled { _ = KernelReferences.table.release(kept) } }
      server.account.uncharge(.mappings)
      return 0
    }
    let pageMemory = UnsafeMutablePointer<UInt32>.allocate(capacity: pages)
    pageMemory.initialize(repeating: 0, count: pages)
    server.mappings.append(
      Mapping(address: start, pages: pages, memory: 0, pager: kept, pageMemory: pageMemory))
    return UInt(start)
  }

  func unmap(address: UInt) -> UInt {
    guard let server = CallChain.currentServer,
      let index = server.mappings.firstIndex(where: { UInt($0.address) == address })
    else { return 0 }
    let mapping = server.mappings.remove(at: index)
    if server.mappings.isEmpty { server.mappings = [] }  // give the array's storage back
    MemoryObjects.remove(mapping, of: server)
    return 1
  }

  func freePages() -> UInt { UInt(PhysicalMemory.statistics.freeFrames) }
}

/// The kernel's window for devices' registers (Paging.deviceWindowStart ..< End), where
/// kernel-mode drivers see them, uncached: one page table, made at boot, shared by every
/// address space. Interrupts disabled around each change.
enum DeviceWindow {
  /// Pages in the window (Paging.deviceWindowEnd - deviceWindowStart: 4 MiB).
  private static let pages = 1024
  /// When a full window was last reported.
  nonisolated(unsafe) static var lastRefusalLogged: UInt64 = 0
  /// Which pages are mapped (1,024: the window's size).
  nonisolated(unsafe) private static var used: InlineArray<1024, Bool> = .init(repeating: false)

  /// Maps `pages` pages of device memory at physical `base` into a free run of the window;
  /// its start, or nil if no run is free.
  static func map(base: UInt32, pages count: Int, writable: Bool) -> UInt32? {
    Machine.withInterruptsDisabled {
      var start = 0
      while start + count <= pages {
        guard let busy = (start..<(start + count)).last(where: { used[$0] }) else {
          for page in start..<(start + count) {
            used[page] = true
            let offset = UInt32(truncatingIfNeeded: page - start) * Paging.pageSize
            _ = Paging.map(
              virtual: Paging.deviceWindowStart + UInt32(truncatingIfNeeded: page) * Paging.pageSize,
              physical: base + offset,
              flags: (writable ? Paging.writable : 0) | Paging.cacheDisable | Paging.writeThrough)
          }
          return Paging.deviceWindowStart + UInt32(truncatingIfNeeded: start) * Paging.pageSize
        }
        start = busy + 1
      }
      return nil
    }
  }

  /// Unmaps a run `map` returned.
  static func unmap(start address: UInt32, pages count: Int) {
    Machine.withInterruptsDisabled {
      let start = Int(truncatingIfNeeded: (address - Paging.deviceWindowStart) / Paging.pageSize)
      for page in start..<(start + count) {
        _ = Paging.unmap(virtual: address + UInt32(truncatingIfNeeded: page - start) * Paging.pageSize)
        used[page] = false
      }
    }
  }
}
