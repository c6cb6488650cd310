// KernelHeap: the kernel's heap, and the C allocation functions the Swift runtime calls.
//
// Contract: memory comes from the virtual range Paging.heapStart..<heapEnd, backed by
// frames mapped on demand and unmapped again when the top of the heap is free
// (HeapAllocator trims). All operations run with interrupts disabled.
// Out of memory: `posix_memalign` logs an error naming the request and returns ENOMEM;
// the embedded Swift runtime treats a failed object allocation as fatal, so running out
// of memory while creating a Swift object ends in a panic report (invalid opcode at the
// runtime's trap). `free` of a pointer the heap did not hand out panics with the address.

import KernelCore

/// Maps frames at the top of a heap's address range as the heap grows, and frees them as
/// it shrinks; used by the kernel heap and by every server's heap.
struct PagedRegionBacking: HeapBacking {
  /// The end of the address range the heap may grow into.
  let end: UInt

  mutating func grow(at end: UInt, by byteCount: Int) -> Bool {
    guard end + UInt(byteCount) <= self.end else { return false }
    var page = UInt32(end)
    let stop = page + UInt32(byteCount)
    while page < stop {
      guard let frame = PhysicalMemory.allocateFrame(),
        Paging.map(virtual: page, physical: frame, flags: Paging.writable)
      else {
        shrink(from: UInt(page), to: end)  // undo the partial growth
        return false
      }
      page += Paging.pageSize
    }
    return true
  }

  mutating func shrink(from oldEnd: UInt, to newEnd: UInt) {
    var page = UInt32(newEnd)
    while page < UInt32(oldEnd) {
      if let frame = Paging.unmap(virtual: page) { PhysicalMemory.freeFrame(frame) }
      page += Paging.pageSize
    }
  }
}

enum KernelHeap {
  nonisolated(unsafe) private static var heap = HeapAllocator(
    start: UInt(Paging.heapStart), backing: PagedRegionBacking(end: UInt(Paging.heapEnd)))
  nonisolated(unsafe) private static var ready = false

  /// Makes the heap usable; paging must be on.
  static func initialize() { ready = true }

  /// The heap's counts.
  static var statistics: HeapStatistics { Machine.withInterruptsDisabled { heap.statistics } }

  /// Checks the heap's metadata (used by tests).
  static func validate() -> HeapError? { Machine.withInterruptsDisabled { heap.validate() } }

  /// Allocates memory, or returns nil and logs when none is left.
  static func allocate(byteCount: Int, alignment: Int) -> UnsafeMutableRawPointer? {
    guard ready else { panic("heap used before paging was enabled") }
    let pointer = Machine.withInterruptsDisabled {
      heap.allocate(byteCount: byteCount, alignment: alignment)
    }
    if pointer == nil {
      Log.error("kernel heap: cannot allocate \(byteCount) bytes aligned to \(alignment): out of memory")
    }
    return pointer
  }

  /// Frees memory from `allocate`.
  static func free(_ pointer: UnsafeMutableRawPointer) {
    Machine.withInterruptsDisabled {
      do throws(HeapError) {
        try heap.free(pointer)
      } catch {
        panic("kernel heap: \(error.message)")
      }
    }
  }
}

private let enomem: Int32 = 12
private let einval: Int32 = 22

// Called by posix_memalign and free in Kernel/Runtime/Allocation.c: Swift may not define
// symbols the Swift runtime itself references.
@_cdecl("tessera_posix_memalign")
func posixMemalign(
  _ result: UnsafeMutablePointer<UnsafeMutableRawPointer?>, _ alignment: Int, _ byteCount: Int
) -> Int32 {
  guard alignment >= MemoryLayout<UInt>.size, alignment & (alignment - 1) == 0 else { return einval }
  guard let pointer = KernelHeap.allocate(byteCount: byteCount, alignment: alignment) else {
    return enomem
  }
  result.pointee = pointer
  return 0
}

@_cdecl("tessera_free")
func kernelFree(_ pointer: UnsafeMutableRawPointer?) {
  guard let pointer else { return }
  KernelHeap.free(pointer)
}
