// SchedulerQueueTests: the scheduler's queues: FIFO order, priorities, sleeping order and
// fixed capacities.

import Testing

@testable import KernelCore

@Suite struct SchedulerQueueTests {
  @Test func threadQueueIsFirstInFirstOut() {
    var queue = ThreadQueue()
    for thread in 1...5 { queue.append(UInt32(thread)) }
    let first = queue.remove(3)
    let second = queue.remove(3)
    #expect(first && !second)
    #expect(queue.contains(4) && !queue.contains(3))
    var order: [UInt32] = []
    while let thread = queue.removeFirst() { order.append(thread) }
    #expect(order == [1, 2, 4, 5])
  }

  @Test func threadQueueRefusesBeyondItsCapacityAndWrapsAround() {
    var queue = ThreadQueue()
    var accepted = 0
    for thread in 0..<maximumThreads where queue.append(UInt32(thread)) { accepted += 1 }
    #expect(accepted == maximumThreads)
    let overflow = queue.append(999)
    #expect(!overflow, "a full queue refuses instead of overwriting")
    var inOrder = true
    for expected in 0..<100 where queue.removeFirst() != UInt32(expected) { inOrder = false }
    #expect(inOrder)
    for thread in 0..<100 { queue.append(UInt32(1000 + thread)) }
    #expect(queue.count == maximumThreads)
    var last: UInt32 = 0
    while let thread = queue.removeFirst() { last = thread }
    #expect(last == 1099)
  }

  @Test func readyQueuesRunTheHighestPriorityRoundRobin() {
    var ready = ReadyQueues()
    ready.append(1, priority: 2)
    ready.append(2, priority: 0)
    ready.append(3, priority: 2)
    ready.append(4, priority: 3)
    ready.append(5, priority: 99)  // clamped to the highest
    #expect(ready.highestReadyPriority == 3)
    var order: [UInt32] = []
    while let thread = ready.next() { order.append(thread) }
    #expect(order == [4, 5, 1, 3, 2])
    #expect(ready.highestReadyPriority == -1)
  }

  @Test func sleepersWakeInDeadlineOrder() {
    var sleeping = SleepList()
    sleeping.insert(1, deadline: 50)
    sleeping.insert(2, deadline: 10)
    sleeping.insert(3, deadline: 50)
    sleeping.insert(4, deadline: 30)
    #expect(sleeping.nextDeadline == 10)
    var woken: [UInt32?] = []
    for now: UInt64 in [9, 30, 30, 30, 100, 100] { woken.append(sleeping.removeDue(now: now)) }
    #expect(woken == [nil, 2, 4, nil, 1, 3], "equal deadlines keep arrival order")
    #expect(sleeping.count == 0 && sleeping.nextDeadline == nil)
  }
}
