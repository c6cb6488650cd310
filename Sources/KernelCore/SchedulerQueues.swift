// SchedulerQueues: the queues the scheduler keeps threads in, by thread number.
//
// Contract: nothing here allocates (the scheduler runs in interrupt handlers), and every
// operation is O(1) except the ordered insert into `SleepList`. Capacities are fixed
// (`maximumThreads`); a full queue refuses an insert instead of overwriting.

/// The most threads the kernel runs at once.
public let maximumThreads = 256

/// A FIFO of thread numbers.
public struct ThreadQueue {
  private var slots: InlineArray<256, UInt32> = .init(repeating: 0)
  private var head = 0
  /// Threads queued.
  public private(set) var count = 0

  /// An empty queue.
  public init() {}

  /// Appends `thread`; false if the queue is full.
  @discardableResult
  public mutating func append(_ thread: UInt32) -> Bool {
    guard count < maximumThreads else { return false }
    slots[(head + count) % maximumThreads] = thread
    count += 1
    return true
  }

  /// Removes and returns the first thread, or nil.
  public mutating func removeFirst() -> UInt32? {
    guard count > 0 else { return nil }
    let thread = slots[head]
    head = (head + 1) % maximumThreads
    count -= 1
    return thread
  }

  /// Removes `thread` wherever it is; false if it was not queued.
  @discardableResult
  public mutating func remove(_ thread: UInt32) -> Bool {
    for offset in 0..<count where slots[(head + offset) % maximumThreads] == thread {
      for later in offset..<(count - 1) {
        slots[(head + later) % maximumThreads] = slots[(head + later + 1) % maximumThreads]
      }
      count -= 1
      return true
    }
    return false
  }

  /// Whether `thread` is queued.
  public func contains(_ thread: UInt32) -> Bool {
    for offset in 0..<count where slots[(head + offset) % maximumThreads] == thread { return true }
    return false
  }
}

/// Ready threads by priority: the highest non-empty priority runs, round robin within it.
public struct ReadyQueues {
  /// Priorities are 0 (lowest, the idle thread) to `levels - 1`.
  public static let levels = 4
  private var queues: InlineArray<4, ThreadQueue> = .init(repeating: ThreadQueue())

  /// Empty queues.
  public init() {}

  /// Makes `thread` ready at `priority` (clamped to the valid range).
  @discardableResult
  public mutating func append(_ thread: UInt32, priority: Int) -> Bool {
    queues[min(max(priority, 0), Self.levels - 1)].append(thread)
  }

  /// The next thread to run: the first of the highest non-empty priority.
  public mutating func next() -> UInt32? {
    var level = Self.levels - 1
    while level >= 0 {
      if let thread = queues[level].removeFirst() { return thread }
      level -= 1
    }
    return nil
  }

  /// The highest priority with a ready thread, or -1.
  public var highestReadyPriority: Int {
    var level = Self.levels - 1
    while level >= 0 && queues[level].count == 0 { level -= 1 }
    return level
  }

  /// Removes `thread` from whichever queue holds it.
  @discardableResult
  public mutating func remove(_ thread: UInt32) -> Bool {
    for level in 0..<Self.levels where queues[level].remove(thread) { return true }
    return false
  }
}

/// Sleeping threads ordered by the tick they wake at.
public struct SleepList {
  private var deadlines: InlineArray<256, UInt64> = .init(repeating: 0)
  private var threads: InlineArray<256, UInt32> = .init(repeating: 0)
  /// Threads sleeping.
  public private(set) var count = 0

  /// An empty list.
  public init() {}

  /// Adds `thread` to wake at tick `deadline` (after others with the same deadline).
  @discardableResult
  public mutating func insert(_ thread: UInt32, deadline: UInt64) -> Bool {
    guard count < maximumThreads else { return false }
    var position = count
    while position > 0 && deadlines[position - 1] > deadline {
      deadlines[position] = deadlines[position - 1]
      threads[position] = threads[position - 1]
      position -= 1
    }
    deadlines[position] = deadline
    threads[position] = thread
    count += 1
    return true
  }

  /// Removes and returns the first thread whose deadline is at or before `now`, or nil.
  public mutating func removeDue(now: UInt64) -> UInt32? {
    guard count > 0, deadlines[0] <= now else { return nil }
    let thread = threads[0]
    for index in 0..<(count - 1) {
      deadlines[index] = deadlines[index + 1]
      threads[index] = threads[index + 1]
    }
    count -= 1
    return thread
  }

  /// Removes `thread` (woken early); false if it was not sleeping.
  @discardableResult
  public mutating func remove(_ thread: UInt32) -> Bool {
    for index in 0..<count where threads[index] == thread {
      for later in index..<(count - 1) {
        deadlines[later] = deadlines[later + 1]
        threads[later] = threads[later + 1]
      }
      count -= 1
      return true
    }
    return false
  }

  /// The earliest deadline, if any thread sleeps.
  public var nextDeadline: UInt64? { count > 0 ? deadlines[0] : nil }
}
