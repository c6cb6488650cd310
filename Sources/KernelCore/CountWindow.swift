// CountWindow: the instructions of a generated acquire or release that a thread preempted
// among them runs again from the start, so a table that grew meanwhile is not missed.
//
// Contract: generated acquire and release code reads the table's base word, then changes
// the entry's count with one read-modify-write instruction (the commit). A thread
// preempted between the two that resumed where it stopped would change the count in the
// array it read, which a table growing meanwhile (`ReferenceTable.grow`) has replaced: the
// change would be lost. The code before the commit only reads memory and writes EAX and
// the flags (which the caller does not expect kept), so it can run again from the start.
// The kernel moves a preempted thread's instruction address with `resumeAddress` before
// it switches away (the interrupt path of the architecture calls it).

/// One acquire's or release's window: from its first instruction to its commit.
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

  /// Adds `window` (in any order).
  public mutating func append(_ window: CountWindow) {
    var index = windows.count
    while index > 0 && windows[index - 1].start > window.start { index -= 1 }
    windows.insert(window, at: index)
  }

  /// The windows, by address.
  public var all: [CountWindow] { windows }

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
