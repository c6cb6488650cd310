// TesseraABI.h: the kernel ABI, the only functions a server file may import.
//
// Contract: these names (plus posix_memalign, free and putchar, which the embedded Swift
// runtime uses) are everything the kernel resolves when it loads a server; any other
// import makes the file invalid. A server in kernel mode gets kernel functions; one in
// user mode gets the user thunks (Kernel/Arch/i686/CodeGeneration/UserStubs.swift), and its own runtime's
// allocator for posix_memalign and free. memcpy and friends are linked into every server. Handles are indices into
// the calling server's own reference table; 0 is the null reference.
//
// tessera_callN(handle, selector, N call words) calls a method of the object behind
// `handle`. The selector is `digest of the interface the caller expects + method index`.
// The result's low 32 bits are the method's result word, the high 32 bits a status
// (0 = success; see CallError in ServerRuntime.swift for the others).
#pragma once
#include <stdint.h>

uint64_t tessera_call0(uint32_t handle, uint32_t selector);
uint64_t tessera_call1(uint32_t handle, uint32_t selector, uint32_t w0);
uint64_t tessera_call2(uint32_t handle, uint32_t selector, uint32_t w0, uint32_t w1);
uint64_t tessera_call3(uint32_t handle, uint32_t selector, uint32_t w0, uint32_t w1, uint32_t w2);
uint64_t tessera_call4(uint32_t handle, uint32_t selector, uint32_t w0, uint32_t w1, uint32_t w2, uint32_t w3);
uint64_t tessera_call5(uint32_t handle, uint32_t selector, uint32_t w0, uint32_t w1, uint32_t w2, uint32_t w3,
                       uint32_t w4);
uint64_t tessera_call6(uint32_t handle, uint32_t selector, uint32_t w0, uint32_t w1, uint32_t w2, uint32_t w3,
                       uint32_t w4, uint32_t w5);
uint64_t tessera_call7(uint32_t handle, uint32_t selector, uint32_t w0, uint32_t w1, uint32_t w2, uint32_t w3,
                       uint32_t w4, uint32_t w5, uint32_t w6);
uint64_t tessera_call8(uint32_t handle, uint32_t selector, uint32_t w0, uint32_t w1, uint32_t w2, uint32_t w3,
                       uint32_t w4, uint32_t w5, uint32_t w6, uint32_t w7);

/// Creates an object of interface `interface_index` (an index into the server's manifest)
/// whose dispatch functions receive `context`; returns its handle (count 1), or 0.
uint32_t tessera_export(uint32_t interface_index, void *context);

/// Adds one count to `handle`; returns 0, or a status if the handle is invalid.
uint32_t tessera_acquire(uint32_t handle);

/// Removes one count from `handle`; the handle is gone at 0, and the object is destroyed
/// when no table references it any more. Returns 0, or a status if the handle is invalid.
uint32_t tessera_release(uint32_t handle);

/// The heap of a server loaded in user mode (its runtime's allocator uses them; in kernel
/// mode the kernel allocates for the server and these are never called): where the heap
/// starts, backing [end, end + bytes) with zeroed pages (0 on success), and giving the
/// pages of [new_end, old_end) back.
uint32_t tessera_heap_start(void);
uint32_t tessera_heap_grow(uint32_t end, uint32_t bytes);
void tessera_heap_shrink(uint32_t old_end, uint32_t new_end);

/// Sleeps the calling thread for one timer tick (a user-mode heap waiting for its lock,
/// so that a preempted lower-priority holder gets to run).
void tessera_pause(void);

/// Atomically stores `value` in `*word` and returns what was there.
static inline uint32_t tessera_exchange(volatile uint32_t *word, uint32_t value) {
  __asm__ volatile("xchgl %0, %1" : "+r"(value), "+m"(*word)::"memory");
  return value;
}

/// Atomically adds `value` to `*word` (wrapping) and returns what was there.
static inline uint32_t tessera_fetch_add(volatile uint32_t *word, uint32_t value) {
  __asm__ volatile("lock xaddl %0, %1" : "+r"(value), "+m"(*word)::"memory");
  return value;
}

/// Enters the kernel and returns 0 without doing anything: the cost of a system call
/// (a plain function call in kernel mode). For the benchmarks.
uint32_t tessera_null_call(void);

/// The time-stamp counter (an instruction, not a kernel call). Under QEMU with
/// `-icount shift=0` its deltas count guest instructions; the benchmarks use it.
static inline uint64_t tessera_timestamp(void) {
  uint32_t low, high;
  __asm__ volatile("rdtsc" : "=a"(low), "=d"(high));
  return ((uint64_t)high << 32) | low;
}
