// WorkQueue: a first-in, first-out queue whose `take` moves an index instead of the
// remaining items (the kernel's server workers queue their work in one).
//
// Contract: items come out in the order they went in. `take` costs O(1) amortized: a
// taken slot is cleared at once (the queue keeps no reference to what it handed out),
// the storage is given back when the queue drains, and once at least 64 items are taken
// and they are half the storage, the taken part is dropped, so a consumer that never
// catches up holds at most about twice the waiting items, not every item ever queued.

/// A FIFO queue with O(1) amortized `take`.
public struct WorkQueue<Element> {
  private var items: [Element?] = []
  private var taken = 0

  /// An empty queue.
  public init() {}

  /// Whether no item waits.
  public var isEmpty: Bool { taken == items.count }

  /// The items waiting.
  public var count: Int { items.count - taken }

  /// The slots the storage holds, taken ones included (for tests of the bound above).
  public var storageCount: Int { items.count }

  /// Adds `item` at the end.
  public mutating func append(_ item: Element) { items.append(item) }

  /// Removes and returns the first item; nil when the queue is empty.
  public mutating func take() -> Element? {
    guard taken < items.count else { return nil }
    let item = items[taken]
    items[taken] = nil
    taken += 1
    if taken == items.count {
      items = []  // drained: the storage goes back to the heap
      taken = 0
    } else if taken >= 64 && taken * 2 >= items.count {
      items.removeFirst(taken)
      taken = 0
    }
    return item
  }

  /// Whether a waiting item satisfies `test`.
  public func contains(where test: (Element) -> Bool) -> Bool {
    for index in taken..<items.count {
      if let item = items[index], test(item) { return true }
    }
    return false
  }
}
