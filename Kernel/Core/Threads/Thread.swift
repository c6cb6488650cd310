// Thread: a kernel thread: its stack, saved registers and FPU/SSE state, call chain and
// scheduling state.
//
// Contract: a thread is created by Scheduler.spawn and runs `entry` on its own 16 KiB
// stack; when `entry` returns the thread ends and the scheduler frees it after switching
// away. Threads are kernel objects only: servers never see them, they start them through
// the kernel's Threads service and meet them as callers.

import KernelCore

final class Thread {
  enum State {
    case ready
    case running
    case blocked
    case sleeping
    case finished
  }

  /// Bytes of each thread's kernel stack (KernelStacks: under an unmapped guard).
  static let stackSize = Int(truncatingIfNeeded: KernelStacks.stackSize)

  /// The thread's number (1 ... maximumThreads-1); what locks record as their owner.
  let number: UInt32
  let name: KernelMessage
  var priority: Int
  var state = State.ready
  /// What the thread runs; nil for the boot thread (already running).
  var entry: (() -> Void)?
  /// The stack (nil for the boot thread, which runs on the boot stack).
  let stack: UnsafeMutableRawPointer?
  /// The saved stack pointer while the thread is not running (a cell of its own: the
  /// switch code writes it through a pointer that must stay valid while the thread sleeps).
  let savedStack: UnsafeMutablePointer<UInt32>
  /// The FPU/SSE state while not running (512 bytes, 16-aligned).
  let fpuState: UnsafeMutableRawPointer
  /// The call chain while not running (CallChain layout).
  let chain: UnsafeMutablePointer<UInt32>
  /// Ticks this thread has run, for reports.
  var ticks: UInt64 = 0
  /// User-mode state while not running (see UserMode.S): the address space (page
  /// directory) it is in, the kernel stack an entry from user mode starts on, and the
  /// ticks it has run in user mode since it last entered the kernel (the watchdog's).
  var directory: UInt32 = 0
  var entryStack: UInt32 = 0
  var userTicks: UInt32 = 0
  /// The server words of the user-mode server it runs in (user_mode_state[4]).
  var userServer: UInt32 = 0
  /// Its innermost resume frame while it is not running (Calls.S).
  var resumePoint: UInt32 = 0
  /// The server lock the thread is blocked waiting for (ServerLock's cycle detection).
  var waitingForLock: UnsafeMutablePointer<UInt32>?
  /// The semaphore this thread is blocked on (SemaphoreObject.wait), so a server that
  /// fails while the thread waits inside it can wake it (Server.fail).
  var waitingSemaphore: SemaphoreObject?
  /// Set by `Server.fail` on a thread inside the failing server that was not blocked: the
  /// chain level and callee word of its record of that server. While the thread's chain
  /// still holds that record, its semaphore waits are given up (SemaphoreObject.wait).
  var failedRecord: (level: Int, word: UInt32)? = nil

  /// nil when memory for its stack or state is short.
  init?(number: UInt32, name: KernelMessage, priority: Int, entry: (() -> Void)?, hasStack: Bool) {
    var stack: UnsafeMutableRawPointer?
    if hasStack {
      stack = KernelStacks.make(number: number)
      if stack == nil { return nil }
    }
    guard let fpuState = KernelHeap.allocate(byteCount: 512, alignment: 16) else {
      if stack != nil { KernelStacks.free(number: number) }
      return nil
    }
    self.stack = stack
    self.fpuState = fpuState
    self.number = number
    self.name = name
    self.priority = priority
    self.entry = entry
    fpuState.initializeMemory(as: UInt8.self, repeating: 0, count: 512)
    chain = .allocate(capacity: CallChain.words)
    chain.initialize(repeating: 0, count: CallChain.words)
    savedStack = .allocate(capacity: 1)
    savedStack.initialize(to: 0)
    if let stack {
      // The first switch to this thread "returns" into arch_thread_start with zeroed
      // callee-saved registers: edi, esi, ebx, ebp, then the return address.
      let top = UnsafeMutablePointer<UInt32>(bitPattern: UInt(bitPattern: stack) + UInt(Self.stackSize))! - 8
      for word in 0..<8 { top[word] = 0 }
      top[4] = Processor.threadStartAddress()
      savedStack.pointee = UInt32(UInt(bitPattern: top))
      // A fresh FPU state: the one fninit gives (control word 0x37F, MXCSR 0x1F80).
      fpuState.storeBytes(of: 0x037F, toByteOffset: 0, as: UInt16.self)
      fpuState.storeBytes(of: 0x1F80, toByteOffset: 24, as: UInt32.self)
    }
  }

  deinit {
    KernelHeap.free(fpuState)
    chain.deallocate()
    savedStack.deallocate()
  }
}
