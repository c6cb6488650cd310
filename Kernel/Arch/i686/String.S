// String.S: memcpy, memmove, memset and memcmp for the kernel (the C library the Swift
// runtime expects), written with string instructions.
//
// Contract: standard C semantics (cdecl). They are in assembly so no compiler can turn
// them back into calls to themselves. memcpy, memset and forward memmove move four bytes
// per step (`rep movsl`/`stosl`) and finish the tail bytewise.

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
    movl %ecx, %edx
    shrl $2, %ecx
    rep movsl
    movl %edx, %ecx
    andl $3, %ecx
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
1:  movl %ecx, %edx
    shrl $2, %ecx
    rep movsl
    movl %edx, %ecx
    andl $3, %ecx
    rep movsb
2:  popl %esi
    popl %edi
    ret

.global memset
.type memset, @function
memset:                             // void *memset(void *dst, int value, size_t n)
    pushl %edi
    pushl %ebx
    movl 12(%esp), %edi
    movzbl 16(%esp), %eax
    imull $0x01010101, %eax, %eax    // the byte in all four lanes
    movl 20(%esp), %ecx
    movl %edi, %ebx
    movl %ecx, %edx
    shrl $2, %ecx
    rep stosl
    movl %edx, %ecx
    andl $3, %ecx
    rep stosb
    movl %ebx, %eax
    popl %ebx
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
