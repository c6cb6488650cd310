// InterruptController: the two 8259 PICs, IRQ handler registration and dispatch of all
// interrupt vectors.
//
// Contract: IRQ lines 0-15 arrive on vectors 32-47. A line stays masked until a handler
// is registered for it. Each IRQ is acknowledged (EOI) after its handler returns.
// Spurious IRQs 7 and 15 (the PIC's in-service bit is clear) are counted and not
// acknowledged, except that a spurious IRQ 15 still needs an EOI to the master, which
// saw a real cascade interrupt. Vectors below 32 are CPU exceptions and go to
// `Exceptions.handle`; any other vector is a kernel bug and panics.

import CPU
import KernelCore

/// A function called with interrupts disabled when its IRQ line fires.
typealias IRQHandler = @convention(c) (_ line: UInt8) -> Void

enum InterruptController {
  static let firstVector: UInt32 = 32
  static let lineCount = 16
  private static let masterCommand: UInt16 = 0x20
  private static let masterData: UInt16 = 0x21
  private static let slaveCommand: UInt16 = 0xA0
  private static let slaveData: UInt16 = 0xA1
  private static let endOfInterrupt: UInt8 = 0x20
  private static let readInService: UInt8 = 0x0B

  private nonisolated(unsafe) static var handlers: InlineArray<16, IRQHandler?> = .init(repeating: nil)
  private nonisolated(unsafe) static var mask: UInt16 = 0xFFFF & ~(1 << 2)  // cascade line open
  /// Interrupts counted per line, spurious ones excluded.
  nonisolated(unsafe) static var counts: InlineArray<16, UInt32> = .init(repeating: 0)
  /// Spurious IRQs seen on lines 7 and 15.
  nonisolated(unsafe) static var spuriousCount: UInt32 = 0

  /// Remaps the PICs to vectors 32-47 and masks every line.
  static func initialize() {
    cpu_outb(masterCommand, 0x11)  // ICW1: initialize, expect ICW4
    cpu_outb(slaveCommand, 0x11)
    cpu_outb(masterData, UInt8(firstVector))  // ICW2: vector offsets
    cpu_outb(slaveData, UInt8(firstVector + 8))
    cpu_outb(masterData, 0x04)  // ICW3: slave on line 2
    cpu_outb(slaveData, 0x02)
    cpu_outb(masterData, 0x01)  // ICW4: 8086 mode
    cpu_outb(slaveData, 0x01)
    writeMask()
  }

  /// Installs `handler` for `line` and unmasks the line. Returns false if the line
  /// already has a handler (a line has one owner).
  @discardableResult
  static func register(line: Int, handler: @escaping IRQHandler) -> Bool {
    precondition(line >= 0 && line < lineCount && line != 2)
    return Machine.withInterruptsDisabled {
      guard handlers[line] == nil else { return false }
      handlers[line] = handler
      mask &= ~(1 << UInt16(line))
      writeMask()
      return true
    }
  }

  /// Removes the handler of `line` and masks the line again.
  static func unregister(line: Int) {
    Machine.withInterruptsDisabled {
      handlers[line] = nil
      mask |= 1 << UInt16(line)
      writeMask()
    }
  }

  /// Masks `line` (its interrupts wait in the PIC).
  static func mask(line: Int) {
    Machine.withInterruptsDisabled {
      mask |= 1 << UInt16(line)
      writeMask()
    }
  }

  /// Unmasks `line`.
  static func unmask(line: Int) {
    Machine.withInterruptsDisabled {
      mask &= ~(1 << UInt16(line))
      writeMask()
    }
  }

  /// Handles an IRQ vector; called by `interruptDispatch` with interrupts disabled.
  static func handle(vector: UInt32) {
    let line = Int(vector - firstVector)
    if line == 7 || line == 15 {
      let command = line == 7 ? masterCommand : slaveCommand
      cpu_outb(command, readInService)
      if cpu_inb(command) & 0x80 == 0 {
        spuriousCount &+= 1
        if line == 15 { cpu_outb(masterCommand, endOfInterrupt) }
        return
      }
    }
    counts[line] &+= 1
    if let handler = handlers[line] { handler(UInt8(line)) }
    if line >= 8 { cpu_outb(slaveCommand, endOfInterrupt) }
    cpu_outb(masterCommand, endOfInterrupt)
  }

  private static func writeMask() {
    cpu_outb(masterData, UInt8(mask & 0xFF))
    cpu_outb(slaveData, UInt8(mask >> 8))
  }
}

/// The single entry from Interrupts.S for every vector.
@_cdecl("interrupt_dispatch")
func interruptDispatch(_ frame: UnsafeMutablePointer<InterruptFrame>) {
  Machine.endHalt()
  let vector = frame.pointee.vector
  switch vector {
  case 0..<32:
    Exceptions.handle(frame)
  case InterruptController.firstVector..<(InterruptController.firstVector + 16):
    if vector == InterruptController.firstVector && Profiler.isOn {
      // The interrupted function's return address from its frame (the processor pushed no
      // stack pointer in kernel mode: the stack went on where user_esp would be), read
      // only from a mapped word of the same stack: ebp may hold anything in assembly.
      let user = frame.pointee.cs & 3 == 3
      let stack = UInt32(UInt(bitPattern: frame)) &+ UInt32(MemoryLayout<InterruptFrame>.size - 8)
      let base = frame.pointee.ebp
      var caller: UInt32 = 0
      if !user, base & 3 == 0, base >= stack, base - stack < 65_536, Paging.translate(base &+ 4) != nil {
        caller = UnsafePointer<UInt32>(bitPattern: UInt(base &+ 4))!.pointee
      }
      Profiler.record(address: frame.pointee.eip, top: caller, user: user)
    }
    InterruptController.handle(vector: vector)
    if vector == InterruptController.firstVector && frame.pointee.cs & 3 == 3 {
      // The timer interrupted user code: the watchdog counts how long it has run
      // without entering the kernel (an endless loop stops the server).
      user_mode_state.1 &+= 1
      if user_mode_state.1 >= UserCalls.watchdogTicks {
        UserFaults.contain(frame, reason: "watchdog: running for 2 seconds without calling out of its server")
      }
    }
    if Scheduler.needsReschedule && frame.pointee.cs & 3 == 0 {
      // A thread switched away in the middle of a generated acquire, release or bound
      // stub, before its count, starts it again (CountWindow): a table grown meanwhile
      // must not miss the count, a slot freed meanwhile must send the stub to the gate.
      frame.pointee.eip = Server.resumeAddress(preemptedAt: frame.pointee.eip)
    }
    Scheduler.preemptIfNeeded()  // after the EOI, so the timer keeps ticking meanwhile
  default:
    Exceptions.report(frame, reason: "unexpected interrupt vector")
  }
}
