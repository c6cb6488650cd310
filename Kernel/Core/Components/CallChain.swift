// CallChain: the record of which servers the running thread is inside, innermost last.
//
// Contract: generated method stubs push a record (the caller's return address and the
// callee) on entry and pop it on return; the kernel pushes records itself when it enters
// a server directly (start, destroy, marshaled calls). The top record names the server
// whose code is running, which is how allocation and exports are charged to the right
// server. The storage has a fixed address because stubs have it baked in; each thread
// has its own chain, which the scheduler copies out of and into this storage when it
// switches threads (`save`, `restore`). The storage also holds the running thread's
// number, which lock stubs write into the locks they take.

import CPU
import KernelCore

enum CallChain {
  // Layout: word 0 depth; then `chainCapacity` records of 2 words; then a lock flag
  // each; then a return slot each for lock stubs; then the running thread's number.
  static let words = 2 + 4 * Int(CallStubs.chainCapacity)
  private static let capacity = Int(CallStubs.chainCapacity)
  private static let storage: UnsafeMutablePointer<UInt32> = {
    let memory = UnsafeMutablePointer<UInt32>.allocate(capacity: words)
    memory.initialize(repeating: 0, count: words)
    return memory
  }()

  /// The addresses generated stubs use.
  static var layout: CallChainLayout {
    let base = UInt32(UInt(bitPattern: storage))
    return CallChainLayout(
      depth: base, records: base + 4, lockFlags: base + 4 + 8 * CallStubs.chainCapacity,
      innerReturns: base + 4 + 12 * CallStubs.chainCapacity,
      threadNumber: base + 4 + 16 * CallStubs.chainCapacity)
  }

  /// The running thread's number, as lock stubs see it.
  static var threadNumber: UInt32 {
    get { storage[1 + 4 * capacity] }
    set { storage[1 + 4 * capacity] = newValue }
  }

  /// Whether the call at `level` took its server's lock.
  static func tookLock(at level: Int) -> Bool { storage[1 + 2 * capacity + level] != 0 }

  /// Sets whether the call at `level` holds its server's lock.
  static func setTookLock(_ value: Bool, at level: Int) { storage[1 + 2 * capacity + level] = value ? 1 : 0 }

  /// Copies the running thread's chain into `buffer` (`words` words). One record past
  /// the depth is copied too: a gate interrupted between writing a record and counting it
  /// must find it again.
  static func save(into buffer: UnsafeMutablePointer<UInt32>) {
    copy(from: storage, to: buffer, used: min(depth + 1, capacity))
  }

  /// Makes the chain in `buffer` the running one.
  static func restore(from buffer: UnsafeMutablePointer<UInt32>) {
    copy(from: buffer, to: storage, used: min(Int(buffer[0]) + 1, capacity))
  }

  /// Copies the depth and the first `used` records, lock flags and return slots (with
  /// the kernel's word-wise memcpy: this runs on every thread switch).
  private static func copy(
    from source: UnsafeMutablePointer<UInt32>, to destination: UnsafeMutablePointer<UInt32>, used: Int
  ) {
    destination[0] = source[0]
    let word = MemoryLayout<UInt32>.size
    _ = memcpy(destination + 1, source + 1, UInt32(2 * used * word))
    _ = memcpy(destination + 1 + 2 * capacity, source + 1 + 2 * capacity, UInt32(used * word))
    _ = memcpy(destination + 1 + 3 * capacity, source + 1 + 3 * capacity, UInt32(used * word))
  }

  /// Calls currently recorded.
  static var depth: Int { Int(storage[0]) }

  /// The server of record `level` (0 = outermost), nil for the kernel's own objects (a
  /// record's callee word is 0, or a kernel object's context with bit 0 set).
  static func server(at level: Int) -> Server? {
    let address = storage[1 + 2 * level + 1]
    return address == 0 || address & 1 != 0
      ? nil : Unmanaged<Server>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(address))!).takeUnretainedValue()
  }

  /// The server whose code is running, or nil when the kernel itself is. Records of
  /// kernel services (value 0) are skipped: a service acts for the server that called it.
  static var currentServer: Server? { server(below: depth) }

  /// The innermost server among the records below `level` (nil: the kernel).
  static func server(below level: Int) -> Server? {
    var level = level - 1
    while level >= 0 {
      if let server = server(at: level) { return server }
      level -= 1
    }
    return nil
  }

  /// Enters `server` from kernel code; false if the chain is full.
  static func push(_ server: Server?) -> Bool {
    let level = depth
    guard level < Int(CallStubs.chainCapacity) else { return false }
    storage[1 + 2 * level] = 0
    storage[1 + 2 * level + 1] =
      server.map { UInt32(UInt(bitPattern: Unmanaged.passUnretained($0).toOpaque())) } ?? 0
    storage[1 + 2 * Int(CallStubs.chainCapacity) + level] = 0
    storage[0] = UInt32(level + 1)
    return true
  }

  /// Leaves the innermost server entered with `push`.
  static func pop() { storage[0] -= 1 }

  /// Drops the records from `level` up (a contained trap abandoned those calls).
  static func unwind(to level: Int) { storage[0] = UInt32(truncatingIfNeeded: level) }

  /// The servers in a saved chain (a thread that is not running), innermost first, as
  /// "A <- B <- kernel".
  static func describe(saved buffer: UnsafeMutablePointer<UInt32>) -> KernelMessage {
    var text = KernelMessage()
    var level = Int(buffer[0]) - 1
    while level >= 0 {
      let address = buffer[1 + 2 * level + 1]
      if address == 0 || address & 1 != 0 {
        text.append("kernel service")
      } else {
        text.append(
          message: Unmanaged<Server>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(address))!)
            .takeUnretainedValue().name)
      }
      text.append(" <- ")
      level -= 1
    }
    text.append("kernel")
    return text
  }

  /// Whether any thread, running or not, has a call into `server` in its chain: then the
  /// server's code, words and image must stay (Server.unload waits). Interrupts must be
  /// disabled, so no chain changes during the scan.
  static func anyThreadInside(_ server: Server) -> Bool {
    anyThreadInside(chainValue: UInt32(UInt(bitPattern: Unmanaged.passUnretained(server).toOpaque())))
  }

  /// Whether any thread has a record whose callee word is `value` (a Server, or a kernel
  /// object's tagged context, see KernelObject.entryWords).
  static func anyThreadInside(chainValue value: UInt32) -> Bool {
    func contains(_ buffer: UnsafeMutablePointer<UInt32>) -> Bool {
      let depth = min(Int(truncatingIfNeeded: buffer[0]), capacity)
      for level in 0..<depth where buffer[1 + 2 * level + 1] == value { return true }
      return false
    }
    if contains(storage) { return true }
    return Scheduler.anyThread { thread in
      thread !== Scheduler.current && thread.state != .finished && contains(thread.chain)
    }
  }

  /// The running thread's chain, as `describe(saved:)` gives it.
  static func describeRunning() -> KernelMessage { describe(saved: storage) }

  /// Prints the chain of servers, innermost first (a "server backtrace").
  static func printServerBacktrace() {
    guard depth > 0 else { return }
    Panic.line("server backtrace (innermost first):")
    var level = depth - 1
    while level >= 0 {
      if let server = server(at: level) {
        Panic.line("  #\(depth - 1 - level) \(server.name)")
      } else {
        Panic.line("  #\(depth - 1 - level) kernel")
      }
      level -= 1
    }
  }
}
