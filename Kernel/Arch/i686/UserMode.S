// UserMode.S: the privilege transitions of calls between kernel and user-mode servers.
//
// Contract: a thread enters user code only through arch_upcall (sysexit into a server's
// function, whose return address is the user trampoline), and comes back only through
// sysenter: with EAX = -1 (the trampoline: the function returned EDX), or with EAX = a
// kernel-call code (UserCalls.swift: calls, references, heap, console) and ECX = the user
// stack, EDX = where to resume. Kernel calls run user_entry(code, user stack) with
// interrupts enabled and return EAX = result, EBX = status (the user thunk moves it to
// EDX). ESI, EDI and EBP survive every kernel call. Upcalls nest: each one makes the
// kernel stack below its own frame the entry stack (user_mode_state[0], and the TSS's
// esp0), so a sysenter or an interrupt from user mode never overwrites a live frame.
// arch_upcall_abort unwinds to the innermost upcall (a faulted or stopped server).
// arch_copy_user, the call entry's argument copy and the generated stubs' accesses of
// user stacks (UserBoundStubs.swift, FaultFixup) are the only code that touches user
// memory on behalf of a caller; a page fault there the kernel cannot serve resumes at a
// fixup.

#include "KernelABI.h"          // generated from KernelCore's constants (tessera abi-header)
.set RETURN_CODE, TESSERA_RETURN_CODE
.set NULL_CODE, TESSERA_NULL_CODE
.set MAXIMUM_CALL, TESSERA_MAXIMUM_CALL
.set INVALID_HANDLE, TESSERA_STATUS_INVALID_HANDLE
.set BAD_BLOCK, TESSERA_STATUS_BAD_BLOCK
.set WORD_FAILED, TESSERA_SERVER_WORD_FAILED
.set WORD_GATE, TESSERA_SERVER_WORD_GATE
.set WORD_STACK_POINTERS, TESSERA_SERVER_WORD_STACK_POINTERS
.set WORD_BOUND_LIMIT, TESSERA_SERVER_WORD_BOUND_LIMIT
.set WORD_BOUND_CALLS, TESSERA_SERVER_WORD_BOUND_CALLS
.set BOUND_BASE, TESSERA_BOUND_BASE
// The user stack slots (KernelCore's UserStacks).
.set STACKS_START, TESSERA_USER_STACKS_START
.set STACK_SHIFT, TESSERA_USER_STACK_SHIFT
.set STACK_GUARD, TESSERA_USER_STACK_GUARD

.section .bss
.align 4
.global user_mode_state
user_mode_state:            // see CPU.h
    .long 0, 0, 0, 0, 0, 0

// The stack sysenter itself switches to (MSR 0x175), used only by a debug trap taken at
// the entry's first instruction when user code set the trap flag (Exceptions clears it
// there and returns): the entry loads the thread's own stack at once.
.align 16
arch_sysenter_stack:
    .space 4096
.global arch_sysenter_stack_top
arch_sysenter_stack_top:

.section .text
.global arch_sysenter_entry
.type arch_sysenter_entry, @function
arch_sysenter_entry:
    movl user_mode_state, %esp
    cld                     // the user's direction flag must reach no kernel code, nor another server
    cmpl $RETURN_CODE, %eax
    je upcall_returned
    cmpl $BOUND_BASE, %eax
    jae bound_entry
    cmpl $NULL_CODE, %eax
    je null_call
    pushl %ebp
    pushl %edi
    pushl %esi
    pushl %edx              // where the user resumes
    pushl %ecx              // the user stack
    cmpl $MAXIMUM_CALL, %eax
    jbe call_entry
general_entry:              // everything but calls, and calls the fast path leaves alone
    movl %esp, %ebp
    andl $-16, %esp
    subl $8, %esp
    pushl %ecx
    pushl %eax
    sti
    call user_entry         // uint64_t user_entry(uint32_t code, uint32_t user_stack)
    cli
    movl %ebp, %esp
    movl %edx, %ebx         // the status
return_to_user:             // ESP at the saved registers, EAX result, EBX status, IF clear
    popl %ecx
    popl %edx
    popl %esi
    popl %edi
    popl %ebp
    sti                     // takes effect after sysexit
    sysexit
// A bound call: the calling server's stub for the code (UserBoundStubs.swift), entered
// with the user's registers but EAX and EBX (which the thunk saved). A code the server was
// not given, or any code of a server that has failed (its limit is 0), takes the general
// entry, which refuses it or stops the thread.
bound_entry:
    movl user_mode_state+16, %ebx           // the calling server's words
    cmpl WORD_BOUND_LIMIT(%ebx), %eax
    jae bound_unknown
    jmp *(WORD_BOUND_CALLS - 4 * BOUND_BASE)(%ebx,%eax,4)
bound_unknown:
    pushl %ebp
    pushl %edi
    pushl %esi
    pushl %edx
    pushl %ecx
    jmp general_entry
// A bound call whose stub takes the general path (its slot is not bound to a user-mode
// server in another space, or no longer; or the callee failed): tessera_callN, N in EAX.
.global arch_bound_call_general
arch_bound_call_general:
    pushl %ebp
    pushl %edi
    pushl %esi
    pushl %edx
    pushl %ecx
    jmp call_entry
null_call:
    xorl %eax, %eax
    xorl %ebx, %ebx
    sti
    sysexit

// tessera_callN from user mode: the arguments are copied from the user stack (a fault
// in the copy refuses the call) and the calling server's own gate is called, as a
// kernel-mode server's import would call it (or, for a bound call, its kernel bound stub). The thread's user stack pointer in this
// space is recorded first (and restored after), so upcalls nested in the call start
// below the caller's live frames. A failed server takes the general path (which stops
// the thread).
call_entry:
    movl user_mode_state+16, %esi           // the calling server's words
    cmpl $0, WORD_FAILED(%esi)
    jne general_entry
    movl WORD_GATE(%esi), %ebp              // what to call: the caller's gate
// A bound call's stub that calls a kernel bound stub (UserBoundStubs.swift) enters here,
// with the user's registers pushed, ESI the caller's words, EBP that stub and EAX = N.
.global arch_bound_call_direct
arch_bound_call_direct:
    movl $0, user_mode_state+4              // a call out of the server: the watchdog restarts
    movl user_mode_state+20, %edi
    movl (%edi), %edi                       // the thread number
    movl %edi, %edx                         // the caller must be on this thread's stack
    shll $STACK_SHIFT, %edx
    addl $STACKS_START + STACK_GUARD, %edx  // its lowest usable address
    cmpl %edx, %ecx
    jb call_off_stack
    addl $(1 << STACK_SHIFT) - STACK_GUARD, %edx  // its top
    cmpl %edx, %ecx
    jae call_off_stack
    movl WORD_STACK_POINTERS(%esi), %edx
    leal (%edx,%edi,4), %edx                // its user stack pointer slot in this space
    pushl (%edx)
    pushl %edx
    movl %ecx, %edi
    andl $-16, %edi
    movl %edi, (%edx)
    movl %esp, %ebx                         // the frame, for the way back
    pushl %ebx                              // a resume frame (Calls.S): way back,
    pushl $call_done                        // resume at call_done,
    movl arch_chain_depth_address, %edi
    pushl (%edi)                            // the chain's depth,
    pushl arch_resume_point                 // the enclosing frame
    movl %esp, arch_resume_point
    leal 8(,%eax,4), %edi                   // bytes: handle, selector, N words
    subl %edi, %esp
    andl $-16, %esp
    leal 8(%ecx), %esi                      // the arguments on the user stack (in its slot)
    movl %esp, %edi
    leal 2(%eax), %ecx
    sti
    cld
.global arch_call_copy_start
arch_call_copy_start:                       // a page fault here resumes at the fixup
    rep movsl
.global arch_call_copy_end
arch_call_copy_end:
    call *%ebp                              // the gate or bound stub: edx:eax, as it returns them
call_done:                                  // also where a contained trap resumes
    cli
    movl -16(%ebx), %ecx                    // the enclosing resume frame again
    movl %ecx, arch_resume_point
    movl %ebx, %esp
    popl %ecx
    popl (%ecx)                             // the slot's previous value
    movl %edx, %ebx                         // the status
    jmp return_to_user
call_off_stack:                             // nothing recorded yet: refuse and leave
    xorl %eax, %eax
    movl $BAD_BLOCK, %ebx
    jmp return_to_user
.global arch_call_copy_fixup
arch_call_copy_fixup:
    xorl %eax, %eax
    movl $INVALID_HANDLE, %edx
    jmp call_done
.size arch_sysenter_entry, . - arch_sysenter_entry

.global arch_upcall
.type arch_upcall, @function
arch_upcall:                // uint64_t arch_upcall(uint32_t entry, uint32_t user_stack)
    pushfl
    pushl %ebp
    pushl %ebx
    pushl %esi
    pushl %edi
    pushl user_mode_state   // the enclosing upcall's entry stack
    pushl user_mode_state+4 // and its user ticks
    pushl arch_resume_point // and its resume frame (an abort drops any made since)
    movl 36(%esp), %edx     // entry
    movl 40(%esp), %ecx     // user stack
    cli
    movl %esp, user_mode_state
    movl user_mode_state+8, %eax
    movl %esp, (%eax)       // TSS.esp0: interrupts from user mode land below this frame
    movl $0, user_mode_state+4
    xorl %eax, %eax         // no kernel values leak into user registers
    xorl %ebx, %ebx
    xorl %esi, %esi
    xorl %edi, %edi
    xorl %ebp, %ebp
    sti
    sysexit
upcall_returned:            // ESP = the upcall's frame, EDX = the result word
    movl %edx, %eax
    xorl %edx, %edx
upcall_resume:
    popl arch_resume_point
    popl user_mode_state+4
    popl user_mode_state
    movl user_mode_state+8, %ecx
    movl user_mode_state, %ebx
    movl %ebx, (%ecx)
    popl %edi
    popl %esi
    popl %ebx
    popl %ebp
    popfl
    ret
.size arch_upcall, . - arch_upcall

.global arch_upcall_abort
.type arch_upcall_abort, @function
arch_upcall_abort:          // void arch_upcall_abort(uint32_t status)
    cli
    movl 4(%esp), %edx
    movl user_mode_state, %esp
    xorl %eax, %eax
    jmp upcall_resume
.size arch_upcall_abort, . - arch_upcall_abort

.global arch_copy_user
.type arch_copy_user, @function
arch_copy_user:             // uint32_t arch_copy_user(void *dst, const void *src, uint32_t n)
    pushl %edi
    pushl %esi
    movl 12(%esp), %edi
    movl 16(%esp), %esi
    movl 20(%esp), %ecx
    cld
    movl %ecx, %edx
    shrl $2, %ecx
    andl $3, %edx
.global arch_copy_user_fault_start
arch_copy_user_fault_start:
    rep movsl               // four bytes a step, then the tail
    movl %edx, %ecx
    rep movsb
.global arch_copy_user_fault_end
arch_copy_user_fault_end:
    xorl %eax, %eax
    popl %esi
    popl %edi
    ret
.global arch_copy_user_fixup
arch_copy_user_fixup:
    movl $1, %eax
    popl %esi
    popl %edi
    ret
.size arch_copy_user, . - arch_copy_user
