/*
 * sync/rwmutex.c - sp_rwmutex: Go's RWMutex semantics, BRAVO read scaling.
 *
 * Two layers.  Underneath is a counter-based reader/writer lock in the spirit
 * of Go's rwmutex.go: writers serialize on an sp_mutex, a writer announces
 * itself in the state word (new readers then block: writer preference) and
 * sleeps until the readers inside have left.  On top is BRAVO (Dice & Kogan,
 * "BRAVO - Biased Locking for Reader-Writer Locks", USENIX ATC 2019): while
 * the lock is read-biased (RBIAS), a reader does not touch the state word at
 * all - it CASes the lock's address into its own slot of a global
 * visible-readers table and re-checks RBIAS.  A writer clears RBIAS and waits
 * until no slot holds the lock any more.
 *
 * The state word (64 bits):
 *
 *	bits  0..29  holders   read locks held through the counter
 *	bits 32..61  blocked   readers sleeping on rsem until the writer leaves
 *	bit  62      RBIAS     readers may use the table
 *	bit  63      WRITER    a writer holds the lock or waits for readers to leave
 *
 * Invariants: RBIAS and WRITER are never both set - a writer sets WRITER
 * and clears RBIAS in one CAS, and RBIAS is only set by a CAS that finds
 * WRITER clear.  So a reader that sees RBIAS after publishing its slot is
 * visible to every later writer, and a writer, once its CAS is done, only
 * has to wait for the slots already published.  `holders` counts exactly
 * the read locks held through the counter (readers only enter it by a CAS
 * that finds WRITER clear; a writer's unlock turns `blocked` into holders).
 *
 * Read locks are tokens: a `holders` unit or a table slot holding the lock's
 * address.  Because any thread may release a read lock that another thread
 * took, runlock releases *some* token of this lock: the caller's own slot if
 * it holds the lock, else a `holders` unit, else any slot of this lock in
 * the table.  The tokens are interchangeable, so the count always balances.
 * (A thread holding read locks on two rwmutexes whose slots collide, or the
 * same rwmutex twice, simply takes the second through the counter.)
 *
 * Bias policy: a zero lock starts unbiased and the first reader through the
 * counter sets RBIAS.  A writer that had to revoke the bias measures how long
 * the revocation took and inhibits the bias for INHIBIT_FACTOR times that
 * (BRAVO's N = 9): revocation then costs at most ~10% of the time, and locks
 * that see frequent writes stay on the counter path.
 *
 * Waiting: readers blocked by a writer sleep on rsem (a token semaphore the
 * writer's unlock posts to, one token per blocked reader); the writer waiting
 * for readers to leave sleeps on `drain`, an epoch that a leaving reader
 * bumps when it sees WRITER set.
 */
#include "syncpool/rwmutex.h"

#include <sched.h>
#include <stdatomic.h>

#include "common.h"
#include "park.h"

#define HOLDER        ((uint64_t)1)
#define HOLDERS_MASK  ((((uint64_t)1) << 30) - 1)
#define BLOCKED       (((uint64_t)1) << 32)
#define BLOCKED_SHIFT 32
#define BLOCKED_MASK  (HOLDERS_MASK << BLOCKED_SHIFT)
#define RBIAS         (((uint64_t)1) << 62)
#define WRITER        (((uint64_t)1) << 63)

#define INHIBIT_FACTOR 9

static inline uint64_t holders(uint64_t s) { return s & HOLDERS_MASK; }
static inline uint64_t blocked(uint64_t s) { return (s & BLOCKED_MASK) >> BLOCKED_SHIFT; }

static inline _Atomic uint64_t *state_of(sp_rwmutex *rw) { return (_Atomic uint64_t *)&rw->state_; }
static inline _Atomic uint32_t *rsem_of(sp_rwmutex *rw) { return (_Atomic uint32_t *)&rw->rsem_; }
static inline _Atomic uint32_t *drain_of(sp_rwmutex *rw) { return (_Atomic uint32_t *)&rw->drain_; }
static inline _Atomic int64_t *inhibit_of(sp_rwmutex *rw) { return (_Atomic int64_t *)&rw->inhibit_; }

/* ------------------------------------------------------- visible readers */

/*
 * The visible-readers table: VR_LINES lines of VR_COLS slots, one line per
 * SP_CACHELINE bytes.  The slot of thread t for lock L is in column col(L)
 * of line (t + row(L)) mod VR_LINES, where t is a dense per-thread number:
 * for one lock, up to VR_LINES threads get slots on distinct lines (readers
 * of one hot lock never false-share), and all slots that can hold L lie in
 * one column, so a writer scans VR_LINES slots, not the whole table.  Each
 * slot is written by the threads that hash to it (normally one) and by
 * writers only through runlock-on-behalf; writers read whole columns.
 */
#define VR_COLS  (SP_CACHELINE / sizeof(uintptr_t))
#define VR_LINES 256u

static SP_CACHE_ALIGNED _Atomic uintptr_t vr_table[VR_LINES * VR_COLS];
static _Atomic uint32_t vr_next_thread;
static __thread uint32_t vr_self __attribute__((tls_model("initial-exec")));

static inline uint64_t lock_hash(const sp_rwmutex *rw)
{
	return ((uint64_t)(uintptr_t)rw * UINT64_C(0x9E3779B97F4A7C15)) >> 40;
}

static inline uint32_t lock_col(uint64_t h) { return (uint32_t)(h >> 16) % VR_COLS; }

static __attribute__((noinline)) uint32_t self_assign(void)
{
	vr_self = atomic_fetch_add_explicit(&vr_next_thread, 1, memory_order_relaxed) + 1;
	return vr_self;
}

/* The calling thread's slot for rw. */
static inline _Atomic uintptr_t *my_slot(const sp_rwmutex *rw)
{
	uint32_t t = vr_self;
	if (SP_UNLIKELY(t == 0))
		t = self_assign();
	uint64_t h = lock_hash(rw);
	uint32_t line = (t + (uint32_t)h) % VR_LINES;
	return &vr_table[line * VR_COLS + lock_col(h)];
}

/* ---------------------------------------------------------------- tokens */

/* Takes one wake-up token from a semaphore word, sleeping until one is posted. */
static void sema_acquire(_Atomic uint32_t *sema)
{
	for (;;) {
		uint32_t v = atomic_load_explicit(sema, memory_order_relaxed);
		while (v != 0) {
			if (atomic_compare_exchange_weak_explicit(sema, &v, v - 1, memory_order_acquire,
								  memory_order_relaxed))
				return;
		}
		if (!sp_spin_while_eq(sema, 0))
			sp_park_wait(sema, 0, -1);
	}
}

/* A reader left while a writer waits: move the epoch so the writer looks again. */
static void wake_writer(sp_rwmutex *rw)
{
	atomic_fetch_add_explicit(drain_of(rw), 1, memory_order_seq_cst);
	sp_park_wake_one(drain_of(rw));
}

/* ---------------------------------------------------------------- bias */

/*
 * Whether the read bias may be turned on now.  Reading the clock costs about
 * as much as a whole read lock, so while the bias is inhibited each thread
 * looks at the clock only on every 16th slow-path read.
 */
static __thread uint32_t bias_tick __attribute__((tls_model("initial-exec")));

static bool bias_allowed(sp_rwmutex *rw)
{
	int64_t until = atomic_load_explicit(inhibit_of(rw), memory_order_relaxed);
	if (until == 0)
		return true;
	if ((++bias_tick & 15) != 0)
		return false;
	return sp_now_ns() >= until;
}

/* Turns the bias on unless a writer is there (it would have to be revoked). */
static void bias_enable(sp_rwmutex *rw, uint64_t s)
{
	while (!(s & (RBIAS | WRITER))) {
		if (atomic_compare_exchange_weak_explicit(state_of(rw), &s, s | RBIAS, memory_order_relaxed,
							  memory_order_relaxed))
			return;
	}
}

/* ---------------------------------------------------------------- read lock */

/*
 * The BRAVO fast path: publish rw in the caller's slot, then check the bias
 * is still on.  The slot CAS and the re-check are seq_cst, as is the
 * writer's clearing of RBIAS and its scan: either the writer's scan sees our
 * slot, or we see RBIAS clear and back out.
 */
static void release_some_token(sp_rwmutex *rw);

static inline bool fast_rlock(sp_rwmutex *rw)
{
	_Atomic uintptr_t *slot = my_slot(rw);
	uintptr_t expect = 0;
	if (!atomic_compare_exchange_strong_explicit(slot, &expect, (uintptr_t)rw, memory_order_seq_cst,
						     memory_order_relaxed))
		return false; /* slot taken (another lock, or this one already): use the counter */
	uint64_t s = atomic_load_explicit(state_of(rw), memory_order_seq_cst);
	if (SP_LIKELY(s & RBIAS))
		return true;
	/* A writer revoked the bias meanwhile: back out. */
	expect = (uintptr_t)rw;
	if (atomic_compare_exchange_strong_explicit(slot, &expect, 0, memory_order_seq_cst,
						    memory_order_relaxed)) {
		if (s & WRITER)
			wake_writer(rw); /* it may be waiting for this slot */
	} else {
		/*
		 * A runlock on another thread's behalf took our transient
		 * token as its own: the token it meant to release is still
		 * out there.  Release it for them.
		 */
		release_some_token(rw);
	}
	return false;
}

/* Enters through the counter if no writer is there; else returns the state seen. */
static inline bool counter_tryrlock(sp_rwmutex *rw, uint64_t *sp)
{
	uint64_t s = atomic_load_explicit(state_of(rw), memory_order_relaxed);
	while (!(s & WRITER)) {
		if (atomic_compare_exchange_weak_explicit(state_of(rw), &s, s + HOLDER, memory_order_acquire,
							  memory_order_relaxed)) {
			s += HOLDER;
			if (!(s & RBIAS) && bias_allowed(rw))
				bias_enable(rw, s);
			*sp = s;
			return true;
		}
	}
	*sp = s;
	return false;
}

SP_API void sp_rwmutex_rlock(sp_rwmutex *rw)
{
	if (atomic_load_explicit(state_of(rw), memory_order_relaxed) & RBIAS) {
		if (SP_LIKELY(fast_rlock(rw)))
			return;
	}
	uint64_t s;
	if (counter_tryrlock(rw, &s))
		return;
	/* A writer is there: register as blocked, sleep until its unlock. */
	for (;;) {
		if (!(s & WRITER)) {
			if (atomic_compare_exchange_weak_explicit(state_of(rw), &s, s + HOLDER,
								  memory_order_acquire, memory_order_relaxed))
				return;
			continue;
		}
		if (atomic_compare_exchange_weak_explicit(state_of(rw), &s, s + BLOCKED, memory_order_relaxed,
							  memory_order_relaxed))
			break;
	}
	/* The writer's unlock turns us into a holder and posts our token. */
	sema_acquire(rsem_of(rw));
}

SP_API bool sp_rwmutex_tryrlock(sp_rwmutex *rw)
{
	if (atomic_load_explicit(state_of(rw), memory_order_relaxed) & RBIAS) {
		if (SP_LIKELY(fast_rlock(rw)))
			return true;
	}
	uint64_t s;
	return counter_tryrlock(rw, &s);
}

/* ---------------------------------------------------------------- read unlock */

/* Drops one `holders` unit if there is one. */
static bool release_holder(sp_rwmutex *rw)
{
	_Atomic uint64_t *st = state_of(rw);
	uint64_t s = atomic_load_explicit(st, memory_order_relaxed);
	while (holders(s) != 0) {
		if (atomic_compare_exchange_weak_explicit(st, &s, s - HOLDER, memory_order_seq_cst,
							  memory_order_relaxed)) {
			if ((s & WRITER) && holders(s) == 1)
				wake_writer(rw);
			return true;
		}
	}
	return false;
}

/* Takes any table slot holding rw (a read lock taken by another thread). */
static bool release_any_slot(sp_rwmutex *rw)
{
	uint32_t col = lock_col(lock_hash(rw));
	for (uint32_t line = 0; line < VR_LINES; line++) {
		_Atomic uintptr_t *slot = &vr_table[line * VR_COLS + col];
		uintptr_t v = atomic_load_explicit(slot, memory_order_relaxed);
		if (v != (uintptr_t)rw)
			continue;
		if (atomic_compare_exchange_strong_explicit(slot, &v, 0, memory_order_seq_cst,
							    memory_order_relaxed)) {
			if (atomic_load_explicit(state_of(rw), memory_order_seq_cst) & WRITER)
				wake_writer(rw);
			return true;
		}
	}
	return false;
}

/*
 * The caller's own slot does not hold rw: release a counter unit, or else a
 * slot another thread published.  Tokens come and go while we look (other
 * threads release theirs), so a miss is retried before it is called misuse.
 */
static void release_some_token(sp_rwmutex *rw)
{
	for (int pass = 0; pass < 4; pass++) {
		if (release_holder(rw) || release_any_slot(rw))
			return;
		if (pass > 0)
			sched_yield();
	}
	sp_fatal("rwmutex", "runlock of unlocked rwmutex");
}

SP_API void sp_rwmutex_runlock(sp_rwmutex *rw)
{
	_Atomic uintptr_t *slot = my_slot(rw);
	uintptr_t expect = (uintptr_t)rw;
	if (SP_LIKELY(atomic_compare_exchange_strong_explicit(slot, &expect, 0, memory_order_seq_cst,
							      memory_order_relaxed))) {
		/* A writer revoking the bias may be waiting for this slot. */
		if (SP_UNLIKELY(atomic_load_explicit(state_of(rw), memory_order_seq_cst) & WRITER))
			wake_writer(rw);
		return;
	}
	release_some_token(rw);
}

/* ---------------------------------------------------------------- write lock */

/* First line at or after `from` whose slot still holds rw, or VR_LINES. */
static uint32_t scan_slots(sp_rwmutex *rw, uint32_t from)
{
	uint32_t col = lock_col(lock_hash(rw));
	for (uint32_t line = from; line < VR_LINES; line++) {
		if (atomic_load_explicit(&vr_table[line * VR_COLS + col], memory_order_seq_cst) ==
		    (uintptr_t)rw)
			return line;
	}
	return VR_LINES;
}

/*
 * Waits, WRITER set, until no reader holds rw: no holders, and - when the
 * bias was on - no slot publishing rw.  Slots behind the scan position stay
 * clear: once RBIAS is off, a reader that publishes sees it off and backs
 * out, never entering.
 */
static void wait_readers(sp_rwmutex *rw, bool revoke)
{
	uint32_t line = revoke ? 0 : VR_LINES;
	for (;;) {
		uint32_t e = atomic_load_explicit(drain_of(rw), memory_order_seq_cst);
		uint64_t s = atomic_load_explicit(state_of(rw), memory_order_seq_cst);
		if (holders(s) == 0) {
			line = scan_slots(rw, line);
			if (line == VR_LINES)
				return;
		}
		if (!sp_spin_while_eq(drain_of(rw), e))
			sp_park_wait(drain_of(rw), e, -1);
	}
}

/* Sets WRITER and clears RBIAS; returns the state before. */
static uint64_t announce_writer(sp_rwmutex *rw)
{
	_Atomic uint64_t *st = state_of(rw);
	uint64_t s = atomic_load_explicit(st, memory_order_relaxed);
	while (!atomic_compare_exchange_weak_explicit(st, &s, (s | WRITER) & ~RBIAS, memory_order_seq_cst,
						      memory_order_relaxed))
		;
	return s;
}

SP_API void sp_rwmutex_lock(sp_rwmutex *rw)
{
	sp_mutex_lock(&rw->w_);
	uint64_t s = announce_writer(rw);
	if (s & RBIAS) {
		int64_t t0 = sp_now_ns();
		wait_readers(rw, true);
		int64_t t1 = sp_now_ns();
		atomic_store_explicit(inhibit_of(rw), t1 + INHIBIT_FACTOR * (t1 - t0) + 1, memory_order_relaxed);
	} else if (holders(s) != 0) {
		wait_readers(rw, false);
	}
	/* Acquire what the readers did: they released with seq_cst RMWs we read. */
	atomic_thread_fence(memory_order_acquire);
}

/* Clears WRITER, turns blocked readers into holders and wakes them; restores RBIAS if asked. */
static void release_writer(sp_rwmutex *rw, uint64_t bias)
{
	_Atomic uint64_t *st = state_of(rw);
	uint64_t s = atomic_load_explicit(st, memory_order_relaxed);
	uint64_t n;
	for (;;) {
		if (SP_UNLIKELY(!(s & WRITER)))
			sp_fatal("rwmutex", "unlock of unlocked rwmutex");
		n = blocked(s);
		uint64_t ns = ((s & ~(WRITER | BLOCKED_MASK)) + n * HOLDER) | bias;
		if (atomic_compare_exchange_weak_explicit(st, &s, ns, memory_order_release, memory_order_relaxed))
			break;
	}
	if (n != 0) {
		atomic_fetch_add_explicit(rsem_of(rw), (uint32_t)n, memory_order_release);
		sp_park_wake(rsem_of(rw), (int)(n > 0x7fffffff ? 0x7fffffff : n));
	}
	sp_mutex_unlock(&rw->w_);
}

SP_API bool sp_rwmutex_trylock(sp_rwmutex *rw)
{
	if (!sp_mutex_trylock(&rw->w_))
		return false;
	_Atomic uint64_t *st = state_of(rw);
	uint64_t s = atomic_load_explicit(st, memory_order_relaxed);
	for (;;) {
		if (holders(s) != 0 || (s & WRITER)) {
			sp_mutex_unlock(&rw->w_);
			return false;
		}
		if (atomic_compare_exchange_weak_explicit(st, &s, (s | WRITER) & ~RBIAS, memory_order_seq_cst,
							  memory_order_relaxed))
			break;
	}
	if ((s & RBIAS) && scan_slots(rw, 0) != VR_LINES) {
		/* Readers hold it through the table: undo, leaving the bias as it was. */
		release_writer(rw, RBIAS);
		return false;
	}
	atomic_thread_fence(memory_order_acquire);
	return true;
}

SP_API void sp_rwmutex_unlock(sp_rwmutex *rw)
{
	release_writer(rw, 0);
}
