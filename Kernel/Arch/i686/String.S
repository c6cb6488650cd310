// String.S: memcpy, memmove, memset and memcmp for the kernel (the C library the Swift
// runtime expects), written with string instructions.
//
// Contract: standard C semantics (cdecl). They are in assembly so no compiler can turn
// them back into calls to themselves.

.section .text
.global memcpy
.type memcpy, @function
memcpy:                             // void *memcpy(void *dst, const void *src, size_t n)
    pushl %edi
    pushl %esi
    movl 12(%esp), %edi
    movl 16(%esp), %esi
    movl 20(%esp), %ecx
    movl %edi, %eax
    rep movsb
    popl %esi
    popl %edi
    ret

.global memmove
.type memmove, @function
memmove:                            // void *memmove(void *dst, const void *src, size_t n)
    pushl %edi
    pushl %esi
    movl 12(%esp), %edi
    movl 16(%esp), %esi
    movl 20(%esp), %ecx
    movl %edi, %eax
    cmpl %esi, %edi
    jbe 1f                          // destination below source: copy forwards
    leal -1(%esi,%ecx), %esi
    leal -1(%edi,%ecx), %edi
    std
    rep movsb
    cld
    jmp 2f
1:  rep movsb
2:  popl %esi
    popl %edi
    ret

.global memset
.type memset, @function
memset:                             // void *memset(void *dst, int value, size_t n)
    pushl %edi
    movl 8(%esp), %edi
    movl 12(%esp), %eax
    movl 16(%esp), %ecx
    movl %edi, %edx
    rep stosb
    movl %edx, %eax
    popl %edi
    ret

.global memcmp
.type memcmp, @function
memcmp:                             // int memcmp(const void *a, const void *b, size_t n)
    pushl %edi
    pushl %esi
    movl 12(%esp), %esi
    movl 16(%esp), %edi
    movl 20(%esp), %ecx
    xorl %eax, %eax
    repe cmpsb
    je 1f
    movzbl -1(%esi), %eax
    movzbl -1(%edi), %edx
    subl %edx, %eax
1:  popl %esi
    popl %edi
    ret
