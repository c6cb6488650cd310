// Switch.S: switching kernel stacks between threads, and where a new thread starts.
//
// Contract: arch_switch_stack(&old, new) saves the callee-saved registers on the current
// stack, stores the stack pointer in *old, loads `new` and returns on that stack (into
// whatever that thread was doing when it switched away). A new thread's stack is built
// (Scheduler) to return into arch_thread_start, which enables interrupts and calls
// thread_main() with a zero frame pointer, so backtraces end there.

.section .text
.global arch_switch_stack
.type arch_switch_stack, @function
arch_switch_stack:          // void (uint32_t *old_stack, uint32_t new_stack)
    movl 4(%esp), %eax
    movl 8(%esp), %edx
    pushl %ebp
    pushl %ebx
    pushl %esi
    pushl %edi
    movl %esp, (%eax)
    movl %edx, %esp
    popl %edi
    popl %esi
    popl %ebx
    popl %ebp
    ret
.size arch_switch_stack, . - arch_switch_stack

.global arch_thread_start
.type arch_thread_start, @function
arch_thread_start:
    xorl %ebp, %ebp
    sti
    call thread_main
1:  cli
    hlt
    jmp 1b
.size arch_thread_start, . - arch_thread_start
