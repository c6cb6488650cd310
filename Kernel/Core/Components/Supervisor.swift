// Supervisor: the kernel thread that deals with failed user-mode servers.
//
// Contract: `wake` (from fault containment, any context) makes the thread run; it finds
// every failed server no thread is inside any more, releases the references that server
// held (so it stops keeping others alive; its own objects stay dead until their holders
// let go), and tells the composition (SystemLoader.serverFailed), which restarts the
// instance if its line says `restart`.

import CPU
import KernelCore

enum Supervisor {
  nonisolated(unsafe) private static var thread: Thread?
  nonisolated(unsafe) private static var pending = false

  /// Starts the supervisor thread.
  static func start() {
    thread = Scheduler.spawn(name: "supervisor", priority: Scheduler.highPriority) { run() }
  }

  /// Asks the supervisor to look for failed servers.
  static func wake() {
    Machine.withInterruptsDisabled {
      pending = true
      if let thread { Scheduler.wake(thread) }
    }
  }

  private static func run() {
    while true {
      Machine.withInterruptsDisabled {
        while !pending { Scheduler.block() }
        pending = false
      }
      // One server at a time, looked up afresh in the live list: dealing with one (a
      // release, a restart) may unload others, and an unloaded server's words are gone.
      while let server = Machine.withInterruptsDisabled({
        Server.loaded.first { $0.failed && $0.threadsInside == 0 && (!$0.failureHandled || $0.unloadPending) }
      }) {
        if !server.failureHandled {
          server.failureHandled = true
          Machine.withInterruptsDisabled { server.table.releaseAll() }
          SystemLoader.serverFailed(server)
        }
        if server.unloadPending && server.isLoaded { server.unload() }
        server.unloadPending = false
      }
    }
  }
}
