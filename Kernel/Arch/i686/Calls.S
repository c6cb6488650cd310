// Calls.S: the one fixed piece of the cross-server call path (the rest is generated at
// load time, see CodeGeneration/CallStubs.swift).
//
// Contract: arch_call_words calls `function(context, selector, words[0..count))` with the
// C convention and a 16-byte aligned stack and returns its 64-bit result (EDX:EAX); the
// kernel uses it to call gates, dispatch functions and server entry points. Each call is a
// resume point: a Swift trap in a kernel-mode server it called returns from it with a
// status instead of panicking (arch_resume, KernelFaults in Exceptions.swift).

#include "KernelABI.h"

.section .bss
.align 4
.global arch_resume_point
arch_resume_point:          // the running thread's innermost resume frame (0: none); per thread
    .long 0
.global arch_chain_depth_address
arch_chain_depth_address:   // the call chain's depth word (CallChain), set at boot
    .long 0
.global call_chain_storage
call_chain_storage:         // the running thread's call chain (CallChain)
    .space 4 * TESSERA_CALL_CHAIN_WORDS

// A resume frame, on the kernel stack, 9 words (arch_call_words) or 4 (UserMode.S's call
// entry), lowest address first: previous resume frame, call-chain depth at entry, resume
// EIP, resume ESP (call entry: its way-back frame), then EBX, ESI, EDI, EBP and EFLAGS.
// A Swift trap in a kernel-mode server below it ends there (KernelFaults): the records
// above the depth are dropped and arch_resume continues at the resume EIP with EAX = 0
// and EDX = a status, as if the call had returned it.

.section .text
.global arch_call_words
.type arch_call_words, @function
arch_call_words:            // uint64_t (uint32_t function, uint32_t context, uint32_t selector, const uint32_t *words, uint32_t count)
    pushl %ebp
    movl %esp, %ebp
    pushl %esi
    pushl %edi
    pushfl                  // the resume frame (see above)
    pushl %ebp
    pushl %edi
    pushl %esi
    pushl %ebx
    pushl $0                // (resume ESP unused: 0, or 1 from arch_call_words_callee)
    jmp call_words_frame
.size arch_call_words, . - arch_call_words

// The same, for a call whose callee's record the caller has pushed already (marshal_call,
// Server.enter): a trap further in abandons the callee's own frames too, so the callee is
// failed with the trapping server.
.global arch_call_words_callee
.type arch_call_words_callee, @function
arch_call_words_callee:
    pushl %ebp
    movl %esp, %ebp
    pushl %esi
    pushl %edi
    pushfl
    pushl %ebp
    pushl %edi
    pushl %esi
    pushl %ebx
    pushl $1
call_words_frame:
    pushl $call_words_return
    movl arch_chain_depth_address, %eax
    pushl (%eax)
    pushl arch_resume_point
    movl %esp, arch_resume_point
    movl 24(%ebp), %ecx
    movl 20(%ebp), %esi
    leal 8(,%ecx,4), %eax
    subl %eax, %esp
    andl $-16, %esp
    movl 12(%ebp), %edx
    movl %edx, (%esp)
    movl 16(%ebp), %edx
    movl %edx, 4(%esp)
    xorl %edx, %edx
1:  cmpl %ecx, %edx
    jae 2f
    movl (%esi,%edx,4), %eax
    movl %eax, 8(%esp,%edx,4)
    incl %edx
    jmp 1b
2:  call *8(%ebp)
call_words_return:          // also where a contained trap resumes (EBP restored)
    leal -44(%ebp), %esp    // the resume frame
    popl arch_resume_point
    addl $32, %esp
    popl %edi
    popl %esi
    popl %ebp
    ret
.size arch_call_words_callee, . - arch_call_words_callee

.global arch_resume
.type arch_resume, @function
arch_resume:                // void arch_resume(uint32_t frame, uint32_t status), never returns
    movl 4(%esp), %ecx
    movl 8(%esp), %edx
    movl 8(%ecx), %eax
    cmpl $call_words_return, %eax
    jne 1f
    movl 16(%ecx), %ebx     // arch_call_words: its registers, flags by iret
    movl 20(%ecx), %esi
    movl 24(%ecx), %edi
    movl 28(%ecx), %ebp
    pushl 32(%ecx)
    pushl $0x08
    pushl $call_words_return
    xorl %eax, %eax
    iret
1:  movl 12(%ecx), %ebx     // the call entry: its way-back frame, then its own exit
    xorl %eax, %eax
    jmp *8(%ecx)
.size arch_resume, . - arch_resume
