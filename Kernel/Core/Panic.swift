// Panic: fatal kernel errors and the report printed for them.
//
// Contract: `panic` prints `KERNEL PANIC: reason`, a symbolized backtrace of kernel frames
// and stops the machine (`Machine.stop(.panic)`); it never returns and never allocates.
// A panic during a panic stops at once, so a broken report cannot loop.

import KernelCore

/// Stops the kernel with a report; for states the kernel cannot continue from.
@inline(never)
func panic(_ reason: KernelMessage) -> Never {
  Panic.begin()
  Panic.line(reason)
  Panic.backtrace(instruction: 0, framePointer: Processor.framePointer())
  Panic.threadAndServers()
  Panic.end()
}

enum Panic {
  private nonisolated(unsafe) static var inProgress = false
  private static let maximumFrames = 32

  /// The kernel's symbol map, once the boot module holding it has been found.
  nonisolated(unsafe) static var symbols: SymbolMap?

  /// Starts a report: masks interrupts and prints the header.
  static func begin() {
    Processor.disableInterrupts()
    if inProgress {
      KernelConsole.write("KERNEL PANIC during panic report; stopping\n")
      Machine.stop(.panic)
    }
    inProgress = true
    KernelConsole.write("\n================ KERNEL PANIC ================\n")
  }

  /// Prints one line of the report.
  static func line(_ text: KernelMessage) {
    KernelConsole.write(text)
    KernelConsole.write("\n")
  }

  /// Ends the report and stops the machine.
  static func end() -> Never {
    KernelConsole.write("================ system stopped ================\n")
    Machine.stop(.panic)
  }

  /// Names the running thread and prints its chain of servers.
  static func threadAndServers() {
    if let thread = Scheduler.current {
      line("thread \(thread.number) (\(thread.name))")
    }
    CallChain.printServerBacktrace()
  }

  /// `name+0xoffset` for a code address, or `?` if no symbol covers it.
  static func symbol(_ address: UInt32) -> KernelMessage {
    if let match = symbols?.lookup(address) { return "\(text: match.name) + \(hex: match.offset)" }
    for server in Server.loaded {
      guard let (offset, generated) = server.locate(address) else { continue }
      let what: StaticString = generated ? "code generated for server" : "server"
      return "\(what) \(server.name) + \(hex: offset)"
    }
    return "?"
  }

  /// Prints the backtrace: `instruction` first (if nonzero), then the return address of
  /// each frame in the frame-pointer chain starting at `framePointer`. The walk stops at a
  /// zero frame pointer (set at kernel entry) or one outside the boot stack.
  static func backtrace(instruction: UInt32, framePointer: UInt32) {
    line("backtrace:")
    var number = 0
    if instruction != 0 {
      line("  #0 \(hex: instruction, width: 8) \(symbol(instruction))")
      number = 1
    }
    var frame = framePointer
    // The running thread's stack: the boot stack, or a thread stack from the heap.
    var stackBottom = Processor.bootStackBottom()
    var stackTop = Processor.bootStackTop()
    if let stack = Scheduler.current?.stack {
      stackBottom = UInt32(UInt(bitPattern: stack))
      stackTop = stackBottom + UInt32(Thread.stackSize)
    }
    while number < maximumFrames, frame >= stackBottom, frame < stackTop - 8, frame & 3 == 0 {
      let slots = UnsafePointer<UInt32>(bitPattern: UInt(frame))!
      let returnAddress = slots[1]
      guard returnAddress != 0 else { break }
      // Name the call instruction, not the one after it.
      line("  #\(number) \(hex: returnAddress, width: 8) \(symbol(returnAddress &- 1))")
      number += 1
      guard slots[0] > frame else { break }  // frames only grow upwards
      frame = slots[0]
    }
  }
}
