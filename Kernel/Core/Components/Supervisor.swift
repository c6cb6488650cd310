// Supervisor: the kernel thread that deals with failed user-mode servers.
//
// Contract: `wake` (from fault containment, any context) makes the thread run; it finds
// every failed server no thread is inside any more, releases the references that server
// held (so it stops keeping others alive; its own objects stay dead until their holders
// let go), and tells the composition (SystemLoader.serverFailed), which restarts the
// instance if its line says `restart`. It also unloads servers whose unload waited for
// threads to leave them, and hands on objects whose end waited for threads to leave
// them (KernelObject.handOnUnused), looking again every 10 ticks while one is waiting.
// It never runs server code: destroys and restarted starts go to the server's worker
// (ServerWorker), so a server that sleeps there cannot hold up other restarts.

import KernelCore

enum Supervisor {
  nonisolated(unsafe) private static var thread: Thread?
  nonisolated(unsafe) private static var pending = false

  /// Starts the supervisor thread.
  static func start() {
    thread = Scheduler.spawn(name: "supervisor", priority: Scheduler.highPriority) { run() }
  }

  /// Whether the supervisor has nothing to do: no wake-up pending, no failed server
  /// unhandled, no unload or object waiting for threads to leave, and no server worker
  /// alive (they end when idle).
  static var isIdle: Bool {
    Machine.withInterruptsDisabled {
      !pending && thread?.state == .blocked && KernelObject.waiting.isEmpty && ServerWorker.all.isEmpty
        && !SystemLoader.hasPendingStarts
        && !Server.loaded.contains { (!$0.failureHandled && $0.isLoaded && $0.failed) || $0.unloadPending }
    }
  }

  /// Asks the supervisor to look for failed servers.
  static func wake() {
    Machine.withInterruptsDisabled {
      pending = true
      if let thread { Scheduler.wake(thread) }
    }
  }

  /// Unloads the servers that wait for threads to leave them and now have none; whether
  /// any still waits.
  private static func unloadWaiting() -> Bool {
    var waiting = false
    for server in Machine.withInterruptsDisabled({ Server.loaded.filter { $0.unloadPending } }) {
      guard server.isLoaded else { continue }
      let inside = Machine.withInterruptsDisabled {
        server.threadsInside > 0 || CallChain.anyThreadInside(server) || server.pendingDestroys > 0
      }
      if inside {
        waiting = true
      } else if !server.failed || server.failureHandled {
        server.unloadPending = false
        server.unload()
      }
    }
    return waiting
  }

  private static func run() {
    while true {
      Machine.withInterruptsDisabled {
        while !pending { Scheduler.block() }
        pending = false
      }
      repeat {
        handleFailures()
        let serversWait = unloadWaiting()
        let objectsWait = KernelObject.handOnUnused()
        let startsWait = SystemLoader.postPendingStarts()
        guard serversWait || objectsWait || startsWait else { break }
        Scheduler.sleep(ticks: 10)
      } while true
    }
  }

  /// Releases what failed servers held and restarts them. One server at a time, looked up
  /// afresh in the live list: dealing with one (a release, a restart) may unload others,
  /// and an unloaded server's words are gone.
  private static func handleFailures() {
    // Picked, marked and pinned in one step: pinned, it cannot be unloaded half-way by
    // dropping its interrupt handler, by releasing a server that holds its last object,
    // or by the composition's thread unloading it at the same time (a server that failed
    // in its start: its table was once freed under this loop, and frames freed twice).
    while let server = Machine.withInterruptsDisabled({ () -> Server? in
      guard
        let found = Server.loaded.first(where: {
          !$0.failureHandled && $0.isLoaded && $0.failed && $0.threadsInside == 0
        })
      else { return nil }
      found.failureHandled = true
      found.inboundReferences += 1
      return found
    }) {
      InterruptLineService.serverFailed(server)
      TimerService.cancelAll(for: server.account)
      Machine.withInterruptsDisabled { server.table.releaseAll() }
      let unused = Machine.withInterruptsDisabled {
        server.inboundReferences -= 1
        return server.inboundReferences == 0
      }
      if unused { server.unload() }
      SystemLoader.serverFailed(server)
    }
  }
}
