// Exceptions: CPU exceptions (vectors 0-31) and the register part of panic reports.
//
// Contract: every exception is fatal for now (there is nothing to return to): the report
// names the exception, its error code (decoded for page faults, with CR2), all registers,
// and a symbolized backtrace, then the machine stops (see `Machine.stop`). Later issues
// turn faults in user-mode servers into errors for their callers instead.

import CPU
import KernelCore

enum Exceptions {
  private static let names: InlineArray<32, StaticString> = [
    "Division error", "Debug", "Non-maskable interrupt", "Breakpoint", "Overflow",
    "Bound range exceeded", "Invalid opcode", "Device not available", "Double fault",
    "Coprocessor segment overrun", "Invalid TSS", "Segment not present", "Stack-segment fault",
    "General protection fault", "Page fault", "Reserved (15)", "x87 floating-point exception",
    "Alignment check", "Machine check", "SIMD floating-point exception", "Virtualization exception",
    "Control protection exception", "Reserved (22)", "Reserved (23)", "Reserved (24)",
    "Reserved (25)", "Reserved (26)", "Reserved (27)", "Hypervisor injection exception",
    "VMM communication exception", "Security exception", "Reserved (31)",
  ]
  static let pageFault: UInt32 = 14
  static let debug: UInt32 = 1
  private static let trapFlag: UInt32 = 0x100
  static let invalidOpcode: UInt32 = 6

  /// Handles an exception frame from `interruptDispatch`: page faults the kernel serves
  /// (a user stack growing; a user copy's fixup; generated code's reads and writes of user
  /// stacks, whose fixups undo the call) resume, and so does a trap flag a user set before
  /// `sysenter`; faults in user mode stop the server (UserFaults); anything else is a
  /// panic.
  static func handle(_ frame: UnsafeMutablePointer<InterruptFrame>) {
    let fromUser = frame.pointee.cs & 3 == 3
    let vector = frame.pointee.vector
    if vector == debug, !fromUser, frame.pointee.eip == arch_sysenter_entry_address() {
      // User code entered the kernel with the trap flag set (sysenter keeps it): the
      // kernel does not single-step. The flag is dropped; sysexit will not restore it.
      frame.pointee.eflags &= ~trapFlag
      return
    }
    if vector == pageFault {
      if servedStackFault(at: cpu_cr2()) { return }
      // A pager region's page touched in user mode (error code bit 1: a write).
      if fromUser && MemoryObjects.serveFault(at: cpu_cr2(), write: frame.pointee.error_code & 2 != 0) {
        return
      }
      let eip = frame.pointee.eip
      if !fromUser, eip >= arch_copy_user_fault_start_address(), eip < arch_copy_user_fault_end_address() {
        frame.pointee.eip = arch_copy_user_fixup_address()
        return
      }
      if !fromUser, eip >= arch_call_copy_start_address(), eip < arch_call_copy_end_address() {
        frame.pointee.eip = arch_call_copy_fixup_address()
        return
      }
      if !fromUser, let fixup = Server.faultFixup(at: eip) {
        frame.pointee.eip = fixup  // a stub's user-stack access: the call is undone and refused
        return
      }
    }
    if fromUser {
      let trap = vector == invalidOpcode && isTrapInstruction(at: frame.pointee.eip)
      UserFaults.contain(frame, reason: trap ? "Swift runtime trap (ud2)" : names[Int(vector)])
    }
    if vector == invalidOpcode, isTrapInstruction(at: frame.pointee.eip) {
      KernelFaults.contain(frame)  // returns only when the trap is not a kernel-mode server's
    }
    report(frame, reason: names[Int(vector)])
  }

  /// Prints a panic report for `frame` and stops the machine.
  static func report(_ frame: UnsafeMutablePointer<InterruptFrame>, reason: StaticString) -> Never {
    let registers = frame.pointee
    Panic.begin()
    Panic.line("\(reason) (vector \(registers.vector)), error code \(hex: registers.error_code, width: 4)")
    if registers.vector == pageFault {
      let code = registers.error_code
      let cause: StaticString = code & 1 != 0 ? "protection violation" : "page not present"
      let access: StaticString =
        code & 16 != 0 ? "instruction fetch" : (code & 2 != 0 ? "write" : "read")
      let mode: StaticString = code & 4 != 0 ? "user" : "kernel"
      Panic.line("faulting address (cr2) \(hex: cpu_cr2(), width: 8): \(cause), \(access) in \(mode) mode")
    }
    if registers.vector == invalidOpcode, isTrapInstruction(at: registers.eip) {
      Panic.line("ud2 at eip: a Swift runtime trap (overflow, bounds, nil unwrap or precondition)")
    }
    Panic.line("eip \(hex: registers.eip, width: 8)  \(Panic.symbol(registers.eip))")
    Panic.line(
      "cs \(hex: registers.cs, width: 4)  ds \(hex: registers.ds, width: 4)  eflags \(hex: registers.eflags, width: 8)"
    )
    Panic.line(
      "eax \(hex: registers.eax, width: 8)  ebx \(hex: registers.ebx, width: 8)  ecx \(hex: registers.ecx, width: 8)  edx \(hex: registers.edx, width: 8)"
    )
    Panic.line(
      "esi \(hex: registers.esi, width: 8)  edi \(hex: registers.edi, width: 8)  ebp \(hex: registers.ebp, width: 8)  esp \(hex: registers.esp_at_entry &+ 20, width: 8)"
    )
    Panic.line(
      "cr0 \(hex: cpu_cr0(), width: 8)  cr2 \(hex: cpu_cr2(), width: 8)  cr3 \(hex: cpu_cr3(), width: 8)  cr4 \(hex: cpu_cr4(), width: 8)"
    )
    Panic.backtrace(instruction: registers.eip, framePointer: registers.ebp)
    Panic.threadAndServers()
    Panic.end()
  }

  // Apart, so no reference is live in `handle` when it calls a function that never
  // returns (the abandoned frames would keep it forever).
  @inline(never)
  private static func servedStackFault(at address: UInt32) -> Bool {
    guard address >= Paging.userStart,
      let space = AddressSpace.all.first(where: { $0.directory == Paging.activeDirectory })
    else { return false }
    return space.handleStackFault(at: address)
  }

  private static func isTrapInstruction(at address: UInt32) -> Bool {
    var bytes: (UInt8, UInt8) = (0, 0)
    if address >= Paging.userStart {
      // User code: read it as the server could (it may be unmapped).
      guard
        withUnsafeMutableBytes(
          of: &bytes, { arch_copy_user($0.baseAddress, UnsafeRawPointer(bitPattern: UInt(address)), 2) }) == 0
      else { return false }
    } else {
      // Kernel code, or a kernel-mode server's image in the kernel heap: mapped pages only.
      guard address >= Paging.pageSize, Paging.translate(address & ~(Paging.pageSize - 1)) != nil,
        Paging.translate((address &+ 1) & ~(Paging.pageSize - 1)) != nil
      else { return false }
      let memory = UnsafePointer<UInt8>(bitPattern: UInt(address))!
      bytes = (memory[0], memory[1])
    }
    return bytes.0 == 0x0F && bytes.1 == 0x0B
  }
}

/// The double fault's task (DescriptorTables): reports the fault naming the thread, whose
/// kernel stack overflowed if the fault address lies in its guard (KernelStacks).
@_cdecl("double_fault_handler")
func doubleFaultHandler() {
  let (eip, esp, ebp) = DescriptorTables.interruptedRegisters
  Panic.begin()
  if let number = KernelStacks.guardOwner(of: cpu_cr2()) ?? KernelStacks.guardOwner(of: esp &- 4) {
    let name: KernelMessage = Scheduler.thread(number)?.name ?? "?"
    Panic.line(
      "Double fault: kernel stack overflow of thread \(number) (\(name)), cr2 \(hex: cpu_cr2(), width: 8)")
  } else {
    Panic.line("Double fault (vector 8), cr2 \(hex: cpu_cr2(), width: 8)")
  }
  Panic.line(
    "eip \(hex: eip, width: 8)  \(Panic.symbol(eip))  esp \(hex: esp, width: 8)  ebp \(hex: ebp, width: 8)")
  Panic.backtrace(instruction: eip, framePointer: ebp)
  Panic.threadAndServers()
  Panic.end()
}
