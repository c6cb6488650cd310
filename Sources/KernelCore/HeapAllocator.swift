// HeapAllocator: a boundary-tag heap with segregated free lists over a growable region.
//
// Contract: `allocate` returns 16-byte (or more strongly) aligned memory or nil when the
// backing store cannot grow; `free` returns a block for reuse, merges it with free
// neighbours, and gives whole pages at the top back to the backing store. A pointer that
// was not handed out (or was already freed) is refused with `HeapError`, never followed.
// The allocator stores all bookkeeping inside the region, so it allocates nothing itself.
//
// Layout: the region starts 16-aligned. Blocks start at addresses = 8 (mod 16) with an
// 8-byte header `previous block size (4) | size and flags (4)`, so payloads are 16-aligned.
// Sizes are multiples of 16; the low 4 bits of the second word hold a check pattern (0xA)
// and the in-use bit. A used, zero-size epilogue header ends the region. Free blocks hold
// the next and previous pointers of their free list in their payload.

/// Provides the memory behind a heap and takes it back.
public protocol HeapBacking {
  /// Makes `byteCount` more bytes usable at `end`, the current end of the region; returns
  /// false when no more memory can be had.
  mutating func grow(at end: UInt, by byteCount: Int) -> Bool
  /// Takes back the bytes from `newEnd` up to `oldEnd`.
  mutating func shrink(from oldEnd: UInt, to newEnd: UInt)
}

/// Why a heap operation was refused.
public enum HeapError: Error, Equatable, Sendable {
  /// The pointer does not designate a live allocation of this heap.
  case invalidPointer(UInt)
  /// Heap metadata at this address is inconsistent (found by `validate`).
  case corrupted(at: UInt)

  /// A one-line explanation.
  public var message: KernelMessage {
    switch self {
    case .invalidPointer(let address):
      "free of \(hex: address), which is not a live heap allocation"
    case .corrupted(let address): "heap metadata corrupted at \(hex: address)"
    }
  }
}

/// Counts describing a heap.
public struct HeapStatistics: Equatable, Sendable {
  /// Bytes of the region obtained from the backing store.
  public var regionBytes = 0
  /// Bytes in allocated blocks, headers included.
  public var bytesInUse = 0
  /// The highest `bytesInUse` seen.
  public var peakBytesInUse = 0
  /// Allocations not yet freed.
  public var liveAllocations = 0
  /// Allocations made since the heap was created.
  public var totalAllocations = 0
  /// Allocation requests that failed for lack of memory.
  public var failedAllocations = 0
}

/// A general-purpose allocator over memory supplied by `Backing`.
public struct HeapAllocator<Backing: HeapBacking> {
  /// The granule in which the region grows and shrinks.
  public static var pageSize: Int { 4096 }
  /// The largest alignment `allocate` accepts.
  public static var maximumAlignment: Int { 4096 }
  /// Free space at the top beyond which whole pages are returned to the backing store.
  public static var trimThreshold: Int { 64 * 1024 }
  /// Free space kept at the top after trimming, to avoid grow/shrink ping-pong.
  public static var retainedBytes: Int { 16 * 1024 }

  private static var headerSize: UInt { 8 }
  private static var minimumBlock: UInt { (8 + 2 * UInt(MemoryLayout<UInt>.size) + 15) & ~15 }
  private static var checkPattern: UInt32 { 0xA }
  private static var usedBit: UInt32 { 1 }
  private static var binCount: Int { 24 }

  /// The store the region comes from.
  public private(set) var backing: Backing
  /// The first address of the region.
  public let start: UInt
  private var top: UInt
  private var bins: InlineArray<24, UInt> = .init(repeating: 0)
  /// The current counts.
  public private(set) var statistics = HeapStatistics()

  /// An empty heap whose region will begin at `start` (rounded up to 16).
  public init(start: UInt, backing: Backing) {
    self.start = (start + 15) & ~15
    top = self.start
    self.backing = backing
  }

  // MARK: Allocation

  /// Returns `byteCount` bytes aligned to `alignment` (a power of two, at most
  /// `maximumAlignment`; 16 is always guaranteed), or nil if memory is exhausted or the
  /// request is invalid.
  public mutating func allocate(byteCount: Int, alignment: Int = 16) -> UnsafeMutableRawPointer? {
    guard byteCount >= 0, alignment > 0, alignment & (alignment - 1) == 0,
      alignment <= Self.maximumAlignment, byteCount <= Int(UInt32.max / 4)
    else {
      statistics.failedAllocations += 1
      return nil
    }
    let alignment = UInt(max(alignment, 16))
    let needed = max((UInt(byteCount) + Self.headerSize + 15) & ~15, Self.minimumBlock)
    for attempt in 0..<2 {
      if let (block, lead) = findFit(needed: needed, alignment: alignment) {
        let placed = place(block: block, lead: lead, needed: needed)
        return UnsafeMutableRawPointer(bitPattern: placed + Self.headerSize)
      }
      if attempt == 0 && !grow(atLeast: needed + alignment + Self.minimumBlock) { break }
    }
    statistics.failedAllocations += 1
    return nil
  }

  /// Returns the allocation at `pointer` to the heap.
  public mutating func free(_ pointer: UnsafeMutableRawPointer) throws(HeapError) {
    let address = UInt(bitPattern: pointer)
    guard address >= start + 16, address < top, address & 15 == 0 else {
      throw .invalidPointer(address)
    }
    var block = address - Self.headerSize
    var size = blockSize(block)
    let flags = flagBits(block)
    guard flags == Self.checkPattern | Self.usedBit, size >= Self.minimumBlock,
      size <= top - Self.headerSize - block, previousSize(block + size) == size
    else { throw .invalidPointer(address) }

    statistics.bytesInUse -= Int(size)
    statistics.liveAllocations -= 1
    // Mark the header free first, so a stale copy of it inside a merged block can never
    // pass the checks above on a second free of the same pointer.
    writeHeader(block, size: size, used: false)

    let next = block + size
    if !isUsed(next) {
      unlink(next)
      size += blockSize(next)
    }
    mergeWithPrevious(&block, &size)
    writeHeader(block, size: size, used: false)
    setPreviousSize(block + size, size)
    link(block)
    trimIfWorthwhile(lastFree: block)
  }

  /// Gives the whole region back to the backing store; every allocation becomes invalid.
  /// (Used when a server is unloaded: its heap goes with it.)
  public mutating func releaseAll() {
    if top != start { backing.shrink(from: top, to: start) }
    top = start
    bins = .init(repeating: 0)
    statistics.regionBytes = 0
    statistics.bytesInUse = 0
    statistics.liveAllocations = 0
  }

  // MARK: Checking

  /// Walks every block and free list and reports the first inconsistency, or nil.
  public func validate() -> HeapError? {
    guard top != start else { return nil }
    var block = start + Self.headerSize
    var previous: UInt = 0
    var previousWasFree = false
    var freeBlocks = 0
    var usedBytes: UInt = 0
    while true {
      guard block <= top - Self.headerSize, flagBits(block) & ~Self.usedBit == Self.checkPattern,
        previousSize(block) == previous
      else { return .corrupted(at: block) }
      let size = blockSize(block)
      if size == 0 {
        guard block == top - Self.headerSize, isUsed(block) else { return .corrupted(at: block) }
        break
      }
      guard size >= Self.minimumBlock, size <= top - Self.headerSize - block else {
        return .corrupted(at: block)
      }
      if isUsed(block) {
        usedBytes += size
        previousWasFree = false
      } else {
        guard !previousWasFree else { return .corrupted(at: block) }  // unmerged neighbours
        freeBlocks += 1
        previousWasFree = true
      }
      previous = size
      block += size
    }
    var linked = 0
    for bin in 0..<Self.binCount {
      var node = bins[bin]
      var back: UInt = 0
      while node != 0 {
        guard node >= start, node < top, !isUsed(node), linkPrevious(node) == back,
          binIndex(blockSize(node)) == bin, linked < freeBlocks
        else { return .corrupted(at: node) }
        linked += 1
        back = node
        node = linkNext(node)
      }
    }
    guard linked == freeBlocks, Int(usedBytes) == statistics.bytesInUse else {
      return .corrupted(at: start)
    }
    return nil
  }

  // MARK: Internals

  private func findFit(needed: UInt, alignment: UInt) -> (block: UInt, lead: UInt)? {
    var bin = binIndex(needed)
    while bin < Self.binCount {
      var block = bins[bin]
      while block != 0 {
        let size = blockSize(block)
        let payload = block + Self.headerSize
        var aligned = (payload + alignment - 1) & ~(alignment - 1)
        // A gap before the payload must be able to stand as a free block of its own.
        while aligned != payload && aligned - payload < Self.minimumBlock { aligned += alignment }
        let lead = aligned - payload
        if lead + needed <= size { return (block, lead) }
        block = linkNext(block)
      }
      bin += 1
    }
    return nil
  }

  private mutating func place(block: UInt, lead: UInt, needed: UInt) -> UInt {
    unlink(block)
    var block = block
    var size = blockSize(block)
    if lead > 0 {
      writeHeader(block, size: lead, used: false)
      link(block)
      block += lead
      size -= lead
      setPreviousSize(block, lead)
      writeHeader(block, size: size, used: false)
      setPreviousSize(block + size, size)
    }
    if size - needed >= Self.minimumBlock {
      let rest = block + needed
      setPreviousSize(rest, needed)
      writeHeader(rest, size: size - needed, used: false)
      setPreviousSize(rest + size - needed, size - needed)
      link(rest)
      size = needed
    }
    writeHeader(block, size: size, used: true)
    statistics.bytesInUse += Int(size)
    statistics.peakBytesInUse = max(statistics.peakBytesInUse, statistics.bytesInUse)
    statistics.liveAllocations += 1
    statistics.totalAllocations += 1
    return block
  }

  private mutating func grow(atLeast minimum: UInt) -> Bool {
    let first = top == start
    let pageMask = UInt(Self.pageSize) - 1
    let increment = (minimum + (first ? 16 : 0) + pageMask) & ~pageMask
    guard backing.grow(at: top, by: Int(increment)) else { return false }
    var block: UInt
    var size: UInt
    if first {
      block = start + Self.headerSize
      size = increment - 16
      setPreviousSize(block, 0)
    } else {
      block = top - Self.headerSize  // the old epilogue becomes the new block
      size = increment
    }
    top += increment
    statistics.regionBytes += Int(increment)
    let epilogue = top - Self.headerSize
    writeHeader(epilogue, size: 0, used: true)
    mergeWithPrevious(&block, &size)
    writeHeader(block, size: size, used: false)
    setPreviousSize(epilogue, size)
    link(block)
    return true
  }

  private mutating func trimIfWorthwhile(lastFree block: UInt) {
    let size = blockSize(block)
    guard block + size == top - Self.headerSize, size >= UInt(Self.trimThreshold) else { return }
    let pageMask = UInt(Self.pageSize) - 1
    let release = (size - UInt(Self.retainedBytes)) & ~pageMask
    guard release > 0 else { return }
    unlink(block)
    let newTop = top - release
    writeHeader(block, size: size - release, used: false)
    writeHeader(newTop - Self.headerSize, size: 0, used: true)
    setPreviousSize(newTop - Self.headerSize, size - release)
    link(block)
    backing.shrink(from: top, to: newTop)
    top = newTop
    statistics.regionBytes -= Int(release)
  }

  /// Extends the free range `block` of `size` bytes downwards over a free predecessor.
  private mutating func mergeWithPrevious(_ block: inout UInt, _ size: inout UInt) {
    let previous = previousSize(block)
    guard previous != 0 && !isUsed(block - previous) else { return }
    block -= previous
    unlink(block)
    size += previous
  }

  private func binIndex(_ size: UInt) -> Int {
    let log2 = UInt.bitWidth - 1 - size.leadingZeroBitCount
    return min(max(log2 - 5, 0), Self.binCount - 1)
  }

  private mutating func link(_ block: UInt) {
    let bin = binIndex(blockSize(block))
    let head = bins[bin]
    setLinkNext(block, head)
    setLinkPrevious(block, 0)
    if head != 0 { setLinkPrevious(head, block) }
    bins[bin] = block
  }

  private mutating func unlink(_ block: UInt) {
    let next = linkNext(block)
    let previous = linkPrevious(block)
    if previous != 0 {
      setLinkNext(previous, next)
    } else {
      bins[binIndex(blockSize(block))] = next
    }
    if next != 0 { setLinkPrevious(next, previous) }
  }

  // Raw accessors; every address comes from the heap's own bookkeeping.
  private func word(_ address: UInt) -> UnsafeMutableRawPointer {
    UnsafeMutableRawPointer(bitPattern: address)!
  }
  private func previousSize(_ block: UInt) -> UInt {
    UInt(word(block).load(as: UInt32.self))
  }
  private func setPreviousSize(_ block: UInt, _ size: UInt) {
    word(block).storeBytes(of: UInt32(size), as: UInt32.self)
  }
  private func sizeAndFlags(_ block: UInt) -> UInt32 {
    word(block + 4).load(as: UInt32.self)
  }
  private func blockSize(_ block: UInt) -> UInt { UInt(sizeAndFlags(block) & ~15) }
  private func flagBits(_ block: UInt) -> UInt32 { sizeAndFlags(block) & 15 }
  private func isUsed(_ block: UInt) -> Bool { sizeAndFlags(block) & Self.usedBit != 0 }
  private func writeHeader(_ block: UInt, size: UInt, used: Bool) {
    let value = UInt32(size) | Self.checkPattern | (used ? Self.usedBit : 0)
    word(block + 4).storeBytes(of: value, as: UInt32.self)
  }
  private func linkNext(_ block: UInt) -> UInt { word(block + 8).load(as: UInt.self) }
  private func linkPrevious(_ block: UInt) -> UInt {
    word(block + 8 + UInt(MemoryLayout<UInt>.size)).load(as: UInt.self)
  }
  private func setLinkNext(_ block: UInt, _ value: UInt) {
    word(block + 8).storeBytes(of: value, as: UInt.self)
  }
  private func setLinkPrevious(_ block: UInt, _ value: UInt) {
    word(block + 8 + UInt(MemoryLayout<UInt>.size)).storeBytes(of: value, as: UInt.self)
  }
}
