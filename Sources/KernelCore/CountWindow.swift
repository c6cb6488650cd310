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

/// The windows of one server's acquire and release code, kept in the order they were
/// written (ascending addresses), with the range that holds them all for a quick refusal.
public struct CountWindows: Sendable {
  private var windows: [CountWindow] = []
  private var lowest: UInt32 = .max
  private var highest: UInt32 = 0

  /// No windows.
  public init() {}

  /// Adds `window`.
  public mutating func append(_ window: CountWindow) {
    windows.append(window)
    lowest = min(lowest, window.start)
    highest = max(highest, window.commit)
  }

  /// The windows, in the order appended.
  public var all: [CountWindow] { windows }

  /// Where a thread interrupted before executing `address` resumes (see
  /// `CountWindow.resumeAddress`): the address itself unless it lies inside a window.
  public func resumeAddress(interruptedAt address: UInt32) -> UInt32 {
    guard address > lowest && address <= highest else { return address }
    for window in windows {
      let resumed = window.resumeAddress(interruptedAt: address)
      if resumed != address { return resumed }
    }
    return address
  }
}
