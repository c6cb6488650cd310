// Processor: the one door from the architecture-independent kernel (Kernel/Core) to the
// i686 processor and the assembly beside it (CPU.h, Boot.S, Calls.S, Switch.S,
// UserMode.S, String.S). Kernel/Core does not import CPU; it calls these.
//
// Contract: each member does exactly what the CPU.h function or variable it wraps does
// (named in its comment) and is inlined, so the facade costs no instruction.

import CPU

/// The registers an interrupt or exception saved (Interrupts.S's frame, CPU.h).
typealias InterruptFrame = CPU.InterruptFrame

extension InterruptFrame {
  /// Where the interrupted code was (EIP).
  var instructionAddress: UInt32 { eip }
  /// The exception's error code (0 for vectors without one).
  var errorCode: UInt32 { error_code }
}

/// The processor's operations the kernel's architecture-independent code uses.
enum Processor {
  // MARK: Interrupts, time, faults

  /// Masks interrupts (`cli`).
  @inline(__always) static func disableInterrupts() { cpu_disable_interrupts() }
  /// Unmasks interrupts (`sti`).
  @inline(__always) static func enableInterrupts() { cpu_enable_interrupts() }
  /// Whether interrupts are unmasked (EFLAGS.IF).
  @inline(__always) static func interruptsEnabled() -> Bool { cpu_flags() & 0x200 != 0 }
  /// The time-stamp counter (`rdtsc`): a guest instruction under `-icount shift=0`.
  @inline(__always) static func timestamp() -> UInt64 { cpu_timestamp() }
  /// The time-stamp counter at the kernel's first instruction (Boot.S).
  @inline(__always) static func bootTimestamp() -> UInt64 { arch_boot_timestamp() }
  /// The address of the last page fault (CR2).
  @inline(__always) static func faultAddress() -> UInt32 { cpu_cr2() }
  /// The caller's frame pointer (EBP), where a backtrace starts.
  @inline(__always) static func framePointer() -> UInt32 { arch_frame_pointer() }

  // MARK: Port I/O (the kernel's IOPorts and PCI configuration services)

  /// Reads a byte from `port` (`in al, dx`).
  @inline(__always) static func readPort8(_ port: UInt16) -> UInt8 { cpu_inb(port) }
  /// Reads 16 bits from `port`.
  @inline(__always) static func readPort16(_ port: UInt16) -> UInt16 { cpu_inw(port) }
  /// Reads 32 bits from `port`.
  @inline(__always) static func readPort32(_ port: UInt16) -> UInt32 { cpu_inl(port) }
  /// Writes a byte to `port` (`out dx, al`).
  @inline(__always) static func writePort8(_ port: UInt16, _ value: UInt8) { cpu_outb(port, value) }
  /// Writes 16 bits to `port`.
  @inline(__always) static func writePort16(_ port: UInt16, _ value: UInt16) { cpu_outw(port, value) }
  /// Writes 32 bits to `port`.
  @inline(__always) static func writePort32(_ port: UInt16, _ value: UInt32) { cpu_outl(port, value) }

  // MARK: Threads (Switch.S)

  /// Saves the floating-point and SSE state into `area` (512 bytes, 16-aligned: `fxsave`).
  @inline(__always) static func saveFloatingPoint(_ area: UnsafeMutableRawPointer) { cpu_save_fpu(area) }
  /// Loads the state `saveFloatingPoint` saved (`fxrstor`).
  @inline(__always) static func restoreFloatingPoint(_ area: UnsafeRawPointer) { cpu_restore_fpu(area) }
  /// Saves the kernel stack pointer into `oldStack` and continues on `newStack`
  /// (arch_switch_stack), returning when something switches back.
  @inline(__always) static func switchStack(_ oldStack: UnsafeMutablePointer<UInt32>, _ newStack: UInt32) {
    arch_switch_stack(oldStack, newStack)
  }
  /// Where a new thread's first switch returns to (arch_thread_start).
  @inline(__always) static func threadStartAddress() -> UInt32 { arch_thread_start_address() }

  // MARK: Calls (Calls.S)

  /// Calls `function(context, selector, words[0..<count])` (arch_call_words).
  @inline(__always) static func callWords(
    _ function: UInt32, _ context: UInt32, _ selector: UInt32, _ words: UnsafePointer<UInt32>?,
    _ count: UInt32
  ) -> UInt64 {
    arch_call_words(function, context, selector, words, count)
  }
  /// `callWords` for a callee whose call-chain record the caller pushed
  /// (arch_call_words_callee).
  @inline(__always) static func callWordsWithRecordPushed(
    _ function: UInt32, _ context: UInt32, _ selector: UInt32, _ words: UnsafePointer<UInt32>?,
    _ count: UInt32
  ) -> UInt64 {
    arch_call_words_callee(function, context, selector, words, count)
  }
  /// The running thread's innermost resume frame (0: none); per thread.
  @inline(__always) static var resumePoint: UInt32 {
    get { arch_resume_point }
    set { arch_resume_point = newValue }
  }
  /// The address of the resume-frame word, for generated code.
  @inline(__always) static var resumePointAddress: UInt32 { arch_resume_point_address() }
  /// The general path of a user-mode server's bound call (arch_bound_call_general).
  @inline(__always) static var boundCallGeneralAddress: UInt32 { arch_bound_call_general_address() }
  /// The call entry past its gate lookup (arch_bound_call_direct).
  @inline(__always) static var boundCallDirectAddress: UInt32 { arch_bound_call_direct_address() }
  /// Continues at resume frame `frame` as if its call had returned `status` (arch_resume).
  @inline(__always) static func resume(_ frame: UInt32, _ status: UInt32) -> Never {
    arch_resume(frame, status)
  }
  /// The running thread's call chain, at the fixed address generated code bakes in.
  @inline(__always) static func callChainStorage() -> UnsafeMutablePointer<UInt32> {
    arch_call_chain_storage()
  }
  /// The words Calls.S reserves for the call chain.
  @inline(__always) static func callChainWords() -> UInt32 { arch_call_chain_words() }
  /// Tells the resume frames where the call chain's depth word is (set once at boot).
  @inline(__always) static func setChainDepthAddress(_ address: UInt32) { arch_chain_depth_address = address }
  /// Copies `count` bytes (String.S's memcpy; the areas must not overlap).
  @inline(__always) static func copyBytes(
    _ destination: UnsafeMutableRawPointer, _ source: UnsafeRawPointer, _ count: UInt32
  ) {
    _ = memcpy(destination, source, count)
  }
  /// The address of memcpy, memmove, memset or memcmp named `name` (String.S), or 0.
  @inline(__always) static func stringFunction(_ name: UnsafePointer<UInt8>?) -> UInt32 {
    arch_string_function(name)
  }

  // MARK: User mode (UserMode.S)

  /// Enters user code at `entry` on `stack` and returns what it returned (arch_upcall).
  @inline(__always) static func upcall(_ entry: UInt32, _ stack: UInt32) -> UInt64 {
    arch_upcall(entry, stack)
  }
  /// `upcall` as a C function, for generated code that calls it.
  static let upcallFunction: @convention(c) (UInt32, UInt32) -> UInt64 = arch_upcall
  /// Abandons the innermost upcall, which returns result 0 with `status`.
  @inline(__always) static func abortUpcall(_ status: UInt32) -> Never { arch_upcall_abort(status) }
  /// Copies `count` bytes between user and kernel memory; 1 if a page fault stopped it.
  @inline(__always) static func copyUser(
    _ destination: UnsafeMutableRawPointer?, _ source: UnsafeRawPointer?, _ count: UInt32
  ) -> UInt32 {
    arch_copy_user(destination, source, count)
  }

  // MARK: The kernel image (Boot.S and the linker script)

  /// The first byte of the kernel image.
  @inline(__always) static func kernelImageStart() -> UInt32 { arch_kernel_image_start() }
  /// The byte after the kernel image.
  @inline(__always) static func kernelImageEnd() -> UInt32 { arch_kernel_image_end() }
  /// The lowest byte of the boot stack (above its guard page).
  @inline(__always) static func bootStackBottom() -> UInt32 { arch_boot_stack_bottom() }
  /// The byte above the boot stack.
  @inline(__always) static func bootStackTop() -> UInt32 { arch_boot_stack_top() }
  /// The boot stack's guard page.
  @inline(__always) static func bootStackGuard() -> UInt32 { arch_boot_stack_guard() }
  /// The physical-frame bitmap's storage in the image.
  @inline(__always) static func frameBitmapStorage() -> UnsafeMutablePointer<UInt32>? {
    arch_frame_bitmap_storage()
  }
  /// Its words.
  @inline(__always) static func frameBitmapWords() -> UInt32 { arch_frame_bitmap_words() }
}

/// The per-CPU words UserMode.S reads on every entry from and exit to user mode
/// (`user_mode_state` in CPU.h, which says what each word is).
enum UserModeState {
  /// The kernel stack a `sysenter` or an interrupt from ring 3 starts on (per thread).
  @inline(__always) static var entryStack: UInt32 {
    get { user_mode_state.0 }
    set { user_mode_state.0 = newValue }
  }
  /// Timer ticks spent in user mode since the last kernel entry (per thread).
  @inline(__always) static var userTicks: UInt32 {
    get { user_mode_state.1 }
    set { user_mode_state.1 = newValue }
  }
  /// The address of the TSS's esp0, kept equal to `entryStack`.
  @inline(__always) static var stackPointerWord: UnsafeMutablePointer<UInt32> {
    UnsafeMutablePointer<UInt32>(bitPattern: UInt(user_mode_state.2))!
  }
  /// The server words of the user-mode server the thread runs in (per thread; 0: none).
  @inline(__always) static var runningServer: UInt32 {
    get { user_mode_state.4 }
    set { user_mode_state.4 = newValue }
  }
  /// The address of the running thread's number.
  @inline(__always) static var threadNumberAddress: UInt32 {
    get { user_mode_state.5 }
    set { user_mode_state.5 = newValue }
  }
  /// The address of the words, for generated code.
  static var address: UInt32 {
    withUnsafeMutablePointer(to: &user_mode_state) { UInt32(UInt(bitPattern: $0)) }
  }
}

/// The breakpoint tools/gdb/tessera.py sets (Kernel/Runtime/Debugger.c).
enum DebuggerHook {
  /// Tells an attached gdb that a server's image is loaded and relocated at `image`.
  @inline(__always) static func serverLoaded(image: UInt32, name: UnsafePointer<UInt8>, length: UInt32) {
    tessera_debugger_server_loaded(image, name, length)
  }
}
