// ReferenceTable: a server's (or the kernel's) table of references: handles are indices.
//
// Contract: handle 0 is the null reference and never valid. Every entry holds one
// object and a count, in the layout generated code reads (CallStubs.Entry). A free entry
// has method count 0, so gates and acquire/release refuse it. An entry's count is how
// often its owner holds the reference; an object counts the entries holding it and is
// destroyed when none do. An entry holding another server's object is an inbound
// reference of that server; when a server has none left it is unloaded. The table grows by doubling; generated code
// reads its base and capacity through a two-word header with a fixed address.

import KernelCore

struct ReferenceTable {
  private typealias Word = CallStubs.Entry
  private static let wordsPerEntry = CallStubs.entryWords
  // A free entry keeps the next free handle in its context word.
  private static let nextFree = CallStubs.Entry.context
  private static let initialCapacity = 32
  /// The most entries a table may have.
  static let maximumCapacity = 4096

  /// header[0] = entries' address, header[1] = capacity.
  let header: UnsafeMutablePointer<UInt32>
  // The owner, unretained: the server owns its table, not the other way round.
  private var ownerReference: Unmanaged<Server>?
  /// The table's owner (nil for the kernel's table).
  var owner: Server? { ownerReference?.takeUnretainedValue() }
  private var firstFree: UInt32 = 0
  /// Entries in use.
  private(set) var used = 0

  init(owner: Server?) {
    ownerReference = owner.map { Unmanaged.passUnretained($0) }
    header = .allocate(capacity: 2)
    header[0] = 0
    header[1] = 0
  }

  /// Sets the owner once the server object exists.
  mutating func attach(owner: Server) { ownerReference = Unmanaged.passUnretained(owner) }

  private var entries: UnsafeMutablePointer<UInt32>? { UnsafeMutablePointer(bitPattern: UInt(header[0])) }
  var capacity: Int { Int(header[1]) }

  /// Where generated code finds the table.
  var layout: TableLayout {
    let address = UInt32(UInt(bitPattern: header))
    return TableLayout(base: address, capacity: address + 4)
  }

  /// Allocates the first entries now (the kernel's table, before it measures its heap).
  mutating func reserve() { if capacity == 0 { _ = grow() } }

  /// Frees the table's memory; every entry must have been released.
  func deallocate() {
    entries?.deallocate()
    header.deallocate()
  }

  /// The object behind `handle`, or nil if the handle is not valid here.
  func object(_ handle: UInt32) -> KernelObject? {
    guard handle != 0, Int(handle) < capacity, let entries else { return nil }
    let address = entries[Int(handle) * Self.wordsPerEntry + Word.object]
    guard address != 0 else { return nil }
    return Unmanaged<KernelObject>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(address))!).takeUnretainedValue()
  }

  /// Installs `object` with count 1; returns the handle, or 0 if the table is full.
  mutating func install(_ object: KernelObject) -> UInt32 {
    if firstFree == 0 && !grow() { return 0 }
    let handle = firstFree
    let entry = entries! + Int(handle) * Self.wordsPerEntry
    firstFree = entry[Self.nextFree]
    entry[Word.context] = object.context
    entry[Word.methods] = object.methods
    entry[Word.digest] = object.digest
    entry[Word.methodCount] = UInt32(object.interface.methodCount)
    entry[Word.server] = object.chainValue
    entry[Word.object] = UInt32(UInt(bitPattern: Unmanaged.passRetained(object).toOpaque()))
    entry[Word.count] = 1
    used += 1
    object.references += 1
    if let server = object.owner, server !== owner { server.inboundReferences += 1 }
    return handle
  }

  /// Adds a count to `handle`; false if the handle is not valid.
  func acquire(_ handle: UInt32) -> Bool {
    guard object(handle) != nil else { return false }
    entries![Int(handle) * Self.wordsPerEntry + Word.count] += 1
    return true
  }

  /// Removes a count from `handle`, freeing the entry at zero and destroying the object
  /// when nothing references it; false if the handle is not valid.
  mutating func release(_ handle: UInt32) -> Bool {
    guard let object = object(handle) else { return false }
    let entry = entries! + Int(handle) * Self.wordsPerEntry
    entry[Word.count] -= 1
    guard entry[Word.count] == 0 else { return true }
    for word in 0..<Self.wordsPerEntry { entry[word] = 0 }
    entry[Self.nextFree] = firstFree
    firstFree = handle
    used -= 1
    Unmanaged.passUnretained(object).release()
    object.references -= 1
    if object.references == 0 { object.destroy() }
    if let server = object.owner, server !== owner {
      server.inboundReferences -= 1
      if server.inboundReferences == 0 { server.unload() }
    }
    return true
  }

  /// Releases every count of every entry (when the owner is unloaded).
  mutating func releaseAll() {
    var handle: UInt32 = 1
    while Int(handle) < capacity {
      while object(handle) != nil { _ = release(handle) }
      handle += 1
    }
  }

  /// The count of `handle` (0 if invalid).
  func count(_ handle: UInt32) -> Int {
    guard object(handle) != nil else { return 0 }
    return Int(entries![Int(handle) * Self.wordsPerEntry + Word.count])
  }

  private mutating func grow() -> Bool {
    let oldCapacity = capacity
    let newCapacity = oldCapacity == 0 ? Self.initialCapacity : oldCapacity * 2
    guard newCapacity <= Self.maximumCapacity else { return false }
    let newEntries = UnsafeMutablePointer<UInt32>.allocate(capacity: newCapacity * Self.wordsPerEntry)
    newEntries.initialize(repeating: 0, count: newCapacity * Self.wordsPerEntry)
    if let entries {
      newEntries.update(from: entries, count: oldCapacity * Self.wordsPerEntry)
      entries.deallocate()
    }
    // Chain the new entries (handle 0 stays reserved as null).
    let first = max(oldCapacity, 1)
    for handle in first..<newCapacity {
      newEntries[handle * Self.wordsPerEntry + Self.nextFree] = handle + 1 < newCapacity ? UInt32(handle + 1) : firstFree
    }
    firstFree = UInt32(first)
    header[0] = UInt32(UInt(bitPattern: newEntries))
    header[1] = UInt32(newCapacity)
    return true
  }
}
