// CountWindow: the instructions of generated code that a thread preempted among them runs
// again from the start, because what they read may have changed meanwhile.
//
// Contract: a window's code reads what other threads may change, then writes one count
// with one instruction (the commit): acquire and release read the table's base word and
// change an entry's count (a table growing meanwhile, `ReferenceTable.grow`, moves the
// entries to a new array, so the change would be lost in the old one); release's second
// part undoes its `dec` with one store; a bound stub counts its call-chain record (the
// slot's entry freed meanwhile, the stub would call an object nothing pins). The code
// before the commit only reads memory and writes registers the caller does not expect kept
// (EAX, ECX, EDX, the flags) and the uncounted record slot, so it can run again from the
// start. The kernel moves a preempted thread's instruction address with `resumeAddress`
// before it switches away (the interrupt path of the architecture calls it).

/// One window: from the code's first instruction to its commit.
public struct CountWindow: Equatable, Sendable {
  /// The address of the code's first instruction, where a preempted thread starts again.
  public var start: UInt32
  /// The address of the instruction that changes the count; until it has run, nothing
  /// was written.
  public var commit: UInt32

  /// A window.
  public init(start: UInt32, commit: UInt32) {
    self.start = start
    self.commit = commit
  }

  /// Where a thread interrupted before executing `address` resumes: `start` if the
  /// address lies after `start` and not after the commit, else the address itself.
  public func resumeAddress(interruptedAt address: UInt32) -> UInt32 {
    address > start && address <= commit ? start : address
  }
}

/// The windows of one server's generated code, kept sorted by address (they do not
/// overlap), so a preempted address is looked up by binary search.
public struct CountWindows: Sendable {
  private var windows: [CountWindow] = []

  /// No windows.
  public init() {}

  /// Adds `window` (in any order); windows must not overlap.
  public mutating func append(_ window: CountWindow) {
    var index = windows.count
    while index > 0 && windows[index - 1].start > window.start { index -= 1 }
    precondition(index == 0 || windows[index - 1].commit < window.start, "windows overlap")
    precondition(index == windows.count || window.commit < windows[index].start, "windows overlap")
    windows.insert(window, at: index)
  }

  /// Where a thread interrupted before executing `address` resumes (see
  /// `CountWindow.resumeAddress`): the address itself unless it lies inside a window.
  public func resumeAddress(interruptedAt address: UInt32) -> UInt32 {
    // The last window starting before the address is the only one that may hold it.
    var low = 0
    var high = windows.count
    while low < high {
      let middle = low + (high - low) / 2
      if windows[middle].start < address { low = middle + 1 } else { high = middle }
    }
    return low == 0 ? address : windows[low - 1].resumeAddress(interruptedAt: address)
  }
}
