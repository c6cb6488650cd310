// WorkQueueTests: the server workers' queue keeps order, hands out each item once, and
// stays bounded when its consumer never catches up.

import Testing

@testable import KernelCore

@Suite struct WorkQueueTests {
  @Test func itemsComeOutInOrderOnceEach() {
    var queue = WorkQueue<Int>()
    #expect(queue.isEmpty && queue.take() == nil)
    for item in 0..<10_000 { queue.append(item) }
    #expect(queue.count == 10_000)
    var taken: [Int] = []
    while let item = queue.take() { taken.append(item) }
    #expect(taken == Array(0..<10_000))
    #expect(queue.isEmpty && queue.storageCount == 0, "a drained queue gives its storage back")
  }

  @Test func aConsumerThatNeverCatchesUpDoesNotKeepEveryItem() {
    var queue = WorkQueue<Int>()
    var next = 0
    var expected = 0
    // Three in, two out, for a long while: the queue only grows by one per round.
    for _ in 0..<20_000 {
      for _ in 0..<3 {
        queue.append(next)
        next += 1
      }
      for _ in 0..<2 {
        #expect(queue.take() == expected)
        expected += 1
      }
      #expect(queue.storageCount <= 2 * queue.count + 64, "taken items are dropped, not kept")
    }
    #expect(queue.count == 20_000)
  }

  @Test func containsLooksAtWaitingItemsOnly() {
    var queue = WorkQueue<Int>()
    for item in 0..<100 { queue.append(item) }
    for _ in 0..<70 { _ = queue.take() }
    #expect(!queue.contains { $0 == 5 }, "taken")
    #expect(queue.contains { $0 == 70 } && queue.contains { $0 == 99 })
  }

  @Test func theQueueKeepsNoReferenceToWhatItHandedOut() {
    final class Item {}
    var queue = WorkQueue<Item>()
    weak var handedOut: Item?
    do {
      let item = Item()
      handedOut = item
      queue.append(item)
      queue.append(Item())
      _ = queue.take()
    }
    #expect(handedOut == nil && queue.count == 1)
  }
}
