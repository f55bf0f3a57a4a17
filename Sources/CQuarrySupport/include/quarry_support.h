// quarry_support.h: the few x86 instructions Swift cannot say, as static inline C.
// Neighbours: QuarryX86/X86Platform.swift (the Platform conformance built on these),
// QuarryKernel (serial, interrupts, SMP), boot/*.S (the GDT, per-CPU %fs or GS_BASE, IDT stubs).
//
// Every function here is `static inline`: Swift's Clang importer emits the body into
// the calling Swift module and the optimiser inlines it, so the fast paths
// (cpu index, interrupt save/restore, pause) cost the instructions themselves and
// no call. Linker symbols (arena, trampoline, IDT) are reached through small
// accessors because Swift cannot take the address of a C array declaration.
#ifndef QUARRY_SUPPORT_H
#define QUARRY_SUPPORT_H

// MARK: Constants shared with boot/*.S (which include this file through boot_defs.h)

/// CPUs the kernel supports: per-CPU GDT segments, per-CPU slots, AP stacks.
#define QUARRY_MAX_CPUS 16
/// Bytes per CPU slot at `quarry_percpu`; word 0 is the CPU index.
#define QUARRY_PERCPU_SIZE 64
/// Physical address the AP trampoline is copied to: SIPI vector 0x08.
#define QUARRY_TRAMPOLINE_BASE 0x8000
/// Interrupt vectors and the order of `quarry_isr_stub_table`: positions 0-31 are
/// exceptions 0-31, then the LAPIC timer, then the LAPIC spurious vector.
#define QUARRY_VECTOR_TIMER 0x40
#define QUARRY_VECTOR_SPURIOUS 0xFF
#define QUARRY_STUB_TIMER 32
#define QUARRY_STUB_SPURIOUS 33
#define QUARRY_STUB_COUNT 34
/// The EFLAGS interrupt-enable bit.
#define QUARRY_FLAGS_IF 0x200
/// The EFLAGS trap flag: #DB (vector 1) after every instruction while it is set.
#define QUARRY_FLAGS_TF 0x100

#ifndef __ASSEMBLER__

#include <stdint.h>

#if defined(__i386__) || defined(__x86_64__)

// MARK: Port I/O

static inline __attribute__((always_inline)) void quarry_outb(uint16_t port, uint8_t value) {
    __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port) : "memory");
}

static inline __attribute__((always_inline)) uint8_t quarry_inb(uint16_t port) {
    uint8_t value;
    __asm__ volatile("inb %1, %0" : "=a"(value) : "Nd"(port) : "memory");
    return value;
}

static inline __attribute__((always_inline)) void quarry_outw(uint16_t port, uint16_t value) {
    __asm__ volatile("outw %0, %1" : : "a"(value), "Nd"(port) : "memory");
}

static inline __attribute__((always_inline)) uint16_t quarry_inw(uint16_t port) {
    uint16_t value;
    __asm__ volatile("inw %1, %0" : "=a"(value) : "Nd"(port) : "memory");
    return value;
}

static inline __attribute__((always_inline)) void quarry_outl(uint16_t port, uint32_t value) {
    __asm__ volatile("outl %0, %1" : : "a"(value), "Nd"(port) : "memory");
}

static inline __attribute__((always_inline)) uint32_t quarry_inl(uint16_t port) {
    uint32_t value;
    __asm__ volatile("inl %1, %0" : "=a"(value) : "Nd"(port) : "memory");
    return value;
}

// MARK: Interrupt flag

/// Saves the flags register, then masks interrupts. Returns the saved flags:
/// hand them to `quarry_restore_flags`. 3 instructions (pushf; pop; cli).
static inline __attribute__((always_inline)) uintptr_t quarry_save_flags_cli(void) {
    uintptr_t flags;
    __asm__ volatile("pushf\n\tpop %0\n\tcli" : "=r"(flags) : : "memory");
    return flags;
}

/// Puts back exactly the flags `quarry_save_flags_cli` returned (push; popf).
/// Interrupts come back on only if they were on at the matching save: never a blind sti.
static inline __attribute__((always_inline)) void quarry_restore_flags(uintptr_t flags) {
    __asm__ volatile("push %0\n\tpopf" : : "rm"(flags) : "memory", "cc");
}

/// The current flags register, for checks.
static inline __attribute__((always_inline)) uintptr_t quarry_read_flags(void) {
    uintptr_t flags;
    __asm__ volatile("pushf\n\tpop %0" : "=r"(flags) : : "memory");
    return flags;
}

/// Enables interrupts. Only for the kernel's own bring-up code (after the IDT,
/// PIC mask and LAPIC are ready), never inside Quarry.
static inline __attribute__((always_inline)) void quarry_sti(void) {
    __asm__ volatile("sti" : : : "memory");
}

static inline __attribute__((always_inline)) void quarry_cli(void) {
    __asm__ volatile("cli" : : : "memory");
}

/// `sti; hlt` as one unit: the interrupt shadow of sti guarantees no interrupt is
/// taken between the two, so a wake-up cannot be lost between a check and the halt.
static inline __attribute__((always_inline)) void quarry_sti_hlt(void) {
    __asm__ volatile("sti\n\thlt" : : : "memory");
}

static inline __attribute__((always_inline)) void quarry_hlt(void) {
    __asm__ volatile("hlt" : : : "memory");
}

// MARK: Spinning, time, entropy

static inline __attribute__((always_inline)) void quarry_pause(void) {
    __asm__ volatile("pause" : : : "memory");
}

static inline __attribute__((always_inline)) uint64_t quarry_rdtsc(void) {
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

static inline __attribute__((always_inline)) void quarry_cpuid(uint32_t leaf, uint32_t subleaf,
                                                               uint32_t *eax, uint32_t *ebx,
                                                               uint32_t *ecx, uint32_t *edx) {
    __asm__ volatile("cpuid"
                     : "=a"(*eax), "=b"(*ebx), "=c"(*ecx), "=d"(*edx)
                     : "a"(leaf), "c"(subleaf));
}

/// CPUID.1:ECX bit 30. QEMU's default i386 CPU model does not have it, and
/// executing rdrand there is #UD, so every rdrand is guarded by this.
static inline int quarry_has_rdrand(void) {
    uint32_t a, b, c, d;
    quarry_cpuid(0, 0, &a, &b, &c, &d);
    if (a < 1) return 0;
    quarry_cpuid(1, 0, &a, &b, &c, &d);
    return (c >> 30) & 1;
}

/// A random word from rdrand (10 tries, as Intel recommends), else the low bits
/// of the time-stamp counter mixed with its high bits: unpredictable enough
/// for hardening secrets, not for cryptography.
static inline uintptr_t quarry_rdrand_or_rdtsc(void) {
    if (quarry_has_rdrand()) {
        for (int attempt = 0; attempt < 10; attempt++) {
            uintptr_t value;
            unsigned char ok;
            __asm__ volatile("rdrand %0\n\tsetc %1" : "=r"(value), "=qm"(ok) : : "cc");
            if (ok) return value;
        }
    }
    uint64_t t = quarry_rdtsc();
    uint64_t mixed = (t ^ (t >> 29)) * 0xBF58476D1CE4E5B9ull;
    return (uintptr_t)(mixed ^ (mixed >> 32));
}

// MARK: Descriptor tables

/// Loads the IDT register from a (limit, base) descriptor in memory: 6 bytes on
/// i686, 10 on x86_64.
static inline __attribute__((always_inline)) void quarry_lidt(const void *descriptor) {
    __asm__ volatile("lidt (%0)" : : "r"(descriptor) : "memory");
}

// MARK: Per-CPU data and the CPU index

/// Each CPU's segment base points at its own `quarry_percpu` slot, whose first
/// 32-bit word is the CPU index, so reading the index is one instruction with no
/// memory barrier, no lock and no APIC access:
/// - i686: `mov %fs:0, %reg`. %fs selects the CPU's own GDT data segment
///   (boot/multiboot_i686.S sets the bases, the boot and AP entry paths load %fs).
/// - x86_64: `mov %gs:0, %reg`. Segment bases come from MSRs in long mode; each CPU
///   writes its slot's address to IA32_GS_BASE (0xC0000101) once, in
///   boot/multiboot_x86_64.S and boot/ap_trampoline_x86_64.S. %gs, as in other
///   x86_64 kernels; %fs is the compilers' thread-pointer register there.
/// Stable while the code cannot migrate (always, in this kernel: a CPU never changes
/// its segment base after entry).
static inline __attribute__((always_inline)) uint32_t quarry_cpu_index(void) {
    uint32_t index;
#if defined(__x86_64__)
    __asm__("movl %%gs:0, %0" : "=r"(index));
#else
    __asm__("movl %%fs:0, %0" : "=r"(index));
#endif
    return index;
}

// MARK: MMIO

static inline __attribute__((always_inline)) uint32_t quarry_mmio_read32(uintptr_t address) {
    return *(volatile uint32_t *)address;
}

static inline __attribute__((always_inline)) void quarry_mmio_write32(uintptr_t address, uint32_t value) {
    *(volatile uint32_t *)address = value;
}

/// The faulting linear address of the last page fault.
static inline __attribute__((always_inline)) uintptr_t quarry_read_cr2(void) {
    uintptr_t value;
    __asm__ volatile("mov %%cr2, %0" : "=r"(value));
    return value;
}

/// Sets EFLAGS.TF (pushf; or; popf). The instruction after the popf is the first to
/// trap: from then on the CPU raises #DB (vector 1) after every instruction, entering
/// the handler with TF clear (iret restores it), until `quarry_clear_tf`. Interrupt
/// and exception handlers run with TF clear (the gates clear it). Test code only.
static inline __attribute__((always_inline)) void quarry_set_tf(void) {
#if defined(__x86_64__)
    __asm__ volatile("pushfq\n\torq $0x100, (%%rsp)\n\tpopfq" : : : "memory", "cc");
#else
    __asm__ volatile("pushfl\n\torl $0x100, (%%esp)\n\tpopfl" : : : "memory", "cc");
#endif
}

/// Clears EFLAGS.TF (pushf; and; popf). Its own three instructions still trap (TF is
/// tested at the start of each instruction): `SingleStep` measures and subtracts them.
static inline __attribute__((always_inline)) void quarry_clear_tf(void) {
#if defined(__x86_64__)
    __asm__ volatile("pushfq\n\tandq $~0x100, (%%rsp)\n\tpopfq" : : : "memory", "cc");
#else
    __asm__ volatile("pushfl\n\tandl $~0x100, (%%esp)\n\tpopfl" : : : "memory", "cc");
#endif
}

/// Executes `int3` (the breakpoint trap), for the interrupt-path self-test.
static inline __attribute__((always_inline)) void quarry_int3(void) {
    __asm__ volatile("int3" : : : "memory");
}

// MARK: SSE state self-test

#define QUARRY_XMM_SET(n, v) \
    "movl $" #v ", %%eax\n\tmovd %%eax, %%xmm" #n "\n\tpshufd $0, %%xmm" #n ", %%xmm" #n "\n\t"
#define QUARRY_XMM_CHECK(n, v) \
    "movd %%xmm" #n ", %%eax\n\txorl $" #v ", %%eax\n\torl %%eax, %0\n\t" \
    "psrldq $12, %%xmm" #n "\n\tmovd %%xmm" #n ", %%eax\n\txorl $" #v ", %%eax\n\torl %%eax, %0\n\t"

// x86_64 has eight more xmm registers; fxsave64/fxrstor64 must keep them too.
#if defined(__x86_64__)
#define QUARRY_XMM_SET_HIGH \
    QUARRY_XMM_SET(8, 0x98989898) QUARRY_XMM_SET(9, 0xA9A9A9A9) \
    QUARRY_XMM_SET(10, 0xBABABABA) QUARRY_XMM_SET(11, 0xCBCBCBCB) \
    QUARRY_XMM_SET(12, 0xDCDCDCDC) QUARRY_XMM_SET(13, 0xEDEDEDED) \
    QUARRY_XMM_SET(14, 0xFEFEFEFE) QUARRY_XMM_SET(15, 0x0F0F0F0F)
#define QUARRY_XMM_CHECK_HIGH \
    QUARRY_XMM_CHECK(8, 0x98989898) QUARRY_XMM_CHECK(9, 0xA9A9A9A9) \
    QUARRY_XMM_CHECK(10, 0xBABABABA) QUARRY_XMM_CHECK(11, 0xCBCBCBCB) \
    QUARRY_XMM_CHECK(12, 0xDCDCDCDC) QUARRY_XMM_CHECK(13, 0xEDEDEDED) \
    QUARRY_XMM_CHECK(14, 0xFEFEFEFE) QUARRY_XMM_CHECK(15, 0x0F0F0F0F)
#define QUARRY_XMM_ZERO_HIGH \
    "\n\tpxor %%xmm8, %%xmm8\n\tpxor %%xmm9, %%xmm9\n\tpxor %%xmm10, %%xmm10" \
    "\n\tpxor %%xmm11, %%xmm11\n\tpxor %%xmm12, %%xmm12\n\tpxor %%xmm13, %%xmm13" \
    "\n\tpxor %%xmm14, %%xmm14\n\tpxor %%xmm15, %%xmm15"
#define QUARRY_XMM_HIGH_CLOBBERS \
    , "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"
#else
#define QUARRY_XMM_SET_HIGH
#define QUARRY_XMM_CHECK_HIGH
#define QUARRY_XMM_ZERO_HIGH
#define QUARRY_XMM_HIGH_CLOBBERS
#endif

/// Fills every xmm register (xmm0-7, and xmm8-15 on x86_64) with distinct patterns,
/// halts `halts` times (each halt ends with an interrupt: interrupts must be enabled
/// and a timer running), then checks the lowest and highest dword of every register.
/// Returns 0 when all survived. Proves the interrupt stubs' fxsave/fxrstor when the
/// handler clobbers xmm (quarry_clobber_xmm).
static inline uint32_t quarry_xmm_damage_across_halts(uint32_t halts) {
    uint32_t damage = 0;
    __asm__ volatile(
        QUARRY_XMM_SET(0, 0x10101010) QUARRY_XMM_SET(1, 0x21212121)
        QUARRY_XMM_SET(2, 0x32323232) QUARRY_XMM_SET(3, 0x43434343)
        QUARRY_XMM_SET(4, 0x54545454) QUARRY_XMM_SET(5, 0x65656565)
        QUARRY_XMM_SET(6, 0x76767676) QUARRY_XMM_SET(7, 0x87878787)
        QUARRY_XMM_SET_HIGH
        "1:\n\thlt\n\tdecl %1\n\tjnz 1b\n\t"
        QUARRY_XMM_CHECK(0, 0x10101010) QUARRY_XMM_CHECK(1, 0x21212121)
        QUARRY_XMM_CHECK(2, 0x32323232) QUARRY_XMM_CHECK(3, 0x43434343)
        QUARRY_XMM_CHECK(4, 0x54545454) QUARRY_XMM_CHECK(5, 0x65656565)
        QUARRY_XMM_CHECK(6, 0x76767676) QUARRY_XMM_CHECK(7, 0x87878787)
        QUARRY_XMM_CHECK_HIGH
        : "+r"(damage), "+r"(halts)
        :
        : "eax", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7"
          QUARRY_XMM_HIGH_CLOBBERS, "cc", "memory");
    return damage;
}

/// Zeroes every xmm register: what an interrupt handler running SSE code (memset,
/// copies) does.
static inline void quarry_clobber_xmm(void) {
    __asm__ volatile("pxor %%xmm0, %%xmm0\n\tpxor %%xmm1, %%xmm1\n\tpxor %%xmm2, %%xmm2\n\t"
                     "pxor %%xmm3, %%xmm3\n\tpxor %%xmm4, %%xmm4\n\tpxor %%xmm5, %%xmm5\n\t"
                     "pxor %%xmm6, %%xmm6\n\tpxor %%xmm7, %%xmm7" QUARRY_XMM_ZERO_HIGH
                     : : : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7"
                       QUARRY_XMM_HIGH_CLOBBERS);
}

// MARK: MSRs

static inline __attribute__((always_inline)) uint64_t quarry_rdmsr(uint32_t msr) {
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((uint64_t)hi << 32) | lo;
}

#endif // defined(__i386__) || defined(__x86_64__)

// MARK: Interrupt frame

#if defined(__x86_64__)
/// What boot/isr_x86_64.S pushes, lowest address first: the general registers
/// (r15 last pushed), then the stub's vector and (possibly dummy) error code, then
/// the CPU's rip, cs, rflags, rsp, ss (always pushed in long mode).
struct quarry_interrupt_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
    uint64_t rdi, rsi, rbp, rbx, rdx, rcx, rax;
    uint64_t vector, error_code;
    uint64_t rip, cs, rflags, rsp, ss;
};
#else
/// What boot/isr_i686.S pushes, lowest address first: `pushal`, then the stub's
/// vector and (possibly dummy) error code, then the CPU's eip, cs, eflags
/// (ring 0 to ring 0: no ss:esp).
struct quarry_interrupt_frame {
    uint32_t edi, esi, ebp, esp_at_pushal, ebx, edx, ecx, eax;
    uint32_t vector, error_code;
    uint32_t eip, cs, eflags;
};
#endif

// MARK: Symbols from the linker script and boot/*.S

extern char __quarry_arena_start[];
extern char __quarry_arena_end[];
extern char quarry_ap_trampoline_start[];
extern char quarry_ap_trampoline_end[];
extern char quarry_idt[];
extern char quarry_idtr[];
extern char quarry_percpu[];
extern const uintptr_t quarry_isr_stub_table[];   // .long on i686, .quad on x86_64

extern volatile uint32_t quarry_ap_started;

static inline uintptr_t quarry_arena_start(void) { return (uintptr_t)__quarry_arena_start; }
static inline uintptr_t quarry_arena_end(void) { return (uintptr_t)__quarry_arena_end; }
static inline uintptr_t quarry_trampoline_start(void) { return (uintptr_t)quarry_ap_trampoline_start; }
static inline uintptr_t quarry_trampoline_end(void) { return (uintptr_t)quarry_ap_trampoline_end; }
/// Base of the 256-entry IDT (8 bytes per gate on i686, 16 on x86_64) and its lidt
/// descriptor.
static inline uintptr_t quarry_idt_base(void) { return (uintptr_t)quarry_idt; }
static inline uintptr_t quarry_idt_descriptor(void) { return (uintptr_t)quarry_idtr; }
/// Base of the per-CPU slots (QUARRY_PERCPU_SIZE bytes each).
static inline uintptr_t quarry_percpu_base(void) { return (uintptr_t)quarry_percpu; }
/// Entry address of the stub for table position `i` (see boot/isr_<arch>.S for the order).
static inline uintptr_t quarry_isr_stub(uint32_t i) { return quarry_isr_stub_table[i]; }
/// How many APs have taken a stack in the trampoline (boot/ap_trampoline_<arch>.S).
static inline uint32_t quarry_ap_started_count(void) {
    return __atomic_load_n(&quarry_ap_started, __ATOMIC_ACQUIRE);
}

#endif // __ASSEMBLER__
#endif // QUARRY_SUPPORT_H
