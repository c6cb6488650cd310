// Interrupts.S: one entry stub per interrupt vector and the common save/restore path.
//
// Contract: each stub pushes a dummy error code (unless the CPU pushed one) and its
// vector number, then the common path saves the general and segment registers as an
// InterruptFrame (CPU.h) and the FPU/SSE state (fxsave, so interrupted Swift code keeps
// its xmm registers), loads the flat data segments, and calls
// interrupt_dispatch(InterruptFrame *) with a 16-byte aligned stack. On return it
// restores everything (the handler may have changed the frame) and irets.

// DS/ES/FS/GS hold the flat user data segment in the kernel too (SS keeps the kernel's):
// it is valid at every privilege level, so sysexit and iret need not reload them.
.set DATA_SELECTOR, 0x23

.macro STUB vector
    .align 16
stub_\vector:
    // Vectors with a CPU-pushed error code: 8, 10-14, 17, 21, 29, 30.
    .if (\vector == 8) || ((\vector >= 10) && (\vector <= 14)) || (\vector == 17) || (\vector == 21) || (\vector == 29) || (\vector == 30)
    .else
    pushl $0
    .endif
    pushl $\vector
    jmp interrupt_common
.endm

.section .text
.altmacro
.set vector, 0
.rept 256
    STUB %vector
    .set vector, vector + 1
.endr

interrupt_common:
    pushal
    pushl %ds
    pushl %es
    pushl %fs
    pushl %gs
    movw $DATA_SELECTOR, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %fs
    movw %ax, %gs
    cld
    movl %esp, %ebx                 // the InterruptFrame; ebx survives the call
    subl $512, %esp
    andl $-16, %esp
    fxsave (%esp)
    subl $12, %esp
    pushl %ebx
    call interrupt_dispatch
    addl $16, %esp
    fxrstor (%esp)
    movl %ebx, %esp
    popl %gs
    popl %fs
    popl %es
    popl %ds
    popal
    addl $8, %esp                   // vector and error code
    iret

.macro STUB_ADDRESS vector
    .long stub_\vector
.endm

.section .rodata
.align 4
.global interrupt_stub_table
interrupt_stub_table:
.set vector, 0
.rept 256
    STUB_ADDRESS %vector
    .set vector, vector + 1
.endr

// The double fault runs as a task of its own (a task gate in the IDT, DescriptorTables):
// a kernel stack overflow faults on the guard below it, and the CPU, unable to push the
// page fault's frame there, raises a double fault, which needs a stack that works.
.section .bss
.align 16
.global double_fault_stack_top
double_fault_stack_bottom:
.skip 8192
double_fault_stack_top:

.section .text
.global arch_double_fault_entry
.type arch_double_fault_entry, @function
arch_double_fault_entry:
    clts                        // the task switch set CR0.TS: Swift uses SSE at once
    andl $-16, %esp             // the error code left it off the ABI's alignment
    call double_fault_handler   // a panic report; never returns
1:  hlt
    jmp 1b
.size arch_double_fault_entry, . - arch_double_fault_entry
