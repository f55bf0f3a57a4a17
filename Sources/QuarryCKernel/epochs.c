/* epochs.c: deferred freeing from C on every CPU (quarry_epoch_*). Two lock-free tables
 * of pointers, one to objects of a poisoned cache and one to malloc blocks (some of them
 * spans above 32 KiB), which every CPU reads inside read sections (sometimes nested)
 * while every CPU replaces entries with an atomic exchange and retires what it took out.
 * A node is never written after it is published, so a reader that finds one whose
 * fields disagree, or whose value changed while it lingered, saw memory freed under it
 * (poisoned, a free-list link written, or handed out again). Freeing at once instead of
 * retiring makes this fail on -smp 4 (measured: the reads see freed nodes).
 *
 * Interrupt context: each CPU's LAPIC timer runs epochs_tick while the CPU works, so a
 * handler's read section nests inside the interrupted code's (or opens its own), and
 * the handler replaces entries of a third table and retires the old node itself. A
 * retire a handler cannot make (the backlog full behind a read section: the handler
 * must not wait) is handed to the interrupted CPU's thread loop, which retires it.
 * Neighbours: main.c (the phases), smp.c, interrupts.c (the timer), include/quarry.h.
 */
#include "epochs.h"

#include "console.h"
#include "interrupts.h"
#include "quarry.h"
#include "smp.h"

#define MAX_CPUS 16
#define SLOTS 32
#define ROUNDS 3000
#define RETIRED_PER_CPU 64
#define NODE_MAGIC 0x4E4F4445u
#define SPAN_SIZE 40000
#define LINGER 64           /* pauses between a reader's two looks at a node */

struct node {
    uint32_t magic;
    uint32_t value;
    uint32_t check;     /* ~value */
    uint32_t cpu;
};

/* What one CPU saw and did; written by that CPU only, read by the boot CPU afterwards. */
struct cpu_result {
    uint64_t reads, bad_reads, replaced, stalls, retire_errors, alloc_failures, enter_errors;
};

static struct node *cache_slots[SLOTS];
static struct node *block_slots[SLOTS];
static struct node *irq_slots[SLOTS];   /* replaced by timer handlers */
static quarry_cache *nodes;
static struct cpu_result results[MAX_CPUS];
static struct cpu_result irq_results[MAX_CPUS];
/* Nodes a handler took out of irq_slots but could not retire (a stall): its CPU's thread
 * loop retires them. Touched with interrupts off on their own CPU only. */
#define KEPT 8
static struct node *kept[MAX_CPUS][KEPT];
static unsigned kept_count[MAX_CPUS];
static uint32_t stall_reports;  /* atomic: the stall hook may run on any CPU */

static void count_stall(intptr_t cpu, uintptr_t epoch) {
    (void)cpu;
    (void)epoch;
    __atomic_add_fetch(&stall_reports, 1, __ATOMIC_RELAXED);
}

static uint32_t next_random(uint32_t *state) {
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *state = x;
}

static void make_node(struct node *n, uint32_t value, unsigned cpu) {
    n->magic = NODE_MAGIC;
    n->value = value;
    n->check = ~value;
    n->cpu = cpu;
}

static int node_ok(const struct node *n) {
    return n != NULL && n->magic == NODE_MAGIC && n->check == ~n->value && n->cpu < MAX_CPUS;
}

static void *new_block(uint32_t x) {
    return quarry_malloc(x % 61 == 0 ? SPAN_SIZE : sizeof(struct node) + (x >> 20) % 1000);
}

void epochs_prepare(void) {
    check_equal("epoch: quarry_epoch_init (64 retired objects per CPU, a stall hook)",
                quarry_epoch_init(RETIRED_PER_CPU, count_stall), QUARRY_OK);
    quarry_cache_options options = QUARRY_CACHE_OPTIONS_INIT;
    options.poison = 1;     /* a node freed too early is overwritten with 0x6b */
    nodes = quarry_cache_create_with("c-epoch-nodes", sizeof(struct node), 0, NULL, &options);
    check("epoch: create the poisoned node cache", nodes != NULL, quarry_error_name(quarry_last_error()));
    uint32_t seed = 12345;
    for (int i = 0; i < SLOTS; i++) {
        cache_slots[i] = quarry_cache_alloc(nodes);
        irq_slots[i] = quarry_cache_alloc(nodes);
        block_slots[i] = new_block(next_random(&seed));
        if (cache_slots[i] != NULL) make_node(cache_slots[i], (uint32_t)i, 0);
        if (irq_slots[i] != NULL) make_node(irq_slots[i], (uint32_t)i, 0);
        if (block_slots[i] != NULL) make_node(block_slots[i], (uint32_t)i, 0);
    }
}

/* Retires until accepted: a stall means this CPU's backlog is full while another CPU
 * sits in an old read section; the barrier waits it out (this CPU is outside its own). */
static void retire(struct cpu_result *r, quarry_cache *cache, struct node *old) {
    for (;;) {
        quarry_error e = cache != NULL ? quarry_epoch_retire(cache, old) : quarry_epoch_retire_block(old);
        if (e == QUARRY_OK) return;
        if (e != QUARRY_ERR_RECLAIM_STALLED) {
            r->retire_errors++;
            return;
        }
        r->stalls++;
        quarry_epoch_synchronize();
    }
}

/* Reads an entry's node, lingers, and reads it again: a node freed early is poisoned or
 * handed out again and rewritten (another value) while the reader still holds it. */
static void read_slot(struct cpu_result *r, struct node **slot) {
    const volatile struct node *n = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    r->reads++;
    if (!node_ok((const struct node *)n)) {
        r->bad_reads++;
        return;
    }
    uint32_t value = n->value;
    for (int i = 0; i < LINGER; i++) cpu_pause();
    if (!node_ok((const struct node *)n) || n->value != value) r->bad_reads++;
}

/* The timer handler's work (interrupts off, SSE state saved by the stub). */
void epochs_tick(unsigned cpu) {
    if (cpu >= MAX_CPUS) return;
    struct cpu_result *r = &irq_results[cpu];
    uint32_t tick = (uint32_t)r->reads;
    if (quarry_epoch_enter() != QUARRY_OK) {
        r->enter_errors++;
        return;
    }
    read_slot(r, &cache_slots[(tick * 7 + cpu) % SLOTS]);
    read_slot(r, &irq_slots[(tick * 3 + cpu) % SLOTS]);
    quarry_epoch_exit();
    if (kept_count[cpu] == KEPT) return;
    struct node *n = quarry_cache_alloc(nodes);
    if (n == NULL) {
        r->alloc_failures++;
        return;
    }
    make_node(n, tick, cpu);
    struct node *old = __atomic_exchange_n(&irq_slots[(tick * 5 + cpu) % SLOTS], n, __ATOMIC_ACQ_REL);
    quarry_error e = quarry_epoch_retire(nodes, old);
    if (e == QUARRY_OK) {
        r->replaced++;
    } else if (e == QUARRY_ERR_RECLAIM_STALLED) {
        r->stalls++;
        kept[cpu][kept_count[cpu]++] = old;
    } else {
        r->retire_errors++;
    }
}

/* Retires what this CPU's handler could not (thread context: it may wait). */
static void retire_kept(struct cpu_result *r, unsigned cpu) {
    for (;;) {
        uintptr_t flags = irq_save();
        struct node *old = kept_count[cpu] > 0 ? kept[cpu][--kept_count[cpu]] : NULL;
        irq_restore(flags);
        if (old == NULL) return;
        retire(r, nodes, old);
        r->replaced++;
    }
}

void epochs_run(unsigned cpu) {
    struct cpu_result *r = &results[cpu];
    uint32_t rng = 0x9E3779B9u * (cpu + 1);
    interrupts_start_cpu();
    for (unsigned i = 0; i < ROUNDS; i++) {
        uint32_t x = next_random(&rng);
        retire_kept(r, cpu);
        /* Read a few entries of both tables inside one section, a nested one sometimes. */
        if (quarry_epoch_enter() != QUARRY_OK) {
            r->enter_errors++;
            continue;
        }
        for (unsigned k = 0; k < 4; k++) {
            read_slot(r, &cache_slots[(x + k) % SLOTS]);
            if (k == 2 && (x & 8)) {
                if (quarry_epoch_enter() == QUARRY_OK) {
                    read_slot(r, &block_slots[(x >> 3) % SLOTS]);
                    quarry_epoch_exit();
                } else {
                    r->enter_errors++;
                }
            }
            read_slot(r, &block_slots[(x >> 8) % SLOTS]);
        }
        quarry_epoch_exit();

        /* Replace one entry of each table and retire the old node. */
        struct node *n = quarry_cache_alloc(nodes);
        struct node *b = new_block(x);
        if (n == NULL || b == NULL) {
            r->alloc_failures++;
            if (n != NULL) quarry_cache_free(nodes, n);
            quarry_free(b);
            continue;
        }
        make_node(n, x, cpu);
        make_node(b, ~x, cpu);
        retire(r, nodes, __atomic_exchange_n(&cache_slots[x % SLOTS], n, __ATOMIC_ACQ_REL));
        retire(r, NULL, __atomic_exchange_n(&block_slots[(x >> 5) % SLOTS], b, __ATOMIC_ACQ_REL));
        r->replaced += 2;
        if (i % 256 == 0) quarry_epoch_poll();
    }
    interrupts_stop_cpu();
    retire_kept(r, cpu);
    /* Everything this CPU retired is freed before it reports back. */
    quarry_epoch_synchronize();
}

static void add(struct cpu_result *sum, const struct cpu_result *r) {
    sum->reads += r->reads;
    sum->bad_reads += r->bad_reads;
    sum->replaced += r->replaced;
    sum->stalls += r->stalls;
    sum->retire_errors += r->retire_errors;
    sum->alloc_failures += r->alloc_failures;
    sum->enter_errors += r->enter_errors;
}

void epochs_check(unsigned cpus) {
    struct cpu_result total = {0, 0, 0, 0, 0, 0, 0}, irq = {0, 0, 0, 0, 0, 0, 0};
    int every_cpu = 1, every_cpu_ticked = 1;
    for (unsigned c = 0; c < cpus; c++) {
        add(&total, &results[c]);
        add(&irq, &irq_results[c]);
        if (results[c].replaced == 0) every_cpu = 0;
        if (irq_results[c].reads == 0) every_cpu_ticked = 0;
    }
    console_print("epoch: ");
    console_decimal(cpus);
    console_print(" CPUs, ");
    console_decimal(total.reads);
    console_print(" reads, ");
    console_decimal(total.replaced);
    console_print(" retired, ");
    console_decimal(total.stalls);
    console_print(" stalls waited out; in timer handlers: ");
    console_decimal(irq.reads);
    console_print(" reads, ");
    console_decimal(irq.replaced);
    console_print(" retired, ");
    console_decimal(irq.stalls);
    console_print(" handed to thread context\n");
    check("epoch: every CPU read and retired", every_cpu && total.reads > 0, "a CPU did nothing");
    check_equal("epoch: no reader saw a freed node (fields intact)", total.bad_reads, 0);
    check_equal("epoch: no enter refused", total.enter_errors, 0);
    check_equal("epoch: no retire refused but for stalls", total.retire_errors, 0);
    check_equal("epoch: no allocation failed", total.alloc_failures, 0);
    check("epoch: every CPU's timer handler read and retired", every_cpu_ticked && irq.replaced > 0,
          "a CPU took no tick, or no handler retired");
    check_equal("epoch: no handler saw a freed node", irq.bad_reads, 0);
    check_equal("epoch: no handler's enter, retire or allocation refused (but for stalls)",
                irq.enter_errors + irq.retire_errors + irq.alloc_failures, 0);
    quarry_epoch_statistics s;
    check("epoch: statistics: every retired object freed by its CPU's barrier",
          quarry_epoch_stats(&s) == QUARRY_OK && s.retired == total.replaced + irq.replaced && s.freed == s.retired
              && s.pending == 0 && s.free_errors == 0,
          "retired, freed, pending or free_errors wrong");
    check("epoch: the bound held (at most 64 waiting per CPU) and the epoch moved",
          s.high_water <= RETIRED_PER_CPU && s.capacity == RETIRED_PER_CPU && s.advances >= 2, "beyond the bound");
    check_equal("epoch: stall reports equal the refused retires", s.stalls, s.refused);
    check_equal("epoch: the hook ran once per stall report", __atomic_load_n(&stall_reports, __ATOMIC_RELAXED),
                s.stalls);

    /* Quiescence: the tables' last nodes go back directly, then the reclaimer and the cache. */
    for (int i = 0; i < SLOTS; i++) {
        quarry_cache_free(nodes, cache_slots[i]);
        quarry_cache_free(nodes, irq_slots[i]);
        quarry_free(block_slots[i]);
    }
    check_equal("epoch: quarry_epoch_destroy", quarry_epoch_destroy(), QUARRY_OK);
    check_equal("epoch: destroy the node cache (every node freed)", quarry_cache_destroy(nodes), QUARRY_OK);
    quarry_drain_all();
    quarry_heap_statistics h;
    check("epoch: every page back after quarry_drain_all",
          quarry_heap_stats(&h) == QUARRY_OK && h.pages_in_use == 0, "pages still in use");
}
