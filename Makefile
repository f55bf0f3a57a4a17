# Quarry: host tests with SwiftPM, the i686 Embedded library and test kernel with swiftc.
#
#   make run          boot the test kernel in QEMU (-smp 4) and show its output
#   make test         deps, host tests, then the kernel under QEMU with -smp 1 and -smp 4
#   make kernel       build/i686/kernel.elf (+ kernel.map, kernel.dis)
#   make lib          build/i686/libquarry.a (Sources/Quarry + Sources/QuarryX86, module Quarry)
#   make host-test    swift test
#   make qemu-test    boot with -smp 1 and -smp 4; pass only on exit 67 and "N passed, 0 failed"
#   make deps         check for (or, as root, install) qemu-system-i386 and 32-bit libgcc
#   make clean

SWIFT_BIN ?= /opt/swift/usr/bin
# A tool from SWIFT_BIN when it is there, else from PATH.
tool = $(if $(wildcard $(SWIFT_BIN)/$(1)),$(SWIFT_BIN)/$(1),$(1))
SWIFTC  := $(call tool,swiftc)
SWIFT   := $(call tool,swift)
CLANG   := $(call tool,clang)
LD      := $(call tool,ld.lld)
AR      := $(call tool,llvm-ar)
OBJDUMP := $(call tool,llvm-objdump)
QEMU    ?= qemu-system-i386
GCC     ?= gcc

BUILD := build/i686
TRIPLE := i686-unknown-none-elf

EMBEDDED_FLAGS := -target $(TRIPLE) \
	-enable-experimental-feature Embedded -enable-experimental-feature Extern \
	-wmo -parse-as-library -Osize \
	-Xfrontend -disable-stack-protector -Xfrontend -function-sections \
	-Xcc -mno-red-zone \
	-I Sources/CQuarrySupport/include
# The allocator itself must never allocate through the Swift runtime.
LIB_FLAGS := $(EMBEDDED_FLAGS) -Xfrontend -no-allocations
KERNEL_FLAGS := $(EMBEDDED_FLAGS) -I $(BUILD)

CFLAGS := --target=$(TRIPLE) -march=i686 -ffreestanding -fno-builtin -nostdlib -m32 \
	-mno-red-zone -Os -Wall -Wextra -ffunction-sections -fno-pic -fno-stack-protector
ASFLAGS := --target=$(TRIPLE) -march=i686 -Iboot -ISources/CQuarrySupport/include

LIB_SOURCES    := $(wildcard Sources/Quarry/*.swift) $(wildcard Sources/QuarryX86/*.swift)
KERNEL_SOURCES := $(wildcard Sources/QuarryKernel/*.swift)
SUPPORT_HEADERS := $(wildcard Sources/CQuarrySupport/include/*)
BOOT_SOURCES   := $(wildcard boot/*.S)
BOOT_OBJECTS   := $(patsubst boot/%.S,$(BUILD)/boot/%.o,$(BOOT_SOURCES))
C_SOURCES      := $(wildcard Sources/QuarryKernel/*.c)
C_OBJECTS      := $(patsubst Sources/QuarryKernel/%.c,$(BUILD)/c/%.o,$(C_SOURCES))
LIBGCC          = $(shell $(GCC) -m32 -print-libgcc-file-name)

QEMU_FLAGS := -m 128M -serial stdio -display none -no-reboot \
	-device isa-debug-exit,iobase=0xf4,iosize=0x04
QEMU_TIMEOUT ?= 60
# isa-debug-exit: the kernel writes 0x21 (pass) or 0x22 (fail); QEMU exits with (v << 1) | 1.
QEMU_PASS := 67
QEMU_FAIL := 69

.PHONY: all kernel lib run test host-test qemu-test deps clean
all: kernel

lib: $(BUILD)/libquarry.a
kernel: $(BUILD)/kernel.elf

$(BUILD)/libquarry.a: $(LIB_SOURCES) $(SUPPORT_HEADERS) Makefile
	@echo "== lib: swiftc (Embedded, -no-allocations) Sources/Quarry + Sources/QuarryX86 -> module Quarry"
	@mkdir -p $(BUILD)
	$(SWIFTC) $(LIB_FLAGS) -module-name Quarry \
		-emit-module -emit-module-path $(BUILD)/Quarry.swiftmodule \
		-c -o $(BUILD)/Quarry.o $(LIB_SOURCES)
	@echo "== lib: llvm-ar -> $@"
	@rm -f $@
	$(AR) rcs $@ $(BUILD)/Quarry.o

$(BUILD)/QuarryKernel.o: $(KERNEL_SOURCES) $(BUILD)/libquarry.a $(SUPPORT_HEADERS) Makefile
	@echo "== kernel: swiftc (Embedded) Sources/QuarryKernel, importing Quarry"
	$(SWIFTC) $(KERNEL_FLAGS) -module-name QuarryKernel -c -o $@ $(KERNEL_SOURCES)

$(BUILD)/boot/%.o: boot/%.S $(wildcard boot/*.h) $(SUPPORT_HEADERS) Makefile
	@echo "== boot: assemble $<"
	@mkdir -p $(dir $@)
	$(CLANG) $(ASFLAGS) -c -o $@ $<

$(BUILD)/c/%.o: Sources/QuarryKernel/%.c Makefile
	@echo "== c: compile $< (freestanding)"
	@mkdir -p $(dir $@)
	$(CLANG) $(CFLAGS) -c -o $@ $<

$(BUILD)/kernel.elf: $(BOOT_OBJECTS) $(C_OBJECTS) $(BUILD)/QuarryKernel.o $(BUILD)/libquarry.a linker/i686.ld
	@echo "== link: ld.lld -T linker/i686.ld --gc-sections -> $@"
	@test -f "$(LIBGCC)" || { echo "32-bit libgcc not found: run 'make deps'"; exit 1; }
	$(LD) -m elf_i386 -T linker/i686.ld --gc-sections -static -nostdlib \
		-Map $(BUILD)/kernel.map -o $@ \
		$(BOOT_OBJECTS) $(C_OBJECTS) $(BUILD)/QuarryKernel.o $(BUILD)/libquarry.a $(LIBGCC)
	@echo "== check: multiboot header in the first 8 KiB of the file"
	@head -c 8192 $@ | od -An -tx4 -v | grep -qw 1badb002 || \
		{ echo "multiboot magic not in the first 8 KiB of $@"; rm -f $@; exit 1; }
	@echo "== disassemble: -> $(BUILD)/kernel.dis"
	$(OBJDUMP) -d --no-show-raw-insn $@ > $(BUILD)/kernel.dis

run: deps kernel
	@echo "== run: QEMU -smp 4 (timeout $(QEMU_TIMEOUT) s)"
	timeout $(QEMU_TIMEOUT) $(QEMU) -kernel $(BUILD)/kernel.elf -smp 4 $(QEMU_FLAGS); \
		status=$$?; echo "== run: QEMU exit status $$status"; \
		case $$status in $(QEMU_PASS)) exit 0;; *) exit 1;; esac

# Boots the kernel once per CPU count in QEMU_SMP. A boot passes only if QEMU exits with 67
# and its log has a line "N passed, 0 failed" with N > 0; every boot runs, then each
# failure is named with its reason.
QEMU_SMP ?= 1 4
qemu-test: kernel
	@failed=""; \
	for smp in $(QEMU_SMP); do \
		log=$(BUILD)/qemu-smp$$smp.log; \
		echo "== qemu-test: -smp $$smp (timeout $(QEMU_TIMEOUT) s), log $$log"; \
		timeout $(QEMU_TIMEOUT) $(QEMU) -kernel $(BUILD)/kernel.elf -smp $$smp $(QEMU_FLAGS) \
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
			echo "== qemu-test: -smp $$smp FAILED: $$why"; failed="$$failed -smp $$smp"; \
		else \
			echo "== qemu-test: -smp $$smp passed ($$summary)"; \
		fi; \
	done; \
	if [ -n "$$failed" ]; then echo "== qemu-test: FAILED:$$failed"; exit 1; fi; \
	echo "== qemu-test: all boots passed"

host-test:
	@echo "== host-test: swift test"
	$(SWIFT) test

test: deps
	@$(MAKE) --no-print-directory host-test
	@$(MAKE) --no-print-directory qemu-test

deps:
	@echo "== deps: qemu-system-i386 and 32-bit libgcc"
	@missing=""; \
	command -v $(QEMU) > /dev/null 2>&1 || missing="$$missing qemu-system-x86"; \
	lg=$$($(GCC) -m32 -print-libgcc-file-name 2>/dev/null); \
	{ [ -n "$$lg" ] && [ -f "$$lg" ]; } || missing="$$missing gcc-multilib"; \
	if [ -z "$$missing" ]; then echo "== deps: ok"; exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null 2>&1; then \
		echo "== deps: installing$$missing"; \
		DEBIAN_FRONTEND=noninteractive apt-get update && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y$$missing; \
	else \
		echo "== deps: missing packages; install them with:"; \
		echo "   sudo apt-get install -y$$missing"; \
		exit 1; \
	fi

clean:
	@echo "== clean"
	rm -rf build
