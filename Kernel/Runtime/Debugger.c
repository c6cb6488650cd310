// Debugger.c: the hook a debugger breaks on to learn where servers are loaded.
//
// Contract: the kernel calls tessera_debugger_server_loaded(image, name, length) after a
// server's image is loaded and relocated, before any of its code runs; tools/gdb/tessera.py
// breaks here and adds build/servers/NAME/server.debug.so at `image`. It does nothing
// itself; it is C so that the call keeps its arguments and its symbol (the Swift optimizer
// dropped unused arguments and called a specialized copy).
#include <stdint.h>

__attribute__((noinline, used)) void tessera_debugger_server_loaded(uint32_t image, const uint8_t *name,
                                                                    uint32_t length) {
  __asm__ volatile("" : : "r"(image), "r"(name), "r"(length) : "memory");
}
