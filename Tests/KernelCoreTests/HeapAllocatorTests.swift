// HeapAllocatorTests: the boundary-tag heap over host memory, including randomized runs
// with a full consistency check after every operation.

import Testing

@testable import KernelCore

/// A heap backing over one host allocation, with a hard limit and a record of calls.
struct TestBacking: HeapBacking {
  let base: UInt
  let limit: Int
  var end: UInt
  var shrinkCalls = 0

  mutating func grow(at end: UInt, by byteCount: Int) -> Bool {
    precondition(end == self.end, "grow must continue at the current end")
    guard Int(end - base) + byteCount <= limit else { return false }
    self.end += UInt(byteCount)
    return true
  }

  mutating func shrink(from oldEnd: UInt, to newEnd: UInt) {
    precondition(oldEnd == end && newEnd < oldEnd && (oldEnd - newEnd) % 4096 == 0)
    end = newEnd
    shrinkCalls += 1
  }
}

final class HeapFixture {
  let memory: UnsafeMutableRawPointer
  var heap: HeapAllocator<TestBacking>

  init(limit: Int = 8 << 20) {
    memory = .allocate(byteCount: limit, alignment: 4096)
    let base = UInt(bitPattern: memory)
    heap = HeapAllocator(start: base, backing: TestBacking(base: base, limit: limit, end: base))
  }

  deinit { memory.deallocate() }

  func allocate(_ size: Int, alignment: Int = 16) -> UnsafeMutableRawPointer? {
    heap.allocate(byteCount: size, alignment: alignment)
  }
}

@Suite struct HeapAllocatorTests {
  @Test func allocatesAlignedDistinctBlocksAndReusesFreedOnes() throws {
    let fixture = HeapFixture()
    let first = try #require(fixture.allocate(100))
    let second = try #require(fixture.allocate(100))
    #expect(UInt(bitPattern: first) % 16 == 0 && UInt(bitPattern: second) % 16 == 0)
    #expect(abs(first.distance(to: second)) >= 100)
    try fixture.heap.free(first)
    let third = try #require(fixture.allocate(90))
    #expect(third == first, "a freed block of the right size is reused")
    #expect(fixture.heap.validate() == nil)
    #expect(fixture.heap.statistics.liveAllocations == 2)
  }

  @Test func honoursEveryPowerOfTwoAlignment() throws {
    let fixture = HeapFixture()
    var pointers: [UnsafeMutableRawPointer] = []
    for shift in 0...12 {
      let alignment = 1 << shift
      let pointer = try #require(fixture.allocate(1 + shift * 10, alignment: alignment))
      #expect(UInt(bitPattern: pointer) % UInt(max(alignment, 16)) == 0)
      pointers.append(pointer)
      #expect(fixture.heap.validate() == nil)
    }
    for pointer in pointers { try fixture.heap.free(pointer) }
    #expect(fixture.heap.statistics.bytesInUse == 0)
    #expect(fixture.allocate(8, alignment: 24) == nil, "alignment must be a power of two")
    #expect(fixture.allocate(8, alignment: 8192) == nil, "alignment above a page is refused")
  }

  @Test func mergesFreedNeighbours() throws {
    let fixture = HeapFixture(limit: 64 * 1024)
    let blocks = (0..<3).map { _ in fixture.allocate(16_000)! }
    for block in blocks { try fixture.heap.free(block) }
    #expect(fixture.heap.validate() == nil)
    // Only a merged block can satisfy this within a 64 KiB limit.
    let big = try #require(fixture.allocate(47_000))
    try fixture.heap.free(big)
  }

  @Test func growsOnDemandAndGivesPagesBack() throws {
    let fixture = HeapFixture()
    #expect(fixture.heap.statistics.regionBytes == 0, "nothing is taken before the first allocation")
    let big = try #require(fixture.allocate(1_000_000))
    #expect(fixture.heap.statistics.regionBytes >= 1_000_000)
    try fixture.heap.free(big)
    #expect(fixture.heap.backing.shrinkCalls == 1)
    #expect(fixture.heap.statistics.regionBytes <= HeapAllocator<TestBacking>.retainedBytes + 4096 * 2)
    #expect(fixture.heap.validate() == nil)
  }

  @Test func reportsExhaustionAndKeepsWorking() throws {
    let fixture = HeapFixture(limit: 256 * 1024)
    var pointers: [UnsafeMutableRawPointer] = []
    while let pointer = fixture.allocate(10_000) { pointers.append(pointer) }
    #expect(pointers.count >= 24)
    #expect(fixture.heap.statistics.failedAllocations == 1)
    #expect(fixture.allocate(2_000_000) == nil)
    try fixture.heap.free(pointers.removeLast())
    #expect(fixture.allocate(10_000) != nil, "freed memory is usable again")
    #expect(fixture.heap.validate() == nil)
  }

  @Test func refusesPointersItDidNotHandOut() throws {
    let fixture = HeapFixture()
    let pointer = try #require(fixture.allocate(64))
    let other = try #require(fixture.allocate(64))
    #expect(throws: HeapError.invalidPointer(UInt(bitPattern: pointer + 16))) {
      try fixture.heap.free(pointer + 16)
    }
    #expect(throws: HeapError.invalidPointer(UInt(bitPattern: pointer + 4))) {
      try fixture.heap.free(pointer + 4)
    }
    let outside = UnsafeMutableRawPointer(bitPattern: 0x1000)!
    #expect(throws: HeapError.invalidPointer(0x1000)) { try fixture.heap.free(outside) }
    try fixture.heap.free(pointer)
    #expect(throws: HeapError.invalidPointer(UInt(bitPattern: pointer))) { try fixture.heap.free(pointer) }
    try fixture.heap.free(other)
    // After merging, the first block's stale header must not pass for a live one.
    #expect(throws: HeapError.invalidPointer(UInt(bitPattern: pointer))) { try fixture.heap.free(pointer) }
    #expect(fixture.heap.validate() == nil)
  }

  @Test func validateDetectsCorruptedHeaders() throws {
    let fixture = HeapFixture()
    let pointer = try #require(fixture.allocate(64))
    _ = try #require(fixture.allocate(64))
    (pointer - 4).storeBytes(of: UInt32(0x12345), as: UInt32.self)  // overwrite size and flags
    #expect(fixture.heap.validate() != nil)
  }

  @Test(arguments: [1, 2, 3, 4])
  func survivesRandomWorkloads(seed: UInt64) throws {
    var random = SeededRandom(state: seed)
    let fixture = HeapFixture(limit: 4 << 20)
    var live: [(pointer: UnsafeMutableRawPointer, size: Int, fill: UInt8)] = []
    for step in 0..<3000 {
      if live.isEmpty || Int.random(in: 0..<100, using: &random) < 55 {
        let size =
          Bool.random(using: &random)
          ? Int.random(in: 0...128, using: &random) : Int.random(in: 0...40_000, using: &random)
        let alignment = 1 << Int.random(in: 0...12, using: &random)
        if let pointer = fixture.allocate(size, alignment: alignment) {
          #expect(UInt(bitPattern: pointer) % UInt(max(16, alignment)) == 0)
          let fill = UInt8(truncatingIfNeeded: step)
          pointer.initializeMemory(as: UInt8.self, repeating: fill, count: size)
          live.append((pointer, size, fill))
        }
      } else {
        let entry = live.remove(at: Int.random(in: 0..<live.count, using: &random))
        let bytes = UnsafeBufferPointer(
          start: entry.pointer.assumingMemoryBound(to: UInt8.self), count: entry.size)
        #expect(bytes.allSatisfy { $0 == entry.fill }, "allocation overwritten by another")
        try fixture.heap.free(entry.pointer)
      }
      let error = fixture.heap.validate()
      #expect(error == nil, "step \(step): \(error.map { $0.message.string } ?? "")")
      if error != nil { return }
    }
    for entry in live { try fixture.heap.free(entry.pointer) }
    #expect(fixture.heap.statistics.bytesInUse == 0)
    #expect(fixture.heap.statistics.liveAllocations == 0)
    #expect(fixture.heap.validate() == nil)
  }
}
