// ReferenceTableTests: handles, counts, growth and the lifetime rules of references,
// with stand-ins for servers and objects.

import Testing

@testable import KernelCore

final class FakeServer: ReferenceOwner {
  let name: String
  var inboundReferences = 0
  var unloaded = false
  var table: ReferenceTable<FakeObject>!
  var log: Log

  final class Log {
    var events: [String] = []
  }

  init(_ name: String, log: Log) {
    self.name = name
    self.log = log
    table = ReferenceTable(owner: nil)
    table.attach(owner: self)
  }

  func unload() {
    unloaded = true
    log.events.append("unload \(name)")
    table.releaseAll()
  }
}

final class FakeObject: ReferencedObject {
  let owner: FakeServer?
  let name: String
  var references = 0
  var destroyed = false

  init(_ name: String, owner: FakeServer?) {
    self.name = name
    self.owner = owner
  }

  var entryWords: (context: UInt, methods: UInt, digest: UInt, methodCount: UInt, chainValue: UInt) {
    (0xC0, 0x100, 0xD1, 3, 0x5E)
  }

  func destroy() {
    destroyed = true
    owner?.log.events.append("destroy \(name)")
  }
}

@Suite struct ReferenceTableTests {
  let log = FakeServer.Log()

  @Test func handlesAreValidOnlyInTheirTable() {
    let server = FakeServer("a", log: log)
    let object = FakeObject("o", owner: server)
    var kernel = ReferenceTable<FakeObject>(owner: nil)
    let handle = kernel.install(object)
    #expect(handle == 1, "handle 0 is the null reference")
    #expect(kernel.object(handle) === object)
    #expect(kernel.object(0) == nil && kernel.object(2) == nil && kernel.object(99_999) == nil)
    #expect(server.table.object(handle) == nil, "another table does not know the handle")
    let released = kernel.release(7)
    #expect(!kernel.acquire(7) && !released)
  }

  /// Counts generated code left behind (a count already at 0 on its way to the kernel, or
  /// any count a server piled up) neither trap nor stall the kernel's own release.
  @Test func countsGeneratedCodeLeftAreReleasedWithoutTrapOrLoop() {
    let server = FakeServer("a", log: log)
    let object = FakeObject("o", owner: nil)
    let handle = server.table.install(object)
    let count =
      UnsafeMutablePointer<UInt>(bitPattern: server.table.header[0])! + Int(handle)
      * CallABI.entryWords + CallABI.Entry.count
    count.pointee = 0  // generated release counted the last one down
    let released = server.table.release(handle)
    #expect(!released, "nothing is held to release")
    #expect(server.table.object(handle) === object && !object.destroyed)
    count.pointee = UInt(UInt32.max)
    server.table.releaseAll()
    #expect(object.destroyed && server.table.object(handle) == nil && server.table.used == 0)
  }

  @Test func entriesCarryWhatGeneratedCodeReads() {
    var table = ReferenceTable<FakeObject>(owner: nil)
    let handle = table.install(FakeObject("o", owner: nil))
    let entry = UnsafeMutablePointer<UInt>(bitPattern: table.header[0])! + Int(handle) * CallABI.entryWords
    #expect(entry[CallABI.Entry.context] == 0xC0 && entry[CallABI.Entry.methods] == 0x100)
    #expect(entry[CallABI.Entry.digest] == 0xD1 && entry[CallABI.Entry.methodCount] == 3)
    #expect(entry[CallABI.Entry.server] == 0x5E && entry[CallABI.Entry.count] == 1)
    #expect(table.capacity == Int(table.header[1]))
    _ = table.release(handle)
    #expect(entry[CallABI.Entry.methodCount] == 0, "a free entry has no methods, so gates refuse it")
  }

  @Test func countsAcquireAndReleaseUntilTheObjectIsDestroyed() {
    let server = FakeServer("fs", log: log)
    let object = FakeObject("dir", owner: server)
    var client = ReferenceTable<FakeObject>(owner: nil)
    let handle = client.install(object)
    #expect(client.acquire(handle) && client.count(handle) == 2)
    #expect(object.references == 1, "the object counts entries, not counts")
    #expect(server.inboundReferences == 1)
    let first = client.release(handle)
    #expect(first && !object.destroyed)
    let second = client.release(handle)
    #expect(second && object.destroyed)
    #expect(client.object(handle) == nil, "the handle is gone")
    let third = client.release(handle)
    #expect(!third, "a released handle cannot be released again")
  }

  @Test func anObjectLivesWhileAnyTableHoldsIt() {
    let server = FakeServer("fs", log: log)
    let object = FakeObject("file", owner: server)
    var first = ReferenceTable<FakeObject>(owner: nil)
    let other = FakeServer("client", log: log)
    let a = first.install(object)
    let b = other.table.install(object)
    #expect(object.references == 2 && server.inboundReferences == 2)
    _ = first.release(a)
    #expect(!object.destroyed && !server.unloaded)
    _ = other.table.release(b)
    #expect(object.destroyed && server.unloaded)
    #expect(log.events == ["destroy file", "unload fs"])
  }

  @Test func referencesToOwnObjectsDoNotKeepAServerLoaded() {
    let server = FakeServer("fs", log: log)
    let root = FakeObject("root", owner: server)
    let own = server.table.install(root)  // the server keeps its root directory
    var kernel = ReferenceTable<FakeObject>(owner: nil)
    let main = kernel.install(FakeObject("main", owner: server))
    #expect(server.inboundReferences == 1)
    _ = kernel.release(main)
    // Unloading released the server's own table, so the root went too.
    #expect(server.unloaded && root.destroyed)
    #expect(server.table.object(own) == nil)
  }

  @Test func cyclesBetweenServersKeepThemLoaded() {
    let a = FakeServer("a", log: log)
    let b = FakeServer("b", log: log)
    var kernel = ReferenceTable<FakeObject>(owner: nil)
    let mainA = kernel.install(FakeObject("a.main", owner: a))
    _ = a.table.install(FakeObject("b.thing", owner: b))
    _ = b.table.install(FakeObject("a.thing", owner: a))
    _ = kernel.release(mainA)
    #expect(!a.unloaded && !b.unloaded, "documented: the kernel does not collect cycles")
  }

  @Test func growsReusesFreedHandlesAndStopsAtItsLimit() {
    var table = ReferenceTable<FakeObject>(owner: nil)
    var handles: [UInt32] = []
    for index in 0..<100 { handles.append(table.install(FakeObject("o\(index)", owner: nil))) }
    #expect(Set(handles).count == 100 && !handles.contains(0))
    #expect(table.capacity >= 101 && table.used == 100)
    _ = table.release(handles[10])
    let reused = table.install(FakeObject("again", owner: nil))
    #expect(reused == handles[10], "freed handles are reused")
    var failures = 0
    while table.used < ReferenceTable<FakeObject>.maximumCapacity - 1 {
      if table.install(FakeObject("fill", owner: nil)) == 0 { failures += 1 }
    }
    #expect(failures == 0)
    let refused = table.install(FakeObject("one too many", owner: nil))
    #expect(refused == 0, "a full table refuses, it does not crash")
  }
}
