// TestSupport-i686.S: instruction-level helpers for the in-kernel tests (test image only).
//
// Contract: each helper does exactly what its name says with the C calling convention;
// the tests in this folder decide what the outcome means.

.section .text

// void test_divide_by_zero(void): executes `div` with a zero divisor (#DE, vector 0).
.global test_divide_by_zero
.type test_divide_by_zero, @function
test_divide_by_zero:
    pushl %ebp
    movl %esp, %ebp
    xorl %edx, %edx
    movl $1, %eax
    xorl %ecx, %ecx
    divl %ecx
    popl %ebp
    ret
.size test_divide_by_zero, . - test_divide_by_zero

// void test_clobber_sse(void): overwrites xmm0-xmm7 (what any SSE-using handler may do).
.global test_clobber_sse
.type test_clobber_sse, @function
test_clobber_sse:
    pcmpeqd %xmm0, %xmm0
    pcmpeqd %xmm1, %xmm1
    pcmpeqd %xmm2, %xmm2
    pcmpeqd %xmm3, %xmm3
    pcmpeqd %xmm4, %xmm4
    pcmpeqd %xmm5, %xmm5
    pcmpeqd %xmm6, %xmm6
    pcmpeqd %xmm7, %xmm7
    ret
.size test_clobber_sse, . - test_clobber_sse

// uint32_t test_sse_survives_interrupt_37(void): fills xmm0-xmm7 with distinct values,
// raises vector 37 (IRQ line 5) by software, and returns a bit mask of the registers
// that no longer hold their value (0 = all preserved).
.global test_sse_survives_interrupt_37
.type test_sse_survives_interrupt_37, @function
test_sse_survives_interrupt_37:
    pushl %ebp
    movl %esp, %ebp
    pushl %ebx
    pushl %esi
    subl $128, %esp
    .irp n, 0, 1, 2, 3, 4, 5, 6, 7
    movl $(0x11111111 * (\n + 1)), %eax
    movd %eax, %xmm\n
    pshufd $0, %xmm\n, %xmm\n
    .endr
    int $37
    .irp n, 0, 1, 2, 3, 4, 5, 6, 7
    movdqu %xmm\n, (\n * 16)(%esp)
    .endr
    xorl %eax, %eax                 // the mask of changed registers
    xorl %ecx, %ecx                 // register number
2:  movl %ecx, %edx
    addl $1, %edx
    imull $0x11111111, %edx         // the value register ecx was given
    movl %ecx, %esi
    shll $4, %esi
    xorl %ebx, %ebx
3:  cmpl %edx, (%esp,%esi)
    je 4f
    btsl %ecx, %eax
4:  addl $4, %esi
    incl %ebx
    cmpl $4, %ebx
    jne 3b
    incl %ecx
    cmpl $8, %ecx
    jne 2b
    addl $128, %esp
    popl %esi
    popl %ebx
    popl %ebp
    ret
.size test_sse_survives_interrupt_37, . - test_sse_survives_interrupt_37

// void test_write_to(uint32_t address): stores a word at `address` (for page faults).
.global test_write_to
.type test_write_to, @function
test_write_to:
    pushl %ebp
    movl %esp, %ebp
    movl 8(%ebp), %eax
    movl $0x7E55E1A, (%eax)
    popl %ebp
    ret
.size test_write_to, . - test_write_to

// void test_raise_vector_39(void): raises vector 39 (IRQ line 7) by software; the PIC
// has nothing in service, so the kernel must treat it as spurious.
.global test_raise_vector_39
.type test_raise_vector_39, @function
test_raise_vector_39:
    int $39
    ret
.size test_raise_vector_39, . - test_raise_vector_39
