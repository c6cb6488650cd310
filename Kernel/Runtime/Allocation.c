// Allocation.c: the C allocation entry points of the embedded Swift runtime.
//
// Contract: posix_memalign and free forward to the kernel heap (KernelHeap.swift). They
// live in C because Swift code may not define symbols the Swift runtime references.
#include <stddef.h>

int tessera_posix_memalign(void **result, size_t alignment, size_t size);
void tessera_free(void *pointer);

int posix_memalign(void **result, size_t alignment, size_t size) {
  return tessera_posix_memalign(result, alignment, size);
}

void free(void *pointer) { tessera_free(pointer); }
