// Paging: two-level IA-32 page tables for the kernel's address space.
//
// Contract: `enable` builds a page directory that maps physical memory 1:1 from 4 KiB up
// to `directMapEnd` (supervisor, writable), leaves page 0 unmapped so null pointers fault,
// and turns paging on. Page tables are frames from the frame allocator and are reached
// through the direct map, which is why frames are only handed out below `directMapEnd`.
// `map` and `unmap` change single 4 KiB pages and flush the TLB entry.
//
// Layout of the 4 GiB virtual space (see docs/ARCHITECTURE.md):
//   0x0000_0000 - 0x2F3F_FFFF  direct map of physical memory (at most 756 MiB)
//   0x2F40_0000 - 0x2F7F_FFFF  device window: devices' memory-mapped registers mapped
//                              uncached for kernel-mode drivers (DeviceWindow; its page
//                              table made at boot)
//   0x2F80_0000 - 0x2FFF_FFFF  kernel thread stacks, each under an unmapped guard
//                              (KernelStacks; its 2 page tables made at boot too)
//   0x3000_0000 - 0x37FF_FFFF  kernel heap (128 MiB, backed on demand)
//   0x3800_0000 - 0x3FFF_FFFF  server heaps (32 slots of 4 MiB, backed on demand)
//                              (the 64 page tables of 0x3000_0000-0x3FFF_FFFF are
//                              allocated when paging is enabled)
//   0x4000_0000 - 0xFFFF_EFFF  user address spaces (one page directory each, whose
//                              first 256 entries are the kernel's, supervisor-only)

import CPU
import KernelCore

enum Paging {
  static let pageSize: UInt32 = 4096
  /// The highest end the direct map can have.
  static let directMapLimit: UInt32 = 0x2F40_0000
  /// Devices' registers for kernel-mode drivers (one page table, made at boot).
  static let deviceWindowStart: UInt32 = 0x2F40_0000
  static let deviceWindowEnd: UInt32 = 0x2F80_0000
  /// Kernel thread stacks, each under a guard (KernelStacks): 256 slots of 32 KiB.
  static let kernelStacksStart: UInt32 = 0x2F80_0000
  static let kernelStacksEnd: UInt32 = 0x3000_0000
  static let heapStart: UInt32 = 0x3000_0000
  static let heapEnd: UInt32 = 0x3800_0000
  /// Server heaps: a 4 MiB slot per loaded server.
  static let serverHeapStart: UInt32 = 0x3800_0000
  static let serverHeapEnd: UInt32 = 0x4000_0000

  /// The user part of every address space.
  static let userStart: UInt32 = 0x4000_0000
  static let userEnd: UInt32 = 0xFFFF_F000

  static let present: UInt32 = 1 << 0
  static let writable: UInt32 = 1 << 1
  static let user: UInt32 = 1 << 2
  /// Writes go through the cache (with `cacheDisable`: device registers, uncached).
  static let writeThrough: UInt32 = 1 << 3
  /// The page is not cached: every access reaches the device.
  static let cacheDisable: UInt32 = 1 << 4
  /// A bit the CPU ignores: the frame belongs to the address space (freed with it), as
  /// opposed to a frame of a memory object mapped there.
  static let owned: UInt32 = 1 << 9
  private static let frameMask: UInt32 = 0xFFFF_F000

  /// Physical address of the kernel page directory.
  nonisolated(unsafe) private(set) static var directory: UInt32 = 0
  /// The directory CR3 holds (kept where generated upcall code reads it too).
  private(set) static var activeDirectory: UInt32 {
    get { user_mode_state.3 }
    set { user_mode_state.3 = newValue }
  }
  /// The end of the direct map.
  nonisolated(unsafe) private(set) static var directMapEnd: UInt32 = 0

  /// Builds the kernel page directory mapping `[4 KiB, end)` 1:1 and enables paging.
  static func enable(directMapEnd end: UInt32) {
    guard let frame = PhysicalMemory.allocateZeroedFrame() else {
      panic("no memory for the page directory")
    }
    directory = frame
    directMapEnd = end
    var page = pageSize
    while page < end {
      // The page below the boot stack stays unmapped: the boot thread's guard.
      guard page == arch_boot_stack_guard() || map(virtual: page, physical: page, flags: writable) else {
        panic("no memory for page tables of the direct map")
      }
      page += pageSize
    }
    // Page tables for the device window, the kernel stacks and the whole heap range exist
    // from the start:
    // heap growth then never needs a frame for a table, and every later address space
    // can share these entries.
    var table = deviceWindowStart
    while table < serverHeapEnd {
      guard let frame = PhysicalMemory.allocateZeroedFrame() else {
        panic("no memory for the kernel heap's page tables")
      }
      entry(table: directory, index: table >> 22).pointee = frame | present | writable
      table += 0x40_0000
    }
    cpu_set_cr3(directory)
    activeDirectory = directory
    cpu_set_cr0(cpu_cr0() | 0x8000_0000 | 0x0001_0000)  // PG, and WP: honour read-only pages in ring 0
  }

  /// Makes `target` the active address space (a CR3 write only if it changes).
  @inline(__always)
  static func activate(_ target: UInt32) {
    guard target != activeDirectory else { return }
    activeDirectory = target
    cpu_set_cr3(target)
  }

  /// A new address space: a directory sharing the kernel's entries (and so its page
  /// tables) for everything below `userStart`; nil without memory.
  static func makeDirectory() -> UInt32? {
    guard let frame = PhysicalMemory.allocateZeroedFrame() else { return nil }
    _ = memcpy(
      UnsafeMutableRawPointer(bitPattern: UInt(frame))!, UnsafeRawPointer(bitPattern: UInt(directory))!,
      (userStart >> 22) * 4)
    return frame
  }

  /// Frees an address space made by `makeDirectory`: its page tables, the frames it owns
  /// and the directory. It must not be active.
  static func freeDirectory(_ target: UInt32) {
    precondition(target != activeDirectory && target != directory)
    for index in (userStart >> 22)..<1024 {
      let directoryEntry = entry(table: target, index: index).pointee
      guard directoryEntry & present != 0 else { continue }
      let table = directoryEntry & frameMask
      for slot in 0..<UInt32(1024) {
        let value = entry(table: table, index: slot).pointee
        if value & (present | owned) == present | owned { PhysicalMemory.freeFrame(value & frameMask) }
      }
      PhysicalMemory.freeFrame(table)
    }
    PhysicalMemory.freeFrame(target)
  }

  /// Maps the page at `virtual` to the frame at `physical`; returns false if a page table
  /// could not be allocated.
  static func map(virtual: UInt32, physical: UInt32, flags: UInt32) -> Bool {
    map(in: directory, virtual: virtual, physical: physical, flags: flags)
  }

  /// Maps the page at `virtual` of address space `directory` (see `map`).
  static func map(in directory: UInt32, virtual: UInt32, physical: UInt32, flags: UInt32) -> Bool {
    let directoryEntry = entry(table: directory, index: virtual >> 22)
    if directoryEntry.pointee & present == 0 {
      guard let table = PhysicalMemory.allocateZeroedFrame() else { return false }
      // Directory entries are permissive; the page entries decide.
      directoryEntry.pointee = table | present | writable | (flags & user)
    }
    let tableEntry = entry(table: directoryEntry.pointee & frameMask, index: (virtual >> 12) & 0x3FF)
    tableEntry.pointee = (physical & frameMask) | present | flags
    cpu_invalidate_page(virtual)
    return true
  }

  /// Unmaps the page at `virtual` and returns the frame it mapped, if any.
  @discardableResult
  static func unmap(virtual: UInt32) -> UInt32? { unmap(in: directory, virtual: virtual) }

  /// Unmaps the page at `virtual` of address space `directory` (see `unmap`).
  @discardableResult
  static func unmap(in directory: UInt32, virtual: UInt32) -> UInt32? {
    guard let tableEntry = pageEntry(virtual, in: directory), tableEntry.pointee & present != 0 else {
      return nil
    }
    let physical = tableEntry.pointee & frameMask
    tableEntry.pointee = 0
    cpu_invalidate_page(virtual)
    return physical
  }

  /// The physical address `virtual` maps to, if mapped.
  static func translate(_ virtual: UInt32) -> UInt32? {
    guard let tableEntry = pageEntry(virtual), tableEntry.pointee & present != 0 else { return nil }
    return (tableEntry.pointee & frameMask) | (virtual & ~frameMask)
  }

  /// The page-table entry of `virtual` in address space `directory` (0 if none).
  static func entryValue(_ virtual: UInt32, in directory: UInt32) -> UInt32 {
    pageEntry(virtual, in: directory)?.pointee ?? 0
  }

  private static func pageEntry(_ virtual: UInt32, in directory: UInt32 = directory)
    -> UnsafeMutablePointer<UInt32>?
  {
    let directoryEntry = entry(table: directory, index: virtual >> 22).pointee
    guard directoryEntry & present != 0 else { return nil }
    return entry(table: directoryEntry & frameMask, index: (virtual >> 12) & 0x3FF)
  }

  private static func entry(table: UInt32, index: UInt32) -> UnsafeMutablePointer<UInt32> {
    UnsafeMutablePointer<UInt32>(bitPattern: UInt(table) + UInt(index) * 4)!
  }
}
