# Tessera's single build entry point.
#
#   make help    list the targets and variables below
#   make run     build everything and boot the default system in QEMU (Ctrl-A X quits);
#                SYSTEM=systems/NAME.system boots another composition, APPEND="..." adds
#                kernel command-line options
#   make debug   boot halted with QEMU's gdb stub on :1234
#   make gdb     in another terminal: gdb attached to it, with every server's symbols
#   make test    formatting check, host unit tests and QEMU system tests
#   make bench   instruction counts of calls and references (build/bench/results.json)
#   make kernel  only build the kernel images and the server files
#   make format  format all Swift sources with swift-format
#   make lint    check the formatting without changing anything
#
# The kernel is cross-built with Embedded Swift for i686 and linked with ld.lld; host
# tools and tests are built by SwiftPM (Package.swift). Output is one progress line per
# step; V=1 shows the full command lines.

# Quiet by default: `$(call step,WHAT,TARGET)` prints a progress line, $(Q) hides the
# command; with V=1 the commands are shown and the progress lines are not.
V ?= 0
ifeq ($(V),1)
  Q :=
  step = :
else
  Q := @
  step = printf '  %-9s %s\n' '$(1)' '$(2)'
endif

SHELL := /bin/bash
SYSTEM ?= systems/default.system
BUILD := build
TARGET := i686-unknown-none-elf
QEMU := qemu-system-i386
QEMU_MEMORY := 128M

# Looked up when a link runs, not when the Makefile is read: on a fresh machine the package
# that holds it is installed by tools/ensure-dependencies during this very run.
BUILTINS = $(or $(shell ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.builtins-i386.a 2>/dev/null | head -n 1),\
  $(error the i386 compiler-rt builtins are missing: run tools/ensure-dependencies))
SWIFTC := swiftc
CLANG := clang
LD := ld.lld

# No Clang-module breadcrumbs in the debug information: gdb would warn about each missing
# module-cache file it names.
SWIFT_FLAGS := -target $(TARGET) -enable-experimental-feature Embedded -wmo -parse-as-library \
  -O -g -Xfrontend -disable-stack-protector -Xfrontend -no-clang-module-breadcrumbs -Xcc -ffreestanding
ASM_FLAGS := -target $(TARGET) -c -g -I $(BUILD)/generated

ARCH := Kernel/Arch/i686
CORE_SOURCES := $(wildcard Sources/KernelCore/*.swift)
# The call path's code generators: i686 code, a module of its own so `swift test` checks
# their bytes on the host.
GENERATOR_SOURCES := $(wildcard $(ARCH)/CodeGeneration/*.swift)
GENERATORS := $(BUILD)/embedded/I686CodeGeneration.o
KERNEL_SOURCES := $(wildcard Kernel/Core/*.swift) $(wildcard Kernel/Core/Components/*.swift) \
  $(wildcard Kernel/Core/Threads/*.swift) \
  $(wildcard $(ARCH)/*.swift) $(BUILD)/generated/KernelInterfaces.swift
SYSTEM_SOURCES := $(wildcard Kernel/System/*.swift)
TEST_SOURCES := $(wildcard Kernel/Tests/*.swift)
ARCH_OBJECTS := $(patsubst $(ARCH)/%.S,$(BUILD)/arch/%.o,$(wildcard $(ARCH)/*.S)) \
  $(patsubst Kernel/Runtime/%.c,$(BUILD)/runtime/%.o,$(wildcard Kernel/Runtime/*.c))
TEST_OBJECTS := $(patsubst Kernel/Tests/%.S,$(BUILD)/tests/%.o,$(wildcard Kernel/Tests/*.S))
C_HEADERS := $(wildcard $(ARCH)/include/*) $(wildcard Kernel/Tests/include/*)
HOST_TOOL := .build/debug/tessera
OBJCOPY := llvm-objcopy

# Servers: one folder each under Servers/ (Runtime is the code they share; Template is
# a real server, built and tested like the others, to copy from).
SERVERS := $(filter-out Runtime,$(notdir $(patsubst %/,%,$(wildcard Servers/*/))))
SERVER_FILES := $(patsubst %,$(BUILD)/servers/%.srv,$(SERVERS))
# Named as targets, so make does not treat them as intermediate files (which it neither
# remakes when missing nor checks against vanished prerequisites).
GENERATED_SOURCES := $(BUILD)/generated/KernelInterfaces.swift $(patsubst %,$(BUILD)/servers/%/Interfaces.swift,$(SERVERS))
# A folder copied from Servers/Template without renaming its files would otherwise end in
# "No rule to make target".
MISNAMED := $(strip $(foreach server,$(SERVERS),$(if $(wildcard Servers/$(server)/$(server).server),,$(server))))
ifneq ($(MISNAMED),)
  $(error Servers/$(firstword $(MISNAMED)) has no $(firstword $(MISNAMED)).server: a server folder NAME holds NAME.server and its Swift sources (rename the files you copied from Servers/Template, and the name after "server" in the .server file))
endif
INTERFACE_FILES := $(wildcard Interfaces/*.tif)
SERVER_SWIFT_FLAGS = $(SWIFT_FLAGS) -enable-experimental-feature Extern -Xfrontend -function-sections -I $(BUILD)/embedded -I Servers/Runtime/include

.PHONY: all help gdb kernel servers bench run lint debug test unit-test system-test format dependencies clean
.DELETE_ON_ERROR:
.SECONDARY:

all: kernel

help:
	@echo "Targets:"
	@echo "  make run      build everything and boot SYSTEM in QEMU (Ctrl-A X quits)"
	@echo "  make test     formatting check, host unit tests and QEMU system tests"
	@echo "  make bench    instruction counts of calls and references (docs/BENCHMARKS.md)"
	@echo "  make debug    boot SYSTEM halted, with QEMU's gdb stub on localhost:1234"
	@echo "  make gdb      (in another terminal) gdb attached to it, with the servers' symbols"
	@echo "  make kernel   build the kernel images and every server file"
	@echo "  make servers  build the server files only (build/servers/NAME.srv)"
	@echo "  make build/servers/NAME.srv   build one server"
	@echo "  make format   format the Swift sources; make lint checks without changing"
	@echo "  make clean    remove build/"
	@echo "Variables:"
	@echo "  SYSTEM=systems/NAME.system   the composition to boot (default $(SYSTEM))"
	@echo "  APPEND=\"...\"                 kernel options, e.g. loglevel=debug"
	@echo "  V=1                          show full command lines"

# Deliberately broken server files for the system tests.
TEST_MODULES := $(BUILD)/test-modules/Truncated.srv $(BUILD)/test-modules/Lying.srv \
  $(BUILD)/test-modules/BadManifest.srv

kernel: $(BUILD)/kernel.elf $(BUILD)/kernel.map $(BUILD)/kernel-test.elf $(BUILD)/kernel-test.map $(SERVER_FILES) \
  $(TEST_MODULES) $(GENERATED_SOURCES)

servers: $(SERVER_FILES) $(GENERATED_SOURCES)

dependencies:
	@tools/ensure-dependencies

# The kernel ABI's constants for assembly and C, generated from KernelCore's (one source).
ABI_HEADER := $(BUILD)/generated/KernelABI.h
$(ABI_HEADER): $(HOST_TOOL)
	@mkdir -p $(dir $@)
	@$(call step,GENERATE,$@)
	$(Q)$(HOST_TOOL) abi-header $@

$(BUILD)/arch/%.o: $(ARCH)/%.S $(ABI_HEADER) | dependencies
	@mkdir -p $(dir $@)
	@$(call step,AS,$@)
	$(Q)$(CLANG) $(ASM_FLAGS) $< -o $@

$(BUILD)/tests/%.o: Kernel/Tests/%.S | dependencies
	@mkdir -p $(dir $@)
	@$(call step,AS,$@)
	$(Q)$(CLANG) $(ASM_FLAGS) $< -o $@

$(BUILD)/runtime/%.o: Kernel/Runtime/%.c | dependencies
	@mkdir -p $(dir $@)
	@$(call step,CC,$@)
	$(Q)$(CLANG) $(ASM_FLAGS) -O2 -ffreestanding -Wall $< -o $@

$(BUILD)/embedded/KernelCore.o: $(CORE_SOURCES)
	@mkdir -p $(dir $@)
	@$(call step,SWIFT,$@)
	$(Q)$(SWIFTC) $(SWIFT_FLAGS) -Xfrontend -function-sections -module-name KernelCore -emit-module \
	  -emit-module-path $(BUILD)/embedded/KernelCore.swiftmodule -c $(CORE_SOURCES) -o $@
	@touch $@  # swiftc leaves an unchanged output untouched; make needs it newer

$(GENERATORS): $(GENERATOR_SOURCES) $(BUILD)/embedded/KernelCore.o
	@mkdir -p $(dir $@)
	@$(call step,SWIFT,$@)
	$(Q)$(SWIFTC) $(SWIFT_FLAGS) -Xfrontend -function-sections -module-name I686CodeGeneration -emit-module \
	  -emit-module-path $(BUILD)/embedded/I686CodeGeneration.swiftmodule -I $(BUILD)/embedded \
	  -c $(GENERATOR_SOURCES) -o $@
	@touch $@  # swiftc leaves an unchanged output untouched; make needs it newer

$(BUILD)/kernel/Kernel.o: $(KERNEL_SOURCES) $(SYSTEM_SOURCES) $(C_HEADERS) $(ABI_HEADER) $(BUILD)/embedded/KernelCore.o \
  $(GENERATORS)
	@mkdir -p $(dir $@)
	@$(call step,SWIFT,$@)
	$(Q)$(SWIFTC) $(SWIFT_FLAGS) -module-name Kernel -I $(BUILD)/embedded -I $(ARCH)/include -Xcc -I$(BUILD)/generated \
	  -c $(KERNEL_SOURCES) $(SYSTEM_SOURCES) -o $@
	@touch $@  # swiftc leaves an unchanged output untouched; make needs it newer

$(BUILD)/kernel-test/Kernel.o: $(KERNEL_SOURCES) $(TEST_SOURCES) $(C_HEADERS) $(ABI_HEADER) $(BUILD)/embedded/KernelCore.o \
  $(GENERATORS)
	@mkdir -p $(dir $@)
	@$(call step,SWIFT,$@)
	$(Q)$(SWIFTC) $(SWIFT_FLAGS) -module-name Kernel -I $(BUILD)/embedded -I $(ARCH)/include -Xcc -I$(BUILD)/generated \
	  -I Kernel/Tests/include -c $(KERNEL_SOURCES) $(TEST_SOURCES) -o $@
	@touch $@  # swiftc leaves an unchanged output untouched; make needs it newer

# .debug_names is dropped: ld.lld merges the objects' indexes into one gdb rejects (with a
# warning at every start); gdb indexes the rest itself.
LINK = $(Q)$(call step,LD,$@); $(LD) -m elf_i386 -T $(ARCH)/Kernel.ld -o $@ $(filter %.o,$^) $(BUILTINS) \
  && $(OBJCOPY) --remove-section=.debug_names $@

$(BUILD)/kernel.elf: $(ARCH_OBJECTS) $(BUILD)/embedded/KernelCore.o $(GENERATORS) $(BUILD)/kernel/Kernel.o $(ARCH)/Kernel.ld
	$(LINK)

$(BUILD)/kernel-test.elf: $(ARCH_OBJECTS) $(TEST_OBJECTS) $(BUILD)/embedded/KernelCore.o $(GENERATORS) \
  $(BUILD)/kernel-test/Kernel.o $(ARCH)/Kernel.ld
	$(LINK)

# Generated sources depend on the interface files they use (the .d files `tessera
# generate` writes next to them), not on all of them; before the first build, on all.
# They also depend on the Interfaces folder itself, whose time changes when a file is
# added or removed there: a new file may clash with a name, a removed one may be used.
-include $(wildcard $(BUILD)/generated/*.d $(BUILD)/servers/*/Interfaces.d)
KERNEL_INTERFACE_FILES = $(if $(wildcard $(BUILD)/generated/KernelInterfaces.d),Interfaces,$(INTERFACE_FILES))
SERVER_INTERFACE_FILES = $(if $(wildcard $(dir $@)Interfaces.d),Interfaces,$(INTERFACE_FILES))


$(BUILD)/generated/KernelInterfaces.swift: $(KERNEL_INTERFACE_FILES) $(HOST_TOOL)
	@$(call step,GENERATE,$@)
	$(Q)$(HOST_TOOL) generate-kernel Interfaces $@

$(BUILD)/embedded/ServerRuntime.o: Servers/Runtime/ServerRuntime.swift $(wildcard Servers/Runtime/include/*) \
  $(BUILD)/embedded/KernelCore.o
	@mkdir -p $(dir $@)
	@$(call step,SWIFT,$@)
	$(Q)$(SWIFTC) $(SWIFT_FLAGS) -Xfrontend -function-sections -module-name ServerRuntime -I Servers/Runtime/include \
	  -I $(BUILD)/embedded \
	  -emit-module -emit-module-path $(BUILD)/embedded/ServerRuntime.swiftmodule -c $< -o $@
	@touch $@  # swiftc leaves an unchanged output untouched; make needs it newer

# A server: generated proxies and dispatch, its own sources, the runtime (with the
# kernel's string functions, so memcpy & co. work in user mode too), linked as a shared
# object, with the binary manifest added as the .tessera section. server.debug.so keeps
# the debug information the .srv leaves out (same addresses: `tessera symbolize` and gdb
# read it).
.SECONDEXPANSION:
$(BUILD)/servers/%/Interfaces.swift $(BUILD)/servers/%/manifest.bin: Servers/%/$$*.server $$(SERVER_INTERFACE_FILES) \
  $(HOST_TOOL)
	@$(call step,GENERATE,$(BUILD)/servers/$*/Interfaces.swift)
	$(Q)$(HOST_TOOL) generate $< Interfaces $(BUILD)/servers/$*/Interfaces.swift $(BUILD)/servers/$*/manifest.bin

$(BUILD)/servers/%/server.o: $$(wildcard Servers/$$*/*.swift) $(BUILD)/servers/%/Interfaces.swift \
  $(BUILD)/embedded/ServerRuntime.o $(BUILD)/embedded/KernelCore.o
	@$(call step,SWIFT,$@)
	$(Q)$(SWIFTC) $(SERVER_SWIFT_FLAGS) -module-name $* -c $(filter %.swift,$^) -o $@
	@touch $@  # swiftc leaves an unchanged output untouched; make needs it newer

$(BUILD)/servers/%.srv: $(BUILD)/servers/%/server.o $(BUILD)/servers/%/manifest.bin $(BUILD)/embedded/ServerRuntime.o \
  $(BUILD)/arch/String.o
	@$(call step,SERVER,$@)
	$(Q)$(LD) -m elf_i386 -shared --gc-sections --version-script Servers/Runtime/exports.map \
	  -o $(BUILD)/servers/$*/server.debug.so $(BUILD)/servers/$*/server.o \
	  $(BUILD)/embedded/ServerRuntime.o $(BUILD)/embedded/KernelCore.o $(BUILD)/arch/String.o $(BUILTINS)
	$(Q)$(OBJCOPY) --remove-section=.debug_names $(BUILD)/servers/$*/server.debug.so
	$(Q)$(OBJCOPY) --strip-debug $(BUILD)/servers/$*/server.debug.so $(BUILD)/servers/$*/server.so
	$(Q)$(OBJCOPY) --add-section .tessera=$(BUILD)/servers/$*/manifest.bin $(BUILD)/servers/$*/server.so $@

$(BUILD)/test-modules/Truncated.srv: $(BUILD)/servers/SimpleFS.srv
	@mkdir -p $(dir $@)
	@$(call step,CORRUPT,$@)
	$(Q)head -c 3000 $< > $@

# e_phnum (offset 44) set to 0xFFFF: the program header table runs past the file.
$(BUILD)/test-modules/Lying.srv: $(BUILD)/servers/RamDisk.srv
	@mkdir -p $(dir $@)
	@$(call step,CORRUPT,$@)
	$(Q)cp $< $@
	$(Q)printf '\377\377' | dd of=$@ bs=1 seek=44 conv=notrunc status=none

# The manifest's "TSRV" magic overwritten.
$(BUILD)/test-modules/BadManifest.srv: $(BUILD)/servers/RamDisk.srv
	@mkdir -p $(dir $@)
	@$(call step,CORRUPT,$@)
	$(Q)cp $< $@
	$(Q)printf 'X' | dd of=$@ bs=1 seek=$$(grep -obUa TSRV $< | head -1 | cut -d: -f1) conv=notrunc status=none

# The symbol map the kernel reads (as a boot module) to name addresses in backtraces.
$(BUILD)/%.map: $(BUILD)/%.elf $(HOST_TOOL)
	@$(call step,SYMBOLS,$@)
	$(Q)$(HOST_TOOL) symbols $< | swift demangle --simplified > $@

$(HOST_TOOL): | dependencies
$(HOST_TOOL): Package.swift $(CORE_SOURCES) $(wildcard Sources/tessera/*.swift) $(wildcard Sources/TesseraTools/*.swift)
	@$(call step,SWIFTPM,$@)
	$(Q)swift build --product tessera $(if $(filter 1,$(V)),,--quiet)
	@touch $@

# Kernel command line for `make run` and `make debug`, e.g. APPEND="loglevel=debug".
APPEND ?=
# QEMU's user-mode network (slirp) on an RTL8139: the default and isolated systems use it
# (DHCP, a gateway at 10.0.2.2, DNS at 10.0.2.3), and the host's 127.0.0.1:8080 reaches
# the guest's web server (port 80), 8007 its echo (7) and 8009 its discard (9).
QEMU_NETWORK ?= -nic user,model=rtl8139,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=tcp:127.0.0.1:8007-:7,hostfwd=tcp:127.0.0.1:8009-:9
QEMU_FLAGS = -m $(QEMU_MEMORY) -display none -no-reboot -append "$(APPEND)" $(QEMU_NETWORK)

# Boot modules: the symbol map, the composition, and every server file.
comma := ,
empty :=
space := $(empty) $(empty)
MODULES = $(subst $(space),$(comma),$(strip $(BUILD)/kernel.map $(SYSTEM) $(SERVER_FILES)))

run: $(BUILD)/kernel.elf $(BUILD)/kernel.map $(SERVER_FILES) | dependencies
	@$(HOST_TOOL) check $(SYSTEM) || echo "(booting anyway: the kernel reports the same problems)"
	@$(call step,QEMU,$(SYSTEM))
	$(Q)$(QEMU) $(QEMU_FLAGS) -serial mon:stdio -kernel $(BUILD)/kernel.elf -initrd "$(MODULES)"

debug: $(BUILD)/kernel.elf $(BUILD)/kernel.map $(SERVER_FILES) | dependencies
	@echo "QEMU is halted at the first instruction, waiting for gdb on localhost:1234."
	@echo "Attach from another terminal with 'make gdb', which runs:"
	@echo "  gdb -q $(BUILD)/kernel.elf -x tools/gdb/tessera.py -ex 'tessera-connect localhost:1234'"
	@echo "then, e.g., 'break Greeter.swift:30' (servers' symbols are added as they load) and"
	@echo "'continue'. Ctrl-A X quits QEMU."
	$(Q)$(QEMU) $(QEMU_FLAGS) -serial mon:stdio -s -S -kernel $(BUILD)/kernel.elf -initrd "$(MODULES)"

# gdb on the kernel, attached to `make debug`'s QEMU, with every server's symbols added at
# its load address as it loads (tools/gdb/tessera.py; docs/TUTORIAL.md, "Debug it").
gdb: $(BUILD)/kernel.elf $(SERVER_FILES)
	gdb -q $(BUILD)/kernel.elf -x tools/gdb/tessera.py -ex "tessera-connect localhost:1234"

# Benchmarks: the bench composition under -icount shift=0, where TSC deltas count guest
# instructions; the report goes to the terminal and build/bench/results.json; the network
# servers' lines and sizes (build/bench/sizes.json). Then frames
# per second through the echo compositions with a host peer, in wall time
# (build/bench/throughput.json), and TCP through slirp for both placements and the
# reference Linux guest in the same run (build/bench/tcp.json).
BENCH_MODULES = $(subst $(space),$(comma),$(strip $(BUILD)/kernel.map systems/bench.system \
  $(BUILD)/servers/ComputeTarget.srv $(BUILD)/servers/LockedComputeTarget.srv $(BUILD)/servers/TransferTarget.srv $(BUILD)/servers/Benchmark.srv \
  $(BUILD)/servers/UserBenchmark.srv $(BUILD)/servers/PciBus.srv $(BUILD)/servers/Rtl8139.srv \
  $(BUILD)/servers/NetworkBenchmark.srv $(BUILD)/servers/FrameSink.srv \
  $(BUILD)/servers/FramePassingBenchmark.srv $(BUILD)/servers/Ethernet.srv $(BUILD)/servers/Arp.srv \
  $(BUILD)/servers/IPv4.srv $(BUILD)/servers/Icmp.srv $(BUILD)/servers/Udp.srv \
  $(BUILD)/servers/StackBenchmark.srv $(BUILD)/servers/Sequence.srv))

bench: $(BUILD)/kernel.elf $(BUILD)/kernel.map $(SERVER_FILES) $(HOST_TOOL) | dependencies
	@mkdir -p $(BUILD)/bench
	@$(call step,BENCH,systems/bench.system)
	$(Q)timeout 300 $(QEMU) -m $(QEMU_MEMORY) -display none -no-reboot -icount shift=0 -serial file:$(BUILD)/bench/console.log \
	  -device isa-debug-exit,iobase=0xf4,iosize=0x04 -append "on-panic=exit exit-when-idle" \
	  -nic none -device rtl8139 -device rtl8139 -kernel $(BUILD)/kernel.elf -initrd "$(BENCH_MODULES)" || [ $$? -eq 33 ]
	$(Q)$(HOST_TOOL) bench-report $(BUILD)/bench/console.log $(BUILD)/bench/results.json
	@$(call step,SIZES,tools/server-sizes)
	$(Q)tools/server-sizes
	@$(call step,BENCH,tools/network-throughput)
	@command -v python3 >/dev/null || { echo "make bench: tools/network-throughput needs python3 (apt-get install -y python3)"; exit 1; }
	$(Q)tools/network-throughput
	@$(call step,BENCH,tools/tcp-bench)
	$(Q)tools/tcp-bench

# The whole output stays in build/test-logs/swift-test.log (the guests' serial logs are
# there too); the last line counts passed and failed tests and names the failures' logs.
test: kernel lint | dependencies
	@$(call step,TEST,swift test)
	@mkdir -p $(BUILD)/test-logs
	$(Q)swift test --disable-xctest 2>&1 | tee $(BUILD)/test-logs/swift-test.log; status=$${PIPESTATUS[0]}; \
	  tools/test-summary $(BUILD)/test-logs/swift-test.log; exit $$status

# Regular files only: some server folders share a source through a symbolic link.
SWIFT_FILES = find Package.swift Sources Tests Kernel Servers -name '*.swift' -type f -print0

lint:
	@$(call step,LINT,swift format lint)
	$(Q)$(SWIFT_FILES) | xargs -0 swift format lint --strict --configuration .swift-format

format:
	@$(call step,FORMAT,swift format)
	$(Q)$(SWIFT_FILES) | xargs -0 swift format --in-place --configuration .swift-format

clean:
	rm -rf $(BUILD)
