/*
 * pool/pool.c - Go's sync.Pool over per-CPU areas (pool/percpu.h).
 *
 * A pool owns two arrays of per-CPU areas, the primary (pc.base: every Get
 * and Put) and the victim (victim: read by Gets that miss everywhere else),
 * plus per-CPU counters for the slow paths.  All three live in one
 * MAP_NORESERVE mapping: an area's pages are materialised only when a thread
 * on that CPU (or mm_cid) first uses it.
 *
 * Get: this CPU's slot, its stack (one restartable sequence), then steal:
 * lock another CPU's area, fence, take up to half its stack (the first
 * object is returned, the rest go to this CPU's area, so a consumer-only
 * thread pays one membarrier per batch, not per object), then the victim
 * areas (own first), then new_fn / mallocx.  Put: slot, stack (one
 * sequence), else drop.
 *
 * Cleanup: the victim cycle without stopping the world.
 *
 *	1. victim = NULL                      (Gets stop looking at the victim)
 *	2. drain every area of the old victim V under its lock; drop the objects
 *	3. base = V                           (V, now empty, becomes the primary)
 *	4. fence all CPUs (membarrier)        (no sequence is still inside the
 *	                                       old primary A)
 *	5. victim = A; cycle++
 *
 * Why it is safe.  A sequence reads base after its start, so one that began
 * before step 3 and had not committed is aborted by step 4 and restarts on
 * V; one that committed before step 4 left its object in A, which becomes
 * the victim with it (an object put during a cleanup survives one more
 * cycle, as in Go).  After step 4 only lock holders touch A: victim Gets,
 * stale stealers (which fence after locking, so they are safe on any array),
 * and locked-mode operations (which re-check base after locking).  A victim
 * Get takes an area lock without fencing, which is safe only while the array
 * is not the primary; it re-reads victim under the lock and leaves if it is
 * not the array it is working on.  Step 2 either takes each area's lock or
 * sees it free after step 1 (sequentially consistent: store victim = NULL,
 * then load the lock word; the Get's lock CAS, then load victim), so every
 * Get that could still find V's area unlocked sees victim != V.  Hence by
 * step 3 no victim Get works on V, and V can become the primary.  Locked
 * mode is the same without fences: every operation holds an area lock.
 */
#define SP_POOL_BUILDING_ 1 /* sp_pool_get/put below are the exported functions */
#include "syncpool/pool.h"

#include "park.h"
#include "percpu.h"
#include "sanitizer.h"
#include "sanitizer_ignore.h"
#include "timer.h"

#include <errno.h>
#include <jemalloc/jemalloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

_Static_assert(SP_POOL_MAX_PER_CPU_CAP <= SP_PC_CAP_MAX, "cap fits the state word");
_Static_assert(sizeof(struct sp_pc_area) == (1u << SP_PC_AREA_SHIFT) && SP_CACHELINE == 1u << SP_PC_AREA_SHIFT,
	       "one area header per 128-byte block: the sequences shift by 7");
_Static_assert(SP_PC_OP - SP_PC_SLOT == 0x10000 && SP_PC_OP - 1 == 0x1ffff &&
		       SP_PC_OP + SP_PC_SLOT == 0x30000 && SP_PC_OP + 1 == 0x20001,
	       "the constants in the sequences");
/* The inline fast path in syncpool/pool.h reads a pool through struct sp_pool_head_. */
_Static_assert(offsetof(struct sp_pc, base) == offsetof(struct sp_pool_head_, base_) &&
		       offsetof(struct sp_pc, base) == 0 && offsetof(struct sp_pc, rseq_ncpu) == 16 &&
		       offsetof(struct sp_pc, rseq_off) == offsetof(struct sp_pool_head_, rseq_off_) &&
		       offsetof(struct sp_pc, idx_off) == offsetof(struct sp_pool_head_, idx_off_) &&
		       offsetof(struct sp_pc, rseq_ncpu) == offsetof(struct sp_pool_head_, rseq_ncpu_),
	       "struct sp_pool_head_ mirrors struct sp_pc");
_Static_assert(offsetof(struct sp_pc_area, state) == 0 && offsetof(struct sp_pc_area, slot) == 8 &&
		       offsetof(struct sp_pc_area, lock) == 16 && offsetof(struct sp_pc_area, stack) == 40 &&
		       offsetof(struct sp_pc_area, cap) == 48,
	       "the area offsets in the sequences");
_Static_assert((int)SP_PC_OK == (int)SP_POOL_ST_OK_ && (int)SP_PC_EMPTY == (int)SP_POOL_ST_EMPTY_ &&
		       (int)SP_PC_BUSY == (int)SP_POOL_ST_BUSY_ && (int)SP_PC_FOLD == (int)SP_POOL_ST_FOLD_ &&
		       (int)SP_PC_NOIDX == (int)SP_POOL_ST_NOIDX_,
	       "statuses");

/*
 * A steal takes half of the other CPU's stack, at most STEAL_MAX objects
 * (half the default cap).  Measured with examples/bufpool (4 workers Get, one
 * writer Puts, 2 CPUs): 128 instead of 32 cuts the steals (membarriers) by ~40%
 * and CPU time per request by a few percent (busy 2-core machine: noisy);
 * Put drops stay ~1% either way, and
 * taking the whole stack makes the two CPUs steal back and forth (5x drops).
 */
#define STEAL_MAX 128

/*
 * Slow-path counters, one 128-byte block per CPU, written (atomic adds) by
 * threads on that CPU - and by a stealer for the area it refilled.
 */
struct cpu_stats {
	_Atomic uint64_t refills;   /* stolen objects pushed here (pushes, not puts) */
	_Atomic uint64_t put_drops; /* Puts dropped: cache full                      */
	_Atomic uint64_t stolen, victim, news, drops;
	_Atomic uint64_t nulls;     /* Gets that returned NULL without new_fn        */
	_Atomic uint64_t allocs;    /* objects mallocx'd by the pool                 */
	_Atomic uint64_t frees;     /* objects sdallocx'd by the pool                */
};
_Static_assert(sizeof(struct cpu_stats) <= SP_CACHELINE, "stats block");

struct sp_pool {
	/*
	 * Line 0: read by every Get and Put; written only by cleanup (pc.base).
	 * Mirrored by struct sp_pool_head_ in syncpool/pool.h up to put_extra,
	 * which the inline fast path finds SP_POOL_HEAD_OFFSET_ (64) bytes into
	 * the pool: in the upper half of a 128-byte block, where no area
	 * header's state and slot (offsets 0 and 8 of their 128-byte blocks)
	 * can share its address bits 0-11.  With the head at offset 0, the
	 * head loads of one operation and the commit store of the previous one
	 * aliased modulo 4 KiB (the pool and the areas are page-aligned), and
	 * a Get+Put took 3.0 to 7.5 ns depending on the process (best of 6
	 * within a process; a thread-local list measured beside it stayed at
	 * 2.8-3.2); at offset 64, 2.6-4.0 ns.
	 */
	char head_pad_[SP_POOL_HEAD_OFFSET_];
	struct sp_pc pc;
	bool rseq;        /* the sequences run (else: locked mode)               */
	bool jemalloc;    /* the pool allocates (jemalloc, or malloc: use_malloc) */
	bool hooks;       /* a sanitizer runtime is in the process (see below)   */
	bool put_extra;   /* hooks or reset_fn: Put takes put_extra()            */
	bool use_malloc;  /* the pool allocates with malloc: ThreadSanitizer     */
	int mflags;       /* mallocx flags: the pool's arena, no thread cache    */
	size_t size;
	size_t poison_len; /* ASan: bytes poisoned while cached (obj_caching)  */
	void *(*new_fn)(void *);
	void (*free_fn)(void *, void *);
	void (*reset_fn)(void *, void *);
	void *arg;

	/* Line 1: the victim cache; written by cleanup and by Gets finding it empty. */
	SP_CACHE_ALIGNED char *_Atomic victim;
	_Atomic uint64_t cycle;        /* cleanup cycles, for victim_empty      */
	_Atomic uint64_t victim_empty; /* cycle whose victim was found empty    */

	/* Cold. */
	SP_CACHE_ALIGNED pthread_mutex_t cleanup_mu; /* one cycle at a time     */
	void **drain;         /* cap + 1 entries, under cleanup_mu or in destroy */
	char *map;
	size_t map_len;
	char *arr[2];
	size_t arr_len;       /* bytes of each array                     */
	char *stats;
	unsigned arena;
	bool has_arena;
	sp_pool *reg_prev, *reg_next; /* the registry, under reg_mu */
	uint32_t pins;        /* cleanup_all passes running on it, under reg_mu */
	bool destroying;      /* destroy waits for pins == 0, under reg_mu      */
};

_Static_assert(offsetof(struct sp_pool, pc) == SP_POOL_HEAD_OFFSET_ &&
		       offsetof(struct sp_pool, put_extra) - SP_POOL_HEAD_OFFSET_ ==
			       offsetof(struct sp_pool_head_, put_extra_) &&
		       sizeof(bool) == 1 && sizeof(struct sp_pool_head_) <= 64,
	       "struct sp_pool_head_ mirrors struct sp_pool from SP_POOL_HEAD_OFFSET_");

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t reg_cv = PTHREAD_COND_INITIALIZER; /* a pin dropped */

static void arena_ctl_ind(unsigned ind, const char *op)
{
	char name[64];
	snprintf(name, sizeof name, "arena.%u.%s", ind, op);
	(void)mallctl(name, NULL, NULL, NULL, 0);
}

/* Arenas of destroyed pools, empty, for the next creates (under reg_mu). */
static struct {
	unsigned *ind;
	size_t n, cap;
} spare_arenas;

static void spare_arena_put(unsigned ind)
{
	pthread_mutex_lock(&reg_mu);
	if (spare_arenas.n == spare_arenas.cap) {
		size_t cap = spare_arenas.cap ? 2 * spare_arenas.cap : 16;
		sp_tsan_ignore_begin();
		unsigned *a = realloc(spare_arenas.ind, cap * sizeof *a);
		sp_tsan_ignore_end();
		if (a) {
			spare_arenas.ind = a;
			spare_arenas.cap = cap;
		}
	}
	if (spare_arenas.n < spare_arenas.cap)
		spare_arenas.ind[spare_arenas.n++] = ind;
	else
		arena_ctl_ind(ind, "destroy"); /* no memory to remember it */
	pthread_mutex_unlock(&reg_mu);
}

static sp_pool *reg_head;

static pthread_once_t atfork_once;
static void atfork_register(void);

/* ------------------------------------------------------------ objects */

static inline struct cpu_stats *cpu_stats(sp_pool *p, uint32_t idx)
{
	return (struct cpu_stats *)(p->stats + (size_t)idx * SP_CACHELINE);
}
#define STAT_ADD(p, idx, field, n) \
	atomic_fetch_add_explicit(&cpu_stats(p, idx)->field, (n), memory_order_relaxed)

/*
 * Sanitizers in the process (the library's own build, or only the user's
 * program: sanitizer.h's weak hooks).  p->hooks is decided at create.  A
 * pool with hooks runs in the locked mode (percpu.h: rseq_ncpu 0, as with
 * SYNCPOOL_NO_RSEQ), so that every Get leaves the sequence for get_slow and
 * the sequence fast path of every other pool pays nothing for the hooks
 * (a test after the commit measured ~0.3 ns, ~8%, of a one-thread
 * Get+Put); Put goes through put_extra().
 *
 * ThreadSanitizer: the pool's handoff goes through per-CPU areas TSan cannot
 * see (restartable sequences, uninstrumented code), so a Put announces a
 * release on the object before the object enters the cache, and whatever
 * takes it out - a Get from any source (slot, stack, steal, victim), or a
 * drop (free_fn / free) - an acquire on it after.  Both stay outside the
 * sequences.  AddressSanitizer: a cached object's first size bytes are
 * poisoned from before it enters the cache until it is taken out - for an
 * object of the built-in allocator, size rounded up to ASan's 8-byte
 * granule (jemalloc's size classes are multiples of 8, and ASan cannot
 * poison the start of a granule whose end stays addressable), so that a
 * use after Put in the last bytes is reported too.
 */
static inline void obj_got(const sp_pool *p, void *obj)
{
	sp_asan_unpoison(obj, p->size); /* a partial last granule: only size bytes */
	sp_tsan_acquire(obj);
}

static inline void obj_caching(const sp_pool *p, void *obj)
{
	sp_tsan_release(obj);
	sp_asan_poison(obj, p->poison_len); /* before it is published: another thread may get it */
}

/*
 * Under ThreadSanitizer (ours or the user's) the built-in allocator is
 * malloc: TSan follows malloc/free but not jemalloc's internal reuse of
 * memory between threads, and would report the new owner's writes as racing
 * with the previous owner's.
 */
static void *obj_alloc(sp_pool *p, uint32_t idx)
{
	void *o;
	STAT_ADD(p, idx, news, 1);
	if (p->new_fn)
		return p->new_fn(p->arg);
	o = p->use_malloc ? malloc(p->size) : mallocx(p->size, p->mflags);
	if (o)
		STAT_ADD(p, idx, allocs, 1);
	return o;
}

static void obj_drop(sp_pool *p, void *o, uint32_t idx)
{
	if (p->hooks) {
		sp_asan_unpoison(o, p->poison_len); /* the allocator gets it all back */
		sp_tsan_acquire(o); /* free_fn / free see the last putter's writes */
	}
	STAT_ADD(p, idx, drops, 1);
	if (p->free_fn) {
		p->free_fn(o, p->arg);
		return;
	}
	STAT_ADD(p, idx, frees, 1);
	if (p->use_malloc)
		free(o);
	else
		sdallocx(o, p->size, MALLOCX_TCACHE_NONE);
}

/* ------------------------------------------------------------ this CPU's area */

static inline struct sp_pc_area *cur_area(sp_pool *p, uint32_t idx)
{
	return sp_pc_area_at(&p->pc, atomic_load_explicit(&p->pc.base, memory_order_acquire), idx);
}

/*
 * Pop or push on area idx of the primary under its lock: the locked mode,
 * and in rseq mode a thread without a usable index (then fenced).
 */
static int area_op_locked(sp_pool *p, uint32_t idx, bool push, void **obj)
{
	for (;;) {
		char *base = atomic_load_explicit(&p->pc.base, memory_order_acquire);
		struct sp_pc_area *a = sp_pc_area_at(&p->pc, base, idx);
		sp_pc_lock(a);
		if (atomic_load_explicit(&p->pc.base, memory_order_acquire) != base) {
			sp_pc_unlock(a);
			continue;
		}
		if (p->rseq)
			sp_pc_fence(idx);
		void **stack = sp_pc_stack_at(&p->pc, base, idx);
		int st = push ? sp_pc_push_locked(a, stack, p->pc.cap, *obj) : sp_pc_pop_locked(a, stack, obj);
		sp_pc_unlock(a);
		return st;
	}
}

/* Moves area idx's ops count into ops_base (the sequence saw it reach 2^46). */
static void area_fold(sp_pool *p, uint32_t idx)
{
	struct sp_pc_area *a = cur_area(p, idx);
	sp_pc_lock(a);
	if (p->rseq)
		sp_pc_fence(idx);
	uint64_t w = atomic_load_explicit(&a->state, memory_order_relaxed);
	atomic_store_explicit(&a->ops_base,
			      atomic_load_explicit(&a->ops_base, memory_order_relaxed) + (w >> SP_PC_OPS_SHIFT),
			      memory_order_relaxed);
	atomic_store_explicit(&a->state, w & (SP_PC_OP - 1), memory_order_relaxed);
	sp_pc_unlock(a);
}

/* This thread's area index now (a hint: the thread may move at any time). */
static inline uint32_t cur_idx(sp_pool *p)
{
#if SP_PC_HAVE_RSEQ
	if (p->rseq) {
		uint32_t v = sp_pc_rseq_idx(&p->pc);
		if (v < p->pc.ncpu)
			return v;
	}
#endif
	return sp_pc_cur_cpu(&p->pc);
}

/*
 * A sequence push answered FULL: true if that is not final - this thread's
 * area now has an unset header (percpu.h: a fresh header reads as full; set
 * it here), or room (the thread moved, or a steal emptied it) - and the push
 * should be tried again.  So a Put drops an object only when the area it
 * last ran on is full, never because of a fresh header.
 */
static bool push_full_retry(sp_pool *p)
{
	uint32_t idx = cur_idx(p);
	char *base = atomic_load_explicit(&p->pc.base, memory_order_acquire);
	struct sp_pc_area *a = sp_pc_area_at(&p->pc, base, idx);
	if (atomic_load_explicit(&a->cap, memory_order_acquire) == 0) {
		sp_pc_header_set(a, sp_pc_stack_at(&p->pc, base, idx), p->pc.cap);
		return true;
	}
	uint64_t w = atomic_load_explicit(&a->state, memory_order_relaxed);
	return !(w & SP_PC_SLOT) || (w & SP_PC_NMASK) < p->pc.cap;
}

/*
 * Finishes a pop or push whose sequence returned st: waits out a lock,
 * folds, or takes the locked path, until the answer is OK or EMPTY/FULL.
 * *idx: the area used (for the counters, and where a steal starts).
 */
static int local_op(sp_pool *p, bool push, void **obj, uint32_t *idx, int st)
{
	for (;;) {
		switch (st) {
		case SP_PC_OK:
		case SP_PC_EMPTY:
			if (st == SP_PC_FULL && push && push_full_retry(p))
				break;
			*idx = cur_idx(p);
			return st;
		case SP_PC_BUSY:
			sp_pc_wait_unlocked(cur_area(p, cur_idx(p)));
			break;
		case SP_PC_FOLD:
			area_fold(p, cur_idx(p));
			break;
		default:
			*idx = sp_pc_cur_cpu(&p->pc);
			return area_op_locked(p, *idx, push, obj);
		}
#if SP_PC_HAVE_RSEQ
		st = push ? sp_pc_rseq_push(&p->pc, *obj) : sp_pc_rseq_pop(&p->pc, obj);
#else
		st = SP_PC_NOIDX;
#endif
	}
}

/* ------------------------------------------------------------ getSlow */

/* Pushes an object a steal brought along onto this CPU's area. */
static void refill(sp_pool *p, void *obj)
{
	uint32_t idx = 0;
#if SP_PC_HAVE_RSEQ
	int st = sp_pc_rseq_push(&p->pc, obj);
#else
	int st = SP_PC_NOIDX;
#endif
	st = local_op(p, true, &obj, &idx, st);
	if (st == SP_PC_OK)
		STAT_ADD(p, idx, refills, 1);
	else
		obj_drop(p, obj, idx);
}

/*
 * Takes up to half of another CPU's stack (never its private slot), in
 * Go's order: the CPUs after this one.
 */
static void *steal(sp_pool *p, uint32_t idx)
{
	uint32_t ncpu = p->pc.ncpu;
	char *base = atomic_load_explicit(&p->pc.base, memory_order_acquire);
	for (uint32_t i = 1; i < ncpu; i++) {
		uint32_t j = idx + i < ncpu ? idx + i : idx + i - ncpu;
		struct sp_pc_area *a = sp_pc_area_at(&p->pc, base, j);
		if (!(atomic_load_explicit(&a->state, memory_order_relaxed) & SP_PC_NMASK))
			continue;
		void *buf[STEAL_MAX];
		uint32_t k = 0;
		sp_pc_lock(a);
		if (p->rseq)
			sp_pc_fence(j);
		uint64_t w = atomic_load_explicit(&a->state, memory_order_relaxed);
		uint32_t n = (uint32_t)(w & SP_PC_NMASK);
		if (n) {
			void **stack = sp_pc_stack_at(&p->pc, base, j);
			k = (n + 1) / 2;
			if (k > STEAL_MAX)
				k = STEAL_MAX;
			for (uint32_t m = 0; m < k; m++)
				buf[m] = stack[n - 1 - m];
			atomic_store_explicit(&a->state, w - k, memory_order_relaxed);
			atomic_store_explicit(&a->removed,
					      atomic_load_explicit(&a->removed, memory_order_relaxed) + k,
					      memory_order_relaxed);
		}
		sp_pc_unlock(a);
		if (!k)
			continue;
		for (uint32_t m = k - 1; m >= 1; m--)
			refill(p, buf[m]);
		return buf[0];
	}
	return NULL;
}

/* Takes one object from the victim areas, this CPU's first. */
static void *victim_get(sp_pool *p, uint32_t idx)
{
	uint64_t cyc = atomic_load_explicit(&p->cycle, memory_order_acquire);
	if (atomic_load_explicit(&p->victim_empty, memory_order_relaxed) == cyc)
		return NULL;
	char *v = atomic_load_explicit(&p->victim, memory_order_acquire);
	if (!v)
		return NULL;
	uint32_t ncpu = p->pc.ncpu;
	for (uint32_t i = 0; i < ncpu; i++) {
		uint32_t j = idx + i < ncpu ? idx + i : idx + i - ncpu;
		struct sp_pc_area *a = sp_pc_area_at(&p->pc, v, j);
		if (!(atomic_load_explicit(&a->state, memory_order_relaxed) & (SP_PC_NMASK | SP_PC_SLOT)))
			continue;
		uint32_t z = 0;
		/* seq_cst lock and re-read: see "Why it is safe" above. */
		if (!atomic_compare_exchange_strong(&a->lock, &z, 1))
			sp_pc_lock_slow(&a->lock);
		if (atomic_load(&p->victim) != v) {
			sp_pc_unlock(a);
			return NULL;
		}
		uint64_t w = atomic_load_explicit(&a->state, memory_order_relaxed);
		void *o = NULL;
		if (w & SP_PC_SLOT) {
			o = a->slot;
			w &= ~SP_PC_SLOT;
		} else if (w & SP_PC_NMASK) {
			o = sp_pc_stack_at(&p->pc, v, j)[(w & SP_PC_NMASK) - 1];
			w -= 1;
		}
		if (o) {
			atomic_store_explicit(&a->state, w, memory_order_relaxed);
			atomic_store_explicit(&a->removed,
					      atomic_load_explicit(&a->removed, memory_order_relaxed) + 1,
					      memory_order_relaxed);
		}
		sp_pc_unlock(a);
		if (o)
			return o;
	}
	atomic_store_explicit(&p->victim_empty, cyc, memory_order_relaxed);
	return NULL;
}

static __attribute__((noinline)) void *get_slow(sp_pool *p, int st)
{
	void *obj = NULL;
	uint32_t idx = 0;
	st = local_op(p, false, &obj, &idx, st);
	if (st == SP_PC_OK) {
		if (p->hooks)
			obj_got(p, obj);
		return obj;
	}
	if ((obj = steal(p, idx))) {
		STAT_ADD(p, idx, stolen, 1);
	} else if ((obj = victim_get(p, idx))) {
		STAT_ADD(p, idx, victim, 1);
	} else {
		if (!p->new_fn && !p->jemalloc) {
			STAT_ADD(p, idx, nulls, 1);
			return NULL;
		}
		return obj_alloc(p, idx);
	}
	if (p->hooks)
		obj_got(p, obj);
	return obj;
}

SP_API void *sp_pool_get(sp_pool *p)
{
#if SP_PC_HAVE_RSEQ
	void *obj;
	int st = sp_pc_rseq_pop(&p->pc, &obj);
	if (SP_LIKELY(st == SP_PC_OK))
		return obj; /* never in a pool with hooks: see obj_got */
	return get_slow(p, st);
#else
	return get_slow(p, SP_PC_NOIDX);
#endif
}

/* The inline Get's way out (syncpool/pool.h): st is its sequence's status. */
SP_API void *sp_pool_get_slow_(sp_pool *p, int st)
{
	return get_slow(p, st);
}

/* ------------------------------------------------------------ put */

static __attribute__((noinline)) void put_slow(sp_pool *p, void *obj, int st)
{
	uint32_t idx = 0;
	st = local_op(p, true, &obj, &idx, st);
	if (st == SP_PC_OK)
		return;
	STAT_ADD(p, idx, put_drops, 1);
	obj_drop(p, obj, idx);
}

static inline __attribute__((always_inline)) void put_fast(sp_pool *p, void *obj)
{
#if SP_PC_HAVE_RSEQ
	int st = sp_pc_rseq_push(&p->pc, obj);
	if (SP_LIKELY(st == SP_PC_OK))
		return;
	put_slow(p, obj, st);
#else
	put_slow(p, obj, SP_PC_NOIDX);
#endif
}

/* reset_fn and the sanitizer hooks: out of line, so that a pool with neither pays no call frame. */
static __attribute__((noinline)) void put_extra(sp_pool *p, void *obj)
{
	if (p->reset_fn)
		p->reset_fn(obj, p->arg);
	if (p->hooks)
		obj_caching(p, obj);
	put_fast(p, obj);
}

SP_API void sp_pool_put(sp_pool *p, void *obj)
{
	if (SP_UNLIKELY(!obj))
		return;
	if (SP_UNLIKELY(p->put_extra)) {
		put_extra(p, obj);
		return;
	}
	put_fast(p, obj);
}

/*
 * The inline Put's way out (syncpool/pool.h): st is its sequence's status,
 * or SP_POOL_ST_UNTRIED_ when it ran none (NULL obj, reset_fn, hooks).
 */
SP_API void sp_pool_put_slow_(sp_pool *p, void *obj, int st)
{
	if (st == SP_POOL_ST_UNTRIED_)
		sp_pool_put(p, obj);
	else
		put_slow(p, obj, st);
}

/* ------------------------------------------------------------ cleanup */

/* Empties area j of the array at base (its lock held by the caller) into p->drain; returns the count. */
static uint32_t area_drain(sp_pool *p, char *base, uint32_t j)
{
	struct sp_pc_area *a = sp_pc_area_at(&p->pc, base, j);
	void **stack = sp_pc_stack_at(&p->pc, base, j);
	uint64_t w = atomic_load_explicit(&a->state, memory_order_relaxed);
	uint32_t n = (uint32_t)(w & SP_PC_NMASK), k = 0;
	if (w & SP_PC_SLOT)
		p->drain[k++] = a->slot;
	for (uint32_t i = 0; i < n; i++)
		p->drain[k++] = stack[i];
	if (k) {
		atomic_store_explicit(&a->state, w & ~(SP_PC_NMASK | SP_PC_SLOT), memory_order_relaxed);
		atomic_store_explicit(&a->removed,
				      atomic_load_explicit(&a->removed, memory_order_relaxed) + k,
				      memory_order_relaxed);
	}
	return k;
}

static void arena_ctl(sp_pool *p, const char *op)
{
	arena_ctl_ind(p->arena, op);
}

SP_API void sp_pool_cleanup(sp_pool *p)
{
	uint64_t dropped = 0;
	uint32_t me = sp_pc_cur_cpu(&p->pc);

	pthread_mutex_lock(&p->cleanup_mu);
	char *v = atomic_load_explicit(&p->victim, memory_order_relaxed);
	char *a_old = atomic_load_explicit(&p->pc.base, memory_order_relaxed);

	/* 1. Gets stop looking at the victim. */
	atomic_store(&p->victim, NULL);
	/* 2. Drop the old victim. */
	for (uint32_t j = 0; j < p->pc.ncpu; j++) {
		struct sp_pc_area *a = sp_pc_area_at(&p->pc, v, j);
		if (atomic_load(&a->lock) == 0 &&
		    !(atomic_load(&a->state) & (SP_PC_NMASK | SP_PC_SLOT)))
			continue; /* free and empty after step 1: no Get can find it */
		sp_pc_lock(a);
		uint32_t k = area_drain(p, v, j);
		sp_pc_unlock(a);
		for (uint32_t i = 0; i < k; i++)
			obj_drop(p, p->drain[i], me);
		dropped += k;
	}
	/* 3-5. The emptied array becomes the primary, the primary the victim. */
	atomic_store(&p->pc.base, v);
	if (p->rseq)
		sp_pc_fence_all();
	atomic_store_explicit(&p->victim, a_old, memory_order_release);
	atomic_fetch_add_explicit(&p->cycle, 1, memory_order_release);
	pthread_mutex_unlock(&p->cleanup_mu);

	/* Give the dropped objects' pages back to the OS. */
	if (dropped && p->has_arena)
		arena_ctl(p, "purge");
}

/*
 * The registry lock is not held while a pool is cleaned (its free_fn calls
 * may take long): the pool is pinned instead, which keeps it linked and
 * alive - its destroy waits for the pin - so its successor can be read
 * after the cleanup.  create and destroy of other pools never wait for it.
 */
SP_API void sp_pool_cleanup_all(void)
{
	pthread_mutex_lock(&reg_mu);
	sp_pool *p = reg_head;
	while (p && p->destroying)
		p = p->reg_next;
	while (p) {
		p->pins++;
		pthread_mutex_unlock(&reg_mu);
		sp_pool_cleanup(p);
		pthread_mutex_lock(&reg_mu);
		sp_pool *next = p->reg_next;
		while (next && next->destroying)
			next = next->reg_next;
		if (--p->pins == 0 && p->destroying)
			pthread_cond_broadcast(&reg_cv);
		p = next;
	}
	pthread_mutex_unlock(&reg_mu);
}

/* ------------------------------------------------------------ create, destroy */

SP_API sp_pool *sp_pool_create(const sp_pool_opts *o)
{
	if (!o) {
		errno = EINVAL;
		return NULL;
	}
	bool jem = o->size > 0 && !o->new_fn && !o->free_fn;
	bool user = o->free_fn != NULL;
	size_t cap = o->per_cpu_cap ? o->per_cpu_cap : SP_POOL_DEFAULT_PER_CPU_CAP;
	if ((!jem && !user) || cap > SP_POOL_MAX_PER_CPU_CAP || (jem && o->size > (SIZE_MAX >> 2))) {
		errno = EINVAL;
		return NULL;
	}
	const struct sp_pc_config *cfg = sp_pc_init();
	pthread_once(&atfork_once, atfork_register);

	/* The pool's own memory: out of a user's ThreadSanitizer's sight (sanitizer_ignore.h). */
	sp_tsan_ignore_begin();
	sp_pool *p = aligned_alloc(SP_CACHELINE, sizeof *p);
	if (p) {
		memset(p, 0, sizeof *p);
		p->drain = malloc((cap + 1) * sizeof(void *));
	}
	sp_tsan_ignore_end();
	if (!p) {
		errno = ENOMEM;
		return NULL;
	}
	uint32_t ncpu = cfg->ncpu;
	/* An array: ncpu headers of 128 bytes, then ncpu stacks (percpu.h). */
	size_t hdr_len = (size_t)ncpu << SP_PC_AREA_SHIFT;
	size_t stride = (cap * sizeof(void *) + SP_CACHELINE - 1) & ~(size_t)(SP_CACHELINE - 1);
	size_t arr_len = hdr_len + stride * ncpu;
	p->map_len = 2 * arr_len + (size_t)SP_CACHELINE * ncpu;
	p->map = mmap(NULL, p->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		      -1, 0);
	if (p->map == MAP_FAILED || !p->drain) {
		if (p->map != MAP_FAILED)
			munmap(p->map, p->map_len);
		sp_tsan_ignore_begin();
		free(p->drain);
		free(p);
		sp_tsan_ignore_end();
		errno = ENOMEM;
		return NULL;
	}
	p->arr[0] = p->map;
	p->arr[1] = p->map + arr_len;
	p->arr_len = arr_len;
	sp_lsan_root_add(p->map, 2 * arr_len); /* cached objects live only there */
	p->stats = p->map + 2 * arr_len;

	atomic_init(&p->pc.base, p->arr[0]);
	p->pc.stack_off = hdr_len;
	p->pc.stack_stride = stride;
	p->pc.ncpu = ncpu;
	p->pc.rseq_ncpu = cfg->mode != SP_PC_LOCKED ? ncpu : 0;
	p->pc.cap = (uint32_t)cap;
	p->pc.rseq_off = cfg->rseq_off;
	p->pc.idx_off = cfg->idx_off;
	p->rseq = cfg->mode != SP_PC_LOCKED;
	p->jemalloc = jem;
	p->use_malloc = jem && sp_tsan_active();
	p->hooks = sp_tsan_active() || (sp_asan_active() && o->size > 0);
	p->put_extra = p->hooks || o->reset_fn != NULL;
	if (p->hooks) { /* the locked mode (see obj_got) */
		p->pc.rseq_ncpu = 0;
		p->rseq = false;
	}
	p->size = o->size;
	p->poison_len = jem && !p->use_malloc ? (o->size + 7) & ~(size_t)7 : o->size;
	p->new_fn = o->new_fn;
	p->free_fn = o->free_fn;
	p->reset_fn = o->reset_fn;
	p->arg = o->arg;
	atomic_init(&p->victim, p->arr[1]);
	atomic_init(&p->cycle, 1);
	atomic_init(&p->victim_empty, 1); /* the first victim is empty */
	pthread_mutex_init(&p->cleanup_mu, NULL);

	pthread_mutex_lock(&reg_mu);
	if (jem && !p->use_malloc) {
		/*
		 * An arena of its own, no thread cache: cleanup can purge it.
		 * One a destroyed pool left empty is reused: jemalloc keeps
		 * some metadata of every arena it ever created, even after
		 * arena.<i>.destroy, so creating one per pool grew the process
		 * by ~4 KiB per create/destroy cycle.
		 */
		p->mflags = MALLOCX_TCACHE_NONE;
		unsigned ind;
		size_t sz = sizeof ind;
		if (spare_arenas.n > 0) {
			p->arena = spare_arenas.ind[--spare_arenas.n];
			p->has_arena = true;
		} else if (mallctl("arenas.create", &ind, &sz, NULL, 0) == 0) {
			p->arena = ind;
			p->has_arena = true;
		}
		if (p->has_arena)
			p->mflags |= MALLOCX_ARENA(p->arena);
	}
	p->reg_next = reg_head;
	if (reg_head)
		reg_head->reg_prev = p;
	reg_head = p;
	pthread_mutex_unlock(&reg_mu);
	return p;
}

SP_API void sp_pool_destroy(sp_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&reg_mu);
	p->destroying = true;
	while (p->pins > 0) /* a cleanup_all is cleaning it */
		pthread_cond_wait(&reg_cv, &reg_mu);
	if (p->reg_prev)
		p->reg_prev->reg_next = p->reg_next;
	else
		reg_head = p->reg_next;
	if (p->reg_next)
		p->reg_next->reg_prev = p->reg_prev;
	pthread_mutex_unlock(&reg_mu);

	uint32_t me = sp_pc_cur_cpu(&p->pc);
	for (int r = 0; r < 2; r++) {
		for (uint32_t j = 0; j < p->pc.ncpu; j++) {
			struct sp_pc_area *a = sp_pc_area_at(&p->pc, p->arr[r], j);
			if (!(atomic_load_explicit(&a->state, memory_order_relaxed) & (SP_PC_NMASK | SP_PC_SLOT)))
				continue;
			uint32_t k = area_drain(p, p->arr[r], j);
			for (uint32_t i = 0; i < k; i++)
				obj_drop(p, p->drain[i], me);
		}
	}
	if (p->has_arena) {
		uint64_t out = 0;
		for (uint32_t j = 0; j < p->pc.ncpu; j++)
			out += atomic_load(&cpu_stats(p, j)->allocs) - atomic_load(&cpu_stats(p, j)->frees);
		if (out == 0) {
			/* Empty: its pages go back to the OS, the arena to the next pool. */
			arena_ctl(p, "reset");
			arena_ctl(p, "purge");
			spare_arena_put(p->arena);
		} else {
			arena_ctl(p, "purge"); /* objects still out live in it */
		}
	}
	pthread_mutex_destroy(&p->cleanup_mu);
	sp_lsan_root_del(p->map, 2 * p->arr_len);
	munmap(p->map, p->map_len);
	sp_tsan_ignore_begin();
	free(p->drain);
	free(p);
	sp_tsan_ignore_end();
}

/* ------------------------------------------------------------ stats */

SP_API void sp_pool_stats_get(sp_pool *p, sp_pool_stats *out)
{
	int64_t ops = 0, occ = 0, removed = 0;
	uint64_t refills = 0, put_drops = 0;
	memset(out, 0, sizeof *out);
	for (int r = 0; r < 2; r++) {
		for (uint32_t j = 0; j < p->pc.ncpu; j++) {
			struct sp_pc_area *a = sp_pc_area_at(&p->pc, p->arr[r], j);
			uint64_t w = atomic_load_explicit(&a->state, memory_order_relaxed);
			ops += (int64_t)(atomic_load_explicit(&a->ops_base, memory_order_relaxed) +
					 (w >> SP_PC_OPS_SHIFT));
			occ += (int64_t)((w & SP_PC_NMASK) + ((w & SP_PC_SLOT) ? 1 : 0));
			removed += (int64_t)atomic_load_explicit(&a->removed, memory_order_relaxed);
		}
	}
	for (uint32_t j = 0; j < p->pc.ncpu; j++) {
		struct cpu_stats *s = cpu_stats(p, j);
		refills += atomic_load_explicit(&s->refills, memory_order_relaxed);
		put_drops += atomic_load_explicit(&s->put_drops, memory_order_relaxed);
		out->hits_stolen += atomic_load_explicit(&s->stolen, memory_order_relaxed);
		out->hits_victim += atomic_load_explicit(&s->victim, memory_order_relaxed);
		out->news += atomic_load_explicit(&s->news, memory_order_relaxed);
		out->drops += atomic_load_explicit(&s->drops, memory_order_relaxed);
	}
	/* pushes - pops = occ + removed, pushes + pops = ops (percpu.h, "Counting"). */
	int64_t pushes = (ops + occ + removed) / 2, pops = (ops - occ - removed) / 2;
	out->hits_local = pops > 0 ? (uint64_t)pops : 0;
	out->puts = pushes > (int64_t)refills ? (uint64_t)pushes - refills + put_drops : put_drops;
	out->cached = occ > 0 ? (uint64_t)occ : 0;
	/* A Get that returned NULL (no new_fn) counts in gets only. */
	uint64_t nulls = 0;
	for (uint32_t j = 0; j < p->pc.ncpu; j++)
		nulls += atomic_load_explicit(&cpu_stats(p, j)->nulls, memory_order_relaxed);
	out->gets = nulls + out->hits_local + out->hits_stolen + out->hits_victim + out->news;
}

/* ------------------------------------------------------------ the cleaner */

static pthread_mutex_t cl_mu = PTHREAD_MUTEX_INITIALIZER; /* start/stop */
static bool cl_running;
static pthread_t cl_thread;
static _Atomic uint32_t cl_word; /* bumped on every change: the cleaner parks on it */
static _Atomic int64_t cl_interval;
static _Atomic bool cl_stop;

static void *cleaner_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "sp-pool-cleaner");
	int64_t last = sp_now_ns();
	for (;;) {
		uint32_t w = atomic_load_explicit(&cl_word, memory_order_acquire);
		if (atomic_load_explicit(&cl_stop, memory_order_acquire))
			return NULL;
		int64_t iv = atomic_load_explicit(&cl_interval, memory_order_relaxed);
		int64_t due = iv > INT64_MAX - last ? INT64_MAX : last + iv;
		if (sp_now_ns() >= due) {
			sp_pool_cleanup_all();
			last = sp_now_ns();
			continue;
		}
		sp_park_wait(&cl_word, w, due);
	}
}

static void cl_poke(void)
{
	atomic_fetch_add_explicit(&cl_word, 1, memory_order_release);
	sp_park_wake_all(&cl_word);
}

SP_API int sp_pool_cleaner_start(int64_t interval_ns)
{
	if (interval_ns <= 0)
		return EINVAL;
	pthread_once(&atfork_once, atfork_register);
	int err = 0;
	pthread_mutex_lock(&cl_mu);
	atomic_store_explicit(&cl_interval, interval_ns, memory_order_relaxed);
	if (cl_running) {
		cl_poke();
	} else {
		atomic_store(&cl_stop, false);
		if (pthread_create(&cl_thread, NULL, cleaner_main, NULL) != 0)
			err = EAGAIN;
		else
			cl_running = true;
	}
	pthread_mutex_unlock(&cl_mu);
	return err;
}

SP_API void sp_pool_cleaner_stop(void)
{
	pthread_mutex_lock(&cl_mu);
	if (cl_running) {
		atomic_store_explicit(&cl_stop, true, memory_order_release);
		cl_poke();
		pthread_join(cl_thread, NULL);
		cl_running = false;
	}
	pthread_mutex_unlock(&cl_mu);
}

/* ------------------------------------------------------------ fork */

/*
 * fork() copies one thread.  Any lock another thread holds at that moment
 * would stay held in the child forever, and the cleaner thread is not
 * copied at all.  So, as glibc's malloc does with its arenas, the prepare
 * handler takes every lock of the pool layer - the cleaner's, the
 * registry, every live pool's cleanup mutex, then every area lock (in the
 * order every other path takes them: none of them is held while taking
 * one before it, free_fn's puts included) - and both sides release them
 * after the fork.  Since cleanups hold these across free_fn, a fork waits
 * for the free_fn calls in progress.  Lock-free
 * state needs nothing: a thread's writes that reach the child are a prefix
 * of its program order (a write to a page the fork has already copied
 * faults and waits for the fork to end), and the sequences commit with a
 * single store.  In the child the cleaner is marked stopped, so that
 * sp_pool_cleaner_start starts a new one.
 */
static void pool_areas_each(sp_pool *p, bool lock)
{
	for (int r = 0; r < 2; r++) {
		for (uint32_t j = 0; j < p->pc.ncpu; j++) {
			struct sp_pc_area *a = sp_pc_area_at(&p->pc, p->arr[r], j);
			if (lock)
				sp_pc_lock(a);
			else
				sp_pc_unlock(a);
		}
	}
}

static void fork_prepare(void)
{
	pthread_mutex_lock(&cl_mu);
	pthread_mutex_lock(&reg_mu);
	/*
	 * Every cleanup mutex before any area lock: a cleanup holds its
	 * mutex across free_fn, which may put into another pool (an area
	 * lock); taking pool by pool, the fork could hold that area's lock
	 * while waiting for the cleanup's mutex.
	 */
	for (sp_pool *p = reg_head; p; p = p->reg_next)
		pthread_mutex_lock(&p->cleanup_mu);
	for (sp_pool *p = reg_head; p; p = p->reg_next)
		pool_areas_each(p, true);
}

static void fork_release(void)
{
	for (sp_pool *p = reg_head; p; p = p->reg_next)
		pool_areas_each(p, false);
	for (sp_pool *p = reg_head; p; p = p->reg_next)
		pthread_mutex_unlock(&p->cleanup_mu);
	pthread_mutex_unlock(&reg_mu);
	pthread_mutex_unlock(&cl_mu);
}

static void fork_child(void)
{
	/* Pins of cleanup_all passes whose threads stayed in the parent. */
	for (sp_pool *p = reg_head; p; p = p->reg_next)
		p->pins = 0;
	pthread_cond_init(&reg_cv, NULL); /* its waiters stayed in the parent too */
	cl_running = false; /* the thread stayed in the parent */
	atomic_store_explicit(&cl_stop, false, memory_order_relaxed);
	fork_release();
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void atfork_register(void)
{
	/*
	 * Prepare handlers run in the reverse order of registration: the
	 * timer's are registered first, so that ours runs before it.  A
	 * free_fn run by a cleanup (holding the locks ours takes) may release
	 * a context with a deadline, which takes the timer's lock.
	 */
	sp_timer_atfork_init();
	(void)pthread_atfork(fork_prepare, fork_release, fork_child);
}
