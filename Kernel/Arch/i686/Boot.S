// Boot.S: the Multiboot header and the first instructions of the kernel.
//
// Contract: entered by a Multiboot (v1) loader in 32-bit protected mode with paging off,
// EAX = 0x2BADB002 and EBX = the boot information address. Enables SSE (Swift code uses
// xmm registers from its first instruction), records the TSC, sets up the boot stack
// with a zero frame pointer (where backtraces stop) and calls kernel_main(magic, info).

.set MULTIBOOT_MAGIC, 0x1BADB002
.set MULTIBOOT_FLAGS, 0x00000003   // page-align modules, provide memory information
.set CR0_EMULATION, 1 << 2
.set CR0_MONITOR_COPROCESSOR, 1 << 1
.set CR4_OSFXSR, 1 << 9
.set CR4_OSXMMEXCPT, 1 << 10
.set BOOT_STACK_SIZE, 65536

.section .multiboot, "a"
.align 4
.long MULTIBOOT_MAGIC
.long MULTIBOOT_FLAGS
.long -(MULTIBOOT_MAGIC + MULTIBOOT_FLAGS)

.section .bss
.align 4096
.global boot_stack_guard
boot_stack_guard:                   // one page left unmapped once paging is on (Paging)
.skip 4096
.global boot_stack_bottom
boot_stack_bottom:
.skip BOOT_STACK_SIZE
.global boot_stack_top
boot_stack_top:

.set FRAME_BITMAP_WORDS, 6144       // 196,608 frames = the 768 MiB direct map

// Storage for the frame allocator's two bitmaps, needed before any heap exists.
.global frame_bitmap_storage
.align 4096
frame_bitmap_storage:
.skip FRAME_BITMAP_WORDS * 4 * 2

.section .data
.align 8
.global boot_timestamp
boot_timestamp:
.quad 0

.section .text
.global _start
.type _start, @function
_start:
    cli
    movl $boot_stack_top, %esp
    movl %eax, %esi                 // keep the loader's magic across rdtsc
    rdtsc
    movl %eax, boot_timestamp
    movl %edx, boot_timestamp + 4

    movl %cr0, %eax
    andl $~CR0_EMULATION, %eax
    orl $CR0_MONITOR_COPROCESSOR, %eax
    movl %eax, %cr0
    movl %cr4, %eax
    orl $(CR4_OSFXSR | CR4_OSXMMEXCPT), %eax
    movl %eax, %cr4
    fninit

    xorl %ebp, %ebp
    subl $8, %esp                   // keep the stack 16-byte aligned at the call
    pushl %ebx
    pushl %esi
    call kernel_main
1:  cli
    hlt
    jmp 1b
.size _start, . - _start

// uint32_t arch_frame_pointer(void): the caller's frame pointer (EBP is untouched here),
// where a backtrace of the caller starts.
.global arch_frame_pointer
.type arch_frame_pointer, @function
arch_frame_pointer:
    movl %ebp, %eax
    ret
.size arch_frame_pointer, . - arch_frame_pointer
