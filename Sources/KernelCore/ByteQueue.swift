// ByteQueue: a bounded first-in first-out queue of bytes in a ring, for TCP's send and
// receive buffers: appending and taking from the front cost only the bytes moved (an
// array's removeFirst moved everything behind), and an empty queue holds no memory.

/// Bytes in arrival order, at most `capacity` of them. Its storage is allocated whole on
/// the first append and freed when the queue empties.
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
    if storage.isEmpty { storage = [UInt8](repeating: 0, count: capacity) }
    var position = (head + count) % capacity
    var index = bytes.startIndex
    for _ in 0..<taken {
      storage[position] = bytes[index]
      index = bytes.index(after: index)
      position += 1
      if position == capacity { position = 0 }
    }
    count += taken
    return taken
  }

  /// `length` bytes from `offset` on (both within what it holds), not removed.
  public func peek(from offset: Int, count length: Int) -> [UInt8] {
    precondition(offset >= 0 && length >= 0 && offset + length <= count, "ByteQueue.peek out of range")
    var bytes = [UInt8](repeating: 0, count: length)
    var position = (head + offset) % capacity
    for index in 0..<length {
      bytes[index] = storage[position]
      position += 1
      if position == capacity { position = 0 }
    }
    return bytes
  }

  /// Drops the first `length` bytes (at most what it holds).
  public mutating func removeFirst(_ length: Int) {
    let dropped = min(max(length, 0), count)
    count -= dropped
    head = (head + dropped) % capacity
    if count == 0 {
      storage = []
      head = 0
    }
  }

  /// Takes up to `length` bytes from the front.
  public mutating func take(_ length: Int) -> [UInt8] {
    let bytes = peek(from: 0, count: min(max(length, 0), count))
    removeFirst(bytes.count)
    return bytes
  }
}
