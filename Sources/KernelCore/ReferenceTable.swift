// ReferenceTable: a server's (or the kernel's) table of references; handles are indices.
//
// Contract: handle 0 is the null reference and never valid. Every entry holds one object
// and a count, in the layout the generated code reads (CallABI.Entry; one machine word
// per field). A free entry (handle 0's too) has method count 0, so gates refuse it, and
// count `CallABI.freeCount`, so acquire and release do.
// Lifetime rules, all enforced here:
//   - an entry's count is how often the table's owner holds the reference (acquire adds
//     one, release removes one); at zero the entry is freed;
//   - an object counts the entries holding it, in any table, and is destroyed when none
//     do (`ReferencedObject.destroy`);
//   - an entry holding an object of another owner is an inbound reference of that owner;
//     when an owner has none left it is unloaded (`ReferenceOwner.unload`), which releases
//     its own table in turn. References an owner holds to its own objects do not keep it
//     loaded. A cycle of owners referencing each other keeps all of them loaded until one
//     releases its reference (the kernel does not collect cycles).
// The table grows by doubling up to `maximumCapacity`; generated code reads its base and
// capacity through a two-word header whose address never changes. An array the table
// grew out of is kept until the table is deallocated (linked from the unused entry of
// handle 0): generated acquire and release code of another thread may still be reading it.

/// Something that owns a reference table and whose objects others may reference (a server).
public protocol ReferenceOwner: AnyObject {
  /// Entries in other owners' tables (or the kernel's) that hold this owner's objects.
  var inboundReferences: Int { get set }
  /// Called when `inboundReferences` drops to zero.
  func unload()
  /// Called when the entry of `handle` in the owner's own table is about to be freed (its
  /// object is still there): code generated for the handle must stop using the entry.
  func entryFreeing(handle: UInt32)
}

extension ReferenceOwner {
  /// Nothing is generated per handle by default.
  public func entryFreeing(handle: UInt32) {}
}

/// An object references point to.
public protocol ReferencedObject: AnyObject {
  associatedtype Owner: ReferenceOwner
  /// The owner implementing the object; nil for objects of the kernel itself.
  var owner: Owner? { get }
  /// Entries, in all tables, holding the object.
  var references: Int { get set }
  /// The words generated code reads: context, method vector, digest, method count,
  /// call-chain value (see CallABI.Entry).
  var entryWords: (context: UInt, methods: UInt, digest: UInt, methodCount: UInt, chainValue: UInt) { get }
  /// Called when no entry holds the object any more.
  func destroy()
}

/// The table of references of one owner.
public struct ReferenceTable<Object: ReferencedObject> {
  private typealias Word = CallABI.Entry
  private static var wordsPerEntry: Int { CallABI.entryWords }
  // A free entry keeps the next free handle in its context word.
  private static var nextFree: Int { CallABI.Entry.context }
  private static var initialCapacity: Int { 32 }
  /// The most entries a table may have.
  public static var maximumCapacity: Int { 4096 }

  /// header[0] = the entries' address, header[1] = the capacity.
  public let header: UnsafeMutablePointer<UInt>
  private var ownerReference: Unmanaged<Object.Owner>?
  private var firstFree: UInt = 0
  /// Entries in use.
  public private(set) var used = 0

  /// An empty table of `owner` (nil: the kernel's own table).
  public init(owner: Object.Owner?) {
    ownerReference = owner.map { Unmanaged.passUnretained($0) }
    header = .allocate(capacity: 2)
    header[0] = 0
    header[1] = 0
  }

  /// Sets the owner once it exists (an owner creates its table while initializing).
  public mutating func attach(owner: Object.Owner) { ownerReference = Unmanaged.passUnretained(owner) }

  /// The table's owner, unretained (the owner owns the table, not the reverse).
  public var owner: Object.Owner? { ownerReference?.takeUnretainedValue() }

  /// The number of entries allocated.
  public var capacity: Int { Int(truncatingIfNeeded: header[1]) }

  /// Where generated code finds the table.
  public var layout: TableLayout {
    let address = UInt32(truncatingIfNeeded: UInt(bitPattern: header))
    return TableLayout(base: address, capacity: address + UInt32(MemoryLayout<UInt>.size))
  }

  private var entries: UnsafeMutablePointer<UInt>? { UnsafeMutablePointer(bitPattern: header[0]) }

  // In the entry of handle 0 (never used): the array this one replaced.
  private static var retiredLink: Int { CallABI.entryWords - 1 }

  /// Frees the table's memory, the arrays it grew out of too; every entry must have been
  /// released.
  public func deallocate() {
    var array = entries
    while let current = array {
      array = UnsafeMutablePointer(bitPattern: current[Self.retiredLink])
      current.deallocate()
    }
    header.deallocate()
  }

  /// Allocates entries for `entries` handles now (at least the first ones), so a later
  /// heap measurement does not see the table grow, and it never moves after.
  public mutating func reserve(entries: Int = 1) {
    let target = min(max(entries, Self.initialCapacity), Self.maximumCapacity)
    if capacity < target { _ = grow(to: target) }
  }

  /// The index of `handle`'s entry, if the handle (a word from a server: any value) is
  /// inside the table.
  private func index(_ handle: UInt32) -> Int? {
    guard handle != 0, UInt(handle) < header[1] else { return nil }
    return Int(truncatingIfNeeded: handle)  // below the capacity, so it fits
  }

  /// The object behind `handle`, or nil if the handle is not a valid entry here.
  public func object(_ handle: UInt32) -> Object? {
    guard let index = index(handle), let entries else { return nil }
    let address = entries[index * Self.wordsPerEntry + Word.object]
    guard address != 0 else { return nil }
    return Unmanaged<Object>.fromOpaque(UnsafeRawPointer(bitPattern: address)!).takeUnretainedValue()
  }

  /// The count of `handle` (0 if invalid).
  public func count(_ handle: UInt32) -> Int {
    guard object(handle) != nil, let index = index(handle) else { return 0 }
    return Int(truncatingIfNeeded: entries![index * Self.wordsPerEntry + Word.count])
  }

  /// Installs `object` with count 1; returns the handle, or 0 if the table is full.
  public mutating func install(_ object: Object) -> UInt32 {
    if firstFree == 0 && !grow() { return 0 }
    let handle = firstFree
    let entry = entries! + Int(truncatingIfNeeded: handle) * Self.wordsPerEntry
    firstFree = entry[Self.nextFree]
    let words = object.entryWords
    entry[Word.context] = words.context
    entry[Word.methods] = words.methods
    entry[Word.digest] = words.digest
    entry[Word.methodCount] = words.methodCount
    entry[Word.server] = words.chainValue
    entry[Word.object] = UInt(bitPattern: Unmanaged.passRetained(object).toOpaque())
    entry[Word.count] = 1
    used += 1
    object.references += 1
    if let server = object.owner, server !== owner { server.inboundReferences += 1 }
    return UInt32(handle)
  }

  /// Adds a count to `handle`; false if the handle is not valid or its count is at
  /// `CallABI.largestCount`.
  public func acquire(_ handle: UInt32) -> Bool {
    guard object(handle) != nil, let index = index(handle) else { return false }
    let count = entries! + index * Self.wordsPerEntry + Word.count
    guard count.pointee < UInt(CallABI.largestCount) else { return false }
    count.pointee += 1
    return true
  }

  /// Removes a count from `handle`; at zero the entry is freed, and the lifetime rules
  /// above may destroy the object and unload its owner. False if the handle is not valid.
  /// A live entry whose count is already 0 (generated release code counted it down and is
  /// on its way to `freeIfUnheld`), or for a moment below (a server releasing what it does
  /// not hold, which generated code undoes), holds nothing to release: false.
  public mutating func release(_ handle: UInt32) -> Bool {
    guard object(handle) != nil, let index = index(handle) else { return false }
    let count = entries! + index * Self.wordsPerEntry + Word.count
    guard count.pointee != 0 && count.pointee <= UInt(CallABI.largestCount) else { return false }
    count.pointee -= 1
    freeIfUnheld(handle)
    return true
  }

  /// Frees the entry of `handle` if its count is zero (generated release code has
  /// already decremented it), applying the lifetime rules. False if the handle is not
  /// valid. An entry acquired again in the meantime stays.
  @discardableResult
  public mutating func freeIfUnheld(_ handle: UInt32) -> Bool {
    guard let object = object(handle), let index = index(handle) else { return false }
    let entry = entries! + index * Self.wordsPerEntry
    guard entry[Word.count] == 0 else { return true }
    owner?.entryFreeing(handle: handle)
    for word in 0..<Self.wordsPerEntry { entry[word] = 0 }
    entry[Word.count] = UInt(CallABI.freeCount)
    entry[Self.nextFree] = firstFree
    firstFree = UInt(handle)
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

  /// Releases every count of every entry at once (when the owner is unloaded), however
  /// large the counts are.
  public mutating func releaseAll() {
    var handle: UInt32 = 1
    while UInt(handle) < header[1] {
      if object(handle) != nil, let index = index(handle) {
        entries![index * Self.wordsPerEntry + Word.count] = 0
        freeIfUnheld(handle)
      }
      handle += 1
    }
  }

  /// Grows to `target` entries (by default: doubles); false at the maximum.
  private mutating func grow(to target: Int? = nil) -> Bool {
    let oldCapacity = capacity
    let newCapacity = target ?? (oldCapacity == 0 ? Self.initialCapacity : oldCapacity * 2)
    guard newCapacity > oldCapacity, newCapacity <= Self.maximumCapacity else { return false }
    let newEntries = UnsafeMutablePointer<UInt>.allocate(capacity: newCapacity * Self.wordsPerEntry)
    newEntries.initialize(repeating: 0, count: newCapacity * Self.wordsPerEntry)
    if let entries {
      newEntries.update(from: entries, count: oldCapacity * Self.wordsPerEntry)
      newEntries[Self.retiredLink] = UInt(bitPattern: entries)  // freed with the table
    }
    // Chain the new entries (handle 0 stays reserved as null), all free.
    let first = max(oldCapacity, 1)
    for handle in oldCapacity..<newCapacity {
      newEntries[handle * Self.wordsPerEntry + Word.count] = UInt(CallABI.freeCount)
    }
    for handle in first..<newCapacity {
      newEntries[handle * Self.wordsPerEntry + Self.nextFree] =
        handle + 1 < newCapacity ? UInt(handle + 1) : firstFree
    }
    firstFree = UInt(first)
    header[0] = UInt(bitPattern: newEntries)
    header[1] = UInt(newCapacity)
    return true
  }
}
