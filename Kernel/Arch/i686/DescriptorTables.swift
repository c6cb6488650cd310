// DescriptorTables: the GDT (flat kernel and user segments plus a TSS) and the IDT.
//
// Contract: after `install`, every one of the 256 vectors enters its stub in
// Interrupts.S, so no interrupt or exception can reach an empty gate, except the double
// fault (8), a task gate to a task of its own with its own stack (a kernel stack
// overflow must still be reported). Selectors are fixed: kernel code 0x08, kernel data
// 0x10, user code 0x1B, user data 0x23, TSS 0x28, the double fault's TSS 0x30.
// DS, ES, FS and GS hold the flat user data segment (valid at every privilege level, so
// no transition reloads them); SS holds the kernel's. The TSS's esp0 and the sysenter
// MSRs lead entries from user mode to the kernel stack UserMode.S keeps current.

import CPU
import KernelCore

enum DescriptorTables {
  static let kernelCodeSelector: UInt16 = 0x08
  static let kernelDataSelector: UInt16 = 0x10
  static let userCodeSelector: UInt16 = 0x1B
  static let userDataSelector: UInt16 = 0x23
  static let taskStateSelector: UInt16 = 0x28
  static let doubleFaultTaskSelector: UInt16 = 0x30

  private nonisolated(unsafe) static var globalTable: InlineArray<7, UInt64> = .init(repeating: 0)
  private nonisolated(unsafe) static var interruptTable: InlineArray<256, UInt64> = .init(repeating: 0)
  // The 104-byte task state segment; only ss0/esp0 matter (the stack for entries from ring 3).
  private nonisolated(unsafe) static var taskState: InlineArray<26, UInt32> = .init(repeating: 0)
  // The double fault's task: its entry, stack and segments; CR3 is set once paging is on.
  private nonisolated(unsafe) static var doubleFaultTask: InlineArray<26, UInt32> = .init(repeating: 0)

  /// The interrupted task's registers, as the CPU saved them when it switched to the
  /// double fault's task: (eip, esp, ebp).
  static var interruptedRegisters: (eip: UInt32, esp: UInt32, ebp: UInt32) {
    (taskState[8], taskState[14], taskState[15])
  }

  /// The page directory the double fault's task runs with (the kernel's).
  static func setDoubleFaultDirectory(_ directory: UInt32) { doubleFaultTask[7] = directory }

  /// Loads the GDT, the task register and the IDT.
  static func install() {
    globalTable[1] = segment(base: 0, limit: 0xFFFFF, access: 0x9A)  // kernel code
    globalTable[2] = segment(base: 0, limit: 0xFFFFF, access: 0x92)  // kernel data
    globalTable[3] = segment(base: 0, limit: 0xFFFFF, access: 0xFA)  // user code
    globalTable[4] = segment(base: 0, limit: 0xFFFFF, access: 0xF2)  // user data
    taskState[2] = UInt32(kernelDataSelector)  // ss0
    taskState[1] = arch_boot_stack_top()  // esp0
    taskState[25] = 104 << 16  // I/O map base past the end: no port access from ring 3
    // Globals have fixed storage, so the addresses stay valid after the closures return.
    let taskStateAddress = withUnsafeMutableBytes(of: &taskState) { UInt32(UInt(bitPattern: $0.baseAddress)) }
    globalTable[5] = segment(base: taskStateAddress, limit: 103, access: 0x89, flags: 0)
    doubleFaultTask[8] = arch_double_fault_entry_address()  // eip
    doubleFaultTask[9] = 0x2  // eflags: interrupts off
    doubleFaultTask[14] = arch_double_fault_stack_top()  // esp
    doubleFaultTask[18] = UInt32(kernelDataSelector)  // es
    doubleFaultTask[19] = UInt32(kernelCodeSelector)  // cs
    for word in 20...23 { doubleFaultTask[word] = UInt32(kernelDataSelector) }  // ss, ds, fs, gs
    doubleFaultTask[25] = 104 << 16
    let doubleFaultAddress = withUnsafeMutableBytes(of: &doubleFaultTask) {
      UInt32(UInt(bitPattern: $0.baseAddress))
    }
    globalTable[6] = segment(base: doubleFaultAddress, limit: 103, access: 0x89, flags: 0)
    withUnsafeMutableBytes(of: &globalTable) { table in
      cpu_load_gdt(table.baseAddress, UInt16(7 * 8 - 1), kernelCodeSelector, kernelDataSelector)
    }
    cpu_load_task_register(taskStateSelector)
    cpu_set_data_segments(userDataSelector)
    user_mode_state.2 = taskStateAddress + 4
    // sysenter: kernel code segment (and +8/+16/+24 for the others), a stack of its own
    // (the entry loads the thread's at once; only a debug trap on the entry's first
    // instruction runs on it) and the entry point.
    cpu_write_msr(0x174, UInt64(kernelCodeSelector))
    cpu_write_msr(0x175, UInt64(arch_sysenter_stack_top_address()))
    cpu_write_msr(0x176, UInt64(arch_sysenter_entry_address()))

    for vector in 0..<256 {
      // 32-bit interrupt gate, ring 0 only: software `int` from user mode faults.
      interruptTable[vector] = gate(handler: arch_interrupt_stub(UInt32(vector)), privilege: 0)
    }
    interruptTable[8] = UInt64(doubleFaultTaskSelector) << 16 | UInt64(0x85) << 40  // task gate
    withUnsafeMutableBytes(of: &interruptTable) { table in
      cpu_load_idt(table.baseAddress, UInt16(256 * 8 - 1))
    }
  }

  private static func segment(base: UInt32, limit: UInt32, access: UInt8, flags: UInt8 = 0xC)
    -> UInt64
  {
    var descriptor = UInt64(limit & 0xFFFF)
    descriptor |= UInt64(base & 0xFF_FFFF) << 16
    descriptor |= UInt64(access) << 40
    descriptor |= UInt64((limit >> 16) & 0xF) << 48
    descriptor |= UInt64(flags & 0xF) << 52
    descriptor |= UInt64(base >> 24) << 56
    return descriptor
  }

  private static func gate(handler: UInt32, privilege: UInt8) -> UInt64 {
    var descriptor = UInt64(handler & 0xFFFF)
    descriptor |= UInt64(kernelCodeSelector) << 16
    descriptor |= UInt64(0x8E | (privilege & 3) << 5) << 40
    descriptor |= UInt64(handler >> 16) << 48
    return descriptor
  }
}
