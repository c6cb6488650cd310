// UserCalls: calls into and out of servers loaded in user mode, and the containment of
// their faults.
//
// Contract: a thread enters user code only through arch_upcall, called by `upcall` (the
// general path: it switches to the server's address space, builds the call frame of
// return trampoline, context, selector, words and copies of memory blocks on the
// thread's user stack in that space) or by a generated upcall stub doing the same for
// words-only methods (CallStubs.writeUpcallStub). `user_entry` serves the kernel calls
// UserMode.S's assembly call path does not (export, acquire, release, heap, console,
// and anything from a failed server); it reads arguments from the user stack with
// arch_copy_user and refuses calls made off the thread's own stack, so a bad stack is a
// refused call, never a kernel fault. A fault in user mode (or a watchdog expiry) stops the
// server: it is marked failed, the fault is logged with the server backtrace, and the
// innermost upcall returns `statusServerUnavailable`; so does every later call into it.

import I686CodeGeneration
import KernelCore

/// A memory block of an upcall: the kernel buffer holding it, copied onto the callee's
/// stack, its address patched into argument `word`, and copied back if `copiesOut`.
struct UserBlock {
  var word: Int
  var buffer: UnsafeMutableRawPointer
  var size: UInt32
  var copiesOut: Bool
}

enum UserCalls {
  /// Timer ticks a thread may run in user mode without calling out of its server (calls
  /// 0...8) or pausing before the watchdog stops the server (an endless loop). Other
  /// kernel calls (the null call, acquire, release, heap, console) do not restart it, so
  /// a loop of them is stopped too.
  static let watchdogTicks: UInt32 = 2000

  /// Calls `entry(arguments...)` in user-mode `server` (the caller has pushed the
  /// server's call-chain record). Returns the result word, or a status in the high word.
  static func upcall(
    _ server: Server, entry: UInt32, arguments: UnsafeMutableBufferPointer<UInt32>,
    blocks: UnsafeMutableBufferPointer<UserBlock> = UnsafeMutableBufferPointer(start: nil, count: 0)
  ) -> UInt64 {
    guard !server.failed, let space = server.space else {
      return UInt64(CallABI.statusServerUnavailable) << 32
    }
    guard KernelStacks.roomForCall else { return UInt64(CallABI.statusOutOfResources) << 32 }
    let thread = CallChain.threadNumber
    let frameBytes = UserStacks.frameBytes(arguments: arguments.count)
    var blockBytes: UInt32 = 0
    for block in blocks { blockBytes += (block.size + 15) & ~15 }
    let previous = Paging.activeDirectory
    Paging.activate(space.directory)
    guard let (pointer, restore) = space.claimStack(bytes: frameBytes + blockBytes, thread: thread) else {
      Paging.activate(previous)
      Log.error("\(server.name): user stack of thread \(thread) exhausted")
      return UInt64(CallABI.statusOutOfResources) << 32
    }
    var blockAddress = pointer + frameBytes
    for index in blocks.indices {
      let block = blocks[index]
      Processor.copyBytes(UnsafeMutableRawPointer(bitPattern: UInt(blockAddress))!, block.buffer, block.size)
      arguments[block.word] = blockAddress
      blockAddress += (block.size + 15) & ~15
    }
    let stack = UnsafeMutablePointer<UInt32>(bitPattern: UInt(pointer))!
    stack[0] = AddressSpace.thunks.returnTrampoline
    Processor.copyBytes(stack + 1, arguments.baseAddress!, UInt32(4 * arguments.count))
    // Read-modify-writes that generated upcall code and other threads make too: with
    // interrupts off (one processor), so a preemption between the load and the store
    // cannot lose another thread's count (it did: a lost increment underflowed later and
    // trapped the kernel, seen with the shell's `get` into a user-mode Tcp under load).
    Machine.withInterruptsDisabled {
      space.threadsInside += 1
      server.threadsInside += 1
    }
    let running = UserModeState.runningServer
    UserModeState.runningServer = UInt32(UInt(bitPattern: server.words))
    let result = Processor.upcall(entry, pointer)
    UserModeState.runningServer = running
    if result >> 32 == 0 {
      for block in blocks where block.copiesOut {
        Processor.copyBytes(
          block.buffer, UnsafeRawPointer(bitPattern: UInt(arguments[block.word]))!, block.size)
      }
    }
    Machine.withInterruptsDisabled {
      server.threadsInside -= 1
      space.threadsInside -= 1
    }
    space.releaseStack(restore: restore, thread: thread)
    Paging.activate(previous)
    // The supervisor deals with a failed server once no thread is inside it; this may
    // have been the last one.
    if server.failed { Supervisor.wake() }
    return result
  }

  /// The kernel's addresses a bound stub that enters a user-mode server bakes in.
  static var upcallKernel: UpcallKernel {
    UpcallKernel(
      chain: CallChain.layout, state: UserModeState.address,
      taskStackPointer: UInt32(UInt(bitPattern: UserModeState.stackPointerWord)),
      resumePoint: Processor.resumePointAddress, trampoline: AddressSpace.thunks.returnTrampoline,
      failedAfterUpcall: KernelABI.address(userUpcallFailed as @convention(c) () -> Void))
  }

  /// What a generated upcall stub into `server`'s method `method` bakes in.
  static func upcallLayout(_ server: Server, dispatch: UInt32, method: MethodDescriptor, locked: Bool)
    -> UpcallLayout
  {
    UpcallLayout(
      kernel: upcallKernel, serverWords: UInt32(UInt(bitPattern: server.words)), dispatch: dispatch,
      upcall: KernelABI.address(Processor.upcallFunction), words: method.callWords,
      lockRelease: locked ? ServerLock.releaseAddress : nil)
  }

  /// Whether the server whose user code made the running kernel call has failed.
  @inline(never)
  fileprivate static func callingServerFailed() -> Bool { callingServer().failed }

  /// The server whose user code made the kernel call running now.
  fileprivate static func callingServer() -> Server {
    guard let server = CallChain.currentServer, server.space != nil else {
      panic("a kernel call from user mode outside any user-mode server")
    }
    return server
  }
}

@inline(__always)
private func failure(_ status: UInt32) -> UInt64 { UInt64(status) << 32 }

/// Called by generated upcall stubs after an upcall into a server that has failed: the
/// supervisor may now find no thread inside it.
@_cdecl("user_upcall_failed")
func userUpcallFailed() { Supervisor.wake() }

/// Every kernel call of a user-mode server (UserMode.S, interrupts enabled).
@_cdecl("user_entry")
func userEntry(_ code: UInt32, _ userStack: UInt32) -> UInt64 {
  // Checked before any reference is taken: the abort abandons this frame, and a
  // reference held in it would keep the server's object alive for ever.
  if UserCalls.callingServerFailed() { Processor.abortUpcall(CallABI.statusServerUnavailable) }
  let server = UserCalls.callingServer()
  var arguments: InlineArray<10, UInt32> = .init(repeating: 0)
  let count = argumentCountFor(code)
  let source = UInt64(userStack) + 8
  guard source + UInt64(4 * count) <= UInt64(Paging.userEnd), userStack >= Paging.userStart else {
    return failure(CallABI.statusInvalidHandle)
  }
  let copied = arguments.withMutableBuffer { buffer in
    Processor.copyUser(buffer.baseAddress, UnsafeRawPointer(bitPattern: UInt(source)), UInt32(4 * count))
  }
  guard copied == 0 else { return failure(CallABI.statusInvalidHandle) }
  let space = server.space!
  let thread = CallChain.threadNumber
  guard let restore = space.enterKernel(userStack: userStack, thread: thread) else {
    return failure(CallABI.statusBadBlock)
  }
  defer { space.releaseStack(restore: restore, thread: thread) }
  switch code {
  case 0...UserCallCode.maximumCall:
    return arguments.withMutableBuffer { buffer in
      Processor.callWords(server.entries.gate, buffer[0], buffer[1], buffer.baseAddress! + 2, code)
    }
  case UserCallCode.export:
    return UInt64(tesseraKernelExport(arguments[0], arguments[1]))
  case UserCallCode.acquire:
    return UInt64(
      UInt32(truncatingIfNeeded: Processor.callWords(server.entries.acquire, arguments[0], 0, nil, 0)))
  case UserCallCode.release:
    return UInt64(
      UInt32(truncatingIfNeeded: Processor.callWords(server.entries.release, arguments[0], 0, nil, 0)))
  case UserCallCode.putchar:
    return UInt64(UInt32(bitPattern: putchar(Int32(bitPattern: arguments[0]))))
  case UserCallCode.heapStart:
    return UInt64(server.userHeapStart)
  case UserCallCode.heapGrow:
    return server.growUserHeap(at: arguments[0], by: arguments[1]) ? 0 : 1
  case UserCallCode.heapShrink:
    server.shrinkUserHeap(from: arguments[0], to: arguments[1])
    return 0
  case UserCallCode.null:
    return 0
  case UserCallCode.pause:
    UserModeState.userTicks = 0  // it waits: the watchdog restarts
    Scheduler.sleep(ticks: 1)
    return 0
  default:
    return failure(CallABI.statusInvalidHandle)
  }
}

/// Words of arguments each kernel call code reads from the user stack.
private func argumentCountFor(_ code: UInt32) -> Int {
  switch code {
  case 0...UserCallCode.maximumCall: Int(truncatingIfNeeded: code) + 2
  case UserCallCode.export, UserCallCode.heapGrow, UserCallCode.heapShrink: 2
  case UserCallCode.acquire, UserCallCode.release, UserCallCode.putchar: 1
  default: 0
  }
}

/// The method entry of a words-only method of a user-mode server (a generated stub calls
/// it like marshal_call): the lock if the server is not thread-safe, then the upcall.
@_cdecl("user_call_words")
func userCallWords(_ informationAddress: UnsafeMutableRawPointer, _ arguments: UnsafeMutablePointer<UInt32>)
  -> UInt64
{
  let information = informationAddress.assumingMemoryBound(to: MarshalInformation.self)
  let server = information.pointee.server!.takeUnretainedValue()
  let count = 2 + information.pointee.method.callWords
  var acquisition = ServerLock.Acquisition.reentered
  if !server.file.manifest.isThreadSafe { acquisition = ServerLock.acquire(server.lock) }
  guard acquisition != .wouldDeadlock else { return UInt64(CallABI.statusWouldDeadlock) << 32 }
  let tookLock = acquisition.took
  CallChain.setTookLock(tookLock, at: CallChain.depth - 1)
  let result = UserCalls.upcall(
    server, entry: information.pointee.dispatch,
    arguments: UnsafeMutableBufferPointer(start: arguments, count: count))
  if tookLock {
    CallChain.setTookLock(false, at: CallChain.depth - 1)
    ServerLock.release(server.lock)
  }
  return result
}

/// Fault containment (called by Exceptions for faults in ring 3 and by the timer's
/// watchdog): stops the running user-mode server and abandons its upcall.
enum UserFaults {
  /// Stops the server whose user code caused `frame` and returns to its caller with
  /// `statusServerUnavailable`; never returns.
  static func contain(_ frame: UnsafeMutablePointer<InterruptFrame>, reason: StaticString) -> Never {
    Processor.abortUpcall(stop(frame, reason: reason))
  }

  // Everything that holds references happens here, so nothing on the abandoned frames
  // keeps an object alive.
  @inline(never)
  private static func stop(_ frame: UnsafeMutablePointer<InterruptFrame>, reason: StaticString) -> UInt32 {
    let registers = frame.pointee
    guard let server = CallChain.currentServer, server.space != nil else {
      panic("a user-mode fault outside any user-mode server")
    }
    if !server.failed {
      var location: KernelMessage = ""
      if let (offset, _) = server.locate(registers.instructionAddress) {
        location = " (image offset \(hex: offset))"
      }
      Log.error(
        "server \(server.name) stopped: \(reason) at eip \(hex: registers.instructionAddress, width: 8)\(location), cr2 \(hex: Processor.faultAddress(), width: 8), error code \(hex: registers.errorCode)"
      )
      Log.error("server backtrace: \(CallChain.describeRunning())")
      server.fail()
    } else {
      Log.info("\(server.name) (failed): a thread still inside it stopped: \(reason)")
    }
    return CallABI.statusServerUnavailable
  }
}

extension InlineArray {
  /// Runs `body` with the elements as a mutable buffer (for passing arguments to C).
  mutating func withMutableBuffer<Result>(_ body: (UnsafeMutableBufferPointer<Element>) -> Result) -> Result {
    var span = mutableSpan
    return span.withUnsafeMutableBufferPointer { body($0) }
  }
}

/// Containment of Swift traps in kernel-mode servers (called by Exceptions for an
/// invalid-opcode fault at a `ud2` in ring 0). Swift turns most bugs (overflow, bounds,
/// nil unwraps, preconditions, `try!`) into such a trap, which cannot have corrupted
/// anything yet: the trapping server is failed, and so is every kernel-mode server whose
/// call is abandoned with it, back to the innermost resume frame (Calls.S: each
/// arch_call_words of the kernel, each call a user-mode server makes), which returns
/// `serverUnavailable` as if the call had. Locks those calls took are freed. A wild write
/// in kernel mode is not contained: it is the price of kernel placement.
enum KernelFaults {
  /// Resumes the innermost resume frame if the trap at `frame` is a kernel-mode server's;
  /// returns otherwise (the caller panics).
  static func contain(_ frame: UnsafeMutablePointer<InterruptFrame>) {
    let resume = Processor.resumePoint
    guard stopServers(frame, resume: resume) else { return }
    Processor.resume(resume, CallABI.statusServerUnavailable)
  }

  // Everything that holds references happens here, so nothing on the abandoned frames
  // keeps an object alive.
  @inline(never)
  private static func stopServers(_ frame: UnsafeMutablePointer<InterruptFrame>, resume: UInt32) -> Bool {
    let eip = frame.pointee.instructionAddress
    guard resume != 0, let server = CallChain.currentServer, server.space == nil,
      let (offset, generated) = server.locate(eip), !generated
    else { return false }
    // The records made since the frame are abandoned (none when the frame's own call is
    // the trapping server's: marshal_call and Server.enter push the record first).
    let resumeFrame = UnsafePointer<UInt32>(bitPattern: UInt(resume))!
    let depth = CallChain.depth
    let level = min(Int(truncatingIfNeeded: resumeFrame[1]), depth)
    // Only kernel-mode calls may lie between the frame and the trap (a user-mode server's
    // call would have made a frame of its own).
    for record in level..<depth {
      if let abandoned = CallChain.server(at: record), abandoned.space != nil { return false }
    }
    Log.error(
      "server \(server.name) stopped: Swift runtime trap (ud2) in kernel mode at eip \(hex: eip, width: 8) (image offset \(hex: offset))"
    )
    Log.error("server backtrace: \(CallChain.describeRunning())")
    for record in (level..<depth).reversed() {
      guard let abandoned = CallChain.server(at: record) else { continue }
      if CallChain.tookLock(at: record) {
        // Cleared: a later call at this level that takes no lock (a gate, a bound stub)
        // must not find the flag and release another server's lock for it.
        CallChain.setTookLock(false, at: record)
        ServerLock.release(abandoned.lock)
      }
      if !abandoned.failed && abandoned !== server {
        Log.error("server \(abandoned.name) stopped: its call into \(server.name) was abandoned")
        abandoned.fail()
      }
    }
    // A frame made by arch_call_words_callee sits above its callee's record, whose own
    // frames (between the frame and the trap) are abandoned too.
    if resumeFrame[3] == 1, level > 0, let callee = CallChain.server(at: level - 1), callee !== server,
      !callee.failed
    {
      Log.error("server \(callee.name) stopped: its call into \(server.name) was abandoned")
      callee.fail()
    }
    if !server.failed { server.fail() }
    CallChain.unwind(to: level)
    return true
  }
}
