/* bench.c: the workloads (pair, batch LIFO/FIFO, random, producer-consumer, threads, burst) and the
 * CSV-printing main, driving any allocator through struct bench_allocator.
 * Neighbours: bench.h (the interface), peer_*.c (the allocators), Benchmarks/run.sh (runs every
 * binary and collects the CSV), Benchmarks/instructions.sh (runs `--count` under callgrind).
 *
 * Every figure is ns per allocate+free pair: one op = one object allocated and freed.
 * Wall time comes from CLOCK_MONOTONIC; each cell is the median of --reps repetitions after
 * one untimed warm-up. Objects are written once after allocation (first word) except in the
 * pair workload, which measures the allocator alone. The random, producer-consumer and
 * threads loops stop early at a deadline (--deadline-ms, default 1000 per repetition) and
 * divide by the operations actually done: a contended spinlock whose holder the host has
 * descheduled can make an operation take microseconds, and `make bench` must stay bounded.
 * Such cells are reported with status "ok-capped". */
#define _GNU_SOURCE
#include "bench.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WORKING_SET 10000
#define BATCH 1000
#define RING_SLOTS 1024 /* power of two */
#define MAX_REPS 99

static const struct bench_allocator *A = &bench_peer;

/* Set by every run_* function: operations done, and whether the deadline cut the run short. */
static long last_ops;
static int last_capped;
static uint64_t deadline_ns; /* absolute CLOCK_MONOTONIC time; loops check it every 1024 ops */
static long deadline_ms = 1000;

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void die(const char *what) {
    fprintf(stderr, "bench-%s: %s\n", A->name, what);
    exit(2);
}

static inline void *must_alloc(size_t size, void *ctx) {
    void *p = A->alloc(size, ctx);
    if (p == NULL) die("allocation failed");
    return p;
}

/* xorshift64 (Marsaglia 2003), fixed seeds: every run replaces the same slots. */
static inline uint64_t xorshift64(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* A slot in [0, n) without a division: the high half of a 32x32 product. */
static inline size_t pick(uint64_t r, size_t n) { return (size_t)(((r >> 32) * (uint64_t)n) >> 32); }

static void spin_wait(unsigned *spins) {
    if (++*spins < 128) __builtin_ia32_pause();
    else sched_yield();
}

/* ---- pair: allocate then free, one other object kept live ---------------------------- */

static uint64_t run_pair(size_t size, void *ctx, long ops) {
    void *keep = must_alloc(size, ctx);
    uint64_t t0 = now_ns();
    for (long i = 0; i < ops; i++) {
        void *p = A->alloc(size, ctx);
        A->free(p, ctx);
    }
    uint64_t t1 = now_ns();
    A->free(keep, ctx);
    last_ops = ops;
    return t1 - t0;
}

/* ---- batch: 1000 allocations then 1000 frees, LIFO or FIFO --------------------------- */

static uint64_t run_batch(size_t size, void *ctx, long ops, int fifo) {
    static void *slots[BATCH];
    long rounds = ops / BATCH;
    uint64_t t0 = now_ns();
    for (long r = 0; r < rounds; r++) {
        for (int i = 0; i < BATCH; i++) {
            void *p = must_alloc(size, ctx);
            *(uintptr_t *)p = (uintptr_t)i;
            slots[i] = p;
        }
        if (fifo) {
            for (int i = 0; i < BATCH; i++) A->free(slots[i], ctx);
        } else {
            for (int i = BATCH - 1; i >= 0; i--) A->free(slots[i], ctx);
        }
    }
    last_ops = rounds * BATCH;
    return now_ns() - t0;
}

/* ---- burst: 1000 allocations then 1000 frees in allocation order, objects untouched, -----
 * ---- one call per object (burst) or one bulk call each way (burst-bulk) ------------------ */

static uint64_t run_burst(size_t size, void *ctx, long ops, int bulk) {
    static void *slots[BATCH];
    long rounds = ops / BATCH;
    uint64_t t0 = now_ns();
    for (long r = 0; r < rounds; r++) {
        if (bulk) {
            if (A->alloc_bulk(size, ctx, BATCH, slots) != BATCH) die("bulk allocation failed");
            A->free_bulk(ctx, BATCH, slots);
        } else {
            for (int i = 0; i < BATCH; i++) slots[i] = must_alloc(size, ctx);
            for (int i = 0; i < BATCH; i++) A->free(slots[i], ctx);
        }
    }
    last_ops = rounds * BATCH;
    return now_ns() - t0;
}

/* ---- random: a working set of 10,000 slots, random replacement ----------------------- */

static void random_fill(void **slots, size_t size, void *ctx) {
    for (int i = 0; i < WORKING_SET; i++) {
        slots[i] = must_alloc(size, ctx);
        *(uintptr_t *)slots[i] = (uintptr_t)i;
    }
}

static void random_empty(void **slots, void *ctx) {
    for (int i = 0; i < WORKING_SET; i++) A->free(slots[i], ctx);
}

/* Returns the replacements done (fewer than ops when the deadline passed). */
static long random_loop(void **slots, size_t size, void *ctx, long ops, uint64_t seed) {
    uint64_t s = seed;
    for (long i = 0; i < ops; i++) {
        if ((i & 1023) == 0 && i > 0 && now_ns() > deadline_ns) return i;
        size_t k = pick(xorshift64(&s), WORKING_SET);
        A->free(slots[k], ctx);
        void *p = must_alloc(size, ctx);
        *(uintptr_t *)p = (uintptr_t)i;
        slots[k] = p;
    }
    return ops;
}

static uint64_t run_random(size_t size, void *ctx, long ops) {
    void **slots = malloc(sizeof(void *) * WORKING_SET);
    random_fill(slots, size, ctx);
    uint64_t t0 = now_ns();
    last_ops = random_loop(slots, size, ctx, ops, 0x9E3779B97F4A7C15ull);
    last_capped = last_ops < ops;
    uint64_t t1 = now_ns();
    random_empty(slots, ctx);
    free(slots);
    return t1 - t0;
}

/* ---- threads: common start and timing -------------------------------------------------- */

struct thread_job {
    size_t size;
    void *ctx;
    long ops;
    int index;
    pthread_barrier_t *ready;
    uint64_t start, end;
    long done;
    long errors;
    struct ring *ring;
};

static uint64_t elapsed(struct thread_job *jobs, int n) {
    uint64_t start = jobs[0].start, end = jobs[0].end;
    for (int i = 1; i < n; i++) {
        if (jobs[i].start < start) start = jobs[i].start;
        if (jobs[i].end > end) end = jobs[i].end;
    }
    return end - start;
}

static void start_threads(void *(*body)(void *), struct thread_job *jobs, int n) {
    pthread_t t[4];
    for (int i = 0; i < n; i++)
        if (pthread_create(&t[i], NULL, body, &jobs[i]) != 0) die("pthread_create failed");
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
}

/* ---- producer-consumer: one thread allocates, another frees, through an SPSC ring ------ */

struct ring {
    _Alignas(64) _Atomic size_t head; /* written by the producer */
    _Alignas(64) _Atomic size_t tail; /* written by the consumer */
    _Alignas(64) void *slot[RING_SLOTS];
};

static void *producer(void *arg) {
    struct thread_job *j = arg;
    if (A->thread_start) A->thread_start(j->index);
    struct ring *r = j->ring;
    pthread_barrier_wait(j->ready);
    j->start = now_ns();
    size_t head = 0, tail = 0;
    for (long i = 0; i <= j->ops; i++) {
        /* After the last object (or at the deadline) a NULL tells the consumer to stop. */
        int last = i == j->ops || ((i & 1023) == 0 && i > 0 && now_ns() > deadline_ns);
        void *p = NULL;
        if (last) {
            j->done = i;
        } else {
            p = must_alloc(j->size, j->ctx);
            *(uintptr_t *)p = (uintptr_t)i;
        }
        unsigned spins = 0;
        while (head - tail == RING_SLOTS) {
            tail = atomic_load_explicit(&r->tail, memory_order_acquire);
            if (head - tail == RING_SLOTS) spin_wait(&spins);
        }
        r->slot[head & (RING_SLOTS - 1)] = p;
        atomic_store_explicit(&r->head, ++head, memory_order_release);
        if (last) break;
    }
    j->end = now_ns();
    return NULL;
}

static void *consumer(void *arg) {
    struct thread_job *j = arg;
    if (A->thread_start) A->thread_start(j->index);
    struct ring *r = j->ring;
    pthread_barrier_wait(j->ready);
    j->start = now_ns();
    size_t head = 0, tail = 0;
    for (long i = 0;; i++) {
        unsigned spins = 0;
        while (tail == head) {
            head = atomic_load_explicit(&r->head, memory_order_acquire);
            if (tail == head) spin_wait(&spins);
        }
        void *p = r->slot[tail & (RING_SLOTS - 1)];
        atomic_store_explicit(&r->tail, ++tail, memory_order_release);
        if (p == NULL) break;
        if (*(uintptr_t *)p != (uintptr_t)i) j->errors++;
        A->free(p, j->ctx);
    }
    j->end = now_ns();
    return NULL;
}

static uint64_t run_prodcons(size_t size, void *ctx, long ops) {
    static struct ring ring;
    atomic_store(&ring.head, 0);
    atomic_store(&ring.tail, 0);
    pthread_barrier_t ready;
    pthread_barrier_init(&ready, NULL, 2);
    struct thread_job jobs[2] = {
        {.size = size, .ctx = ctx, .ops = ops, .index = 0, .ready = &ready, .ring = &ring},
        {.size = size, .ctx = ctx, .ops = ops, .index = 1, .ready = &ready, .ring = &ring},
    };
    pthread_t t[2];
    if (pthread_create(&t[0], NULL, producer, &jobs[0]) != 0) die("pthread_create failed");
    if (pthread_create(&t[1], NULL, consumer, &jobs[1]) != 0) die("pthread_create failed");
    pthread_join(t[0], NULL);
    pthread_join(t[1], NULL);
    pthread_barrier_destroy(&ready);
    if (jobs[1].errors) die("producer-consumer: an object arrived with the wrong contents");
    last_ops = jobs[0].done;
    last_capped = last_ops < ops;
    return elapsed(jobs, 2);
}

/* ---- threads: two threads, each its own random workload -------------------------------- */

static void *random_thread(void *arg) {
    struct thread_job *j = arg;
    if (A->thread_start) A->thread_start(j->index);
    void *ctx = j->ctx ? j->ctx : A->setup(j->size);
    if (ctx == NULL) die("setup failed in a thread");
    void **slots = malloc(sizeof(void *) * WORKING_SET);
    random_fill(slots, j->size, ctx);
    pthread_barrier_wait(j->ready);
    j->start = now_ns();
    j->done = random_loop(slots, j->size, ctx, j->ops, 0x9E3779B97F4A7C15ull + 0x1234567ull * (uint64_t)(j->index + 1));
    j->end = now_ns();
    pthread_barrier_wait(j->ready);
    random_empty(slots, ctx);
    free(slots);
    if (!j->ctx && A->teardown) A->teardown(ctx);
    return NULL;
}

static uint64_t run_threads(size_t size, void *ctx, long ops) {
    pthread_barrier_t ready;
    pthread_barrier_init(&ready, NULL, 2);
    void *shared = (A->flags & BENCH_SINGLE_THREADED) ? NULL : ctx;
    struct thread_job jobs[2] = {
        {.size = size, .ctx = shared, .ops = ops, .index = 0, .ready = &ready},
        {.size = size, .ctx = shared, .ops = ops, .index = 1, .ready = &ready},
    };
    start_threads(random_thread, jobs, 2);
    pthread_barrier_destroy(&ready);
    last_ops = jobs[0].done + jobs[1].done;
    last_capped = last_ops < 2 * ops;
    return elapsed(jobs, 2);
}

/* ---- driver ---------------------------------------------------------------------------- */

enum workload { PAIR, BATCH_LIFO, BATCH_FIFO, RANDOM, PRODCONS, THREADS, BURST, BURST_BULK, WORKLOADS };

static const struct {
    const char *name;
    long ops;       /* allocate+free pairs per repetition, before --scale */
    int threads;    /* ops counts both threads */
} workloads[WORKLOADS] = {
    [PAIR] = {"pair", 2000000, 0},
    [BATCH_LIFO] = {"batch-lifo", 2000000, 0},
    [BATCH_FIFO] = {"batch-fifo", 2000000, 0},
    [RANDOM] = {"random", 1000000, 0},
    [PRODCONS] = {"prodcons", 500000, 0},
    [THREADS] = {"threads", 500000, 1},
    /* Not run by default (select with --workloads): the bulk calls' measurement. */
    [BURST] = {"burst", 2000000, 0},
    [BURST_BULK] = {"burst-bulk", 2000000, 0},
};

static uint64_t run_once(enum workload w, size_t size, void *ctx, long ops) {
    last_capped = 0;
    deadline_ns = now_ns() + (uint64_t)deadline_ms * 1000000u;
    switch (w) {
    case PAIR: return run_pair(size, ctx, ops);
    case BATCH_LIFO: return run_batch(size, ctx, ops, 0);
    case BATCH_FIFO: return run_batch(size, ctx, ops, 1);
    case RANDOM: return run_random(size, ctx, ops);
    case PRODCONS: return run_prodcons(size, ctx, ops);
    case THREADS: return run_threads(size, ctx, ops);
    case BURST: return run_burst(size, ctx, ops, 0);
    case BURST_BULK: return run_burst(size, ctx, ops, 1);
    default: return 0;
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void row(enum workload w, size_t size, int reps, long ops, const char *status,
                double median, double lo, double hi) {
    if (strncmp(status, "ok", 2) != 0) {
        printf("%s,%s,%zu,%d,%ld,,,,%s\n", A->name, workloads[w].name, size, reps, ops, status);
    } else {
        printf("%s,%s,%zu,%d,%ld,%.2f,%.2f,%.2f,%s\n", A->name, workloads[w].name, size, reps, ops,
               median, lo, hi, status);
    }
    fflush(stdout);
}

static void measure(enum workload w, size_t size, int reps, double scale) {
    long ops = (long)(workloads[w].ops * scale);
    if (ops < BATCH) ops = BATCH;
    long counted = workloads[w].threads ? 2 * ops : ops;
    if (w == PRODCONS && (A->flags & BENCH_SINGLE_THREADED)) {
        row(w, size, 0, counted, "n/a: single-threaded", 0, 0, 0);
        return;
    }
    if ((w == PRODCONS || w == THREADS) && (A->flags & BENCH_ONE_THREAD)) {
        row(w, size, 0, counted, "n/a: one thread at a time", 0, 0, 0);
        return;
    }
    if (w == BURST_BULK && !(A->alloc_bulk && A->free_bulk)) {
        row(w, size, 0, counted, "n/a: no bulk calls", 0, 0, 0);
        return;
    }
    void *ctx = A->setup(size);
    if (ctx == NULL) {
        row(w, size, 0, counted, "unavailable", 0, 0, 0);
        return;
    }
    double t[MAX_REPS]; /* ns per op of each repetition */
    int capped = 0;
    run_once(w, size, ctx, ops / 4 > BATCH ? ops / 4 : BATCH); /* warm-up */
    for (int r = 0; r < reps; r++) {
        uint64_t ns = run_once(w, size, ctx, ops);
        t[r] = (double)ns / (double)(last_ops > 0 ? last_ops : 1);
        capped |= last_capped;
    }
    if (A->teardown) A->teardown(ctx);
    qsort(t, (size_t)reps, sizeof t[0], cmp_double);
    double median = reps % 2 ? t[reps / 2] : (t[reps / 2 - 1] + t[reps / 2]) / 2;
    row(w, size, reps, counted, capped ? "ok-capped" : "ok", median, t[0], t[reps - 1]);
}

static int parse_list(const char *arg, long *out, int max) {
    int n = 0;
    char *copy = strdup(arg), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok && n < max; tok = strtok_r(NULL, ",", &save))
        out[n++] = strtol(tok, NULL, 10);
    free(copy);
    return n;
}

static void usage(void) {
    fprintf(stderr,
            "usage: bench-%s [--header] [--reps N] [--scale F] [--deadline-ms MS] [--sizes 16,64,...]\n"
            "       [--workloads pair,...]\n"
            "       bench-%s --count SIZE N [pair|burst|burst-bulk]   (N objects allocated and freed,\n"
            "                 no output: for callgrind; burst rounds N down to whole batches of 1000)\n"
            "workloads: pair batch-lifo batch-fifo random prodcons threads (the default), burst burst-bulk\n",
            A->name, A->name);
    exit(2);
}

int main(int argc, char **argv) {
    int reps = 5, header = 0;
    double scale = 1.0;
    long sizes[8] = {16, 64, 256, 1024};
    int nsizes = 4;
    int enabled[WORKLOADS] = {1, 1, 1, 1, 1, 1, 0, 0};
    if (A->thread_start) A->thread_start(0);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--count") && i + 2 < argc) {
            size_t size = (size_t)strtol(argv[i + 1], NULL, 10);
            long n = strtol(argv[i + 2], NULL, 10);
            const char *w = i + 3 < argc ? argv[i + 3] : "pair";
            int bulk = !strcmp(w, "burst-bulk");
            if (strcmp(w, "pair") && strcmp(w, "burst") && !bulk) usage();
            if (bulk && !(A->alloc_bulk && A->free_bulk)) return 3; /* unavailable */
            void *ctx = A->setup(size);
            if (ctx == NULL) return 3; /* unavailable */
            if (!strcmp(w, "pair")) run_pair(size, ctx, n);
            else run_burst(size, ctx, n, bulk);
            return 0;
        } else if (!strcmp(argv[i], "--header")) {
            header = 1;
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
            if (reps < 1 || reps > MAX_REPS) usage();
        } else if (!strcmp(argv[i], "--deadline-ms") && i + 1 < argc) {
            deadline_ms = atol(argv[++i]);
        } else if (!strcmp(argv[i], "--scale") && i + 1 < argc) {
            scale = atof(argv[++i]);
        } else if (!strcmp(argv[i], "--sizes") && i + 1 < argc) {
            nsizes = parse_list(argv[++i], sizes, 8);
        } else if (!strcmp(argv[i], "--workloads") && i + 1 < argc) {
            memset(enabled, 0, sizeof enabled);
            char *copy = strdup(argv[++i]), *save = NULL;
            for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                int found = 0;
                for (int w = 0; w < WORKLOADS; w++)
                    if (!strcmp(tok, workloads[w].name)) enabled[w] = found = 1;
                if (!found) usage();
            }
            free(copy);
        } else {
            usage();
        }
    }
    if (A->describe) fprintf(stderr, "bench-%s: %s\n", A->name, A->describe());
    if (header) printf("allocator,workload,size,reps,ops,median_ns,min_ns,max_ns,status\n");
    for (int w = 0; w < WORKLOADS; w++) {
        if (!enabled[w]) continue;
        for (int s = 0; s < nsizes; s++) measure((enum workload)w, (size_t)sizes[s], reps, scale);
    }
    return 0;
}
