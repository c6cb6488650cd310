// FrameAllocatorTests: the physical frame allocator's rules, checked against a model.

import Testing

@testable import KernelCore

/// An allocator with its own bitmaps, for tests.
final class FrameAllocatorFixture {
  let usable: UnsafeMutableBufferPointer<UInt32>
  let free: UnsafeMutableBufferPointer<UInt32>
  var allocator: FrameAllocator

  init(frames: Int) {
    let words = FrameAllocator.wordsNeeded(frames: frames)
    usable = .allocate(capacity: words)
    free = .allocate(capacity: words)
    allocator = FrameAllocator(frameLimit: frames, usableBitmap: usable, freeBitmap: free)
  }

  deinit {
    usable.deallocate()
    free.deallocate()
  }
}

@Suite struct FrameAllocatorTests {
  let page: UInt64 = 4096

  @Test func usesOnlyWholeAvailableFramesBelowTheLimit() {
    let fixture = FrameAllocatorFixture(frames: 100)
    fixture.allocator.addAvailable(base: 100, length: 3 * page)  // frames 1 and 2 whole, 0 and 3 partial
    fixture.allocator.addAvailable(base: 98 * page, length: 10 * page)  // clipped at frame 100
    #expect(fixture.allocator.statistics == FrameStatistics(usableFrames: 4, freeFrames: 4))
    var got: [UInt64] = []
    while let frame = fixture.allocator.allocate() { got.append(frame) }
    #expect(got == [1 * page, 2 * page, 98 * page, 99 * page])
  }

  @Test func reservationsRemoveFramesTouchingTheRange() {
    let fixture = FrameAllocatorFixture(frames: 64)
    fixture.allocator.addAvailable(base: 0, length: 64 * page)
    fixture.allocator.reserve(base: 10 * page + 1, length: page)  // touches frames 10 and 11
    #expect(fixture.allocator.statistics.usableFrames == 62)
    #expect(!fixture.allocator.isFree(10 * page))
    #expect(!fixture.allocator.isFree(11 * page))
    #expect(fixture.allocator.isFree(12 * page))
    #expect(throws: FrameAllocatorError.notManaged(10 * page)) { try fixture.allocator.free(10 * page) }
  }

  @Test func refusesDoubleMisalignedAndForeignFrees() throws {
    let fixture = FrameAllocatorFixture(frames: 16)
    fixture.allocator.addAvailable(base: 4 * page, length: 4 * page)
    let allocated = fixture.allocator.allocate()
    let frame = try #require(allocated)
    try fixture.allocator.free(frame)
    #expect(throws: FrameAllocatorError.notAllocated(frame)) { try fixture.allocator.free(frame) }
    #expect(throws: FrameAllocatorError.misaligned(frame + 8)) { try fixture.allocator.free(frame + 8) }
    #expect(throws: FrameAllocatorError.notManaged(0)) { try fixture.allocator.free(0) }
    #expect(throws: FrameAllocatorError.notManaged(100 * page)) { try fixture.allocator.free(100 * page) }
    #expect(fixture.allocator.statistics == FrameStatistics(usableFrames: 4, freeFrames: 4))
  }

  @Test func allocatesAlignedContiguousRuns() throws {
    let fixture = FrameAllocatorFixture(frames: 256)
    fixture.allocator.addAvailable(base: 0, length: 256 * page)
    fixture.allocator.reserve(base: 17 * page, length: page)
    _ = fixture.allocator.allocate()  // frame 0
    let allocated = fixture.allocator.allocateContiguous(count: 16, alignmentFrames: 16)
    let run = try #require(allocated)
    #expect(run == 32 * page)  // 0..15 has frame 0 taken, 16..31 has 17 reserved
    for index in 0..<16 { #expect(!fixture.allocator.isFree(run + UInt64(index) * page)) }
    #expect(fixture.allocator.allocateContiguous(count: 300) == nil)
    #expect(fixture.allocator.statistics.freeFrames == 255 - 1 - 16)
  }

  @Test func matchesAModelUnderRandomOperations() throws {
    var random = SeededRandom(state: 42)
    let frames = 1000
    let fixture = FrameAllocatorFixture(frames: frames)
    fixture.allocator.addAvailable(base: 0, length: UInt64(frames) * page)
    fixture.allocator.reserve(base: 0, length: 50 * page)
    var allocated = Set<UInt64>()
    for _ in 0..<20_000 {
      if allocated.isEmpty || Bool.random(using: &random) {
        if let frame = fixture.allocator.allocate() {
          #expect(frame >= 50 * page && frame < UInt64(frames) * page)
          #expect(allocated.insert(frame).inserted, "frame handed out twice")
        } else {
          #expect(allocated.count == frames - 50)
        }
      } else {
        let frame = allocated.randomElement(using: &random)!
        allocated.remove(frame)
        try fixture.allocator.free(frame)
      }
      #expect(fixture.allocator.statistics.allocatedFrames == allocated.count)
    }
  }
}
