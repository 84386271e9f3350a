/*
 * syncpool/pool.h - a per-CPU object pool with Go's sync.Pool semantics.
 *
 * A pool caches objects between uses so that hot paths stop allocating.
 * Get returns some previously Put object or a new one; the caller may not
 * assume which.  Each CPU has a private slot and a bounded stack (per_cpu_cap
 * entries) in its own 128-byte-padded area; Get looks at this CPU's private
 * slot, then its stack, then steals from the other CPUs' stacks, then the
 * victim cache, then allocates (new_fn, or jemalloc when the pool allocates).
 * Put fills this CPU's private slot, then its stack; an object put while this
 * CPU's cache is full is dropped (handed to free_fn), never leaked.
 *
 * On x86_64 Linux the per-CPU operations are restartable sequences running on
 * the rseq area glibc registered for each thread (a thread that migrates in
 * the middle of an operation restarts it): Get and Put take no lock and
 * execute no atomic read-modify-write.  Where rseq is not registered
 * (GLIBC_TUNABLES=glibc.pthread.rseq=0, valgrind, other architectures, and
 * in a process with a ThreadSanitizer runtime, or an AddressSanitizer one
 * for a pool with size > 0) the same areas are used under a per-CPU lock.
 * Where the kernel offers it (Linux >= 6.3) the area is chosen by the
 * thread's rseq mm_cid rather than its CPU number: a dense id the kernel
 * gives each thread of the process while it runs, never the same for two
 * threads running at once.  The caches are then per running thread slot
 * rather than per CPU: there are no more of them than the process has
 * threads, and which one a thread uses may change when it is scheduled
 * again - so which Get counts as local or stolen cannot be predicted from
 * CPU affinity.
 *
 * Cleanup (Go's GC hook): one cycle drops (free_fn) the victim cache and
 * moves the primary cache into the victim, so an object survives exactly one
 * cycle and two cycles with no Get free everything.  Cycles run concurrently
 * with Get and Put from any thread.
 *
 * Synchronization: a Put of an object happens before the Get that returns
 * it (and before free_fn when the pool drops it), so the getter sees
 * everything the putter wrote to the object.
 *
 * Sanitizers in the user's program (the installed library is not built with
 * them): ThreadSanitizer is told of that happens-before, so plain data handed
 * through a pool object is not reported; with a TSan runtime in the process
 * the built-in allocator uses malloc/free instead of jemalloc (TSan cannot
 * follow jemalloc's reuse of memory).  AddressSanitizer: the first size
 * bytes of a cached object are poisoned (for the built-in allocator, up to
 * the next multiple of 8), so a use after Put is reported; LeakSanitizer
 * sees the objects cached by a live pool as reachable.
 *
 * fork(): the child may use every pool it inherits, as in the parent (a
 * prepare handler takes the pool layer's locks, so none is left held by a
 * thread the child does not have).  The cleaner thread is not in the child:
 * sp_pool_cleaner_start there starts a new one.  fork() waits for the
 * cleanups in progress, their free_fn calls included; so new_fn, free_fn
 * and reset_fn must not call fork(), nor wait for a lock that a fork
 * handler of yours (pthread_atfork) takes.
 */
#ifndef SYNCPOOL_POOL_H
#define SYNCPOOL_POOL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__cplusplus) && defined(__GNUC__)
/* The inline code below is C; C++ users' style warnings about it are not theirs. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wold-style-cast"
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuseless-cast"
#endif
#endif

typedef struct sp_pool sp_pool; /* opaque */

/* The default per_cpu_cap: 256 objects in each CPU's stack, plus the private slot. */
#define SP_POOL_DEFAULT_PER_CPU_CAP 256
/* The largest per_cpu_cap accepted; larger is EINVAL. */
#define SP_POOL_MAX_PER_CPU_CAP 65535

typedef struct sp_pool_opts {
	size_t size;          /* object size for the built-in allocator (jemalloc); 0: none */
	void *(*new_fn)(void *arg);              /* Go's Pool.New; optional; may return NULL */
	void  (*free_fn)(void *obj, void *arg);  /* called for every object the pool drops  */
	void  (*reset_fn)(void *obj, void *arg); /* optional, run by put before caching     */
	void  *arg;
	size_t per_cpu_cap;   /* bound on objects cached per CPU; 0: library default        */
} sp_pool_opts;

/*
 * Creates a pool.  Either the pool allocates - size > 0, new_fn and free_fn
 * both NULL: objects come from jemalloc (mallocx, malloc alignment; the pool
 * uses an arena of its own so that cleanup gives memory back to the OS) and
 * go back to it (sdallocx) - or the user does: free_fn set, new_fn optional
 * (NULL: Get returns NULL on a miss), size then only tells AddressSanitizer
 * how many bytes of a cached object to poison (0: none).  reset_fn is optional in both.
 * per_cpu_cap: 0 means SP_POOL_DEFAULT_PER_CPU_CAP; at most
 * SP_POOL_MAX_PER_CPU_CAP.  Returns NULL with errno EINVAL for anything else
 * (NULL opts included; a built-in allocator's size above SIZE_MAX / 4),
 * ENOMEM when out of memory.  Does not block (beyond a short internal lock).
 *
 * new_fn, free_fn and reset_fn may call sp_pool_get/sp_pool_put (on any
 * pool) but not sp_pool_create, sp_pool_destroy or the cleanup functions:
 * free_fn runs inside cleanup.
 */
sp_pool *sp_pool_create(const sp_pool_opts *opts);

/*
 * Drops (free_fn / sdallocx) every cached object and frees the pool.  No
 * other call on p may be running or follow.  Objects still out (got, not put
 * back) are no longer the pool's: with free_fn the caller frees them
 * free_fn's way.  With the built-in allocator, put every object back before
 * destroy: one still out stays valid memory (the pool's jemalloc arena is
 * then only purged, not destroyed) but nothing can free it any more - it is
 * leaked, with the arena.  Never pass such an object to free(): it is not
 * malloc's (glibc's free aborts or corrupts the heap).
 * Waits for a cycle on this pool in progress in sp_pool_cleanup_all (on
 * any thread, the cleaner's included).
 */
void sp_pool_destroy(sp_pool *p);

/*
 * Returns a cached object (this CPU's private slot, its stack, another CPU's
 * stack, the victim cache - in that order), else a new one (new_fn, or
 * mallocx for a jemalloc pool), else NULL.  Safe from any thread at any time,
 * concurrently with everything but destroy.  Blocks only for the few
 * instructions another thread holds a CPU's area (stealing, cleanup).
 */
void *sp_pool_get(sp_pool *p);

/*
 * Caches obj (after reset_fn, if set) in this CPU's private slot or stack;
 * when both are full, drops it (free_fn / sdallocx).  NULL is ignored and not
 * counted.  The caller must not touch obj afterwards (AddressSanitizer
 * reports it: cached objects are poisoned).  Safe like sp_pool_get.
 */
void sp_pool_put(sp_pool *p, void *obj);

/*
 * One cleanup cycle on p: drops the victim cache, moves the primary cache
 * into the victim.  Runs concurrently with Get and Put; cycles on one pool
 * are serialized.  Drops happen on the calling thread (free_fn).
 */
void sp_pool_cleanup(sp_pool *p);

/* One cleanup cycle on every live pool.  A destroy of a pool it is
 * cleaning right now waits for that pool's cycle. */
void sp_pool_cleanup_all(void);

/*
 * Runs sp_pool_cleanup_all every interval_ns on one background thread.
 * interval_ns <= 0: EINVAL.  A second start changes the interval (the next
 * cycle is due interval_ns after the last one) and returns 0.  EAGAIN if the
 * thread cannot be created.
 */
int sp_pool_cleaner_start(int64_t interval_ns);

/* Stops and joins the cleaner thread (promptly: it parks with a deadline).
 * Without a running cleaner it does nothing. */
void sp_pool_cleaner_stop(void);

typedef struct sp_pool_stats {
	uint64_t gets, puts;            /* calls                                          */
	uint64_t hits_local;            /* served by this CPU's (area's) slot or stack    */
	uint64_t hits_stolen;           /* served by getSlow from another CPU's area      */
	uint64_t hits_victim;           /* served from the victim cache                   */
	uint64_t news;                  /* misses that called new_fn / allocated          */
	uint64_t drops;                 /* objects handed to free_fn (cleanup, overflow)  */
	uint64_t cached;                /* objects held right now (approximate)           */
} sp_pool_stats;

/*
 * Reads p's counters.  They are kept per CPU and summed here, so while other
 * threads operate the figures are a moment's approximation; when no operation
 * is in progress every figure (cached included) is exact.  A steal moves up to
 * half of the victim CPU's stack: the first object counts in hits_stolen, the
 * rest are served later from this CPU's stack (hits_local).  A Get that
 * returns NULL (no new_fn) counts only in gets.  Does not block.
 */
void sp_pool_stats_get(sp_pool *p, sp_pool_stats *out);

/*
 * The fast path of Get and Put, inlined into the caller: on x86_64 Linux
 * with GCC >= 11 or clang >= 11 (asm goto with outputs), not under
 * ThreadSanitizer (it cannot follow a restartable sequence), and unless
 * SP_POOL_NO_INLINE is defined.  sp_pool_get/sp_pool_put then expand to one
 * restartable sequence on this CPU's area (see pool/percpu.h in the source)
 * and call sp_pool_get_slow_/sp_pool_put_slow_ (private) for everything
 * else: empty or full area, locked mode, reset_fn and sanitizer hooks.  This
 * saves the two calls, which are a third of a Get+Put.  `(sp_pool_get)(p)`
 * and `&sp_pool_get` reach the exported functions, which behave the same.
 * What follows is private: the names ending in '_' and the layout of a
 * pool's first bytes may change with the library's SONAME.
 */
#if defined(__x86_64__) && defined(__linux__) && !defined(__SANITIZE_THREAD__) &&          \
	((defined(__clang__) && __clang_major__ >= 11) ||                                     \
	 (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 11))
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SP_POOL_RSEQ_ASM_ 0
#endif
#endif
#ifndef SP_POOL_RSEQ_ASM_
#define SP_POOL_RSEQ_ASM_ 1 /* the sequences below can be compiled here */
#endif
#else
#define SP_POOL_RSEQ_ASM_ 0
#endif
#if SP_POOL_RSEQ_ASM_ && !defined(SP_POOL_NO_INLINE)
#define SP_POOL_INLINE_ 1
#else
#define SP_POOL_INLINE_ 0
#endif

/*
 * The bytes of every sp_pool the fast path reads (the library's struct
 * sp_pc, then flags), SP_POOL_HEAD_OFFSET_ bytes into it.
 */
#define SP_POOL_HEAD_OFFSET_ 64
struct sp_pool_head_ {
	char *base_;             /* this array's area headers: base + (idx << 7) */
	uint64_t stack_off_;
	uint32_t rseq_ncpu_;     /* areas the sequences may use; 0: locked mode  */
	uint32_t cap_;
	uint32_t ncpu_;
	uint32_t pad_;
	intptr_t rseq_off_;      /* __rseq_offset                                 */
	intptr_t idx_off_;       /* __rseq_offset + offset of cpu_id or mm_cid    */
	uint64_t stack_stride_;
	unsigned char rseq_, jemalloc_, hooks_, put_extra_;
};

/* Status of a sequence; 0 is done; UNTRIED: the caller ran none. */
enum { SP_POOL_ST_UNTRIED_ = -1, SP_POOL_ST_OK_ = 0, SP_POOL_ST_EMPTY_ = 1, SP_POOL_ST_BUSY_ = 2,
       SP_POOL_ST_FOLD_ = 3, SP_POOL_ST_NOIDX_ = 4 };

void *sp_pool_get_slow_(sp_pool *p, int status);
void sp_pool_put_slow_(sp_pool *p, void *obj, int status);

#if SP_POOL_RSEQ_ASM_
/*
 * The restartable sequences.  Layout of each asm goto statement:
 *
 *	__rseq_cs:      the descriptor {version 0, flags 0, start = 1f,
 *	                post_commit_offset = 2f - 1f, abort_ip = 4f}, 32-aligned
 *	0:              rseq->rseq_cs = &descriptor          (before the start)
 *	1: ... 2:       the sequence; its last instruction is the commit store;
 *	                the other ways out jump to the C labels, all outside [1, 2)
 *	__rseq_failure: RSEQ_SIG (0x53053053) as the 4 bytes before 4: - the
 *	                kernel refuses an abort address not preceded by the
 *	                signature glibc registered - then 4: jmp 0b (start over)
 *
 * Before anything: rseq_ncpu_ == 0 (the locked mode, or a library without
 * rseq, where rseq_off may not point at an rseq area) leaves at once,
 * touching no thread-local memory.  Inside: the thread's cpu_id must be
 * >= 0 (a thread whose registration failed has -1/-2: no abort would
 * protect it), the index (cpu_id or mm_cid) below rseq_ncpu_, the area
 * unlocked.  After the commit, and on every way out after the start,
 * rseq->rseq_cs is cleared: the descriptor lives in the caller's module,
 * and the kernel reads it at the thread's next preemption - after a
 * dlclose of that module it would fault and kill the thread.  Everything
 * after the start reads memory again on a restart, base_ included.  Area
 * header offsets: state 0, slot 8, lock 16, stack 40, cap 48 (checked by
 * the library at build time).  The state word: bits 0-15 n, bit 16 the
 * private slot, bits 17-63 an operation count (a negative word: fold).
 */
#define SP_POOL_RSEQ_PROLOGUE_                                                   \
	".pushsection __rseq_cs, \"aw\"\n\t"                                     \
	".balign 32\n\t"                                                         \
	"3:\n\t"                                                                 \
	".long 0, 0\n\t"                                                         \
	".quad 1f, (2f - 1f), 4f\n\t"                                            \
	".popsection\n\t"                                                        \
	".pushsection __rseq_cs_ptr_array, \"aw\"\n\t"                           \
	".quad 3b\n\t"                                                           \
	".popsection\n\t"                                                        \
	"0:\n\t"                                                                 \
	"movl 16(%[pc]), %%edx\n\t"           /* rseq_ncpu_: 0 is locked */    \
	"testl %%edx, %%edx\n\t"                                                 \
	"je %l[locked]\n\t"                                                      \
	"leaq 3b(%%rip), %%rax\n\t"                                              \
	"movq %%rax, %%fs:8(%[roff])\n\t"                                        \
	"1:\n\t"                                                                 \
	"cmpl $0, %%fs:4(%[roff])\n\t"                                           \
	"jl %l[noidx]\n\t"                                                       \
	"movl %%fs:(%[ioff]), %%eax\n\t"                                         \
	"cmpl %%edx, %%eax\n\t"               /* below rseq_ncpu_ */           \
	"jae %l[noidx]\n\t"                                                      \
	"shlq $7, %%rax\n\t"                                                     \
	"addq (%[pc]), %%rax\n\t"              /* base_ */                      \
	"cmpl $0, 16(%%rax)\n\t"               /* area lock */                  \
	"jne %l[busy]\n\t"                                                       \
	"movq (%%rax), %%rcx\n\t"              /* area state */

#define SP_POOL_RSEQ_EPILOGUE_                                                   \
	"movq %%rcx, (%%rax)\n\t"              /* the commit */                 \
	"2:\n\t"                                                                 \
	"movq $0, %%fs:8(%[roff])\n\t"        /* rseq_cs = NULL */             \
	".pushsection __rseq_failure, \"ax\"\n\t"                                \
	".byte 0x0f, 0xb9, 0x3d\n\t"                                             \
	".long 0x53053053\n\t"                                                   \
	"4:\n\t"                                                                 \
	"jmp 0b\n\t"                                                             \
	".popsection\n\t"

/* rseq->rseq_cs = NULL, after a sequence left early (see above). */
static inline __attribute__((always_inline)) void sp_pool_rseq_clear_(intptr_t rseq_off)
{
	__asm__ __volatile__("movq $0, %%fs:8(%0)" : : "r"(rseq_off) : "memory");
}

/* Pop: the private slot if it holds an object, else the top of the stack. */
static inline __attribute__((always_inline)) int
sp_pool_rseq_pop_(const void *head, intptr_t rseq_off, intptr_t idx_off, void **out)
{
	void *obj;
	__asm__ goto(
		SP_POOL_RSEQ_PROLOGUE_
		"testl $0x10000, %%ecx\n\t"           /* slot bit */
		"jnz 12f\n\t"
		"movzwl %%cx, %%edx\n\t"
		"testl %%edx, %%edx\n\t"
		"jz %l[miss]\n\t"
		"movq 40(%%rax), %[obj]\n\t"          /* area stack: set when n > 0 */
		"movq -8(%[obj],%%rdx,8), %[obj]\n\t"
		"addq $0x1ffff, %%rcx\n\t"            /* + OP - 1 */
		"jmp 11f\n\t"
		"12:\n\t"
		"movq 8(%%rax), %[obj]\n\t"           /* area slot */
		"addq $0x10000, %%rcx\n\t"            /* + OP - SLOT */
		"11:\n\t"
		"js %l[fold]\n\t"
		SP_POOL_RSEQ_EPILOGUE_
		: [obj] "=&r"(obj)
		: [pc] "r"(head), [roff] "r"(rseq_off), [ioff] "r"(idx_off)
		: "rax", "rcx", "rdx", "memory", "cc"
		: locked, noidx, busy, miss, fold);
	*out = obj;
	return SP_POOL_ST_OK_;
locked:
	return SP_POOL_ST_NOIDX_;
noidx:
	sp_pool_rseq_clear_(rseq_off);
	return SP_POOL_ST_NOIDX_;
busy:
	sp_pool_rseq_clear_(rseq_off);
	return SP_POOL_ST_BUSY_;
miss:
	sp_pool_rseq_clear_(rseq_off);
	return SP_POOL_ST_EMPTY_;
fold:
	sp_pool_rseq_clear_(rseq_off);
	return SP_POOL_ST_FOLD_;
}

/* Push: the private slot if free, else stack[n] when n < cap (FULL otherwise). */
static inline __attribute__((always_inline)) int
sp_pool_rseq_push_(const void *head, intptr_t rseq_off, intptr_t idx_off, void *obj)
{
	__asm__ goto(
		SP_POOL_RSEQ_PROLOGUE_
		"testl $0x10000, %%ecx\n\t"
		"jz 12f\n\t"
		"movzwl %%cx, %%edx\n\t"
		"cmpl 48(%%rax), %%edx\n\t"           /* area cap: 0 in an unset header */
		"jae %l[full]\n\t"
		"leaq (,%%rdx,8), %%rdx\n\t"
		"addq 40(%%rax), %%rdx\n\t"
		"movq %[obj], (%%rdx)\n\t"
		"addq $0x20001, %%rcx\n\t"            /* + OP + 1 */
		"jmp 11f\n\t"
		"12:\n\t"
		"movq %[obj], 8(%%rax)\n\t"
		"addq $0x30000, %%rcx\n\t"            /* + OP + SLOT */
		"11:\n\t"
		"js %l[fold]\n\t"
		SP_POOL_RSEQ_EPILOGUE_
		:
		: [pc] "r"(head), [obj] "r"(obj), [roff] "r"(rseq_off), [ioff] "r"(idx_off)
		: "rax", "rcx", "rdx", "memory", "cc"
		: locked, noidx, busy, full, fold);
	return SP_POOL_ST_OK_;
locked:
	return SP_POOL_ST_NOIDX_;
noidx:
	sp_pool_rseq_clear_(rseq_off);
	return SP_POOL_ST_NOIDX_;
busy:
	sp_pool_rseq_clear_(rseq_off);
	return SP_POOL_ST_BUSY_;
full:
	sp_pool_rseq_clear_(rseq_off);
	return SP_POOL_ST_EMPTY_;
fold:
	sp_pool_rseq_clear_(rseq_off);
	return SP_POOL_ST_FOLD_;
}

#endif /* SP_POOL_RSEQ_ASM_ */

#if SP_POOL_INLINE_
static inline __attribute__((always_inline)) void *sp_pool_get_inline_(sp_pool *p)
{
	const struct sp_pool_head_ *h =
		(const struct sp_pool_head_ *)(const void *)((const char *)p + SP_POOL_HEAD_OFFSET_);
	void *obj;
	int st = sp_pool_rseq_pop_(h, h->rseq_off_, h->idx_off_, &obj);
	if (__builtin_expect(st == SP_POOL_ST_OK_, 1))
		return obj;
	return sp_pool_get_slow_(p, st);
}

static inline __attribute__((always_inline)) void sp_pool_put_inline_(sp_pool *p, void *obj)
{
	const struct sp_pool_head_ *h =
		(const struct sp_pool_head_ *)(const void *)((const char *)p + SP_POOL_HEAD_OFFSET_);
	if (__builtin_expect(!obj || h->put_extra_, 0)) {
		sp_pool_put_slow_(p, obj, SP_POOL_ST_UNTRIED_);
		return;
	}
	int st = sp_pool_rseq_push_(h, h->rseq_off_, h->idx_off_, obj);
	if (__builtin_expect(st != SP_POOL_ST_OK_, 0))
		sp_pool_put_slow_(p, obj, st);
}

#if !defined(SP_POOL_BUILDING_) && !defined(SP_BUILDING_LIBRARY_)
#define sp_pool_get(p) sp_pool_get_inline_(p)
#define sp_pool_put(p, obj) sp_pool_put_inline_((p), (obj))
#endif
#endif /* SP_POOL_INLINE_ */

#if defined(__cplusplus) && defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* SYNCPOOL_POOL_H */
