// ConcurrencyTest: what the kernel's threads and locks must guarantee, observed from a
// server. Thread-safe itself: its workers share nothing but semaphores.

import KernelCore
import ServerRuntime

func say(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}

/// Calls `increment` on a counter until the clock passes `deadline` (milliseconds since
/// boot), counting its calls, then signals `done`. Running for a time rather than a
/// number of rounds makes sure every worker is preempted, however fast the machine.
final class Incrementer: RunnableImplementation {
  let counter: Counter
  let deadline: UInt
  let done: Semaphore
  var calls: UInt = 0

  init(counter: Counter, deadline: UInt, done: Semaphore) {
    self.counter = counter
    self.deadline = deadline
    self.done = done
  }

  func run() {
    while ((try? Required.clock.uptimeMilliseconds()) ?? UInt.max) < deadline {
      try? counter.increment()
      calls += 1
    }
    try? done.signal()
  }
}

/// Acquires and releases its reference to a counter (a required slot: the bound acquire
/// and release) until the clock passes `deadline`, counting the pairs and the refusals,
/// then signals `done`. Preempted among the instructions of either, a thread starts it
/// again (the kernel's count windows): every pair must succeed.
final class Counting: RunnableImplementation {
  let deadline: UInt
  let done: Semaphore
  var pairs: UInt = 0
  var refused: UInt = 0

  init(deadline: UInt, done: Semaphore) {
    self.deadline = deadline
    self.done = done
  }

  func run() {
    while ((try? Required.clock.uptimeMilliseconds()) ?? UInt.max) < deadline {
      for _ in 0..<1_000 {
        if (try? Required.counter.acquire()) == nil || !Required.counter.release() { refused += 1 }
        pairs += 1
      }
    }
    try? done.signal()
  }
}

/// Puts 1 ... items into the queue, then signals `done`.
final class Producer: RunnableImplementation {
  let items: UInt
  let done: Semaphore
  init(items: UInt, done: Semaphore) {
    self.items = items
    self.done = done
  }

  func run() {
    for item in 1...items { try? Required.queue.put(item: item) }
    try? done.signal()
  }
}

/// A timer callback: counts its calls and signals `fired` each time.
final class Tick: RunnableImplementation {
  let fired: Semaphore
  var calls: UInt = 0
  var lastAt: UInt = 0
  init(fired: Semaphore) { self.fired = fired }

  func run() {
    calls += 1
    lastAt = (try? Required.clock.uptimeMilliseconds()) ?? 0
    try? fired.signal()
  }
}

final class Tests: ProgramImplementation {
  var failures = 0

  func check(_ condition: Bool, _ message: KernelMessage) {
    if !condition {
      failures += 1
      say("concurrency: FAIL \(message)")
    }
  }

  /// Runs `workers` threads incrementing `counter` for `milliseconds`; returns the
  /// increments they made and the count the counter reached.
  func hammer(_ counter: Counter, workers: Int, milliseconds: UInt) throws(CallError) -> (
    calls: UInt, count: UInt
  ) {
    let done = try Required.sync.makeSemaphore(count: 0)
    let deadline = try Required.clock.uptimeMilliseconds() + milliseconds
    var incrementers: [Incrementer] = []
    for _ in 0..<workers {
      let incrementer = Incrementer(counter: counter, deadline: deadline, done: done)
      incrementers.append(incrementer)
      guard let work = Runnable.export(incrementer) else { throw .outOfResources }
      let thread = try Required.threads.spawn(work: work, priority: 2)
      work.release()  // the thread holds its own reference now
      check(thread != 0, "no thread could be started")
    }
    for _ in 0..<workers { try done.wait() }
    done.release()
    return (incrementers.reduce(0) { $0 + $1.calls }, try counter.value())
  }

  /// Runs `workers` threads acquiring and releasing the counter's reference for
  /// `milliseconds`; returns the pairs they made and how many were refused.
  func countPairs(workers: Int, milliseconds: UInt) throws(CallError) -> (pairs: UInt, refused: UInt) {
    let done = try Required.sync.makeSemaphore(count: 0)
    let deadline = try Required.clock.uptimeMilliseconds() + milliseconds
    var counters: [Counting] = []
    for _ in 0..<workers {
      let counting = Counting(deadline: deadline, done: done)
      counters.append(counting)
      guard let work = Runnable.export(counting) else { throw .outOfResources }
      let thread = try Required.threads.spawn(work: work, priority: 2)
      work.release()
      check(thread != 0, "no thread could be started")
    }
    for _ in 0..<workers { try done.wait() }
    done.release()
    return (counters.reduce(0) { $0 + $1.pairs }, counters.reduce(0) { $0 + $1.refused })
  }

  /// The kernel's count of preempted threads sent back to the start of generated counting
  /// code (the `windows:` line of its threads report).
  func windowRestarts() throws(CallError) -> UInt {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 4)
    defer { buffer.deallocate() }
    let filled = min(Int(try Required.system.threads(text: buffer)), buffer.count)
    let prefix: StaticString = "windows: "
    let length = prefix.utf8CodeUnitCount
    var start = 0
    while start + length <= filled {
      var matches = true
      for offset in 0..<length where buffer[start + offset] != prefix.utf8Start[offset] { matches = false }
      if matches { break }
      start += 1
    }
    var value: UInt = 0
    var position = start + length
    while position < filled, buffer[position] >= 48, buffer[position] <= 57, value < 100_000_000 {
      value = value * 10 + UInt(buffer[position] - 48)
      position += 1
    }
    return value
  }

  /// A one-shot timer fires once, on time; a periodic one fires every period until
  /// cancelled, and never after.
  func testTimers() throws(CallError) {
    let fired = try Required.sync.makeSemaphore(count: 0)
    let once = Tick(fired: fired)
    guard let onceCallback = Runnable.export(once) else { throw .outOfResources }
    let start = try Required.clock.uptimeMilliseconds()
    let oneShot = try Required.timers.after(milliseconds: 30, callback: onceCallback)
    onceCallback.release()
    try fired.wait()
    let late = once.lastAt - start
    say("concurrency: one-shot timer of 30 ms fired after \(late) ms")
    check(oneShot != 0 && late >= 30 && late <= 32, "a 30 ms timer fired after \(late) ms")

    let periodic = Tick(fired: fired)
    guard let periodicCallback = Runnable.export(periodic) else { throw .outOfResources }
    let timer = try Required.timers.every(milliseconds: 10, callback: periodicCallback)
    periodicCallback.release()
    for _ in 0..<5 { try fired.wait() }
    check(try Required.timers.cancel(timer: timer) == 1, "cancelling a running timer failed")
    let afterCancel = periodic.calls
    try Required.clock.sleep(milliseconds: 40)
    say(
      "concurrency: periodic 10 ms timer fired \(afterCancel) times, \(periodic.calls - afterCancel) after cancel"
    )
    check(
      afterCancel >= 5 && afterCancel <= 6 && periodic.calls == afterCancel, "the periodic timer misbehaved")
    check(try Required.timers.cancel(timer: timer) == 0, "a cancelled timer was cancelled twice")
    check(once.calls == 1, "the one-shot timer fired \(once.calls) times")
    fired.release()
  }

  func run() -> UInt {
    do throws(CallError) {
      // 8 threads for 200 ms each phase: 20 time slices, so threads are preempted inside
      // `increment` many times.
      let workers = 8
      let locked = try hammer(Required.counter, workers: workers, milliseconds: 200)
      let lockedInside = try Required.counter.mostInside()
      say(
        "concurrency: serialized counter \(locked.count) of \(locked.calls) increments, at most \(lockedInside) thread inside"
      )
      check(
        locked.count == locked.calls && locked.calls > 0,
        "the serialized counter lost \(locked.calls - locked.count) updates")
      check(lockedInside == 1, "\(lockedInside) threads were inside a server that is not thread-safe")

      let racy = try hammer(Required.racy, workers: workers, milliseconds: 200)
      let racyInside = try Required.racy.mostInside()
      say(
        "concurrency: thread-safe-declared counter \(racy.count) of \(racy.calls) increments, at most \(racyInside) threads inside"
      )
      check(racyInside > 1, "a thread-safe server was never entered concurrently")
      check(racy.count < racy.calls, "the wrongly thread-safe counter lost nothing: the test cannot tell")

      // Acquire and release from many threads at once, 40 time slices: no pair may be
      // refused, and threads are preempted inside them (the kernel starts those again).
      let restartsBefore = try windowRestarts()
      let counting = try countPairs(workers: workers, milliseconds: 400)
      let restarts = try windowRestarts() &- restartsBefore
      say(
        "concurrency: \(counting.pairs) acquire-release pairs by \(workers) threads, \(counting.refused) refused, \(restarts) preempted threads started one again"
      )
      check(
        counting.pairs > 0 && counting.refused == 0, "\(counting.refused) acquire-release pairs were refused")

      // Producer and consumer through the bounded queue: every item once, in order.
      let items: UInt = 100_000
      let done = try Required.sync.makeSemaphore(count: 0)
      guard let producer = Runnable.export(Producer(items: items, done: done)) else { throw .outOfResources }
      _ = try Required.threads.spawn(work: producer, priority: 2)
      producer.release()
      var expectedItem: UInt = 1
      var outOfOrder = 0
      var sum: UInt64 = 0
      for _ in 0..<items {
        let item = try Required.queue.take()
        if item != expectedItem { outOfOrder += 1 }
        expectedItem = item + 1
        sum += UInt64(item)
      }
      try done.wait()
      done.release()
      say("concurrency: queue passed \(items) items, \(outOfOrder) out of order, sum \(sum)")
      check(
        outOfOrder == 0 && sum == UInt64(items) * UInt64(items + 1) / 2,
        "items were lost, duplicated or reordered")

      // Sleeping: at least the time asked, at most one tick more (the clock reads whole
      // milliseconds, so the measurement itself may add one).
      let before = try Required.clock.uptimeMilliseconds()
      try Required.clock.sleep(milliseconds: 50)
      let slept = try Required.clock.uptimeMilliseconds() - before
      say("concurrency: slept \(slept) ms for 50 ms")
      check(slept >= 50 && slept <= 53, "sleeping 50 ms took \(slept) ms")
      let target = try Required.clock.uptimeMilliseconds() + 20
      try Required.clock.sleepUntil(uptime: target)
      let woke = try Required.clock.uptimeMilliseconds()
      say("concurrency: slept until \(target) ms, woke at \(woke) ms")
      check(woke >= target && woke <= target + 2, "sleeping until \(target) ms woke at \(woke) ms")

      try testTimers()
    } catch {
      check(false, "a call failed")
    }
    say(failures == 0 ? "concurrency: PASS" : "concurrency: FAIL \(failures) problems")
    return UInt(failures)
  }
}

func start() -> Program {
  Program.export(Tests())!
}
