// ByteQueue: a bounded first-in first-out queue of bytes in a ring, for TCP's send and
// receive buffers: appending and taking from the front cost only the bytes moved, copied
// in at most two pieces (an array's removeFirst moved everything behind), and a queue
// never used holds no memory.

/// Bytes in arrival order, at most `capacity` of them. Its storage is allocated whole on
/// the first append and kept until the queue goes: freed each time the queue emptied, a
/// stream's rings were allocated, mapped and given back for nearly every segment (the
/// heap returns its top pages), which cost more than the bytes' copies.
public struct ByteQueue {
  /// The most bytes it holds.
  public let capacity: Int
  private var storage: [UInt8] = []
  private var head = 0
  /// Bytes held.
  public private(set) var count = 0

  /// An empty queue of at most `capacity` bytes.
  public init(capacity: Int) { self.capacity = max(capacity, 1) }

  /// Whether it holds nothing.
  public var isEmpty: Bool { count == 0 }

  /// Room left.
  public var room: Int { capacity - count }

  /// Appends as much of `bytes` as fits; returns how many were taken.
  @discardableResult
  public mutating func append<Bytes: Collection>(contentsOf bytes: Bytes) -> Int
  where Bytes.Element == UInt8 {
    let taken = min(bytes.count, room)
    guard taken > 0 else { return 0 }
    let copied: Void? = bytes.withContiguousStorageIfAvailable { source in
      write(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: source[0..<taken])))
    }
    if copied == nil {
      let contiguous = Array(bytes.prefix(taken))
      contiguous.withUnsafeBytes { write($0) }
    }
    return taken
  }

  /// Copies `source` (no more than `room`) behind what it holds, in at most two pieces.
  private mutating func write(_ source: UnsafeRawBufferPointer) {
    // Uninitialized: every byte is written before it is read, and a 64 KiB ring cleared
    // on every first append cost as much as the copy itself (a queue empties often).
    if storage.isEmpty {
      storage = [UInt8](unsafeUninitializedCapacity: capacity) { _, initialized in initialized = capacity }
    }
    let start = (head + count) % capacity
    let first = min(source.count, capacity - start)
    storage.withUnsafeMutableBytes { target in
      guard let to = target.baseAddress, let from = source.baseAddress else { return }
      (to + start).copyMemory(from: from, byteCount: first)
      if first < source.count { to.copyMemory(from: from + first, byteCount: source.count - first) }
    }
    count += source.count
  }

  /// `length` bytes from `offset` on (both within what it holds), not removed.
  public func peek(from offset: Int, count length: Int) -> [UInt8] {
    precondition(offset >= 0 && length >= 0 && offset + length <= count, "ByteQueue.peek out of range")
    return [UInt8](unsafeUninitializedCapacity: length) { bytes, initialized in
      copy(from: offset, into: UnsafeMutableRawBufferPointer(bytes))
      initialized = length
    }
  }

  /// Copies `target.count` bytes from `offset` on (within what it holds) into `target`,
  /// in at most two pieces, removing nothing.
  public func copy(from offset: Int, into target: UnsafeMutableRawBufferPointer) {
    precondition(offset >= 0 && offset + target.count <= count, "ByteQueue.copy out of range")
    guard target.count > 0 else { return }
    let start = (head + offset) % capacity
    let first = min(target.count, capacity - start)
    storage.withUnsafeBytes { source in
      guard let from = source.baseAddress, let to = target.baseAddress else { return }
      to.copyMemory(from: from + start, byteCount: first)
      if first < target.count { (to + first).copyMemory(from: from, byteCount: target.count - first) }
    }
  }

  /// Drops the first `length` bytes (at most what it holds).
  public mutating func removeFirst(_ length: Int) {
    let dropped = min(max(length, 0), count)
    count -= dropped
    head = count == 0 ? 0 : (head + dropped) % capacity
  }

  /// Takes up to `length` bytes from the front.
  public mutating func take(_ length: Int) -> [UInt8] {
    let bytes = peek(from: 0, count: min(max(length, 0), count))
    removeFirst(bytes.count)
    return bytes
  }
}
