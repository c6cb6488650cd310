// UserStacks: where an upcall's frame goes on a thread's user stack in a user-mode
// server's address space. The one description that the kernel's Swift upcall
// (AddressSpace.claimStack, UserCalls.upcall), the generated upcall stub
// (I686CodeGeneration's writeUpcallStub) and UserMode.S's call entry (through the
// generated KernelABI.h) all follow; StubExecutionTests hold the stub to `claim`.
//
// Contract: every space has one stack slot per thread number, `slotBytes` each from
// `start`; a slot's lowest page is its guard. An upcall claims `frameBytes` below the
// thread's current user stack pointer in that space (the slot's top when it has none),
// keeping `slack` bytes above the guard; `claim` answers nil when that would not fit.

/// The user stacks' layout and the upcall frame's claim.
public enum UserStacks {
  /// The first slot's address (thread 0).
  public static let start: UInt32 = 0xB000_0000
  /// log2 of a slot's bytes.
  public static let shift: UInt8 = 16
  /// A slot's bytes.
  public static let slotBytes: UInt32 = 1 << UInt32(shift)
  /// The guard page at the bottom of each slot.
  public static let guardBytes: UInt32 = 4096
  /// Bytes an upcall must leave free above the guard.
  public static let slack: UInt32 = 64

  /// The lowest usable address of thread `thread`'s slot (above its guard).
  public static func bottom(thread: UInt32) -> UInt32 { start &+ (thread << UInt32(shift)) &+ guardBytes }

  /// The address above thread `thread`'s slot.
  public static func top(thread: UInt32) -> UInt32 { start &+ ((thread &+ 1) << UInt32(shift)) }

  /// The bytes of an upcall frame for `arguments` words (context, selector and call
  /// words): the return trampoline's address, then the words, rounded up to 16.
  public static func frameBytes(arguments: Int) -> UInt32 {
    UInt32(truncatingIfNeeded: 4 + 4 * arguments + 15) & ~15
  }

  /// The stack pointer of an upcall frame of `bytes` claimed by thread `thread` whose
  /// current user stack pointer in the space is `current` (0: none yet, the slot's top),
  /// or nil if it would reach within `slack` of the guard. `current` is the kernel's own
  /// bookkeeping, 16-aligned inside the slot.
  public static func claim(bytes: UInt32, current: UInt32, thread: UInt32) -> UInt32? {
    let top = current == 0 ? top(thread: thread) : current
    let bottom = bottom(thread: thread)
    guard top >= bottom, bytes <= top - bottom, slack <= top - bottom - bytes else { return nil }
    return (top - bytes) & ~15
  }
}
