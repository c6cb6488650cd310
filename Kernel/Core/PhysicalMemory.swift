// PhysicalMemory: the kernel's frame allocator, built from the boot loader's memory map.
//
// Contract: after `initialize`, only frames that the memory map calls usable, that lie
// below the direct-map limit, and that nothing else occupies (the first MiB, the kernel
// image, boot information, command lines and modules) can be allocated. Every frame
// operation runs with interrupts disabled. Freeing a frame twice panics with the address.

import KernelCore

enum PhysicalMemory {
  nonisolated(unsafe) private static var allocator: FrameAllocator?
  /// Bytes of usable RAM the memory map reported (before reservations and the limit).
  nonisolated(unsafe) private(set) static var reportedBytes: UInt64 = 0
  /// The end of the highest usable region that the direct map covers.
  nonisolated(unsafe) private(set) static var usableEnd: UInt32 = 0

  /// A memory range something else owns.
  struct Reservation {
    var base: UInt64
    var length: UInt64
  }

  /// Builds the allocator from `memoryMap`, then removes `reservations`.
  static func initialize(memoryMap: MemoryMap, reservations: UnsafeBufferPointer<Reservation>) {
    let storage = Processor.frameBitmapStorage()!
    let words = Int(Processor.frameBitmapWords())
    let limit = min(words * 32, Int(Paging.directMapLimit / Paging.pageSize))
    var frames = FrameAllocator(
      frameLimit: limit,
      usableBitmap: UnsafeMutableBufferPointer(start: storage, count: words),
      freeBitmap: UnsafeMutableBufferPointer(start: storage + words, count: words))
    var ignoredBytes: UInt64 = 0
    for region in memoryMap where region.isAvailable {
      reportedBytes += region.length
      frames.addAvailable(base: region.base, length: region.length)
      let limitAddress = UInt64(limit) * UInt64(FrameAllocator.frameSize)
      if region.end > limitAddress {
        ignoredBytes += region.end - max(region.base, limitAddress)
      }
      usableEnd = UInt32(min(region.end, limitAddress))
    }
    frames.reserve(base: 0, length: 0x10_0000)  // BIOS data, VGA and ROMs
    for reservation in reservations {
      frames.reserve(base: reservation.base, length: reservation.length)
    }
    allocator = frames
    if ignoredBytes > 0 {
      Log.warning(
        "\(ignoredBytes / 1_048_576) MiB of RAM lies above the \(Paging.directMapLimit / 1_048_576) MiB direct map and is not used"
      )
    }
  }

  /// The allocator's counts.
  static var statistics: FrameStatistics {
    Machine.withInterruptsDisabled { allocator!.statistics }
  }

  /// Allocates a frame, or returns nil when none is free.
  static func allocateFrame() -> UInt32? {
    Machine.withInterruptsDisabled { allocator!.allocate().map { UInt32($0) } }
  }

  /// Allocates `count` physically contiguous frames; the first one's address, or nil.
  static func allocateContiguous(count: Int) -> UInt32? {
    Machine.withInterruptsDisabled { allocator!.allocateContiguous(count: count).map { UInt32($0) } }
  }

  /// Allocates a frame filled with zeros.
  static func allocateZeroedFrame() -> UInt32? {
    guard let frame = allocateFrame() else { return nil }
    UnsafeMutableRawPointer(bitPattern: UInt(frame))!.initializeMemory(
      as: UInt8.self, repeating: 0, count: Int(Paging.pageSize))
    return frame
  }

  /// Whether the frame at `address` is usable and free.
  static func isFree(_ address: UInt32) -> Bool {
    Machine.withInterruptsDisabled { allocator!.isFree(UInt64(address)) }
  }

  /// Returns a frame to the pool.
  static func freeFrame(_ address: UInt32) {
    Machine.withInterruptsDisabled {
      do throws(FrameAllocatorError) {
        try allocator!.free(UInt64(address))
      } catch {
        panic("frame allocator: \(error.message)")
      }
    }
  }
}
