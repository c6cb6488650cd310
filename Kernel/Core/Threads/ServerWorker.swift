// ServerWorker: a kernel thread of one server's own that runs the calls the kernel makes
// into that server on nobody's behalf: timer callbacks, destroys, a restarted instance's
// start.
//
// Contract: `post` queues work for the server whose account is given and starts its
// worker if it has none; work runs in arrival order, on the worker only, with interrupts
// enabled. So a server that sleeps, blocks or loops in a callback, a destroy or its start
// delays its own worker, never the kernel's threads (timer, supervisor, the
// composition's) nor a thread that only released a reference. A worker runs at the
// highest priority its server's threads may have (`limit priority`, normal by default),
// so one that spins shares the processor with its peers. It is woken only while it waits
// for work, never inside a call. A worker ends once it has had nothing to do for
// `idleTicks` and its server has no timers left (a timer's end wakes it); the group's end
// waits for every worker to end (Supervisor.isIdle). One worker per server instance, not
// charged to its thread quota.

import KernelCore

final class ServerWorker {
  /// What a worker does.
  enum Work {
    /// Calls method 0 (`run`) of the kernel handle, which holds a count of the work's own.
    case call(UInt32)
    /// Runs the object's destroy in its owner (unless the owner failed) and unpins the
    /// owner (KernelObject.destroy pinned it), unloading it if that was its last pin.
    case destroy(KernelObject)
    /// Runs kernel code that calls into the server (a restart's start).
    case run(() -> Void)
  }

  /// Ticks a worker waits for more work before it ends.
  static let idleTicks: UInt64 = 5
  /// The workers alive (interrupts disabled to change).
  nonisolated(unsafe) private(set) static var all: [ServerWorker] = []

  let account: ResourceAccount
  /// Work posted and not taken yet (taking is O(1): a server releasing objects in a loop
  /// queues thousands of destroys within one time slice, and draining them must stay
  /// linear).
  private var queue = WorkQueue<Work>()
  private var thread: Thread?
  /// Whether the thread waits in `next` for work. Only then may it be woken: inside a
  /// callback or destroy it may wait for a lock, a semaphore or a sleep's end, and waking
  /// it there would end that wait early (a lock handed to a thread not waiting for it, a
  /// semaphore wait returning without a unit).
  private var waitingForWork = false

  private init(account: ResourceAccount) { self.account = account }

  /// Queues `work` for the worker of `account`, made if it has none; false if no thread
  /// could be made for it (the caller keeps the work).
  static func post(_ work: Work, for account: ResourceAccount) -> Bool {
    Machine.withInterruptsDisabled {
      let worker: ServerWorker
      if let found = all.first(where: { $0.account === account }) {
        worker = found
      } else {
        worker = ServerWorker(account: account)
        // At the highest priority the server's threads may have (normal by default), so a
        // callback or destroy that spins competes with the server's peers, not above them.
        let priority = min(Int(truncatingIfNeeded: account.limits[.priority]), Scheduler.highPriority)
        worker.thread = Scheduler.spawn(name: "\(account.name) worker", priority: priority) {
          [worker] in worker.run()
        }
        guard worker.thread != nil else { return false }
        all.append(worker)
      }
      worker.queue.append(work)
      worker.wake()
      return true
    }
  }

  /// Wakes the worker of `account` if it has one and it waits (a timer of it ended).
  static func wake(for account: ResourceAccount) {
    Machine.withInterruptsDisabled { all.first { $0.account === account }?.wake() }
  }

  /// Whether the worker of `account` has a call of `handle` queued (a periodic timer's
  /// callback is not queued twice).
  static func hasQueuedCall(_ handle: UInt32, for account: ResourceAccount) -> Bool {
    Machine.withInterruptsDisabled {
      guard let worker = all.first(where: { $0.account === account }) else { return false }
      return worker.queue.contains { work in
        if case .call(let queued) = work { return queued == handle }
        return false
      }
    }
  }

  /// Wakes the thread if it waits for work (interrupts disabled or not).
  private func wake() {
    Machine.withInterruptsDisabled {
      if let thread, waitingForWork { Scheduler.wake(thread) }
    }
  }

  private func run() {
    while let work = next() { perform(work) }
  }

  /// The next work, waiting for it; nil when the worker ends (it is then forgotten).
  private func next() -> Work? {
    Machine.withInterruptsDisabled {
      var idleSince = Timer.ticks
      while queue.isEmpty {
        if account.use(of: .timers) > 0 {
          waitingForWork = true
          Scheduler.block()  // woken by a post or by a timer's end
          waitingForWork = false
          idleSince = Timer.ticks
        } else if Timer.ticks &- idleSince >= Self.idleTicks {
          thread = nil
          Self.all.removeAll { $0 === self }
          if Self.all.isEmpty { Self.all = [] }
          return nil
        } else {
          waitingForWork = true
          Scheduler.sleep(until: idleSince + Self.idleTicks)
          waitingForWork = false
        }
      }
      return queue.take()
    }
  }

  private func perform(_ work: Work) {
    switch work {
    case .call(let handle):
      _ = KernelReferences.call(handle, method: 0)
      Machine.withInterruptsDisabled { _ = KernelReferences.table.release(handle) }
    case .destroy(let object):
      object.runDestroy()
    case .run(let body):
      body()
    }
  }
}
