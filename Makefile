# Quarry: host tests with SwiftPM, the Embedded library and test kernel (i686 and x86_64) with swiftc.
# The Embedded flags come from toolset.json, which `swift build --toolset` reads too.
#
#   make run          boot the i686 test kernel in QEMU (-smp 4) and show its output
#   make run ARCH=x86_64                 the same for the x86_64 kernel
#   make run-c        boot the C example kernel (Sources/QuarryCKernel) in QEMU (-smp 4)
#   make test         deps, header test, host tests, then the kernels and the example under QEMU
#   make kernel       build/$(ARCH)/kernel.elf (+ kernel.map, kernel.dis; kernel.bin on x86_64)
#   make ckernel      build/$(ARCH)/ckernel.elf (+ ckernel.map; ckernel.bin on x86_64): C,
#                     its own entry (Sources/QuarryCKernel/entry_$(ARCH).S) and libquarry.a only
#   make lib          build/$(ARCH)/libquarry.a: module Quarry (Sources/Quarry + QuarryX86 +
#                     QuarryC, -no-allocations) + quarry_libc.o (QUARRY_LIBC_NAMES=1, default)
#   make lib QUARRY_PLATFORM=single-cpu   the same library over SingleCPUPlatform instead of
#                     X86Platform, in build/$(ARCH)-single-cpu/: no privileged instruction, so
#                     it runs in user space (make budgets counts its instructions)
#   make host-lib     build/host/libquarry.so: the C ABI for Linux programs (make bench, budgets)
#   make example      Examples/KernelPackage (Quarry as a SwiftPM dependency): swift build
#                     --triple --toolset toolset.json, link build/$(ARCH)/example.elf, boot it
#                     (-smp 1) and check it as qemu-test does
#   make toolset-options [TOOL=cCompiler]  toolset.json's swiftc (clang) options
#   make header-test  include/quarry.h as strict C11 for -m32 and -m64
#   make doc-test     Tests/doc-test.sh: every ```c block of docs/integration.md compiles
#                     against quarry.h (-m32, -m64); its list of provided symbols is what
#                     llvm-nm finds in build/$(ARCH)/libquarry.a
#   make host-test    swift test
#   make host-tsan    swift test --sanitize=thread (the threaded tests, no suppression)
#   make host-release-step  the single-step test in the release build
#   make qemu-test    boot i686 and x86_64: the Swift kernel and the C kernel, each with
#                     -smp 1 and -smp 4; a boot passes only on exit 67 and "N passed,
#                     0 failed" (ARCH=... on the command line: that architecture only)
#   make deps         .ci/deps: check each tool by using it (gcc -m32 builds and runs a 64-bit
#                     division, qemu-system-i386/-x86_64, valgrind, make); as root, install
#                     what fails (gcc-multilib, qemu-system-x86, valgrind)
#   make deps-test    Tests/deps-test.sh: .ci/deps against simulated missing tools
#   make doc-references  Tests/doc-references.sh: every file and symbol that a doc, a
#                     "Neighbours" line or a comment names exists (and its self-test)
#   make docs         the DocC catalogue Sources/Quarry/Quarry.docc -> build/docs; fails on an
#                     undocumented public symbol or a broken link (docs/Makefile.inc)
#   make coverage     swift test with code coverage, then line coverage of Sources/Quarry
#                     per file and in total (Tests/Makefile.inc)
#   make format       swift format (the toolchain's) in place over every Swift file, with .swift-format
#   make format-lint  swift format lint --strict: fails on any file the formatter would change
#   make clean
#
# ARCH is i686 (the default) or x86_64; every output goes under build/$(ARCH)/.

SWIFT_BIN ?= /opt/swift/usr/bin
# A tool from SWIFT_BIN when it is there, else from PATH.
tool = $(if $(wildcard $(SWIFT_BIN)/$(1)),$(SWIFT_BIN)/$(1),$(1))
SWIFTC  := $(call tool,swiftc)
SWIFT   := $(call tool,swift)
CLANG   := $(call tool,clang)
LD      := $(call tool,ld.lld)
AR      := $(call tool,llvm-ar)
OBJDUMP := $(call tool,llvm-objdump)
OBJCOPY := $(call tool,llvm-objcopy)
NM      := $(call tool,llvm-nm)
GCC     ?= gcc

ARCH ?= i686
ARCHES := i686 x86_64
ifeq ($(filter $(ARCH),$(ARCHES)),)
$(error ARCH must be one of: $(ARCHES))
endif

# The library's platform: x86 (X86Platform, the default) or single-cpu (SingleCPUPlatform:
# one CPU, no interrupt masking; `lib` only, for user-space measurement).
QUARRY_PLATFORM ?= x86
ifeq ($(QUARRY_PLATFORM),x86)
BUILD  := build/$(ARCH)
PLATFORM_FLAGS :=
else ifeq ($(QUARRY_PLATFORM),single-cpu)
BUILD  := build/$(ARCH)-single-cpu
PLATFORM_FLAGS := -D QUARRY_PLATFORM_SINGLE_CPU
else
$(error QUARRY_PLATFORM must be x86 or single-cpu)
endif
TRIPLE := $(ARCH)-unknown-none-elf

# What differs between the architectures; everything else below is shared.
ifeq ($(ARCH),x86_64)
# Red zone off everywhere (the CPU pushes interrupt frames just below rsp); the image
# lies below 2 GiB at 1 MiB, so the small code model.
ARCH_CFLAGS  := -march=x86-64 -m64 -mcmodel=small
ARCH_ASFLAGS := -march=x86-64
LD_EMULATION := elf_x86_64
# No libgcc: nothing the x86_64 objects call needs one (the link fails if that changes).
LIBGCC       :=
QEMU_DEFAULT := qemu-system-x86_64
# QEMU refuses ELF64 multiboot images: boot the a.out-kludge binary made from kernel.elf.
IMAGE        := $(BUILD)/kernel.bin
else
ARCH_CFLAGS  := -march=i686 -m32
ARCH_ASFLAGS := -march=i686
LD_EMULATION := elf_i386
# 64-bit division and shifts call __udivdi3 and friends (no i386 compiler-rt here).
LIBGCC        = $(shell $(GCC) -m32 -print-libgcc-file-name)
QEMU_DEFAULT := qemu-system-i386
IMAGE        := $(BUILD)/kernel.elf
endif
QEMU ?= $(QEMU_DEFAULT)
LINKER_SCRIPT := linker/$(ARCH).ld
CIMAGE := $(patsubst $(BUILD)/kernel.%,$(BUILD)/ckernel.%,$(IMAGE))

# The Embedded flags live in one place, toolset.json (SwiftPM's --toolset format, which
# `swift build --triple $(TRIPLE) --toolset toolset.json` reads as it is): its
# swiftCompiler options for swiftc, its cCompiler options for clang. (SwiftPM also hands
# the cCompiler options to swiftc's C importer; here they are not, which keeps Quarry.o
# as it was: -ffreestanding changes the runtime's weak helpers, nothing of Quarry's.)
# toolset_options reads one tool's extraCLIOptions: one JSON array, options without
# quotes or spaces.
TOOLSET := toolset.json
toolset_options = $(shell awk -v tool='"$(1)"' 'index($$0, tool) { found = 1 } \
	found && /extraCLIOptions/ { list = 1 } \
	list { line = $$0; sub(/.*extraCLIOptions"[ \t]*:/, "", line); \
		while (match(line, /"[^"]*"/)) { printf "%s ", substr(line, RSTART + 1, RLENGTH - 2); \
			line = substr(line, RSTART + RLENGTH) } } \
	list && /\]/ { exit }' $(TOOLSET))
TOOLSET_SWIFT_FLAGS := $(strip $(call toolset_options,swiftCompiler))
TOOLSET_C_FLAGS := $(strip $(call toolset_options,cCompiler))
ifeq ($(TOOLSET_SWIFT_FLAGS),)
$(error no swiftCompiler extraCLIOptions read from $(TOOLSET))
endif

EMBEDDED_FLAGS := -target $(TRIPLE) $(TOOLSET_SWIFT_FLAGS) -I Sources/CQuarrySupport/include
# The allocator itself must never allocate through the Swift runtime. `-I include`: the
# C ABI (Sources/QuarryC) implements include/quarry.h with @c @implementation.
LIB_FLAGS := $(EMBEDDED_FLAGS) -Xfrontend -no-allocations -I include $(PLATFORM_FLAGS)
# Importing module Quarry imports quarry.h too (module CQuarryHeader).
KERNEL_FLAGS := $(EMBEDDED_FLAGS) -I include -I $(BUILD)

# QUARRY_LIBC_NAMES=1 (the default) adds quarry_libc.o to libquarry.a: malloc, free,
# calloc, realloc, posix_memalign and aligned_alloc over the C ABI. The Swift test
# kernel needs them (the Embedded runtime allocates with posix_memalign and frees with
# free); QUARRY_LIBC_NAMES=0 builds the library with the quarry_* names only.
QUARRY_LIBC_NAMES ?= 1
ifeq ($(filter $(QUARRY_LIBC_NAMES),0 1),)
$(error QUARRY_LIBC_NAMES must be 0 or 1)
endif

CFLAGS := --target=$(TRIPLE) $(ARCH_CFLAGS) $(TOOLSET_C_FLAGS) -nostdlib -Os -Wall -Wextra -fno-pic
ASFLAGS := --target=$(TRIPLE) $(ARCH_ASFLAGS) -Iboot -ISources/CQuarrySupport/include

# Module Quarry: every Swift file under Sources/Quarry, whatever its layer folder.
QUARRY_SOURCES := $(shell find Sources/Quarry -name '*.swift' | LC_ALL=C sort)
LIB_SOURCES    := $(QUARRY_SOURCES) $(wildcard Sources/QuarryX86/*.swift) \
	$(wildcard Sources/QuarryC/*.swift)
LIB_HEADERS    := include/quarry.h include/module.modulemap
LIB_OBJECTS    := $(BUILD)/Quarry.o $(if $(filter 1,$(QUARRY_LIBC_NAMES)),$(BUILD)/quarry_libc.o)
KERNEL_SOURCES := $(wildcard Sources/QuarryKernel/*.swift) $(wildcard Tests/Scenarios/*.swift)
SUPPORT_HEADERS := $(wildcard Sources/CQuarrySupport/include/*)
BOOT_SOURCES   := $(wildcard boot/*_$(ARCH).S)
BOOT_OBJECTS   := $(patsubst boot/%.S,$(BUILD)/boot/%.o,$(BOOT_SOURCES))
C_SOURCES      := $(wildcard Sources/QuarryKernel/*.c)
C_OBJECTS      := $(patsubst Sources/QuarryKernel/%.c,$(BUILD)/c/%.o,$(C_SOURCES))

# The C example kernel: its own entry (boot CPU and APs, docs/integration.md "The entry
# contract"), its own C, libquarry.a.
CKERNEL_SOURCES := $(wildcard Sources/QuarryCKernel/*.c)
CKERNEL_HEADERS := $(wildcard Sources/QuarryCKernel/*.h)
CKERNEL_OBJECTS := $(patsubst Sources/QuarryCKernel/%.c,$(BUILD)/ckernel/%.o,$(CKERNEL_SOURCES))
CKERNEL_ASM     := $(wildcard Sources/QuarryCKernel/*_$(ARCH).S)
CKERNEL_BOOT    := $(patsubst Sources/QuarryCKernel/%.S,$(BUILD)/ckernel/%.o,$(CKERNEL_ASM))
CKERNEL_SCRIPT  := Sources/QuarryCKernel/$(ARCH).ld
CKERNEL_CFLAGS  := $(CFLAGS) -std=c11 -Werror -I include -DQUARRY_LIBC_NAMES=$(QUARRY_LIBC_NAMES)

QEMU_FLAGS := -m 128M -serial stdio -display none -no-reboot \
	-device isa-debug-exit,iobase=0xf4,iosize=0x04
QEMU_TIMEOUT ?= 240
# isa-debug-exit: the kernel writes 0x21 (pass) or 0x22 (fail); QEMU exits with (v << 1) | 1.
QEMU_PASS := 67
QEMU_FAIL := 69

.PHONY: all kernel ckernel lib host-lib example toolset-options run run-c test header-test doc-test host-test host-tsan host-release-step qemu-test qemu-boot deps deps-test doc-references format format-lint clean FORCE
all: kernel ckernel

lib: $(BUILD)/libquarry.a
kernel: $(IMAGE)
ckernel: $(CIMAGE)

# `make -s toolset-options [TOOL=cCompiler]`: one tool's options from toolset.json, as this
# Makefile reads them (for scripts and docs/integration.md; EmbeddedBuildTests compares
# them with the JSON).
TOOL ?= swiftCompiler
toolset-options:
	@echo $(call toolset_options,$(TOOL))

$(BUILD)/Quarry.o: $(LIB_SOURCES) $(LIB_HEADERS) $(SUPPORT_HEADERS) Makefile $(TOOLSET)
	@echo "== lib: swiftc (Embedded $(ARCH), -no-allocations) Sources/Quarry + QuarryX86 + QuarryC -> module Quarry"
	@mkdir -p $(BUILD)
	$(SWIFTC) $(LIB_FLAGS) -module-name Quarry \
		-emit-module -emit-module-path $(BUILD)/Quarry.swiftmodule \
		-c -o $@ $(LIB_SOURCES)
	@# swiftc leaves an unchanged object's time alone: touch it, or make rebuilds it every time.
	@touch $@

# The same C ABI for Linux programs (Benchmarks: make bench, make budgets): Sources/Quarry and
# Sources/QuarryC compiled as one module Quarry, whole-module, like Quarry.o above but for the
# host with -O, linked as a shared library with Sources/CQuarryHost (the thread-local words).
# CPlatform is then the host's platform (Sources/QuarryC/CPlatform.swift): a CPU index per
# thread, up to 64 threads at once. -suppress-warnings: the only warnings are QuarryC's
# `import Quarry`, which a one-module build ignores (the same sources are compiled with
# warnings by `swift build` and `make lib`).
HOST_LIB := build/host/libquarry.so
HOST_LIB_SOURCES := $(QUARRY_SOURCES) $(wildcard Sources/QuarryC/*.swift)
HOST_LIB_C := Sources/CQuarryHost/quarry_host.c
host-lib: $(HOST_LIB)

$(HOST_LIB): $(HOST_LIB_SOURCES) $(HOST_LIB_C) $(wildcard Sources/CQuarryHost/include/*) $(LIB_HEADERS) Makefile
	@echo "== host-lib: swiftc -O -wmo (host) Sources/Quarry + QuarryC (+ CQuarryHost) -> module Quarry, $@"
	@mkdir -p $(dir $@)
	$(CLANG) -O2 -fPIC -Wall -Wextra -std=c11 -I Sources/CQuarryHost/include -c -o build/host/quarry_host.o $(HOST_LIB_C)
	$(SWIFTC) -O -wmo -parse-as-library -suppress-warnings -module-name Quarry -I include \
		-I Sources/CQuarryHost/include -emit-library -o $@ $(HOST_LIB_SOURCES) build/host/quarry_host.o

$(BUILD)/quarry_libc.o: Sources/QuarryLibc/quarry_libc.c $(LIB_HEADERS) Makefile $(TOOLSET)
	@echo "== lib: compile $< (freestanding, the standard names)"
	@mkdir -p $(BUILD)
	$(CLANG) $(CFLAGS) -std=c11 -DQUARRY_EXPORT_LIBC_NAMES -I include -c -o $@ $<

# Records the library options, rewritten only when they change, so that changing
# QUARRY_LIBC_NAMES rebuilds the archive.
$(BUILD)/lib.options: FORCE
	@mkdir -p $(BUILD)
	@echo 'QUARRY_LIBC_NAMES=$(QUARRY_LIBC_NAMES)' | cmp -s - $@ || \
		echo 'QUARRY_LIBC_NAMES=$(QUARRY_LIBC_NAMES)' > $@

$(BUILD)/libquarry.a: $(LIB_OBJECTS) $(BUILD)/lib.options
	@echo "== lib: llvm-ar -> $@ (QUARRY_LIBC_NAMES=$(QUARRY_LIBC_NAMES))"
	@rm -f $@
	$(AR) rcs $@ $(LIB_OBJECTS)
	@echo "== lib: symbols $@ needs from the image (llvm-nm -u, less its own) -> $(BUILD)/libquarry.needs"
	@$(NM) -g --defined-only $@ | awk 'NF == 3 { print $$3 }' | sort -u > $(BUILD)/libquarry.defined
	@$(NM) -u $@ | awk 'NF == 2 { print $$2 }' | sort -u | comm -23 - $(BUILD)/libquarry.defined \
		> $(BUILD)/libquarry.needs
	@rm -f $(BUILD)/libquarry.defined
	@tr '\n' ' ' < $(BUILD)/libquarry.needs; echo

$(BUILD)/QuarryKernel.o: $(KERNEL_SOURCES) $(BUILD)/libquarry.a $(SUPPORT_HEADERS) Makefile $(TOOLSET)
	@echo "== kernel: swiftc (Embedded $(ARCH)) Sources/QuarryKernel, importing Quarry"
	$(SWIFTC) $(KERNEL_FLAGS) -module-name QuarryKernel -c -o $@ $(KERNEL_SOURCES)

$(BUILD)/boot/%.o: boot/%.S $(wildcard boot/*.h) $(SUPPORT_HEADERS) Makefile
	@echo "== boot: assemble $<"
	@mkdir -p $(dir $@)
	$(CLANG) $(ASFLAGS) -c -o $@ $<

$(BUILD)/c/%.o: Sources/QuarryKernel/%.c Makefile $(TOOLSET)
	@echo "== c: compile $< (freestanding)"
	@mkdir -p $(dir $@)
	$(CLANG) $(CFLAGS) -c -o $@ $<

$(BUILD)/kernel.elf: $(BOOT_OBJECTS) $(C_OBJECTS) $(BUILD)/QuarryKernel.o $(BUILD)/libquarry.a $(LINKER_SCRIPT)
	@echo "== link: ld.lld -T $(LINKER_SCRIPT) --gc-sections -> $@"
	@test "$(QUARRY_LIBC_NAMES)" = 1 || { echo "the Swift test kernel needs QUARRY_LIBC_NAMES=1 (the runtime's posix_memalign and free)"; exit 1; }
	@test -z "$(LIBGCC)" -o -f "$(LIBGCC)" || { echo "32-bit libgcc not found: run 'make deps'"; exit 1; }
	$(LD) -m $(LD_EMULATION) -T $(LINKER_SCRIPT) --gc-sections -static -nostdlib \
		-Map $(BUILD)/kernel.map -o $@ \
		$(BOOT_OBJECTS) $(C_OBJECTS) $(BUILD)/QuarryKernel.o $(BUILD)/libquarry.a $(LIBGCC)
	@echo "== disassemble: -> $(BUILD)/kernel.dis"
	$(OBJDUMP) -d --no-show-raw-insn $@ > $(BUILD)/kernel.dis
ifeq ($(ARCH),i686)
	@$(call check_multiboot,$@)
endif

$(BUILD)/ckernel/%.o: Sources/QuarryCKernel/%.c $(CKERNEL_HEADERS) $(LIB_HEADERS) $(BUILD)/lib.options Makefile $(TOOLSET)
	@echo "== ckernel: compile $< (freestanding)"
	@mkdir -p $(dir $@)
	$(CLANG) $(CKERNEL_CFLAGS) -c -o $@ $<

$(BUILD)/ckernel/%.o: Sources/QuarryCKernel/%.S Makefile
	@echo "== ckernel: assemble $<"
	@mkdir -p $(dir $@)
	$(CLANG) --target=$(TRIPLE) $(ARCH_ASFLAGS) -c -o $@ $<

# The C kernel links its own objects, its entry and libquarry.a, nothing else
# (and libgcc on i686, for the library's 64-bit division).
$(BUILD)/ckernel.elf: $(CKERNEL_BOOT) $(CKERNEL_OBJECTS) $(BUILD)/libquarry.a $(CKERNEL_SCRIPT)
	@echo "== ckernel: link ld.lld -T $(CKERNEL_SCRIPT) --gc-sections -> $@"
	@test -z "$(LIBGCC)" -o -f "$(LIBGCC)" || { echo "32-bit libgcc not found: run 'make deps'"; exit 1; }
	$(LD) -m $(LD_EMULATION) -T $(CKERNEL_SCRIPT) --gc-sections -static -nostdlib \
		-Map $(BUILD)/ckernel.map -o $@ \
		$(CKERNEL_BOOT) $(CKERNEL_OBJECTS) $(BUILD)/libquarry.a $(LIBGCC)
ifeq ($(ARCH),i686)
	@$(call check_multiboot,$@)
endif

# x86_64: the bootable image is the loaded bytes of the ELF from __kernel_start to
# __load_end (the multiboot header's load_addr and load_end_addr).
$(BUILD)/%.bin: $(BUILD)/%.elf
	@echo "== image: llvm-objcopy -O binary -> $@ (multiboot a.out kludge)"
	$(OBJCOPY) -O binary $< $@
	@echo "== check: $@ is exactly [__kernel_start, __load_end) of $<"
	@start=$$($(NM) $< | awk '$$3 == "__kernel_start" { print $$1 }'); \
	end=$$($(NM) $< | awk '$$3 == "__load_end" { print $$1 }'); \
	size=$$(stat -c %s $@); \
	test -n "$$start" -a -n "$$end" -a $$((0x$$end - 0x$$start)) -eq $$size || \
		{ echo "$@ has $$size bytes, the header says $$((0x$$end - 0x$$start))"; rm -f $@; exit 1; }
	@$(call check_multiboot,$@)

# The boot image's multiboot header must lie in its first 8 KiB (deletes the image if not).
check_multiboot = echo "== check: multiboot header in the first 8 KiB of $(1)"; \
	head -c 8192 $(1) | od -An -tx4 -v | grep -qw 1badb002 || \
		{ echo "multiboot magic not in the first 8 KiB of $(1)"; rm -f $(1); exit 1; }

run: deps kernel
	@echo "== run: $(ARCH) QEMU -smp 4 (timeout $(QEMU_TIMEOUT) s)"
	timeout $(QEMU_TIMEOUT) $(QEMU) -kernel $(IMAGE) -smp 4 $(QEMU_FLAGS); \
		status=$$?; echo "== run: QEMU exit status $$status"; \
		case $$status in $(QEMU_PASS)) exit 0;; *) exit 1;; esac

run-c: deps ckernel
	@echo "== run-c: $(ARCH) C kernel, QEMU -smp 4 (timeout $(QEMU_TIMEOUT) s)"
	timeout $(QEMU_TIMEOUT) $(QEMU) -kernel $(CIMAGE) -smp 4 $(QEMU_FLAGS); \
		status=$$?; echo "== run-c: QEMU exit status $$status"; \
		case $$status in $(QEMU_PASS)) exit 0;; *) exit 1;; esac

# qemu-test builds and boots each architecture in QEMU_ARCHES (both, unless ARCH was given
# on the command line) through qemu-boot, runs every boot even after a failure, and
# names each failed architecture at the end.
ifeq ($(origin ARCH),command line)
QEMU_ARCHES ?= $(ARCH)
else
QEMU_ARCHES ?= $(ARCHES)
endif
qemu-test:
	@failed=""; \
	for arch in $(QEMU_ARCHES); do \
		$(MAKE) --no-print-directory ARCH=$$arch qemu-boot || failed="$$failed $$arch"; \
	done; \
	if [ -n "$$failed" ]; then echo "== qemu-test: FAILED:$$failed"; exit 1; fi; \
	echo "== qemu-test: all boots passed ($(QEMU_ARCHES); Swift kernel -smp $(QEMU_SMP), C kernel -smp $(QEMU_C_SMP))"

# qemu_boot defines the shell function `boot NAME IMAGE SMP` for a recipe ($(1) names the
# step in its messages): boots IMAGE under QEMU with -smp SMP, log in
# $(BUILD)/qemu-NAME-smpSMP.log; it passes only if QEMU exits with 67 and the log has a
# line "N passed, 0 failed" with N > 0; otherwise it names the reason and adds NAME/-smpSMP
# to $$failed.
qemu_boot = boot() { \
		name=$$1; image=$$2; smp=$$3; log=$(BUILD)/qemu-$$name-smp$$smp.log; \
		echo "== $(1): $(ARCH) $$name -smp $$smp (timeout $(QEMU_TIMEOUT) s), log $$log"; \
		timeout $(QEMU_TIMEOUT) $(QEMU) -kernel $$image -smp $$smp $(QEMU_FLAGS) \
			< /dev/null > $$log 2>&1; status=$$?; \
		cat $$log; \
		summary=$$(tr -d '\r' < $$log | grep -E '^[0-9]+ passed, [0-9]+ failed$$' | tail -n 1); \
		why=""; \
		case $$status in \
			$(QEMU_PASS)) ;; \
			124) why="timeout after $(QEMU_TIMEOUT) s";; \
			0) why="QEMU exit status 0: triple fault (reset under -no-reboot) or no isa-debug-exit";; \
			$(QEMU_FAIL)) why="failure code (status $$status): a check failed or a CPU exception";; \
			*) why="unexpected QEMU exit status $$status";; \
		esac; \
		if [ -z "$$why" ]; then \
			if [ -z "$$summary" ]; then why="exit 67 but no 'N passed, M failed' line in the log"; \
			elif ! echo "$$summary" | grep -qE '^[1-9][0-9]* passed, 0 failed$$'; then why="exit 67 but the summary says: $$summary"; fi; \
		fi; \
		if [ -n "$$why" ]; then \
			echo "== $(1): $(ARCH) $$name -smp $$smp FAILED: $$why"; failed="$$failed $$name/-smp$$smp"; \
		else \
			echo "== $(1): $(ARCH) $$name -smp $$smp passed ($$summary)"; \
		fi; \
	}; \

# Boots $(ARCH)'s Swift kernel once per CPU count in QEMU_SMP and the C kernel once per
# count in QEMU_C_SMP (each starts the APs QEMU's fw_cfg reports); every boot runs, then
# each failure is named with its reason.
QEMU_SMP ?= 1 4
QEMU_C_SMP ?= 1 4
qemu-boot: kernel ckernel
	@failed=""; \
	$(call qemu_boot,qemu-test) \
	for smp in $(QEMU_SMP); do boot kernel $(IMAGE) $$smp; done; \
	for smp in $(QEMU_C_SMP); do boot ckernel $(CIMAGE) $$smp; done; \
	if [ -n "$$failed" ]; then echo "== qemu-test: $(ARCH) FAILED:$$failed"; exit 1; fi; \
	echo "== qemu-test: $(ARCH) boots passed"

# The example package (Examples/KernelPackage): Quarry as a SwiftPM dependency, built by
# `swift build` with toolset.json for $(TRIPLE) into one archive (the example, its support
# C, Quarry and QuarryX86), linked with boot/'s multiboot entry and its own layout (one
# CPU, the arena), booted and checked as qemu-boot checks a kernel.
EXAMPLE_DIR   := Examples/KernelPackage
EXAMPLE_BUILD := $(BUILD)/example
EXAMPLE_LIB   := $(EXAMPLE_BUILD)/$(TRIPLE)/release/libKernel.a
EXAMPLE_IMAGE := $(patsubst $(BUILD)/kernel.%,$(BUILD)/example.%,$(IMAGE))
# The Swift test kernel's multiboot entry (boot/), one CPU.
EXAMPLE_BOOT  := $(BUILD)/boot/multiboot_$(ARCH).o
EXAMPLE_SCRIPT := $(EXAMPLE_DIR)/linker/$(ARCH).ld

example: $(EXAMPLE_IMAGE)
	@failed=""; \
	$(call qemu_boot,example) \
	boot example $(EXAMPLE_IMAGE) 1; \
	[ -z "$$failed" ]

# swift build decides what is out of date; the archive changes only when its inputs do.
$(EXAMPLE_LIB): FORCE
	@echo "== example: swift build -c release --triple $(TRIPLE) --toolset $(TOOLSET) ($(EXAMPLE_DIR), Quarry by path)"
	$(SWIFT) build -c release --package-path $(EXAMPLE_DIR) --triple $(TRIPLE) \
		--toolset $(TOOLSET) --scratch-path $(EXAMPLE_BUILD)

$(BUILD)/example.elf: $(EXAMPLE_BOOT) $(EXAMPLE_LIB) $(EXAMPLE_SCRIPT)
	@echo "== example: link ld.lld -T $(EXAMPLE_SCRIPT) --gc-sections -> $@"
	@test -z "$(LIBGCC)" -o -f "$(LIBGCC)" || { echo "32-bit libgcc not found: run 'make deps'"; exit 1; }
	$(LD) -m $(LD_EMULATION) -T $(EXAMPLE_SCRIPT) --gc-sections -static -nostdlib \
		-Map $(BUILD)/example.map -o $@ $(EXAMPLE_BOOT) $(EXAMPLE_LIB) $(LIBGCC)
ifeq ($(ARCH),i686)
	@$(call check_multiboot,$@)
endif

# include/quarry.h as a user's compiler sees it: strict C11, 32- and 64-bit.
header-test:
	@echo "== header-test: gcc -std=c11 -Wall -Wextra -Werror -pedantic include/quarry.h (-m32, -m64)"
	$(GCC) -x c -std=c11 -Wall -Wextra -Werror -pedantic -fsyntax-only -m32 include/quarry.h
	$(GCC) -x c -std=c11 -Wall -Wextra -Werror -pedantic -fsyntax-only -m64 include/quarry.h

# The integration guide against the code: its C blocks against the header, its symbol
# list against the archive.
doc-test: $(BUILD)/libquarry.a
	@echo "== doc-test: Tests/doc-test.sh docs/integration.md $(BUILD)/libquarry.a"
	@CC='$(GCC)' NM='$(NM)' bash Tests/doc-test.sh docs/integration.md $(BUILD)/libquarry.a

# Swift Testing's hook that captures a backtrace for every thrown error takes a lock: a
# test's signal "interrupt" that throws (a refused allocation in a handler) while its
# thread was inside that hook deadlocks the run. The tests check every error themselves.
SWIFT_TEST_ENV := SWT_SWIFT_ERROR_BACKTRACING_ENABLED=0

host-test:
	@echo "== host-test: swift test"
	$(SWIFT_TEST_ENV) $(SWIFT) test

host-tsan:
	@echo "== host-tsan: swift test --sanitize=thread"
	$(SWIFT_TEST_ENV) $(SWIFT) test --sanitize=thread

# The single-step re-entry test in the release build the budgets measure (the plain
# host-test runs it in the checked debug build).
host-release-step:
	@echo "== host-release-step: swift test -c release --filter SingleStep"
	$(SWIFT_TEST_ENV) $(SWIFT) test -c release --filter SingleStep

test: deps
	@$(MAKE) --no-print-directory header-test
	@$(MAKE) --no-print-directory doc-test
	@$(MAKE) --no-print-directory deps-test
	@$(MAKE) --no-print-directory doc-references
	@$(MAKE) --no-print-directory format-lint
	@$(MAKE) --no-print-directory docs
	@$(MAKE) --no-print-directory host-test
	@$(MAKE) --no-print-directory host-tsan
	@$(MAKE) --no-print-directory host-release-step
	@$(MAKE) --no-print-directory fuzz-smoke
	@$(MAKE) --no-print-directory qemu-test
	@$(MAKE) --no-print-directory example
	@$(MAKE) --no-print-directory budgets

# The one dependency check (also run by .ci/run); GCC as for the build.
deps:
	@GCC='$(GCC)' bash .ci/deps

deps-test:
	@echo "== deps-test: Tests/deps-test.sh (.ci/deps with gcc-multilib, valgrind, QEMU missing)"
	@GCC='$(GCC)' bash Tests/deps-test.sh

# Every Swift file the repository holds, for the formatter (SwiftPM scratch folders and
# build outputs excluded).
FORMAT_FILES = $(shell git ls-files '*.swift' 2>/dev/null || find . -name '*.swift' -not -path '*/.build*' -not -path './build/*')

format:
	@echo "== format: swift format -i with .swift-format ($(words $(FORMAT_FILES)) files)"
	@$(SWIFT) format format -i --configuration .swift-format $(FORMAT_FILES)

format-lint:
	@echo "== format-lint: swift format lint --strict with .swift-format ($(words $(FORMAT_FILES)) files)"
	@$(SWIFT) format lint --strict --configuration .swift-format $(FORMAT_FILES)

# Docs, Neighbours lines and comments against the tree; first the check's own test
# (a small tree with one broken reference of each kind). DOC_REFERENCES_SKIP='FILE ...'
# leaves files out.
doc-references:
	@echo "== doc-references: Tests/doc-references-test.sh, then Tests/doc-references.sh (docs, Neighbours lines, comments)"
	@bash Tests/doc-references-test.sh
	@bash Tests/doc-references.sh

clean:
	@echo "== clean"
	rm -rf build

# make bench, make budgets (Benchmarks/Makefile.inc; budgets also run in make test).
include Benchmarks/Makefile.inc
# make fuzz, fuzz-smoke, test-asan, coverage (Tests/Makefile.inc; fuzz-smoke also runs in make test).
include Tests/Makefile.inc
# make docs (docs/Makefile.inc; also run by make test).
include docs/Makefile.inc
