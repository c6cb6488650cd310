// ServerLock: the lock the kernel takes around calls into a server that is not
// thread-safe, and what happens when threads compete for it.
//
// Contract: a lock is two words: the owner's thread number (0 when free, with
// `CallABI.lockContended` set while threads wait) and the server it belongs to. Lock
// stubs take and free uncontended locks themselves; they call `server_lock_wait` when
// another thread holds the lock (the caller sleeps, it does not spin) and
// `server_lock_release` after freeing a lock that threads wait for (the lock goes to the
// first waiter, in arrival order, unless another thread took it in between). A thread
// whose call chain comes back into a server it already holds enters without waiting
// (re-entry is allowed); one whose wait would close a cycle of waiting threads is refused
// (`wouldDeadlock`, see `closesCycle`).

import KernelCore

enum ServerLock {
  private static func server(of lock: UnsafeMutablePointer<UInt32>) -> Server {
    Unmanaged<Server>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(lock[1]))!).takeUnretainedValue()
  }

  /// What `acquire` did.
  enum Acquisition {
    /// The lock is the running thread's now; the caller must release it.
    case took
    /// The running thread's chain holds it already (re-entry): nothing to release.
    case reentered
    /// Waiting would deadlock (see `closesCycle`): the call must not be made.
    case wouldDeadlock

    /// Whether the caller must release the lock.
    var took: Bool { self == .took }
  }

  /// Takes the lock for the running thread unless it holds it already, or refuses if
  /// waiting for it would deadlock.
  static func acquire(_ lock: UnsafeMutablePointer<UInt32>) -> Acquisition {
    let me = CallChain.threadNumber
    return Machine.withInterruptsDisabled {
      if lock[0] & ~CallABI.lockContended == me { return .reentered }
      return wait(lock) ? .took : .wouldDeadlock
    }
  }

  /// Blocks until the running thread owns the lock (interrupts disabled by the caller);
  /// false, without waiting, if waiting would close a cycle and `detectCycles` is set.
  @discardableResult
  fileprivate static func wait(_ lock: UnsafeMutablePointer<UInt32>, detectCycles: Bool = true) -> Bool {
    let me = CallChain.threadNumber
    while lock[0] & ~CallABI.lockContended != me {
      if lock[0] == 0 {
        lock[0] = me
        return true
      }
      if detectCycles && closesCycle(lock) { return false }
      lock[0] |= CallABI.lockContended
      server(of: lock).lockWaiters.append(me)
      Scheduler.current?.waitingForLock = lock
      Scheduler.block()
      Scheduler.current?.waitingForLock = nil
    }
    return true
  }

  /// Whether the running thread waiting for `lock` would close a cycle: its owner waits
  /// for a lock whose owner waits ... for a lock the running thread holds. Two servers
  /// that are not thread-safe calling each other from two threads make one. Detected
  /// here, the call that would close it is refused with `wouldDeadlock` and logged; the
  /// other threads go on once the refused call's thread returns and frees its locks.
  /// (Interrupts disabled: no owner or waiting changes during the walk.)
  private static func closesCycle(_ lock: UnsafeMutablePointer<UInt32>) -> Bool {
    let me = CallChain.threadNumber
    var owner = lock[0] & ~CallABI.lockContended
    for _ in 0..<maximumThreads {
      if owner == me {
        Log.warning(
          "lock cycle: thread \(me) calling \(server(of: lock).name) would wait for a lock it holds itself, through other threads; refused (wouldDeadlock)"
        )
        return true
      }
      guard let thread = Scheduler.thread(owner), let next = thread.waitingForLock else { return false }
      owner = next[0] & ~CallABI.lockContended
    }
    return false
  }

  /// Gives up the lock (owned by the running thread, or just freed by a lock stub),
  /// handing it to the first waiter.
  static func release(_ lock: UnsafeMutablePointer<UInt32>) {
    Machine.withInterruptsDisabled {
      let server = server(of: lock)
      guard let next = server.lockWaiters.removeFirst() else {
        lock[0] = 0
        return
      }
      lock[0] = next | (server.lockWaiters.count > 0 ? CallABI.lockContended : 0)
      if let thread = Scheduler.thread(next) {
        thread.waitingForLock = nil  // it owns it now
        Scheduler.wake(thread)
      }
    }
  }

  /// Runs `body` (which sleeps) with every server lock the running thread's call chain
  /// took released, and takes them again afterwards, outermost first. This is how a
  /// server blocks a thread without holding its lock.
  static func whileReleased(_ body: () -> Void) {
    // The chain's lock flags say which locks this thread took; they stay set (and travel
    // with the thread's chain) while it sleeps, so nothing else needs remembering.
    forEachHeldLock { release($0) }
    body()
    // Taken again whatever: refusing here would run the server without its lock. A cycle
    // closed while re-taking them is not detected (a documented limit).
    forEachHeldLock { lock in Machine.withInterruptsDisabled { _ = wait(lock, detectCycles: false) } }
  }

  /// Calls `body` with the lock of every server whose lock the running chain took,
  /// outermost first.
  private static func forEachHeldLock(_ body: (UnsafeMutablePointer<UInt32>) -> Void) {
    for level in 0..<CallChain.depth where CallChain.tookLock(at: level) {
      if let server = CallChain.server(at: level) { body(server.lock) }
    }
  }

  /// The address of `server_lock_wait`, for lock stubs.
  static var waitAddress: UInt32 {
    KernelABI.address(serverLockWait as @convention(c) (UnsafeMutablePointer<UInt32>) -> UInt32)
  }

  /// The address of `server_lock_release`, for lock stubs.
  static var releaseAddress: UInt32 {
    KernelABI.address(serverLockRelease as @convention(c) (UnsafeMutablePointer<UInt32>) -> Void)
  }
}

/// Called by lock stubs when another thread holds the lock: 0 once the running thread
/// owns it, or `statusWouldDeadlock` (the stub then returns that to its caller).
@_cdecl("server_lock_wait")
func serverLockWait(_ lock: UnsafeMutablePointer<UInt32>) -> UInt32 {
  Machine.withInterruptsDisabled { ServerLock.wait(lock) } ? 0 : CallABI.statusWouldDeadlock
}

/// Called by lock stubs after they freed (set to 0) a lock that had waiters.
@_cdecl("server_lock_release")
func serverLockRelease(_ lock: UnsafeMutablePointer<UInt32>) {
  Machine.withInterruptsDisabled {
    if lock[0] == 0 {
      ServerLock.release(lock)  // hand it to the first waiter
    } else {
      // Another thread took the free lock before we got here: it must hand over on its
      // way out, so mark the lock contended again.
      lock[0] |= CallABI.lockContended
    }
  }
}
