// Paging: two-level IA-32 page tables for the kernel's address space.
//
// Contract: `enable` builds a page directory that maps physical memory 1:1 from 4 KiB up
// to `directMapEnd` (supervisor, writable), leaves page 0 unmapped so null pointers fault,
// and turns paging on. Page tables are frames from the frame allocator and are reached
// through the direct map, which is why frames are only handed out below `directMapEnd`.
// `map` and `unmap` change single 4 KiB pages and flush the TLB entry.
//
// Layout of the 4 GiB virtual space (see docs/ARCHITECTURE.md):
//   0x0000_0000 - 0x2FFF_FFFF  direct map of physical memory (at most 768 MiB)
//   0x3000_0000 - 0x37FF_FFFF  kernel heap (128 MiB, backed on demand)
//   0x3800_0000 - 0x3FFF_FFFF  server heaps (32 slots of 4 MiB, backed on demand)
//                              (the 64 page tables of 0x3000_0000-0x3FFF_FFFF are
//                              allocated when paging is enabled)
//   0x4000_0000 - 0xFFFF_FFFF  reserved for user address spaces

import CPU
import KernelCore

enum Paging {
  static let pageSize: UInt32 = 4096
  /// The highest end the direct map can have.
  static let directMapLimit: UInt32 = 0x3000_0000
  static let heapStart: UInt32 = 0x3000_0000
  static let heapEnd: UInt32 = 0x3800_0000
  /// Server heaps: a 4 MiB slot per loaded server.
  static let serverHeapStart: UInt32 = 0x3800_0000
  static let serverHeapEnd: UInt32 = 0x4000_0000

  static let present: UInt32 = 1 << 0
  static let writable: UInt32 = 1 << 1
  static let user: UInt32 = 1 << 2
  private static let frameMask: UInt32 = 0xFFFF_F000

  /// Physical address of the kernel page directory.
  nonisolated(unsafe) private(set) static var directory: UInt32 = 0
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
      guard map(virtual: page, physical: page, flags: writable) else {
        panic("no memory for page tables of the direct map")
      }
      page += pageSize
    }
    // Page tables for the whole heap range exist from the start: heap growth then never
    // needs a frame for a table, and every later address space can share these entries.
    var table = heapStart
    while table < serverHeapEnd {
      guard let frame = PhysicalMemory.allocateZeroedFrame() else {
        panic("no memory for the kernel heap's page tables")
      }
      entry(table: directory, index: table >> 22).pointee = frame | present | writable
      table += 0x40_0000
    }
    cpu_set_cr3(directory)
    cpu_set_cr0(cpu_cr0() | 0x8000_0000 | 0x0001_0000)  // PG, and WP: honour read-only pages in ring 0
  }

  /// Maps the page at `virtual` to the frame at `physical`; returns false if a page table
  /// could not be allocated.
  static func map(virtual: UInt32, physical: UInt32, flags: UInt32) -> Bool {
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
  static func unmap(virtual: UInt32) -> UInt32? {
    guard let tableEntry = pageEntry(virtual), tableEntry.pointee & present != 0 else { return nil }
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

  private static func pageEntry(_ virtual: UInt32) -> UnsafeMutablePointer<UInt32>? {
    let directoryEntry = entry(table: directory, index: virtual >> 22).pointee
    guard directoryEntry & present != 0 else { return nil }
    return entry(table: directoryEntry & frameMask, index: (virtual >> 12) & 0x3FF)
  }

  private static func entry(table: UInt32, index: UInt32) -> UnsafeMutablePointer<UInt32> {
    UnsafeMutablePointer<UInt32>(bitPattern: UInt(table) + UInt(index) * 4)!
  }
}
