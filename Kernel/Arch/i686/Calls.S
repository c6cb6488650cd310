// Calls.S: the one fixed piece of the cross-server call path (the rest is generated at
// load time, see KernelCore/CallStubs.swift).
//
// Contract: arch_call_words calls `function(context, selector, words[0..count))` with the
// C convention and a 16-byte aligned stack and returns its 64-bit result (EDX:EAX); the
// kernel uses it to call gates, dispatch functions and server entry points.

.section .text
.global arch_call_words
.type arch_call_words, @function
arch_call_words:            // uint64_t (uint32_t function, uint32_t context, uint32_t selector, const uint32_t *words, uint32_t count)
    pushl %ebp
    movl %esp, %ebp
    pushl %esi
    pushl %edi
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
    leal -8(%ebp), %esp
    popl %edi
    popl %esi
    popl %ebp
    ret
.size arch_call_words, . - arch_call_words

