/*
 * pool/percpu.h - per-CPU areas updated by restartable sequences.
 *
 * Never installed.  The pool keeps, for each CPU (or each mm_cid, see below),
 * one area: a private slot and a bounded stack of object pointers, described
 * by one 64-bit state word.  An array of areas is a dense run of 128-byte
 * headers (state, slot, lock, counters), one per index, followed by the
 * stacks, one per index:
 *
 *	header(idx) = base + (idx << 7)
 *	stack(idx)  = base + stack_off + idx * stack_stride
 *
 * The fast path finds its header with a constant shift instead of a multiply
 * by a per-pool stride: the address every operation waits on is ready two
 * cycles sooner (~10% of a one-thread Get+Put).  The stack path reads the
 * stack's address from the header (header.stack, on the state word's line,
 * so the load overlaps the state's), and a push compares n with the
 * header's copy of the cap (header.cap).  Both are 0 in a fresh header and
 * set once, to values that never change, by the first push that needs them:
 * a push finding cap == 0 leaves as FULL, and the slow path, seeing the
 * header unset, sets it and retries (any thread may; release order: stack,
 * then cap).  So n > 0 implies the header is set - objects enter a stack
 * only by a sequence push, which needs cap, or by a push under the lock,
 * which sets the header first - and a pop reads header.stack unchecked.
 * Create writes nothing: an index's pages are materialised only when a
 * thread first uses it.
 *
 * The fast path pops and pushes with restartable sequences (rseq, Linux >=
 * 4.18) running on the area glibc registered for the thread (<sys/rseq.h>:
 * __rseq_offset, __rseq_size); we never register one of our own (tcmalloc
 * issue 144: a second registration fails or steals glibc's).  The idea and the discipline are tcmalloc's per-CPU caches
 * (tcmalloc/internal/percpu_tcmalloc.h, docs/rseq.md).
 *
 * The state word (written only by a commit, or under the area lock):
 *
 *	bits  0..15  n      objects in the stack (stack[0..n) live), n <= cap
 *	bit   16     slot   the private slot holds an object
 *	bits 17..63  ops    pushes + pops committed on this area since the last
 *	                    fold (the fast path counts its own operations here,
 *	                    so they cost no extra store; see "Counting" below)
 *
 * A restartable sequence: the thread stores the address of a descriptor
 * (struct rseq_cs: start, length, abort address) into its rseq area, reads
 * its CPU number, computes the area, reads and prepares, and ends with ONE
 * store - the commit - of the new state word.  If the kernel preempts the
 * thread, migrates it or delivers a signal while it is between start and the
 * commit, the kernel moves it to the abort address, which starts over.  So a
 * commit always lands on the area of the CPU the thread is running on, with
 * nothing else from that CPU interleaved: per-CPU data needs no lock and no
 * atomic RMW.  The preparatory stores (the object into stack[n] or the slot,
 * for a push) go to entries the state word says are free: if the sequence is
 * aborted they are simply overwritten later.
 *
 * Index: cpu_id, or mm_cid when the kernel provides it (Linux >= 6.3; reported
 * by getauxval(AT_RSEQ_FEATURE_SIZE) >= 28).  mm_cid is a per-process dense
 * id: threads running at the same time have different ones, it is below the
 * number of possible CPUs and below the number of threads, and it changes
 * only when the thread is scheduled - which aborts a sequence.  So it keeps a
 * process with 4 threads on 4 areas on a 256-CPU machine.  Debian 12's
 * <linux/rseq.h> predates mm_cid, so the layout below is our own (as librseq
 * carries it).
 *
 * Cross-CPU work (a Get stealing from another area, cleanup, counter folds,
 * threads without rseq) must be correct against sequences running on that
 * area.  The protocol:
 *
 *   1. The area lock word is inside the area and every sequence reads it
 *      after its start: nonzero means "leave" (status BUSY; the thread waits
 *      for the lock and starts over).
 *   2. The remote thread takes the lock (an atomic RMW: it is visible to
 *      every CPU once it returns), then calls
 *      membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ), which interrupts
 *      every CPU running one of our threads (or only the area's CPU when
 *      areas are indexed by cpu_id) and waits for them: a sequence that had
 *      read the lock as free and not yet committed is aborted by the
 *      interrupt, and on restart it reads the lock as taken.  A sequence that
 *      committed before the interrupt is visible (the interrupt is a full
 *      barrier on that CPU).  A thread that is not running is not inside a
 *      sequence (preemption aborts it).
 *   3. From then until the unlock, nothing but the lock holder writes the
 *      area: it reads and writes it with plain accesses.
 *
 * A spin-wait or a time-out could not replace step 2: under a hypervisor a
 * vCPU can stop for milliseconds in the middle of a sequence without the
 * guest kernel noticing; only an interrupt forces the abort.  membarrier
 * costs ~1-2 us, so remote work is batched (a steal takes up to half a stack,
 * cleanup fences once for all areas).
 *
 * Without rseq (not registered, not x86_64, ThreadSanitizer - which cannot
 * follow a sequence - or SYNCPOOL_NO_RSEQ set in the environment) every
 * operation takes the area lock; the thread picks the area of
 * sched_getcpu().  Same layout, same state word, no fence.
 *
 * Counting.  Fast-path Gets and Puts are counted in the ops field of the
 * state word, committed by the same store as the operation, so they are
 * exact (an aborted sequence counts nothing) and free.  The split into pushes
 * and pops is derived: objects enter an area only by pushes and leave by
 * pops or by removals under the lock (steal, victim, cleanup; counted in
 * `removed`), so pushes - pops = n + slot + removed and pushes + pops = ops.
 * When ops reaches 2^46 (bit 63 of the word: the sequence sees the sign
 * flag) the sequence leaves with status FOLD and the slow path moves the
 * count into ops_base under the lock.
 */
#ifndef SP_POOL_PERCPU_H
#define SP_POOL_PERCPU_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

#include "syncpool/pool.h"

/* The sequences need x86_64, no TSan and asm goto with outputs (pool.h). */
#if SP_POOL_RSEQ_ASM_ && !SP_TSAN
#define SP_PC_HAVE_RSEQ 1
#else
#define SP_PC_HAVE_RSEQ 0
#endif

#define SP_PC_NMASK     0xffffULL
#define SP_PC_SLOT      (1ULL << 16)
#define SP_PC_OPS_SHIFT 17
#define SP_PC_OP        (1ULL << SP_PC_OPS_SHIFT)
#define SP_PC_CAP_MAX   65535u

/*
 * One CPU's area header.  Written by the threads running on that CPU
 * (commits), rarely by a thread holding the area lock, and once (stack, cap)
 * by the first push that needs them (see the top of this file).  Headers are
 * SP_CACHELINE (128) bytes apart and the stacks are padded to a multiple of
 * it, so no two CPUs write one line.
 */
struct sp_pc_area {
	_Atomic uint64_t state;      /* see above                                  */
	void *slot;                  /* the private slot (live when SLOT is set)    */
	_Atomic uint32_t lock;       /* 0 free, 1 held, 2 held with sleepers       */
	uint32_t pad0_;
	_Atomic uint64_t ops_base;   /* folded ops (under the lock)                */
	_Atomic uint64_t removed;    /* objects taken out under the lock           */
	void **_Atomic stack;        /* stack(idx) of this array, or NULL (above)  */
	_Atomic uint32_t cap;        /* the pool's cap once stack is set, else 0   */
	char pad1_[128 - 52];
};
#define SP_PC_AREA_SHIFT 7           /* sizeof(struct sp_pc_area) == 1 << 7      */

/*
 * The part of a pool every operation reads (kept in its first cache line).
 * base is the current primary array of areas: cleanup swaps it (see pool.c),
 * which is why sequences read it after their start - once: an area's header
 * and its stack address both come from that one read.
 */
struct sp_pc {
	char *_Atomic base;          /* primary area headers: base + (idx << 7)   */
	uint64_t stack_off;          /* stack(0) - base: ncpu << 7                */
	uint32_t rseq_ncpu;          /* ncpu in an rseq mode, 0 in the locked mode */
	uint32_t cap;                /* stack entries per area                    */
	uint32_t ncpu;               /* areas per array                           */
	intptr_t rseq_off;           /* __rseq_offset (valid even when disabled)  */
	intptr_t idx_off;            /* __rseq_offset + offset of cpu_id or mm_cid */
	uint64_t stack_stride;       /* bytes per stack (cap entries, padded)     */
};

enum sp_pc_mode { SP_PC_LOCKED = 0, SP_PC_RSEQ_CPU = 1, SP_PC_RSEQ_CID = 2 };

/* Process-wide configuration, fixed by sp_pc_init(). */
struct sp_pc_config {
	int mode;                    /* enum sp_pc_mode                           */
	uint32_t ncpu;               /* possible CPUs (areas per array)           */
	intptr_t rseq_off, idx_off;
};
extern struct sp_pc_config sp_pc_cfg;

/* Decides the mode once (thread-safe, idempotent); returns the config. */
const struct sp_pc_config *sp_pc_init(void);

/*
 * After taking area idx's lock in an rseq mode: makes sure no sequence on
 * that area is still in flight (membarrier).  sp_pc_fence_all: every area.
 */
void sp_pc_fence(uint32_t idx);
void sp_pc_fence_all(void);

/* The area lock: a small futex mutex (bounded spin, then park). */
void sp_pc_lock_slow(_Atomic uint32_t *l);
void sp_pc_unlock_wake(_Atomic uint32_t *l);

static inline void sp_pc_lock(struct sp_pc_area *a)
{
	uint32_t z = 0;
	if (SP_UNLIKELY(!atomic_compare_exchange_strong_explicit(&a->lock, &z, 1, memory_order_acquire,
								  memory_order_relaxed)))
		sp_pc_lock_slow(&a->lock);
}

static inline void sp_pc_unlock(struct sp_pc_area *a)
{
	if (SP_UNLIKELY(atomic_exchange_explicit(&a->lock, 0, memory_order_release) == 2))
		sp_pc_unlock_wake(&a->lock);
}

/* Waits until area a's lock is free (without keeping it). */
static inline void sp_pc_wait_unlocked(struct sp_pc_area *a)
{
	sp_pc_lock(a);
	sp_pc_unlock(a);
}

/* The area idx of the array at base, and its stack. */
static inline struct sp_pc_area *sp_pc_area_at(const struct sp_pc *pc, char *base, uint32_t idx)
{
	(void)pc;
	return (struct sp_pc_area *)(base + ((uint64_t)idx << SP_PC_AREA_SHIFT));
}

static inline void **sp_pc_stack_at(const struct sp_pc *pc, char *base, uint32_t idx)
{
	return (void **)(base + pc->stack_off + (uint64_t)idx * pc->stack_stride);
}

/* This thread's CPU, for the locked mode: in [0, ncpu). */
uint32_t sp_pc_cur_cpu(const struct sp_pc *pc);

/* Status of an operation on this CPU's area. */
enum {
	SP_PC_OK = 0,
	SP_PC_EMPTY = 1,  /* pop: slot and stack empty;  push: stack full (FULL) */
	SP_PC_FULL = 1,
	SP_PC_BUSY = 2,   /* the area is locked by another thread: wait, retry   */
	SP_PC_FOLD = 3,   /* the ops counter must be folded: lock, fold, retry    */
	SP_PC_NOIDX = 4,  /* this thread has no usable rseq index: use the lock   */
};

/*
 * Pop and push under the area lock (the locked mode, and remote work that
 * uses the fast path's layout).  Same transitions and counting as the
 * sequences; the counter fold happens inline.
 */
static inline void sp_pc_commit_locked(struct sp_pc_area *a, uint64_t w)
{
	if (SP_UNLIKELY((int64_t)w < 0)) {
		atomic_store_explicit(&a->ops_base,
				      atomic_load_explicit(&a->ops_base, memory_order_relaxed) +
					      (w >> SP_PC_OPS_SHIFT),
				      memory_order_relaxed);
		w &= SP_PC_OP - 1;
	}
	atomic_store_explicit(&a->state, w, memory_order_relaxed);
}

static inline int sp_pc_pop_locked(struct sp_pc_area *a, void **stack, void **out)
{
	uint64_t w = atomic_load_explicit(&a->state, memory_order_relaxed);
	if (w & SP_PC_SLOT) {
		*out = a->slot;
		w += SP_PC_OP - SP_PC_SLOT;
	} else if (w & SP_PC_NMASK) {
		*out = stack[(w & SP_PC_NMASK) - 1];
		w += SP_PC_OP - 1;
	} else {
		return SP_PC_EMPTY;
	}
	sp_pc_commit_locked(a, w);
	return SP_PC_OK;
}

/* Sets area a's header.stack and header.cap (see the top of this file). */
static inline void sp_pc_header_set(struct sp_pc_area *a, void **stack, uint32_t cap)
{
	if (atomic_load_explicit(&a->cap, memory_order_acquire) == 0) {
		atomic_store_explicit(&a->stack, stack, memory_order_relaxed);
		atomic_store_explicit(&a->cap, cap, memory_order_release);
	}
}

static inline int sp_pc_push_locked(struct sp_pc_area *a, void **stack, uint32_t cap, void *obj)
{
	uint64_t w = atomic_load_explicit(&a->state, memory_order_relaxed);
	if (!(w & SP_PC_SLOT)) {
		a->slot = obj;
		w += SP_PC_OP + SP_PC_SLOT;
	} else if ((w & SP_PC_NMASK) < cap) {
		sp_pc_header_set(a, stack, cap); /* before n > 0 */
		stack[w & SP_PC_NMASK] = obj;
		w += SP_PC_OP + 1;
	} else {
		return SP_PC_FULL;
	}
	sp_pc_commit_locked(a, w);
	return SP_PC_OK;
}

#if SP_PC_HAVE_RSEQ
/*
 * The restartable sequences themselves live in the public header
 * (syncpool/pool.h: sp_pool_rseq_pop_/push_, inlined into callers of
 * sp_pool_get/put); pool.c checks at build time that the offsets they use
 * match struct sp_pc and struct sp_pc_area.
 */
static inline __attribute__((always_inline)) int sp_pc_rseq_pop(struct sp_pc *pc, void **out)
{
	return sp_pool_rseq_pop_(pc, pc->rseq_off, pc->idx_off, out);
}

static inline __attribute__((always_inline)) int sp_pc_rseq_push(struct sp_pc *pc, void *obj)
{
	return sp_pool_rseq_push_(pc, pc->rseq_off, pc->idx_off, obj);
}

/* This thread's rseq index (cpu_id or mm_cid) right now: a hint for the slow path. */
static inline uint32_t sp_pc_rseq_idx(const struct sp_pc *pc)
{
	uint32_t v;
	__asm__ __volatile__("movl %%fs:(%1), %0" : "=r"(v) : "r"(pc->idx_off));
	return v;
}
#endif /* SP_PC_HAVE_RSEQ */

#endif /* SP_POOL_PERCPU_H */
