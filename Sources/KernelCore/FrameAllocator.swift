// FrameAllocator: the physical page-frame allocator, a pair of bitmaps over frame numbers.
//
// Contract: a frame is handed out only if the memory map called it usable and nothing
// reserved it (kernel image, boot information, modules). Freeing a frame that is not
// allocated, or that was never usable, is refused with an error instead of corrupting
// the allocator. Storage is supplied by the caller, so the allocator itself allocates
// nothing and can run before any heap exists.

/// Why a frame operation was refused.
public enum FrameAllocatorError: Error, Equatable, Sendable {
  /// The address is not frame-aligned.
  case misaligned(UInt64)
  /// The frame lies outside the memory the allocator manages.
  case notManaged(UInt64)
  /// The frame is already free (a double free).
  case notAllocated(UInt64)

  /// A one-line explanation.
  public var message: KernelMessage {
    switch self {
    case .misaligned(let address): "frame address \(hex: address) is not page-aligned"
    case .notManaged(let address): "frame \(hex: address) is not usable memory"
    case .notAllocated(let address): "frame \(hex: address) is already free (double free)"
    }
  }
}

/// Counts describing the allocator's state.
public struct FrameStatistics: Equatable, Sendable {
  /// Frames the memory map offered and nothing reserved.
  public var usableFrames: Int
  /// Frames currently free.
  public var freeFrames: Int
  /// Frames currently allocated.
  public var allocatedFrames: Int { usableFrames - freeFrames }
}

/// A bitmap allocator of 4 KiB physical frames below `frameLimit * frameSize`.
public struct FrameAllocator {
  /// Bytes in one frame.
  public static let frameSize = 4096
  /// Bitmap words needed to manage `frames` frames.
  public static func wordsNeeded(frames: Int) -> Int { (frames + 31) / 32 }

  private let usable: UnsafeMutableBufferPointer<UInt32>
  private let free: UnsafeMutableBufferPointer<UInt32>
  /// One past the highest frame number managed.
  public let frameLimit: Int
  private var usableCount = 0
  private var freeCount = 0
  // Where the next search starts; frames below it were full the last time we looked.
  private var searchHint = 0

  /// An allocator with no usable memory yet; `usableBitmap` and `freeBitmap` each need
  /// `wordsNeeded(frames: frameLimit)` words and must outlive the allocator.
  public init(
    frameLimit: Int, usableBitmap: UnsafeMutableBufferPointer<UInt32>,
    freeBitmap: UnsafeMutableBufferPointer<UInt32>
  ) {
    precondition(usableBitmap.count >= Self.wordsNeeded(frames: frameLimit))
    precondition(freeBitmap.count >= Self.wordsNeeded(frames: frameLimit))
    self.frameLimit = frameLimit
    usable = usableBitmap
    free = freeBitmap
    usable.update(repeating: 0)
    free.update(repeating: 0)
  }

  /// The current counts.
  public var statistics: FrameStatistics {
    FrameStatistics(usableFrames: usableCount, freeFrames: freeCount)
  }

  /// Marks the whole frames inside `base..<base+length` usable and free; partial frames
  /// at either end and frames beyond `frameLimit` are ignored.
  public mutating func addAvailable(base: UInt64, length: UInt64) {
    let size = UInt64(Self.frameSize)
    let end = base &+ length < base ? UInt64.max : base + length
    let first = (base + size - 1) / size
    let last = min(end / size, UInt64(frameLimit))
    guard first < last else { return }
    searchHint = 0
    for frame in Int(first)..<Int(last) where !test(usable, frame) {
      set(usable, frame, true)
      set(free, frame, true)
      usableCount += 1
      freeCount += 1
    }
  }

  /// Removes every frame touching `base..<base+length` from the usable memory, whether
  /// free or not (for memory that something else owns).
  public mutating func reserve(base: UInt64, length: UInt64) {
    guard length > 0 else { return }
    let size = UInt64(Self.frameSize)
    let end = base &+ length < base ? UInt64.max : base + length
    let first = base / size
    let last = min((end - 1) / size + 1, UInt64(frameLimit))
    guard first < last else { return }
    for frame in Int(first)..<Int(last) where test(usable, frame) {
      if test(free, frame) { freeCount -= 1 }
      set(usable, frame, false)
      set(free, frame, false)
      usableCount -= 1
    }
  }

  /// Allocates one frame and returns its physical address, or nil if none is free.
  public mutating func allocate() -> UInt64? {
    allocateContiguous(count: 1, alignmentFrames: 1)
  }

  /// Allocates `count` physically contiguous frames whose first frame number is a multiple
  /// of `alignmentFrames`; returns the physical address of the first, or nil.
  public mutating func allocateContiguous(count: Int, alignmentFrames: Int = 1) -> UInt64? {
    guard count > 0, alignmentFrames > 0, freeCount >= count else { return nil }
    // Searching from the hint is only correct for single frames; runs start at zero.
    var frame = count == 1 ? searchHint : 0
    frame = (frame + alignmentFrames - 1) / alignmentFrames * alignmentFrames
    while frame + count <= frameLimit {
      if count == 1 && free[frame / 32] == 0 {
        frame = (frame / 32 + 1) * 32  // skip a full word quickly
        continue
      }
      var run = 0
      while run < count && test(free, frame + run) { run += 1 }
      if run == count {
        for index in frame..<(frame + count) { set(free, index, false) }
        freeCount -= count
        if count == 1 { searchHint = frame + 1 }
        return UInt64(frame) * UInt64(Self.frameSize)
      }
      frame = (frame + run + 1 + alignmentFrames - 1) / alignmentFrames * alignmentFrames
    }
    return nil
  }

  /// Returns the frame at `address` to the free pool.
  public mutating func free(_ address: UInt64) throws(FrameAllocatorError) {
    guard address % UInt64(Self.frameSize) == 0 else { throw .misaligned(address) }
    let frame = address / UInt64(Self.frameSize)
    guard frame < UInt64(frameLimit), test(usable, Int(frame)) else { throw .notManaged(address) }
    guard !test(free, Int(frame)) else { throw .notAllocated(address) }
    set(free, Int(frame), true)
    freeCount += 1
    searchHint = min(searchHint, Int(frame))
  }

  /// Whether the frame at `address` is usable and currently free.
  public func isFree(_ address: UInt64) -> Bool {
    let frame = address / UInt64(Self.frameSize)
    return frame < UInt64(frameLimit) && test(free, Int(frame))
  }

  private func test(_ bitmap: UnsafeMutableBufferPointer<UInt32>, _ frame: Int) -> Bool {
    bitmap[frame / 32] & (1 << UInt32(frame % 32)) != 0
  }

  private func set(_ bitmap: UnsafeMutableBufferPointer<UInt32>, _ frame: Int, _ value: Bool) {
    if value {
      bitmap[frame / 32] |= 1 << UInt32(frame % 32)
    } else {
      bitmap[frame / 32] &= ~(1 << UInt32(frame % 32))
    }
  }
}
