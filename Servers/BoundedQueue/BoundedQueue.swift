// BoundedQueue: producer/consumer through semaphores. No locking code: the kernel's lock
// on this server protects the ring, and a thread waiting on a semaphore holds no lock.

import ServerRuntime

final class Ring: WordQueueImplementation {
  static let capacity = 16
  private var items = [UInt](repeating: 0, count: Ring.capacity)
  private var head = 0
  private var count = 0
  private let free: Semaphore
  private let used: Semaphore

  init() {
    free = try! Required.sync.makeSemaphore(count: UInt(Ring.capacity))
    used = try! Required.sync.makeSemaphore(count: 0)
  }

  func put(item: UInt) {
    try? free.wait()
    items[(head + count) % Ring.capacity] = item
    count += 1
    try? used.signal()
  }

  func take() -> UInt {
    try? used.wait()
    let item = items[head]
    head = (head + 1) % Ring.capacity
    count -= 1
    try? free.signal()
    return item
  }
}

func start() -> WordQueue {
  WordQueue.export(Ring())!
}
