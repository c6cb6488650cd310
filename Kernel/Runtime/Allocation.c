// Allocation.c: the C entry points the embedded Swift runtime needs from the kernel:
// allocation, and seeding for its hashing.
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

/// The embedded Swift runtime seeds its hashing with arc4random_buf. The kernel has no
/// entropy source yet: this fills with a time-stamp-counter-seeded xorshift sequence,
/// which keeps hash tables working but is NOT suitable for anything secret.
void arc4random_buf(void *buffer, size_t count) {
  static unsigned long long state;
  if (state == 0) {
    unsigned int low, high;
    __asm__ volatile("rdtsc" : "=a"(low), "=d"(high));
    state = ((unsigned long long)high << 32 | low) | 1;
  }
  unsigned char *bytes = buffer;
  for (size_t index = 0; index < count; index++) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    bytes[index] = (unsigned char)state;
  }
}
