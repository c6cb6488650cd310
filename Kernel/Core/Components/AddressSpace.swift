// AddressSpace: a user address space: its page directory, the regions of the servers
// loaded into it, and the user stacks of the threads that enter it.
//
// Contract: every space maps the kernel below Paging.userStart (supervisor only) and the
// shared user thunk page at `thunkPage`. Server images and heaps get regions from
// `reserve` (never reused within a space); each thread number has its own 64 KiB stack
// slot (the lowest page a guard), backed on first use. The directory is freed when the
// last server of the space is gone and no thread is inside it any more (a thread still
// looping in a failed server may be). All changes happen with interrupts disabled.

import I686CodeGeneration
import KernelCore

final class AddressSpace {
  /// The page of user thunks (CodeGeneration/UserStubs.swift), the same frame in every space.
  static let thunkPage = Paging.userStart
  /// Where server images and heaps start.
  static let regionsStart: UInt32 = 0x4010_0000
  /// Regions end here; the stacks follow.
  static let regionsEnd: UInt32 = 0xB000_0000
  /// Thread stacks: one slot per thread number (KernelCore's UserStacks).
  static let stacksStart = UserStacks.start
  static let stackSize = UserStacks.slotBytes
  static let stacksEnd: UInt32 = stacksStart + UInt32(maximumThreads) * stackSize

  /// The thunk page's frame and addresses, made once.
  nonisolated(unsafe) private static var thunkFrame: UInt32 = 0
  nonisolated(unsafe) static var thunks = UserThunkAddresses()

  /// Spaces alive, for reports and name lookups.
  nonisolated(unsafe) static var all: [AddressSpace] = []

  /// The name given in the composition (empty for a server's own space).
  let name: KernelMessage
  private let hasName: Bool
  let directory: UInt32
  private var nextRegion = regionsStart
  /// Servers loaded in the space and not yet unloaded.
  var servers = 0
  /// Upcalls into the space in progress (threads inside it); a word of its own, which
  /// generated upcall code counts.
  private let threadsInsideWord: UnsafeMutablePointer<UInt32>
  var threadsInside: UInt32 {
    get { threadsInsideWord.pointee }
    set { threadsInsideWord.pointee = newValue }
  }
  /// Addresses generated upcall code has baked in.
  var threadsInsideAddress: UInt32 { UInt32(UInt(bitPattern: threadsInsideWord)) }
  var stackPointersAddress: UInt32 { UInt32(UInt(bitPattern: stackPointers)) }
  /// Per thread number: the user stack pointer the next upcall starts from (0: the top).
  /// (Raw memory rather than an array: this is read and written on every kernel call.)
  private let stackPointers: UnsafeMutablePointer<UInt32>

  private init(name: KernelMessage, directory: UInt32) {
    self.name = name
    hasName = name.withBytes { !$0.isEmpty }
    self.directory = directory
    stackPointers = .allocate(capacity: maximumThreads)
    stackPointers.initialize(repeating: 0, count: maximumThreads)
    threadsInsideWord = .allocate(capacity: 1)
    threadsInsideWord.initialize(to: 0)
  }

  deinit {
    stackPointers.deallocate()
    threadsInsideWord.deallocate()
  }

  /// Writes the thunk page (once, before any composition is loaded: it lives for good).
  static func makeThunkPage() {
    guard thunkFrame == 0 else { return }
    guard let frame = PhysicalMemory.allocateZeroedFrame() else { panic("no memory for the user thunk page") }
    var writer = CodeBuffer(
      memory: UnsafeMutableRawBufferPointer(
        start: UnsafeMutableRawPointer(bitPattern: UInt(frame)), count: Int(Paging.pageSize)),
      base: thunkPage)
    thunks = CallStubs.writeUserThunks(into: &writer)
    thunkFrame = frame
    UserModeState.threadNumberAddress = CallChain.layout.threadNumber
    // UserMode.S reads its offsets, codes and stack layout from the generated KernelABI.h.
  }

  /// A new space with the thunk page mapped; nil without memory.
  static func make(name: KernelMessage) -> AddressSpace? {
    Machine.withInterruptsDisabled {
      guard let directory = Paging.makeDirectory() else { return nil }
      guard Paging.map(in: directory, virtual: thunkPage, physical: thunkFrame, flags: Paging.user) else {
        Paging.freeDirectory(directory)
        return nil
      }
      let space = AddressSpace(name: name, directory: directory)
      all.append(space)
      return space
    }
  }

  /// The space named `name` (shared spaces of the composition).
  static func named(_ name: UnsafeBufferPointer<UInt8>) -> AddressSpace? {
    all.first { space in
      space.hasName
        && space.name.withBytes { equal(UnsafeRawBufferPointer($0), UnsafeRawBufferPointer(name)) }
    }
  }

  /// Reserves `bytes` (rounded up to pages) of address range for a server; nil when the
  /// regions are used up.
  func reserve(bytes: UInt32) -> UInt32? {
    let size = (bytes + Paging.pageSize - 1) & ~(Paging.pageSize - 1)
    guard size <= Self.regionsEnd - nextRegion else { return nil }
    defer { nextRegion += size + Paging.pageSize }  // a guard page between regions
    return nextRegion
  }

  /// Backs `[start, start+bytes)` with zeroed frames the space owns; false without memory
  /// (what was mapped stays, and goes with the space). Like Memory objects, user spaces
  /// never take the kernel's last `MemoryObject.reservedFrames` frames (images, heaps and
  /// stacks alike: threads touching deep stacks in many spaces could otherwise take them
  /// all); a stack fault refused so is the faulting server's fault.
  func back(start: UInt32, bytes: UInt32, writable: Bool = true) -> Bool {
    Machine.withInterruptsDisabled {
      var page = start & ~(Paging.pageSize - 1)
      while page < start + bytes {
        if Paging.entryValue(page, in: directory) & Paging.present == 0 {
          guard PhysicalMemory.statistics.freeFrames > MemoryObject.reservedFrames,
            let frame = PhysicalMemory.allocateZeroedFrame()
          else { return false }
          let flags = Paging.user | Paging.owned | (writable ? Paging.writable : 0)
          guard Paging.map(in: directory, virtual: page, physical: frame, flags: flags) else {
            PhysicalMemory.freeFrame(frame)
            return false
          }
        }
        page += Paging.pageSize
      }
      return true
    }
  }

  /// Unmaps `[start, end)`, freeing the frames the space owns there.
  func unback(start: UInt32, end: UInt32) {
    Machine.withInterruptsDisabled {
      var page = start & ~(Paging.pageSize - 1)
      while page < end {
        let value = Paging.entryValue(page, in: directory)
        if value & Paging.present != 0 {
          Paging.unmap(in: directory, virtual: page)
          if value & Paging.owned != 0 { PhysicalMemory.freeFrame(value & ~(Paging.pageSize - 1)) }
        }
        page += Paging.pageSize
      }
    }
  }

  /// Whether `[address, address+count)` lies in user memory of this space that is mapped
  /// for user access (and writable, if `write`).
  func isAccessible(_ address: UInt32, _ count: UInt32, write: Bool) -> Bool {
    guard count > 0 else { return true }
    guard address >= Paging.userStart, UInt64(address) + UInt64(count) <= UInt64(Paging.userEnd) else {
      return false
    }
    let needed = Paging.present | Paging.user | (write ? Paging.writable : 0)
    var page = address & ~(Paging.pageSize - 1)
    while UInt64(page) < UInt64(address) + UInt64(count) {
      guard Paging.entryValue(page, in: directory) & needed == needed else { return false }
      page += Paging.pageSize
    }
    return true
  }

  /// The stack slot of thread `number`: its lowest usable address and its top.
  private static func stackSlot(_ number: UInt32) -> (bottom: UInt32, top: UInt32) {
    (UserStacks.bottom(thread: number), UserStacks.top(thread: number))
  }

  /// Claims `bytes` below the running thread's current user stack pointer in this space
  /// for an upcall's arguments and blocks: returns the new stack pointer (16-aligned,
  /// backed) and the one to restore afterwards; nil if the stack would overflow.
  func claimStack(bytes: UInt32, thread: UInt32) -> (pointer: UInt32, restore: UInt32)? {
    let slot = Self.stackSlot(thread)
    let current = stackPointers[Int(thread)]
    let top = current == 0 ? slot.top : current
    // The generated upcall stub claims the same way (StubExecutionTests check it).
    guard let pointer = UserStacks.claim(bytes: bytes, current: current, thread: thread) else { return nil }
    // Back the arguments and a first page below them (more faults in on demand).
    let low = max(slot.bottom, (pointer & ~(Paging.pageSize - 1)) &- Paging.pageSize)
    guard back(start: low, bytes: top - low) else { return nil }
    stackPointers[Int(thread)] = pointer
    return (pointer, current)
  }

  /// Gives back what `claimStack` claimed.
  func releaseStack(restore: UInt32, thread: UInt32) { stackPointers[Int(thread)] = restore }

  /// Records that thread `thread` entered the kernel from this space with its user stack
  /// at `pointer`: an upcall nested in that kernel call (say, a destroy the call causes)
  /// must start below the frames live there. Returns the value to restore afterwards, or
  /// nil if `pointer` is not in the thread's stack (the kernel call is refused: nested
  /// upcalls could not be placed safely).
  func enterKernel(userStack pointer: UInt32, thread: UInt32) -> UInt32? {
    let slot = Self.stackSlot(thread)
    guard pointer >= slot.bottom, pointer < slot.top else { return nil }
    let previous = stackPointers[Int(thread)]
    stackPointers[Int(thread)] = pointer & ~15
    return previous
  }

  /// Resolves a user-mode page fault the space itself serves (a thread's stack growing
  /// within its slot); false if it is not one.
  func handleStackFault(at address: UInt32) -> Bool {
    guard address >= Self.stacksStart, address < Self.stacksEnd else { return false }
    let slot = Self.stackSlot((address - Self.stacksStart) / Self.stackSize)
    guard address >= slot.bottom else { return false }  // the guard page: overflow
    return back(start: address & ~(Paging.pageSize - 1), bytes: Paging.pageSize)
  }

  /// Gives back, in every space, the user stack pages thread `number` used there: they
  /// are backed on touch and would otherwise stay while the space lives, up to 64 KiB per
  /// thread number that ever ran in it (the scheduler calls this when the thread ended,
  /// interrupts disabled).
  static func threadEnded(_ number: UInt32) {
    let slot = stackSlot(number)
    for space in all {
      space.unback(start: slot.bottom, end: slot.top)
      space.stackPointers[Int(truncatingIfNeeded: number)] = 0
    }
  }

  /// Frees the space once nothing uses it (no servers, no thread inside).
  func destroyIfUnused() {
    Machine.withInterruptsDisabled {
      guard servers == 0, threadsInside == 0, let index = Self.all.firstIndex(where: { $0 === self }) else {
        return
      }
      Self.all.remove(at: index)
      // (The list keeps the room reserved at boot, see Server.loaded.)
      if Paging.activeDirectory == directory { Paging.activate(Paging.directory) }
      Paging.freeDirectory(directory)
    }
  }
}
