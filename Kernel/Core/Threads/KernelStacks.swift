// KernelStacks: every thread's kernel stack, in a range of its own with an unmapped guard
// below each stack, so running off the end faults instead of writing the kernel heap.
//
// Contract: thread number N owns slot N of `Paging.kernelStacksStart ..< kernelStacksEnd`
// (32 KiB): the upper 16 KiB are the stack, backed by fresh frames while the thread
// exists; the lower 16 KiB are never mapped. The page tables of the range are made at
// boot with the kernel heap's (shared by every address space), so a stack is reachable
// from any space. A fault in a guard is reported by the double-fault handler
// (Exceptions.doubleFault) naming the thread: the CPU cannot push the page fault's frame
// on a stack that is gone, so it raises a double fault, which runs on a stack of its own.

import KernelCore

enum KernelStacks {
  /// Bytes of each thread's slot, and of its stack at the slot's top.
  static let slotSize: UInt32 = 32 * 1024
  static let stackSize: UInt32 = 16 * 1024

  /// The lowest address of thread `number`'s stack, mapped with fresh frames; nil when
  /// memory is short.
  static func make(number: UInt32) -> UnsafeMutableRawPointer? {
    precondition(
      UInt64(number + 1) * UInt64(slotSize) <= UInt64(Paging.kernelStacksEnd - Paging.kernelStacksStart))
    let bottom = Paging.kernelStacksStart + number * slotSize + (slotSize - stackSize)
    var page: UInt32 = 0
    while page < stackSize {
      guard let frame = PhysicalMemory.allocateFrame(),
        Paging.map(virtual: bottom + page, physical: frame, flags: Paging.writable)
      else {
        release(bottom: bottom, mapped: page)
        return nil
      }
      page += Paging.pageSize
    }
    return UnsafeMutableRawPointer(bitPattern: UInt(bottom))
  }

  /// Unmaps thread `number`'s stack and frees its frames.
  static func free(number: UInt32) {
    release(bottom: Paging.kernelStacksStart + number * slotSize + (slotSize - stackSize), mapped: stackSize)
  }

  private static func release(bottom: UInt32, mapped: UInt32) {
    var page: UInt32 = 0
    while page < mapped {
      if let frame = Paging.unmap(virtual: bottom + page) { PhysicalMemory.freeFrame(frame) }
      page += Paging.pageSize
    }
  }

  /// Kernel stack the marshaling path and upcalls leave for what follows them (a nested
  /// level of calls through generated code, an interrupt with its FPU state, a fault
  /// report): a call that would leave less is refused with `outOfResources`.
  static let callReserve: UInt32 = 4096

  /// Whether a nested call may go on (see `callReserve`).
  static var roomForCall: Bool { remaining() >= callReserve }

  /// Bytes left below the running code's stack pointer on its thread's kernel stack.
  static func remaining() -> UInt32 {
    var marker: UInt32 = 0
    let pointer = withUnsafeMutablePointer(to: &marker) { UInt32(UInt(bitPattern: $0)) }
    let bottom = Scheduler.current?.stack.map { UInt32(UInt(bitPattern: $0)) } ?? Processor.bootStackBottom()
    return pointer >= bottom ? pointer - bottom : 0
  }

  /// The thread number whose guard `address` lies in, if any (the boot thread's guard is
  /// the page below the boot stack).
  static func guardOwner(of address: UInt32) -> UInt32? {
    if address & ~(Paging.pageSize - 1) == Processor.bootStackGuard() { return 1 }
    guard address >= Paging.kernelStacksStart, address < Paging.kernelStacksEnd else { return nil }
    let offset = address - Paging.kernelStacksStart
    return offset % slotSize < slotSize - stackSize ? offset / slotSize : nil
  }
}
