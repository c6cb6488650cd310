// Scheduler: preemptive, priority-aware round robin of kernel threads on the PIT tick.
//
// Contract: the highest ready priority runs; threads of equal priority take turns every
// `timeSlice` ticks. The idle thread (priority 0) runs when nothing else can. All state
// changes happen with interrupts disabled (one CPU). A switch saves and restores the
// FPU/SSE state and the call chain with the registers, so a thread keeps its identity
// through every server it calls. Switches requested by the timer happen after the IRQ is
// acknowledged, on the way out of the interrupt.

import KernelCore

enum Scheduler {
  /// Priorities: 0 idle, 1 background, 2 normal, 3 interrupt/timer work.
  static let idlePriority = 0
  static let normalPriority = 2
  static let highPriority = 3
  /// Ticks a thread runs before an equal-priority thread gets the CPU.
  static let timeSlice: UInt64 = 10

  nonisolated(unsafe) private static var threads: [Thread?] = []
  nonisolated(unsafe) private(set) static var current: Thread?
  nonisolated(unsafe) private static var ready = ReadyQueues()
  nonisolated(unsafe) private static var sleeping = SleepList()
  nonisolated(unsafe) private static var sliceEnd: UInt64 = 0
  nonisolated(unsafe) private static var finished: Thread?
  /// Set when the running thread should give up the CPU at the next opportunity.
  nonisolated(unsafe) private(set) static var needsReschedule = false
  /// Switches since boot.
  nonisolated(unsafe) private(set) static var switches: UInt64 = 0

  /// Makes the running boot code thread 1 and starts the idle thread.
  static func initialize() {
    threads = [Thread?](repeating: nil, count: maximumThreads)
    let boot = Thread(number: 1, name: "boot", priority: normalPriority, entry: nil, hasStack: false)!
    boot.state = .running
    threads[1] = boot
    current = boot
    CallChain.threadNumber = 1
    _ = spawn(name: "idle", priority: idlePriority) {
      while true { Machine.waitForInterrupt() }
    }
  }

  /// Whether threads exist yet.
  static var isRunning: Bool { current != nil }

  /// Starts a thread running `entry`; nil if there is no free thread number or memory.
  @discardableResult
  static func spawn(name: KernelMessage, priority: Int, entry: @escaping () -> Void) -> Thread? {
    Machine.withInterruptsDisabled {
      guard let number = (1..<maximumThreads).first(where: { threads[$0] == nil }) else { return nil }
      guard
        let thread = Thread(
          number: UInt32(number), name: name, priority: priority, entry: entry, hasStack: true)
      else { return nil }
      threads[number] = thread
      ready.append(thread.number, priority: priority)
      if priority > current!.priority { needsReschedule = true }
      return thread
    }
  }

  /// The threads alive, for reports.
  static var all: [Thread] { Machine.withInterruptsDisabled { threads.compactMap { $0 } } }

  /// Whether `test` holds for any living thread; allocates nothing (interrupts must be
  /// disabled: it runs on every unload and every kernel object freed).
  static func anyThread(_ test: (Thread) -> Bool) -> Bool {
    for slot in threads.indices { if let thread = threads[slot], test(thread) { return true } }
    return false
  }

  /// The thread with `number`, if alive.
  static func thread(_ number: UInt32) -> Thread? {
    Int(number) < threads.count ? threads[Int(number)] : nil
  }

  /// Called by the timer on every tick (interrupts disabled).
  static func tick(now: UInt64) {
    guard let running = current else { return }
    running.ticks &+= 1
    while let number = sleeping.removeDue(now: now), let thread = threads[Int(number)] {
      thread.state = .ready
      ready.append(number, priority: thread.priority)
    }
    let waiting = ready.highestReadyPriority
    if waiting > running.priority || (waiting == running.priority && now >= sliceEnd) {
      needsReschedule = true
    }
  }

  /// Gives up the CPU if a reschedule is due (on the way out of an interrupt).
  static func preemptIfNeeded() {
    guard needsReschedule, current != nil else { return }
    yield()
  }

  /// Lets another ready thread of at least the same priority run.
  static func yield() {
    Machine.withInterruptsDisabled {
      guard let running = current else { return }
      running.state = .ready
      ready.append(running.number, priority: running.priority)
      switchToNext()
    }
  }

  /// Blocks the running thread until `wake`; the caller has queued it somewhere and
  /// must hold interrupts disabled.
  static func block() {
    current!.state = .blocked
    switchToNext()
  }

  /// Makes a blocked or sleeping thread ready (interrupts disabled by the caller or not).
  static func wake(_ thread: Thread) {
    Machine.withInterruptsDisabled {
      guard thread.state == .blocked || thread.state == .sleeping else { return }
      if thread.state == .sleeping { sleeping.remove(thread.number) }
      thread.state = .ready
      ready.append(thread.number, priority: thread.priority)
      if thread.priority > current!.priority { needsReschedule = true }
    }
  }

  /// Hands the processor back and forth `rounds` times between the running thread and a
  /// helper thread of the same priority, each waking the other and blocking (the
  /// scheduler's part of a blocking hand-off, no semaphore); the timestamp ticks for all
  /// `2 x rounds` switches (guest instructions under -icount), or nil if no helper thread
  /// could be made. For the benchmarks (SystemInfo.handOffs).
  static func measureHandOffs(rounds: Int) -> UInt64? {
    let caller = current!
    var remaining = rounds
    var done = false
    // Made and run first in one interrupts-off region: were the helper to run before this
    // thread blocks, its wake would find it running and both would then block for good.
    // The helper wakes this thread and blocks in turn: from here on every round is two
    // switches.
    guard
      let helper = Machine.withInterruptsDisabled({ () -> Thread? in
        guard
          let helper = spawn(
            name: "hand-off", priority: caller.priority,
            entry: {
              while true {
                let finished = Machine.withInterruptsDisabled { () -> Bool in
                  guard !done else { return true }
                  wake(caller)
                  block()
                  return done
                }
                if finished { break }
              }
            })
        else { return nil }
        block()
        return helper
      })
    else { return nil }
    let start = Processor.timestamp()
    while remaining > 0 {
      remaining -= 1
      Machine.withInterruptsDisabled {
        wake(helper)
        block()
      }
    }
    let ticks = Processor.timestamp() &- start
    Machine.withInterruptsDisabled {
      done = true
      wake(helper)
    }
    return ticks
  }

  /// Sleeps the running thread until tick `deadline` (or until woken).
  static func sleep(until deadline: UInt64) {
    Machine.withInterruptsDisabled {
      let running = current!
      running.state = .sleeping
      sleeping.insert(running.number, deadline: max(deadline, Timer.ticks + 1))
      switchToNext()
    }
  }

  /// Sleeps the running thread for at least `ticks` timer ticks.
  static func sleep(ticks: UInt64) {
    Machine.withInterruptsDisabled {
      let running = current!
      running.state = .sleeping
      sleeping.insert(running.number, deadline: Timer.ticks + max(ticks, 1))
      switchToNext()
    }
  }

  /// Ends the running thread. Its stack is abandoned mid-function, so nothing on it may
  /// hold a reference: the switch is prepared in a function that returns raw values only.
  static func exit() -> Never {
    Processor.disableInterrupts()
    let (oldStack, newStack) = prepareFinalSwitch()
    Processor.switchStack(oldStack, newStack)
    panic("a finished thread was scheduled again")
  }

  @inline(never)
  private static func prepareFinalSwitch() -> (UnsafeMutablePointer<UInt32>, UInt32) {
    current!.state = .finished
    guard let switchTo = prepareSwitch() else { panic("a finishing thread was picked to run again") }
    return switchTo
  }

  /// Runs the new thread's entry (from thread_main), then ends the thread.
  fileprivate static func runNewThread() -> Never {
    // Interrupts are on here (arch_thread_start): between freeing the finished thread's
    // number and unmapping its stack, a spawn could take the number and map a new stack,
    // which the unmap would then remove (a double fault when that thread first ran).
    Machine.withInterruptsDisabled { freeFinished() }
    do {
      let entry = current!.entry!
      current!.entry = nil
      entry()
    }
    exit()
  }

  private static func freeFinished() {
    guard let thread = finished else { return }
    finished = nil
    threads[Int(thread.number)] = nil
    KernelStacks.free(number: thread.number)  // before the number can be handed out again
    AddressSpace.threadEnded(thread.number)
  }

  /// Switches to the next ready thread (interrupts disabled).
  private static func switchToNext() {
    guard let (oldStack, newStack) = prepareSwitch() else { return }
    Processor.switchStack(oldStack, newStack)
    // Back on this thread's stack, running again.
    if finished != nil { freeFinished() }
  }

  /// Makes the next ready thread current and returns where to save the running thread's
  /// stack pointer and the next thread's stack pointer, or nil if the running thread
  /// goes on. Everything but the stack switch itself happens here.
  private static func prepareSwitch() -> (UnsafeMutablePointer<UInt32>, UInt32)? {
    needsReschedule = false
    guard let number = ready.next(), let next = threads[Int(number)] else {
      panic("no thread to run (the idle thread is gone)")
    }
    let previous = current!
    sliceEnd = Timer.ticksWithInterruptsDisabled + timeSlice
    guard next !== previous else {
      previous.state = .running
      return nil
    }
    switches &+= 1
    Processor.saveFloatingPoint(previous.fpuState)
    CallChain.save(into: previous.chain)
    previous.directory = Paging.activeDirectory
    previous.entryStack = UserModeState.entryStack
    previous.userTicks = UserModeState.userTicks
    previous.userServer = UserModeState.runningServer
    previous.resumePoint = Processor.resumePoint
    if previous.state == .finished { finished = previous }
    next.state = .running
    current = next
    CallChain.restore(from: next.chain)
    CallChain.threadNumber = next.number
    Processor.restoreFloatingPoint(next.fpuState)
    Paging.activate(next.directory == 0 ? Paging.directory : next.directory)
    UserModeState.entryStack = next.entryStack
    UserModeState.userTicks = next.userTicks
    UserModeState.runningServer = next.userServer
    Processor.resumePoint = next.resumePoint
    UserModeState.stackPointerWord.pointee = next.entryStack
    return (previous.savedStack, next.savedStack.pointee)
  }
}

/// Entered on a new thread's stack (arch_thread_start).
@_cdecl("thread_main")
func threadMain() {
  Scheduler.runNewThread()
}
