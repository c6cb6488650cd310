# tessera.py: gdb support for Tessera (loaded by `make gdb`).
#
# Contract: sourced into a gdb session on build/kernel.elf, `tessera-connect` attaches to
# QEMU (started with -s -S: `make debug`) and from then on gdb stops silently at
# `tessera_debugger_server_loaded` (called by the kernel after each server's image is
# loaded and relocated, before its code runs) and adds that server's symbols from
# build/servers/NAME/server.debug.so at the image's address, then continues. So
# `break FILE:LINE` (or a function's mangled name, see `info functions`) in a server works
# before the server is loaded: the breakpoint stays pending until its symbols arrive.
# Kernel-mode servers load at distinct kernel addresses; user-mode servers each load at
# 0x40100000 in their own space, so breakpoints there are ambiguous (debug a server in
# kernel mode: the same file runs there).
import os
import gdb

SERVERS = os.environ.get("TESSERA_SERVERS", "build/servers")


class ServerLoaded(gdb.Breakpoint):
    """Adds a loaded server's symbols and lets the kernel go on."""

    def __init__(self):
        # A hardware breakpoint: QEMU's Multiboot loader copies the kernel into memory
        # after gdb attaches, over any breakpoint instruction written there before.
        super().__init__(
            "tessera_debugger_server_loaded", type=gdb.BP_HARDWARE_BREAKPOINT, internal=True
        )
        self.silent = True

    def stop(self):
        # The hook's arguments, by name (Kernel/Runtime/Debugger.c has debug information).
        frame = gdb.selected_frame()
        image = int(frame.read_var("image"))
        length = int(frame.read_var("length"))
        pointer = int(frame.read_var("name"))
        name = gdb.selected_inferior().read_memory(pointer, length).tobytes().decode("ascii", "replace")
        path = os.path.join(SERVERS, name, "server.debug.so")
        if os.path.exists(path):
            try:
                gdb.execute("add-symbol-file %s -o 0x%x" % (path, image), to_string=True)
            except gdb.error as error:
                print("tessera: add-symbol-file %s: %s" % (path, error))
            print("tessera: %s loaded at 0x%x, symbols from %s" % (name, image, path))
        else:
            print("tessera: %s loaded at 0x%x (no %s)" % (name, image, path))
        return False


class Connect(gdb.Command):
    """tessera-connect [HOST:PORT]: attach to QEMU's gdb stub (default localhost:1234)
    and add every server's symbols as it is loaded."""

    def __init__(self):
        super().__init__("tessera-connect", gdb.COMMAND_RUNNING)

    def invoke(self, argument, from_tty):
        gdb.execute("target remote " + (argument.strip() or "localhost:1234"))
        ServerLoaded()  # hardware breakpoints need the connected target


gdb.execute("set pagination off")
gdb.execute("set confirm off")
gdb.execute("set breakpoint pending on")
Connect()
