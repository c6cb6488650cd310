// ServerLock: the lock the kernel takes around calls into a server that is not
// thread-safe, and what happens when threads compete for it.
//
// Contract: a lock is two words: the owner's thread number (0 when free, with
// `CallStubs.lockContended` set while threads wait) and the server it belongs to. Lock
// stubs take and free uncontended locks themselves; they call `server_lock_wait` when
// another thread holds the lock (the caller sleeps, it does not spin) and
// `server_lock_release` after freeing a lock that threads wait for (the lock goes to the
// first waiter, in arrival order, unless another thread took it in between). A thread whose call chain comes back into a server it already holds
// enters without waiting (re-entry is allowed).

import KernelCore

enum ServerLock {
  private static func server(of lock: UnsafeMutablePointer<UInt32>) -> Server {
    Unmanaged<Server>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(lock[1]))!).takeUnretainedValue()
  }

  /// Takes the lock for the running thread unless it holds it already; returns whether
  /// this call took it (and so must release it).
  static func acquire(_ lock: UnsafeMutablePointer<UInt32>) -> Bool {
    let me = CallChain.threadNumber
    return Machine.withInterruptsDisabled {
      if lock[0] & ~CallStubs.lockContended == me { return false }
      wait(lock)
      return true
    }
  }

  /// Blocks until the running thread owns the lock (interrupts disabled by the caller).
  fileprivate static func wait(_ lock: UnsafeMutablePointer<UInt32>) {
    let me = CallChain.threadNumber
    while lock[0] & ~CallStubs.lockContended != me {
      if lock[0] == 0 {
        lock[0] = me
        return
      }
      lock[0] |= CallStubs.lockContended
      server(of: lock).lockWaiters.append(me)
      Scheduler.block()
    }
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
      lock[0] = next | (server.lockWaiters.count > 0 ? CallStubs.lockContended : 0)
      if let thread = Scheduler.thread(next) { Scheduler.wake(thread) }
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
    forEachHeldLock { lock in Machine.withInterruptsDisabled { wait(lock) } }
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
    KernelABI.address(serverLockWait as @convention(c) (UnsafeMutablePointer<UInt32>) -> Void)
  }

  /// The address of `server_lock_release`, for lock stubs.
  static var releaseAddress: UInt32 {
    KernelABI.address(serverLockRelease as @convention(c) (UnsafeMutablePointer<UInt32>) -> Void)
  }
}

@_cdecl("server_lock_wait")
func serverLockWait(_ lock: UnsafeMutablePointer<UInt32>) {
  Machine.withInterruptsDisabled { ServerLock.wait(lock) }
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
      lock[0] |= CallStubs.lockContended
    }
  }
}
