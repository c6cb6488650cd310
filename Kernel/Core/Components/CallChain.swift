// CallChain: the record of which servers the running thread is inside, innermost last.
//
// Contract: generated method stubs push a record (the caller's return address and the
// callee) on entry and pop it on return; the kernel pushes records itself when it enters
// a server directly (start, destroy, marshaled calls). A gate's record names the object
// called, which pins it (`value(of:)`); the kernel's own name a server. The top record
// names the server whose code is running, which is how allocation and exports are
// charged to the right server. The storage has a fixed address because stubs have it baked in; each thread
// has its own chain, which the scheduler copies out of and into this storage when it
// switches threads (`save`, `restore`). The storage also holds the running thread's
// number, which lock stubs write into the locks they take.

import KernelCore

enum CallChain {
  // Layout: word 0 depth; then `chainCapacity` records of 2 words; then a lock flag
  // each; then a return slot each for lock stubs; then the running thread's number.
  static let words = 2 + 4 * Int(CallABI.chainCapacity)
  private static let capacity = Int(CallABI.chainCapacity)
  // In the kernel image (Calls.S), zeroed at boot: a fixed address with no lazy
  // initialization to check on each use (a thread switch uses it twice).
  private static var storage: UnsafeMutablePointer<UInt32> { Processor.callChainStorage() }

  /// The addresses generated stubs use.
  static var layout: CallChainLayout {
    let base = UInt32(UInt(bitPattern: storage))
    return CallChainLayout(
      depth: base, records: base + 4, lockFlags: base + 4 + 8 * CallABI.chainCapacity,
      innerReturns: base + 4 + 12 * CallABI.chainCapacity,
      threadNumber: base + 4 + 16 * CallABI.chainCapacity)
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

  /// Copies the depth and the first `used` records, lock flags and return slots, four
  /// words per call, in one loop with wrapping index arithmetic (this runs twice on every
  /// thread switch: three `memcpy` calls cost about 100 instructions more per switch).
  private static func copy(
    from source: UnsafeMutablePointer<UInt32>, to destination: UnsafeMutablePointer<UInt32>, used: Int
  ) {
    destination[0] = source[0]
    let flags = 1 &+ 2 &* capacity
    let returns = 1 &+ 3 &* capacity
    var index = 0
    while index < used {
      let record = 1 &+ 2 &* index
      destination[record] = source[record]
      destination[record &+ 1] = source[record &+ 1]
      destination[flags &+ index] = source[flags &+ index]
      destination[returns &+ index] = source[returns &+ index]
      index &+= 1
    }
  }

  /// Calls currently recorded.
  static var depth: Int { Int(storage[0]) }

  /// The server of record `level` (0 = outermost), nil for the kernel's own objects.
  static func server(at level: Int) -> Server? { decode(storage[1 + 2 * level + 1]).server }

  /// What a record's callee word names (see `value(of:)`): the callee server, and the
  /// object called if the record was made by a gate. A word of 0 is a kernel service
  /// entered by the kernel; a kernel service's object has no server.
  static func decode(_ word: UInt32) -> (server: Server?, object: KernelObject?) {
    guard word != 0 else { return (nil, nil) }
    guard word & 1 != 0 else {
      return (
        Unmanaged<Server>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(word))!).takeUnretainedValue(), nil
      )
    }
    let object = Unmanaged<KernelObject>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(word & ~1))!)
      .takeUnretainedValue()
    return (object.owner, object)
  }

  /// The callee word a gate writes for a call into `object`: its address with bit 0 set
  /// (a Server, which the kernel's own records name, has bit 0 clear). Naming the object,
  /// not only its server, is what pins it: an object whose last reference goes while a
  /// chain names it is destroyed or freed only once none does.
  static func value(of object: KernelObject) -> UInt32 {
    UInt32(UInt(bitPattern: Unmanaged.passUnretained(object).toOpaque())) | 1
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
    guard level < Int(CallABI.chainCapacity) else { return false }
    storage[1 + 2 * level] = 0
    storage[1 + 2 * level + 1] =
      server.map { UInt32(UInt(bitPattern: Unmanaged.passUnretained($0).toOpaque())) } ?? 0
    storage[1 + 2 * Int(CallABI.chainCapacity) + level] = 0
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
      if let server = decode(buffer[1 + 2 * level + 1]).server {
        text.append(message: server.name)
      } else {
        text.append("kernel service")
      }
      text.append(" <- ")
      level -= 1
    }
    text.append("kernel")
    return text
  }

  /// Whether any thread, running or not, has a call into `server` (or into one of its
  /// objects) in its chain: then the server's code, words and image must stay
  /// (Server.unload waits). Interrupts must be disabled, so no chain changes during the
  /// scan.
  static func anyThreadInside(_ server: Server) -> Bool {
    let value = UInt32(UInt(bitPattern: Unmanaged.passUnretained(server).toOpaque()))
    return anyRecord { word in word == value || (word & 1 != 0 && decode(word).server === server) }
  }

  /// Whether any thread has a call into `object` in its chain (interrupts disabled).
  static func anyThreadInside(_ object: KernelObject) -> Bool {
    let value = value(of: object)
    return anyRecord { $0 == value }
  }

  /// Whether the running thread's chain has a call into `server`.
  static func isInChain(_ server: Server) -> Bool {
    for level in 0..<depth where CallChain.server(at: level) === server { return true }
    return false
  }

  /// The innermost server in `thread`'s (saved) chain: the one whose code the thread runs
  /// or waits in (kernel services act for their caller, so they are skipped); nil for
  /// the kernel. Interrupts disabled.
  static func innermostServer(of thread: Thread) -> Server? {
    let buffer = thread === Scheduler.current ? storage : thread.chain
    var level = min(Int(truncatingIfNeeded: buffer[0]), capacity) - 1
    while level >= 0 {
      if let server = decode(buffer[1 + 2 * level + 1]).server { return server }
      level -= 1
    }
    return nil
  }

  /// The level and callee word of the innermost record naming a server in `thread`'s
  /// (saved) chain, and that server (see `innermostServer(of:)`). Interrupts disabled.
  static func innermostServerRecord(of thread: Thread) -> (level: Int, word: UInt32, server: Server)? {
    let buffer = thread === Scheduler.current ? storage : thread.chain
    var level = min(Int(truncatingIfNeeded: buffer[0]), capacity) - 1
    while level >= 0 {
      let word = buffer[1 + 2 * level + 1]
      if let server = decode(word).server { return (level, word, server) }
      level -= 1
    }
    return nil
  }

  /// Whether the running thread's chain still holds, at `level`, a record with callee
  /// `word` (three loads: no record is decoded).
  static func holds(level: Int, word: UInt32) -> Bool {
    level < depth && storage[1 + 2 * level + 1] == word
  }

  /// Whether `test` holds for the callee word of any record of any thread's chain.
  private static func anyRecord(_ test: (UInt32) -> Bool) -> Bool {
    func contains(_ buffer: UnsafeMutablePointer<UInt32>) -> Bool {
      let depth = min(Int(truncatingIfNeeded: buffer[0]), capacity)
      for level in 0..<depth where test(buffer[1 + 2 * level + 1]) { return true }
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
