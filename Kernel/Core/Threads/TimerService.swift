// TimerService: one-shot and periodic callbacks, delivered as calls into a server's
// Runnable object.
//
// Contract: timers are kept in deadline order; the timer thread (high priority) sleeps
// until the earliest one and hands each callback that is due to the worker of the server
// that set it (ServerWorker: a high-priority thread of that server's own, made when it
// has work and ended when it has none and no timers left), so a callback that sleeps or
// blocks delays that server's own work only, never the kernel's timer thread or other
// servers' timers. A periodic timer is re-armed from its previous deadline, so it does not
// drift; a periodic callback still waiting in its worker is not queued twice. `cancel`
// stops future calls; the kernel's reference to the callback object is released when its
// timer ends (a queued call holds a count of its own).

import KernelCore

final class TimerService: TimersImplementation {
  private struct Entry {
    var number: UInt
    var deadline: UInt64
    var period: UInt64
    var callback: UInt32
    /// The server charged for it (nil: the kernel's own).
    var account: ResourceAccount?
  }

  private var entries: [Entry] = []
  private var nextNumber: UInt = 1
  private var thread: Thread?

  /// The service (made once, with the kernel's services; it lives for good).
  nonisolated(unsafe) private static var instance: TimerService?

  /// Starts the timer thread (the service lives for good, and so does the thread).
  init() {
    thread = Scheduler.spawn(name: "timers", priority: Scheduler.highPriority) { [self] in self.run() }
    Self.instance = self
  }

  /// Ends every timer `account`'s server set (it is being unloaded): a timer must not
  /// outlive the server that set it, calling another server's object for ever on a worker
  /// nobody pays for. Returns how many ended.
  @discardableResult
  static func cancelAll(for account: ResourceAccount) -> Int {
    guard let service = instance else { return 0 }
    let ended: [Entry] = Machine.withInterruptsDisabled {
      let mine = service.entries.filter { $0.account === account }
      guard !mine.isEmpty else { return [] }
      service.entries.removeAll { $0.account === account }
      service.compact()
      return mine
    }
    for entry in ended {
      Machine.withInterruptsDisabled { _ = KernelReferences.table.release(entry.callback) }
      service.ended(entry)
    }
    return ended.count
  }

  /// Drops the list's storage when it empties, so idle timers hold no heap.
  private func compact() { if entries.isEmpty { entries = [] } }

  func after(milliseconds: UInt, callback: Runnable) -> UInt {
    add(milliseconds: milliseconds, period: false, callback: callback)
  }

  func every(milliseconds: UInt, callback: Runnable) -> UInt {
    add(milliseconds: max(milliseconds, 1), period: true, callback: callback)
  }

  func cancel(timer: UInt) -> UInt {
    let callback: Entry? = Machine.withInterruptsDisabled {
      guard let index = entries.firstIndex(where: { $0.number == timer }) else { return nil }
      let entry = entries.remove(at: index)
      compact()
      return entry
    }
    guard let callback else { return 0 }
    Machine.withInterruptsDisabled { _ = KernelReferences.table.release(callback.callback) }
    ended(callback)
    return 1
  }

  private static func ticks(_ milliseconds: UInt) -> UInt64 {
    (UInt64(milliseconds) * Timer.inputFrequency + Timer.divisor * 1000 - 1) / (Timer.divisor * 1000)
  }

  private func add(milliseconds: UInt, period: Bool, callback: Runnable) -> UInt {
    let account = CallChain.currentServer?.account
    if let account, !account.charge(.timers) { return 0 }
    let handle = callback.handle  // lent for this call: keep it while the timer lives
    guard Machine.withInterruptsDisabled({ KernelReferences.table.acquire(handle) }) else {
      account?.uncharge(.timers)
      return 0
    }
    let interval = Self.ticks(milliseconds)
    return Machine.withInterruptsDisabled {
      let number = nextNumber
      nextNumber += 1
      let entry = Entry(
        number: number, deadline: Timer.ticks + max(interval, 1), period: period ? max(interval, 1) : 0,
        callback: handle, account: account)
      let position = entries.firstIndex { $0.deadline > entry.deadline } ?? entries.count
      entries.insert(entry, at: position)
      if position == 0, let thread {
        Scheduler.wake(thread)  // an earlier deadline than the one it sleeps for
      }
      return number
    }
  }

  /// The timer thread.
  private func run() {
    while true {
      // No copy of an entry is held while the thread waits: it would keep the entry's
      // account alive after a cancel (a leak the hostile test found, one run in ten).
      let due: Entry? = Machine.withInterruptsDisabled {
        guard let deadline = entries.first?.deadline else {
          Scheduler.block()  // woken by `add`
          return nil
        }
        guard deadline <= Timer.ticks else {
          Scheduler.sleep(until: deadline)
          return nil
        }
        let first = entries.removeFirst()
        compact()
        if first.period > 0 {
          var next = first
          next.deadline += first.period
          let position = entries.firstIndex { $0.deadline > next.deadline } ?? entries.count
          entries.insert(next, at: position)
        }
        return first
      }
      guard let due else { continue }
      if let account = due.account {
        post(due.callback, for: account)
      } else {
        _ = KernelReferences.call(due.callback, method: 0)  // the kernel's own
      }
      if due.period == 0 {
        Machine.withInterruptsDisabled { _ = KernelReferences.table.release(due.callback) }
        ended(due)
      }
    }
  }

  /// A timer of `entry` has ended: uncharged, and its server's worker told (it may end).
  private func ended(_ entry: Entry) {
    guard let account = entry.account else { return }
    account.uncharge(.timers)
    ServerWorker.wake(for: account)
  }

  /// Queues a call of `callback` on the worker of `account`, with a count of its own,
  /// unless one is queued already (a periodic callback still waiting).
  private func post(_ callback: UInt32, for account: ResourceAccount) {
    Machine.withInterruptsDisabled {
      guard !ServerWorker.hasQueuedCall(callback, for: account), KernelReferences.table.acquire(callback)
      else { return }
      if !ServerWorker.post(.call(callback), for: account) {
        _ = KernelReferences.table.release(callback)
        Log.warning("timers: no thread for \(account.name)'s callbacks; a call is dropped")
      }
    }
  }
}
