// CPU.h: the i686 instructions and boot-time data the Swift kernel needs, as inline C.
//
// Contract: every function here is a thin wrapper around one instruction (or a fixed
// sequence) with no policy; Swift code in Kernel/Arch/i686 decides when to use them.
// Nothing outside Kernel/Arch/i686 imports this module.
#pragma once
#include <stdint.h>
#include "KernelABI.h"  // build/generated, from KernelCore's constants (tessera abi-header)

/// The registers the interrupt entry stubs (Interrupts.S) save, lowest address first.
typedef struct InterruptFrame {
  uint32_t gs, fs, es, ds;
  uint32_t edi, esi, ebp, esp_at_entry, ebx, edx, ecx, eax;
  uint32_t vector, error_code;
  uint32_t eip, cs, eflags;
  uint32_t user_esp, user_ss;  // valid only when the interrupt came from ring 3
} InterruptFrame;

static inline __attribute__((always_inline)) void cpu_outb(uint16_t port, uint8_t value) { __asm__ volatile("outb %0, %1" ::"a"(value), "Nd"(port)); }
static inline __attribute__((always_inline)) void cpu_outw(uint16_t port, uint16_t value) { __asm__ volatile("outw %0, %1" ::"a"(value), "Nd"(port)); }
static inline __attribute__((always_inline)) void cpu_outl(uint16_t port, uint32_t value) { __asm__ volatile("outl %0, %1" ::"a"(value), "Nd"(port)); }
static inline __attribute__((always_inline)) uint8_t cpu_inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline __attribute__((always_inline)) uint16_t cpu_inw(uint16_t port) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline __attribute__((always_inline)) uint32_t cpu_inl(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }

static inline __attribute__((always_inline)) void cpu_disable_interrupts(void) { __asm__ volatile("cli" ::: "memory"); }
static inline __attribute__((always_inline)) void cpu_enable_interrupts(void) { __asm__ volatile("sti" ::: "memory"); }
/// Enables interrupts and halts in one step, so an interrupt cannot slip in between.
static inline __attribute__((always_inline)) void cpu_enable_interrupts_and_halt(void) { __asm__ volatile("sti; hlt" ::: "memory"); }
static inline __attribute__((always_inline)) void cpu_halt(void) { __asm__ volatile("hlt" ::: "memory"); }
static inline __attribute__((always_inline)) uint32_t cpu_flags(void) { uint32_t f; __asm__ volatile("pushfl; popl %0" : "=r"(f)::"memory"); return f; }
static inline __attribute__((always_inline)) void cpu_restore_flags(uint32_t f) { __asm__ volatile("pushl %0; popfl" ::"r"(f) : "memory", "cc"); }

static inline __attribute__((always_inline)) uint32_t cpu_cr0(void) { uint32_t v; __asm__ volatile("movl %%cr0, %0" : "=r"(v)); return v; }
static inline __attribute__((always_inline)) uint32_t cpu_cr2(void) { uint32_t v; __asm__ volatile("movl %%cr2, %0" : "=r"(v)); return v; }
static inline __attribute__((always_inline)) uint32_t cpu_cr3(void) { uint32_t v; __asm__ volatile("movl %%cr3, %0" : "=r"(v)); return v; }
static inline __attribute__((always_inline)) uint32_t cpu_cr4(void) { uint32_t v; __asm__ volatile("movl %%cr4, %0" : "=r"(v)); return v; }
static inline __attribute__((always_inline)) void cpu_set_cr0(uint32_t v) { __asm__ volatile("movl %0, %%cr0" ::"r"(v) : "memory"); }
static inline __attribute__((always_inline)) void cpu_set_cr3(uint32_t v) { __asm__ volatile("movl %0, %%cr3" ::"r"(v) : "memory"); }
static inline __attribute__((always_inline)) void cpu_set_cr4(uint32_t v) { __asm__ volatile("movl %0, %%cr4" ::"r"(v) : "memory"); }
static inline __attribute__((always_inline)) void cpu_invalidate_page(uint32_t address) { __asm__ volatile("invlpg (%0)" ::"r"(address) : "memory"); }

static inline __attribute__((always_inline)) uint64_t cpu_timestamp(void) { uint32_t lo, hi; __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi)); return ((uint64_t)hi << 32) | lo; }
/// The calling function's frame pointer (Boot.S; a real call, so it cannot be inlined away).
uint32_t arch_frame_pointer(void);

/// Loads the GDT and reloads every segment register (CS through a far return).
static inline __attribute__((always_inline)) void cpu_load_gdt(const void *base, uint16_t limit, uint16_t code, uint16_t data) {
  struct __attribute__((packed)) { uint16_t limit; uint32_t base; } descriptor = {limit, (uint32_t)(uintptr_t)base};
  __asm__ volatile(
      "lgdt %0\n\t"
      "movw %2, %%ax\n\t"
      "movw %%ax, %%ds\n\t movw %%ax, %%es\n\t movw %%ax, %%fs\n\t movw %%ax, %%gs\n\t movw %%ax, %%ss\n\t"
      "pushl %1\n\t"
      "pushl $1f\n\t"
      "lret\n"
      "1:" ::"m"(descriptor), "r"((uint32_t)code), "r"(data) : "eax", "memory");
}
static inline __attribute__((always_inline)) void cpu_load_idt(const void *base, uint16_t limit) {
  struct __attribute__((packed)) { uint16_t limit; uint32_t base; } descriptor = {limit, (uint32_t)(uintptr_t)base};
  __asm__ volatile("lidt %0" ::"m"(descriptor) : "memory");
}
static inline __attribute__((always_inline)) void cpu_load_task_register(uint16_t selector) { __asm__ volatile("ltr %0" ::"r"(selector)); }
/// Loads `selector` into DS, ES, FS and GS (the kernel uses the flat user data segment for
/// them, so they stay valid across every privilege change; SS keeps the kernel's).
static inline __attribute__((always_inline)) void cpu_set_data_segments(uint16_t selector) {
  __asm__ volatile("movw %0, %%ds\n\t movw %0, %%es\n\t movw %0, %%fs\n\t movw %0, %%gs" ::"r"(selector) : "memory");
}
static inline __attribute__((always_inline)) void cpu_write_msr(uint32_t msr, uint64_t value) {
  __asm__ volatile("wrmsr" ::"c"(msr), "a"((uint32_t)value), "d"((uint32_t)(value >> 32)));
}

/// User mode (UserMode.S). `user_mode_state[0]` is the kernel stack a sysenter or an
/// interrupt from ring 3 starts on, `[1]` the timer ticks spent in user mode since the
/// last kernel entry, `[2]` the address of the TSS's esp0 (kept equal to `[0]`), `[3]`
/// the page directory CR3 holds, `[4]` the server words (ServerWords) of the user-mode
/// server the thread runs in, `[5]` the address of the running thread's number. Words 0,
/// 1, 3 and 4 are per thread (the scheduler switches them).
extern uint32_t user_mode_state[6];
/// Enters user code at `entry` on `user_stack` (its first word the return trampoline) and
/// returns what the code returned (status 0) once it re-enters through the trampoline.
uint64_t arch_upcall(uint32_t entry, uint32_t user_stack);
/// Abandons the innermost upcall: it returns result 0 with `status` in the high word.
__attribute__((noreturn)) void arch_upcall_abort(uint32_t status);
/// Copies `count` bytes between user and kernel memory; 1 if a page fault stopped it.
uint32_t arch_copy_user(void *destination, const void *source, uint32_t count);
void arch_sysenter_entry(void);
extern char arch_sysenter_stack_top[];
static inline __attribute__((always_inline)) uint32_t arch_sysenter_stack_top_address(void) { return (uint32_t)(uintptr_t)arch_sysenter_stack_top; }
extern char arch_copy_user_fault_start[], arch_copy_user_fault_end[], arch_copy_user_fixup[];
static inline __attribute__((always_inline)) uint32_t arch_sysenter_entry_address(void) { return (uint32_t)(uintptr_t)&arch_sysenter_entry; }
static inline __attribute__((always_inline)) uint32_t arch_copy_user_fault_start_address(void) { return (uint32_t)(uintptr_t)arch_copy_user_fault_start; }
static inline __attribute__((always_inline)) uint32_t arch_copy_user_fault_end_address(void) { return (uint32_t)(uintptr_t)arch_copy_user_fault_end; }
static inline __attribute__((always_inline)) uint32_t arch_copy_user_fixup_address(void) { return (uint32_t)(uintptr_t)arch_copy_user_fixup; }
/// The call entry's inline argument copy and its fixup (UserMode.S).
extern char arch_call_copy_start[], arch_call_copy_end[], arch_call_copy_fixup[];
static inline __attribute__((always_inline)) uint32_t arch_call_copy_start_address(void) { return (uint32_t)(uintptr_t)arch_call_copy_start; }
static inline __attribute__((always_inline)) uint32_t arch_call_copy_end_address(void) { return (uint32_t)(uintptr_t)arch_call_copy_end; }
static inline __attribute__((always_inline)) uint32_t arch_call_copy_fixup_address(void) { return (uint32_t)(uintptr_t)arch_call_copy_fixup; }

/// The general path of a user-mode server's bound call (UserMode.S; EAX = its words).
void arch_bound_call_general(void);
static inline __attribute__((always_inline)) uint32_t arch_bound_call_general_address(void) { return (uint32_t)(uintptr_t)&arch_bound_call_general; }
/// The call entry past its gate lookup (UserMode.S; ESI the caller's words, EBP the stub to call, EAX = words).
void arch_bound_call_direct(void);
static inline __attribute__((always_inline)) uint32_t arch_bound_call_direct_address(void) { return (uint32_t)(uintptr_t)&arch_bound_call_direct; }

/// Calls `function(context, selector, words...)` (Calls.S).
uint64_t arch_call_words(uint32_t function, uint32_t context, uint32_t selector, const uint32_t *words, uint32_t count);
/// arch_call_words for a callee whose call-chain record the caller pushed (see Calls.S).
uint64_t arch_call_words_callee(uint32_t function, uint32_t context, uint32_t selector, const uint32_t *words,
                                uint32_t count);
/// The running thread's innermost resume frame (Calls.S; 0: none), per thread, and the
/// address of the call chain's depth word, which resume frames record.
extern uint32_t arch_resume_point;
extern uint32_t arch_chain_depth_address;
static inline __attribute__((always_inline)) uint32_t arch_resume_point_address(void) { return (uint32_t)(uintptr_t)&arch_resume_point; }
/// The running thread's call chain (Calls.S), at a fixed address generated code bakes in:
/// TESSERA_CALL_CHAIN_WORDS words (CallChain checks that it agrees).
extern uint32_t call_chain_storage[];
#define CALL_CHAIN_WORDS TESSERA_CALL_CHAIN_WORDS
static inline __attribute__((always_inline)) uint32_t *arch_call_chain_storage(void) { return call_chain_storage; }
static inline __attribute__((always_inline)) uint32_t arch_call_chain_words(void) { return CALL_CHAIN_WORDS; }
/// Continues at resume frame `frame` as if its call had returned status `status`.
__attribute__((noreturn)) void arch_resume(uint32_t frame, uint32_t status);

/// The address of memcpy, memmove, memset or memcmp by name (String.S), or 0.
void *memcpy(void *, const void *, unsigned int);
void *memmove(void *, const void *, unsigned int);
void *memset(void *, int, unsigned int);
int memcmp(const void *, const void *, unsigned int);
static inline __attribute__((always_inline)) uint32_t arch_string_function(const uint8_t *name) {
  if (name[3] == 'c' && name[4] == 'p') return (uint32_t)(uintptr_t)&memcpy;
  if (name[3] == 'm' && name[4] == 'o') return (uint32_t)(uintptr_t)&memmove;
  if (name[3] == 's') return (uint32_t)(uintptr_t)&memset;
  return (uint32_t)(uintptr_t)&memcmp;
}

/// Switches kernel stacks (Switch.S).
void arch_switch_stack(uint32_t *old_stack, uint32_t new_stack);
void arch_thread_start(void);
static inline __attribute__((always_inline)) uint32_t arch_thread_start_address(void) { return (uint32_t)(uintptr_t)&arch_thread_start; }
static inline __attribute__((always_inline)) void cpu_save_fpu(void *area) { __asm__ volatile("fxsave (%0)" ::"r"(area) : "memory"); }
static inline __attribute__((always_inline)) void cpu_restore_fpu(const void *area) { __asm__ volatile("fxrstor (%0)" ::"r"(area) : "memory"); }

// Boot-time data defined in Boot.S, Interrupts.S and the linker script.
extern uint32_t interrupt_stub_table[256];  ///< entry address of each vector's stub
extern uint64_t boot_timestamp;             ///< TSC value at kernel entry
extern char kernel_image_start[], kernel_image_end[];
extern char boot_stack_guard[], boot_stack_bottom[], boot_stack_top[];
extern uint32_t frame_bitmap_storage[];     ///< 2 x FRAME_BITMAP_WORDS words (Boot.S)
#define FRAME_BITMAP_WORDS 6144

static inline __attribute__((always_inline)) uint32_t arch_interrupt_stub(uint32_t vector) { return interrupt_stub_table[vector]; }
static inline __attribute__((always_inline)) uint64_t arch_boot_timestamp(void) { return boot_timestamp; }
static inline __attribute__((always_inline)) uint32_t arch_kernel_image_start(void) { return (uint32_t)(uintptr_t)kernel_image_start; }
static inline __attribute__((always_inline)) uint32_t arch_kernel_image_end(void) { return (uint32_t)(uintptr_t)kernel_image_end; }
static inline __attribute__((always_inline)) uint32_t arch_boot_stack_bottom(void) { return (uint32_t)(uintptr_t)boot_stack_bottom; }
static inline __attribute__((always_inline)) uint32_t arch_boot_stack_guard(void) { return (uint32_t)(uintptr_t)boot_stack_guard; }
static inline __attribute__((always_inline)) uint32_t *arch_frame_bitmap_storage(void) { return frame_bitmap_storage; }
static inline __attribute__((always_inline)) uint32_t arch_frame_bitmap_words(void) { return FRAME_BITMAP_WORDS; }
static inline __attribute__((always_inline)) uint32_t arch_boot_stack_top(void) { return (uint32_t)(uintptr_t)boot_stack_top; }
extern char double_fault_stack_top[];
void arch_double_fault_entry(void);
static inline __attribute__((always_inline)) uint32_t arch_double_fault_stack_top(void) { return (uint32_t)(uintptr_t)double_fault_stack_top; }
static inline __attribute__((always_inline)) uint32_t arch_double_fault_entry_address(void) { return (uint32_t)(uintptr_t)arch_double_fault_entry; }

/// Called after every server's image is loaded and relocated (Kernel/Runtime/Debugger.c):
/// the breakpoint tools/gdb/tessera.py uses to add the server's symbols.
void tessera_debugger_server_loaded(uint32_t image, const uint8_t *name, uint32_t length);
