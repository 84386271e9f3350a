/*
 * sync/rwmutex.c - sp_rwmutex: Go's RWMutex semantics, BRAVO read scaling.
 *
 * Two layers.  Underneath is a counter-based reader/writer lock in the spirit
 * of Go's rwmutex.go: writers serialize on an sp_mutex, a writer announces
 * itself in the state word (new readers then block: writer preference) and
 * sleeps until the readers inside have left.  On top is BRAVO (Dice & Kogan,
 * "BRAVO - Biased Locking for Reader-Writer Locks", USENIX ATC 2019): while
 * the lock is read-biased (RBIAS), a reader does not write the state word at
 * all - it CASes the lock's address into its own slot of a global
 * visible-readers table and re-checks RBIAS; its unlock is a plain store
 * back to NULL.  A writer clears RBIAS and waits until the readers published
 * in the table have left.
 *
 * The state word (64 bits):
 *
 *	bits  0..26  blocked   readers sleeping on rsem until the writer leaves
 *	bit  27      PENDING   a phantom cleanup was asked for while SCAN was held
 *	bit  28      SCAN      one thread scans the table (bias off meanwhile)
 *	bit  29      CLEARING  a writer or scanner is clearing phantom slots
 *	bit  30      RBIAS     readers may use the table
 *	bit  31      WRITER    a writer holds the lock or waits for readers to leave
 *	bits 32..63  holders   signed: read locks held through the counter,
 *	                       minus table read locks released by other threads
 *
 * holders is the top half so that readers can move it with one atomic add
 * (a borrow or carry leaves the word at bit 63 and disturbs nothing).
 *
 * RBIAS is never set together with WRITER or SCAN: a writer (a scanner)
 * sets WRITER (SCAN) and clears RBIAS in one CAS, and RBIAS is only set by a
 * CAS that finds WRITER and SCAN clear (or by the scanner's own CAS that
 * clears SCAN, finding WRITER clear).  So a reader that still sees RBIAS
 * after publishing its slot is visible to every later writer or scanner (the
 * slot CAS, the re-check, the writer's CAS and its scan are all seq_cst),
 * and a writer, once its CAS is done, only has to wait for readers already
 * in: nobody enters the table or the counter until it leaves.
 *
 * Tokens.  Every read lock held is one token: a `holders` unit or a table
 * slot holding the lock's address, so at any moment
 *
 *	read locks held == holders + (slots holding rw)
 *
 * Any thread may release a read lock another thread took, and the API has no
 * token to say how it was taken.  runlock releases the caller's own slot if
 * it holds rw, else it subtracts one from `holders` - possibly below zero,
 * when the lock it releases is a slot on another thread's line: that slot is
 * then a "phantom", counted by the negative `holders`.  The sum stays exact.
 * A revoking writer waits for the sum to reach zero, then clears the
 * phantoms and adds them back to `holders`; so does the unlock that leaves
 * the lock idle while holders < 0 (request_cleanup), so that an unlocked
 * rwmutex has nothing in the table and its memory may be reused.  (A thread
 * holding read locks on two rwmutexes whose slots collide, or the same
 * rwmutex twice, simply takes the second through the counter.)
 *
 * Cleanup without a writer.  Phantoms may only be cleared while no read lock
 * is held (an owner's unlock is a plain load and store of its slot, which a
 * concurrent clear would make count twice), so the cleaner must keep new
 * readers out meanwhile - but it is no writer: it sets SCAN, not WRITER.
 * SCAN clears RBIAS and stops readers from entering through the counter, but
 * they (and tryrlock) wait for the scan to end instead of failing or
 * sleeping: a scan never blocks, it is a few loads and CASes per thread
 * number in use.  SCAN is exclusive and is never taken while WRITER is set;
 * a writer that arrives during a scan waits for it to end.  Cleanup is
 * sticky: every thread that lowers the sum of tokens (runlock, a reader
 * backing out of a slot or of a speculative counter unit) and then sees
 * holders < 0 asks for it: if no one scans it scans itself, else it sets
 * PENDING in the same CAS, and the scanner, whose exit CAS sees PENDING,
 * scans again.  So the release that leaves the lock idle is always followed
 * by a scan that sees it idle (the store of a plain-store unlock reaches the
 * scanner within a few hundred ns: it looks again a few times).  A write
 * trylock probes the table the same way, under SCAN, and turns SCAN into
 * WRITER only if the lock was idle.
 *
 * Slot ownership.  For one lock, each live thread has its own slot: threads
 * get dense numbers 0..VR_LINES-1, reused after they exit; a thread beyond
 * VR_LINES live ones uses the counter only.  A slot holding rw was thus
 * written by its owner, and only its owner (or a writer clearing phantoms,
 * when no read lock is held at all) empties it - which is what lets the
 * owner's runlock be a plain store.
 *
 * Bias policy: a zero lock starts unbiased and the first reader through the
 * counter sets RBIAS.  A writer that had to revoke the bias measures how long
 * the revocation took (waiting for the table readers included) and inhibits
 * the bias for INHIBIT_FACTOR times that (BRAVO's N = 9): revocation then
 * costs at most ~10% of the time, and locks that see frequent writes with
 * long read sections stay on the counter path.  With few threads a
 * revocation is a few loads, so a lock with 1% writes keeps its bias most of
 * the time.
 *
 * Waiting: readers blocked by a writer sleep on rsem (a token semaphore the
 * writer's unlock posts to, one token per blocked reader); the writer waiting
 * for readers to leave sleeps on `drain`, an epoch that a leaving reader
 * bumps when it sees WRITER set.  A table reader's plain-store unlock may
 * miss the writer (the store and the load of WRITER can pass each other), so
 * while table readers remain the writer also looks again on a timeout that
 * backs off from 20 us to 1 ms.
 */
#include "syncpool/rwmutex.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "common.h"
#include "park.h"
#include "sanitizer.h"

#define BLOCKED       ((uint64_t)1)
#define BLOCKED_MASK  (((uint64_t)1 << 27) - 1)
#define PENDING       (((uint64_t)1) << 27)
#define SCAN          (((uint64_t)1) << 28)
#define CLEARING      (((uint64_t)1) << 29)
#define RBIAS         (((uint64_t)1) << 30)
#define WRITER        (((uint64_t)1) << 31)
#define HOLDER        (((uint64_t)1) << 32)

#define INHIBIT_FACTOR 9

_Static_assert(RBIAS == SP_RWMUTEX_RBIAS_ && WRITER == SP_RWMUTEX_WRITER_, "the inline fast path's bits");

static inline int32_t holders(uint64_t s) { return (int32_t)(uint32_t)(s >> 32); }
static inline uint64_t blocked(uint64_t s) { return s & BLOCKED_MASK; }
static inline uint64_t add_holders(uint64_t s, int32_t d) { return s + ((uint64_t)(uint32_t)d << 32); }

static inline _Atomic uint64_t *state_of(sp_rwmutex *rw) { return (_Atomic uint64_t *)&rw->state_; }
static inline _Atomic uint32_t *rsem_of(sp_rwmutex *rw) { return (_Atomic uint32_t *)&rw->rsem_; }
static inline _Atomic uint32_t *drain_of(sp_rwmutex *rw) { return (_Atomic uint32_t *)&rw->drain_; }
static inline _Atomic int64_t *inhibit_of(sp_rwmutex *rw) { return (_Atomic int64_t *)&rw->inhibit_; }

/* ------------------------------------------------------- visible readers */

/*
 * The visible-readers table: VR_LINES lines of VR_COLS slots, one line per
 * SP_CACHELINE bytes (32 KiB).  Thread t's slot for lock L is in column
 * col(L) of line (t + row(L)) mod VR_LINES: for one lock, live threads get
 * slots on distinct lines (readers of one hot lock never false-share), and
 * all slots that can hold L lie in one column, so a writer scans one slot
 * per thread number in use (vr_hw below), not the whole table.  A slot is
 * written by the threads whose
 * (thread, lock) pairs hash to it - for a given lock, by one thread only -
 * and read by writers.
 */
#define VR_COLS  16u
#define VR_LINES 256u
#define VR_SIZE  (VR_COLS * VR_LINES)
_Static_assert(VR_COLS * sizeof(uintptr_t) == SP_CACHELINE, "one table line per cache line");
_Static_assert(VR_SIZE == 4096, "lock_hash() yields 12 bits");

/* Exported for the inline read fast path in syncpool/rwmutex.h. */
SP_API SP_CACHE_ALIGNED uintptr_t sp_rwmutex_vr_table_[VR_SIZE]; /* the header's type */
#define vr_table ((_Atomic uintptr_t *)sp_rwmutex_vr_table_)

/*
 * A lock's hash: 12 bits, its column in the low 4, its line offset in the
 * high 8.
 */
static inline uint32_t lock_hash(const sp_rwmutex *rw)
{
	return sp_rwmutex_hash_(rw); /* syncpool/rwmutex.h */
}

/*
 * Per thread: VR_SIZE + VR_COLS * (its dense number), so that adding a lock
 * hash and masking gives the slot; 0 while not assigned, VR_NONE when the
 * thread has no slots (more than VR_LINES threads live).
 */
#define VR_NONE 1u
SP_API __thread uint32_t sp_rwmutex_vr_self_ __attribute__((tls_model("initial-exec")));
#define vr_self sp_rwmutex_vr_self_

/* Dense thread numbers in use (bit per number); freed by a key destructor at thread exit. */
static _Atomic uint64_t vr_used[VR_LINES / 64];
/*
 * 1 + the highest thread number ever handed out: slots of lines beyond it
 * are never used, so writers scan only vr_hw slots per lock (a handful in a
 * program with a handful of threads).  It only grows; a thread raises it
 * (seq_cst) before it first publishes, so a writer that reads it after
 * revoking the bias either covers that thread's slot or the thread sees the
 * bias off.
 */
static _Atomic uint32_t vr_hw;
static pthread_key_t vr_key;
static pthread_once_t vr_key_once = PTHREAD_ONCE_INIT;

static void vr_thread_exit(void *p)
{
	uint32_t t = (uint32_t)((uintptr_t)p - 1);
	/*
	 * Any read lock this thread still holds through its slots stays
	 * valid: a later owner of the number finds rw in "its" slot and the
	 * tokens are interchangeable.  This thread uses no slot any more.
	 */
	vr_self = VR_NONE;
	atomic_fetch_and_explicit(&vr_used[t / 64], ~((uint64_t)1 << (t % 64)), memory_order_release);
}

static void vr_key_create(void)
{
	if (pthread_key_create(&vr_key, vr_thread_exit) != 0)
		vr_key = (pthread_key_t)-1;
}

/*
 * Thread number t's line offset.  Consecutive numbers are VR_SPREAD lines
 * apart (odd, so this is a bijection mod VR_LINES): the slots of two threads
 * reading one lock are then not neighbouring lines, which the CPU's
 * adjacent-line prefetchers would drag back and forth between the cores.
 */
#define VR_SPREAD 37u
static inline uint32_t thread_line(uint32_t t) { return (t * VR_SPREAD) % VR_LINES; }

static __attribute__((noinline, cold)) uint32_t self_assign(void)
{
	pthread_once(&vr_key_once, vr_key_create);
	vr_self = VR_NONE;
	/*
	 * A user's ThreadSanitizer cannot see this (uninstrumented) library's
	 * atomics; the annotations that tell it are on the counter path, so
	 * its threads take no slot and read through the counter.
	 */
	if (vr_key == (pthread_key_t)-1 || (!SP_TSAN && sp_tsan_active()))
		return VR_NONE;
	for (uint32_t w = 0; w < VR_LINES / 64; w++) {
		uint64_t used = atomic_load_explicit(&vr_used[w], memory_order_relaxed);
		while (~used != 0) {
			uint32_t b = (uint32_t)__builtin_ctzll(~used);
			if (atomic_compare_exchange_weak_explicit(&vr_used[w], &used, used | ((uint64_t)1 << b),
								  memory_order_acquire, memory_order_relaxed)) {
				uint32_t t = w * 64 + b;
				if (pthread_setspecific(vr_key, (void *)(uintptr_t)(t + 1)) != 0) {
					atomic_fetch_and(&vr_used[w], ~((uint64_t)1 << b));
					return VR_NONE;
				}
				uint32_t hw = atomic_load_explicit(&vr_hw, memory_order_seq_cst);
				while (hw < t + 1 &&
				       !atomic_compare_exchange_weak_explicit(&vr_hw, &hw, t + 1, memory_order_seq_cst,
									      memory_order_seq_cst))
					;
				vr_self = VR_SIZE + thread_line(t) * VR_COLS;
				return vr_self;
			}
		}
	}
	return VR_NONE;
}

/* The calling thread's slot for rw, or NULL if it has none. */
static inline _Atomic uintptr_t *my_slot(const sp_rwmutex *rw)
{
	uint32_t base = vr_self;
	if (SP_UNLIKELY(base < VR_SIZE)) {
		if (base == VR_NONE || (base = self_assign()) == VR_NONE)
			return NULL;
	}
	return &vr_table[(base + lock_hash(rw)) % VR_SIZE];
}

/* Thread t's slot for the lock with hash h. */
static inline _Atomic uintptr_t *slot_at(uint32_t t, uint32_t h)
{
	return &vr_table[(VR_SIZE + thread_line(t) * VR_COLS + h) % VR_SIZE];
}

/* How many slots hold rw (phantoms and transient ones included). */
static int32_t count_slots(sp_rwmutex *rw)
{
	uint32_t h = lock_hash(rw), hw = atomic_load_explicit(&vr_hw, memory_order_seq_cst);
	int32_t n = 0;
	for (uint32_t t = 0; t < hw; t++)
		n += atomic_load_explicit(slot_at(t, h), memory_order_seq_cst) == (uintptr_t)rw;
	return n;
}

/* ---------------------------------------------------------------- waking */

/*
 * Both futex words below carry a SLEEPING bit, set by a thread just before
 * it parks and cleared by the thread that wakes it, so that a release with
 * nobody asleep costs no system call.
 */
#define SLEEPING 0x80000000u

/*
 * rsem: a count of wake-up tokens for readers blocked by a writer.  Takes
 * one, sleeping until one is posted.
 */
static void sema_acquire(_Atomic uint32_t *sema)
{
	for (;;) {
		uint32_t v = atomic_load_explicit(sema, memory_order_relaxed);
		while ((v & ~SLEEPING) != 0) {
			if (atomic_compare_exchange_weak_explicit(sema, &v, v - 1, memory_order_acquire,
								  memory_order_relaxed))
				return;
		}
		if (v == 0 && sp_spin_while_eq(sema, 0))
			continue;
		if (v == 0 && !atomic_compare_exchange_strong_explicit(sema, &v, SLEEPING, memory_order_relaxed,
								       memory_order_relaxed))
			continue;
		sp_park_wait(sema, SLEEPING, -1);
	}
}

/* Posts n tokens; wakes the sleepers if there are any (all: we cleared their bit). */
static void sema_release(_Atomic uint32_t *sema, uint32_t n)
{
	uint32_t v = atomic_load_explicit(sema, memory_order_relaxed);
	while (!atomic_compare_exchange_weak_explicit(sema, &v, (v + n) & ~SLEEPING, memory_order_release,
						      memory_order_relaxed))
		;
	if (v & SLEEPING)
		sp_park_wake_all(sema);
}

/*
 * drain: an epoch a leaving reader moves while a writer waits, so the writer
 * looks again.  Only the writer holding w_ sleeps on it.
 */
static __attribute__((noinline)) void wake_writer(sp_rwmutex *rw)
{
	_Atomic uint32_t *d = drain_of(rw);
	uint32_t v = atomic_load_explicit(d, memory_order_relaxed);
	while (!atomic_compare_exchange_weak_explicit(d, &v, (v + 1) & ~SLEEPING, memory_order_seq_cst,
						      memory_order_relaxed))
		;
	if (v & SLEEPING)
		sp_park_wake_one(d);
}

/* The writer sleeps until the epoch moves from e (or the deadline). */
static void writer_sleep(sp_rwmutex *rw, uint32_t e, int64_t deadline)
{
	_Atomic uint32_t *d = drain_of(rw);
	if (!(e & SLEEPING) &&
	    !atomic_compare_exchange_strong_explicit(d, &e, e | SLEEPING, memory_order_seq_cst, memory_order_relaxed))
		return; /* moved already */
	sp_park_wait(d, e | SLEEPING, deadline);
}

/* ---------------------------------------------------------------- bias */

/*
 * The clock for the inhibit window: the TSC where there is one (about 10 ns,
 * against 25 for clock_gettime; only differences and comparisons of its
 * values are used), else CLOCK_MONOTONIC.
 */
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
static inline int64_t bias_clock(void) { return (int64_t)(__rdtsc() >> 1); }
#else
static inline int64_t bias_clock(void) { return sp_now_ns(); }
#endif

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
	return bias_clock() >= until;
}

/* Turns the bias on unless a writer is there (it would have to be revoked) or a scan. */
static void bias_enable(sp_rwmutex *rw, uint64_t s)
{
	while (!(s & (RBIAS | WRITER | SCAN))) {
		if (atomic_compare_exchange_weak_explicit(state_of(rw), &s, s | RBIAS, memory_order_relaxed,
							  memory_order_relaxed))
			return;
	}
}

/* ---------------------------------------------------------------- read unlock (slow) */

static void request_cleanup(sp_rwmutex *rw);

/*
 * Releases one read lock through the counter: the caller's slot does not
 * hold rw, so the lock was taken through the counter or is a slot on
 * another thread's line (holders goes negative: a phantom).  Misuse is a
 * negative sum of tokens; since other threads' unlocks move the two terms
 * while we look, a negative reading is re-checked before it is fatal.
 */
static __attribute__((noinline)) void runlock_slow(sp_rwmutex *rw)
{
	sp_tsan_release(&rw->drain_);
	_Atomic uint64_t *st = state_of(rw);
	uint64_t s = atomic_fetch_sub_explicit(st, HOLDER, memory_order_seq_cst);
	uint64_t n = s - HOLDER;
	if (SP_UNLIKELY(holders(s) == INT32_MIN))
		sp_fatal("rwmutex", "runlock of unlocked rwmutex");
	if (n & WRITER)
		wake_writer(rw);
	if (SP_LIKELY(holders(n) >= 0))
		return;
	for (int pass = 0;; pass++) {
		s = atomic_load_explicit(st, memory_order_seq_cst);
		if ((s & CLEARING) || holders(s) + count_slots(rw) >= 0)
			break;
		if (pass == 3)
			sp_fatal("rwmutex", "runlock of unlocked rwmutex");
		sched_yield();
	}
	request_cleanup(rw);
}

SP_API void sp_rwmutex_runlock(sp_rwmutex *rw)
{
	_Atomic uintptr_t *slot = my_slot(rw);
	if (SP_LIKELY(slot != NULL) &&
	    SP_LIKELY(atomic_load_explicit(slot, memory_order_relaxed) == (uintptr_t)rw)) {
		/* Only this thread empties its slot while a read lock is held. */
		atomic_store_explicit(slot, 0, memory_order_release);
		/*
		 * A writer revoking the bias may be waiting (if we miss it, it
		 * polls); phantoms may be left to clear (holders < 0: the sign
		 * bit of the word).
		 */
		uint64_t s = atomic_load_explicit(state_of(rw), memory_order_relaxed);
		if (SP_UNLIKELY((s & WRITER) || (int64_t)s < 0)) {
			if (s & WRITER)
				wake_writer(rw);
			else
				request_cleanup(rw);
		}
		return;
	}
	runlock_slow(rw);
}

/* ---------------------------------------------------------------- read lock */

/*
 * The bias was revoked between our slot CAS and the re-check: back out.  If
 * a writer clearing phantoms took our transient slot meanwhile (it added
 * one to holders for it), give that unit back.
 */
static __attribute__((noinline)) void fast_backout(sp_rwmutex *rw, _Atomic uintptr_t *slot, uint64_t s)
{
	uintptr_t expect = (uintptr_t)rw;
	if (atomic_compare_exchange_strong_explicit(slot, &expect, 0, memory_order_seq_cst,
						    memory_order_relaxed)) {
		if (s & WRITER)
			wake_writer(rw); /* it may be waiting for this slot */
		/*
		 * A scanner may have counted our slot as a read lock held and
		 * left the phantoms alone: look again (after our CAS).
		 */
		if ((int64_t)atomic_load_explicit(state_of(rw), memory_order_seq_cst) < 0)
			request_cleanup(rw);
	} else {
		runlock_slow(rw);
	}
}

/*
 * The BRAVO fast path: publish rw in the caller's slot, then check that the
 * bias is still on.  The re-check is also the acquire that orders us after
 * the last writer: RBIAS was set by an RMW in the release sequence of that
 * writer's unlock.  Returns false to go through the counter.
 */
static inline bool fast_rlock(sp_rwmutex *rw)
{
	if (!(atomic_load_explicit(state_of(rw), memory_order_relaxed) & RBIAS))
		return false;
	_Atomic uintptr_t *slot = my_slot(rw);
	if (SP_UNLIKELY(slot == NULL))
		return false;
	uintptr_t expect = 0;
	if (!atomic_compare_exchange_strong_explicit(slot, &expect, (uintptr_t)rw, memory_order_seq_cst,
						     memory_order_relaxed))
		return false; /* slot in use (another lock, or this one already) */
	uint64_t s = atomic_load_explicit(state_of(rw), memory_order_seq_cst);
	if (SP_LIKELY(s & RBIAS))
		return true;
	fast_backout(rw, slot, s);
	return false;
}

/*
 * Waits while a scan (never blocking, a few hundred ns) is under way and no
 * writer is there; returns the state then seen.
 */
static __attribute__((noinline)) uint64_t scan_wait(sp_rwmutex *rw)
{
	for (unsigned i = 0;; i++) {
		uint64_t s = atomic_load_explicit(state_of(rw), memory_order_relaxed);
		if (!(s & SCAN) || (s & WRITER))
			return s;
		if (i < 256)
			sp_cpu_relax();
		else
			sched_yield(); /* the scanner was preempted */
	}
}

/*
 * Enters through the counter if no writer is there (waiting out a scan);
 * else returns the state seen.
 */
static bool counter_tryrlock(sp_rwmutex *rw, uint64_t *sp)
{
	uint64_t s = atomic_load_explicit(state_of(rw), memory_order_relaxed);
	while (!(s & WRITER)) {
		if (SP_UNLIKELY(s & SCAN)) {
			s = scan_wait(rw);
			continue;
		}
		uint64_t n = add_holders(s, 1);
		if (atomic_compare_exchange_weak_explicit(state_of(rw), &s, n, memory_order_acquire,
							  memory_order_relaxed)) {
			if (!(n & RBIAS) && bias_allowed(rw))
				bias_enable(rw, n);
			*sp = n;
			return true;
		}
	}
	*sp = s;
	return false;
}

/*
 * Through the counter: one atomic add.  If a writer is there the unit was
 * taken speculatively; trade it for a place among the blocked readers (and
 * tell the writer, which may be counting it) unless the writer has left.
 */
static __attribute__((noinline)) void rlock_slow(sp_rwmutex *rw)
{
	_Atomic uint64_t *st = state_of(rw);
	uint64_t s = atomic_fetch_add_explicit(st, HOLDER, memory_order_acquire) + HOLDER;
	if (SP_LIKELY(!(s & (WRITER | SCAN)))) {
		if (!(s & RBIAS) && bias_allowed(rw))
			bias_enable(rw, s);
		sp_tsan_acquire(&rw->state_);
		return;
	}
	for (;;) {
		if (!(s & (WRITER | SCAN))) {
			/* The writer or scan left: the unit is ours after all; acquire its unlock. */
			(void)atomic_load_explicit(st, memory_order_acquire);
			sp_tsan_acquire(&rw->state_);
			return;
		}
		if (s & WRITER) {
			if (atomic_compare_exchange_weak_explicit(st, &s, add_holders(s, -1) + BLOCKED,
								  memory_order_acquire, memory_order_relaxed))
				break;
			continue;
		}
		/*
		 * A scan: give the unit back and wait for the scan to end.  The
		 * scanner may have seen the unit as a read lock held: if phantoms
		 * may be left, make it look again.
		 */
		uint64_t n = add_holders(s, -1);
		if (holders(n) < 0)
			n |= PENDING;
		if (atomic_compare_exchange_weak_explicit(st, &s, n, memory_order_seq_cst, memory_order_relaxed)) {
			s = scan_wait(rw);
			s = atomic_fetch_add_explicit(st, HOLDER, memory_order_acquire) + HOLDER;
			if (!(s & (WRITER | SCAN)) && !(s & RBIAS) && bias_allowed(rw))
				bias_enable(rw, s);
		}
	}
	wake_writer(rw);
	/* The writer's unlock turns us into a holder and posts our token. */
	sema_acquire(rsem_of(rw));
	sp_tsan_acquire(&rw->state_);
}

SP_API void sp_rwmutex_rlock(sp_rwmutex *rw)
{
	if (SP_LIKELY(fast_rlock(rw)))
		return;
	rlock_slow(rw);
}

/*
 * The inline read fast path's ways out (syncpool/rwmutex.h): what
 * fast_rlock and the runlock below do after the same steps.
 */
SP_API void sp_rwmutex_rlock_backout_(sp_rwmutex *rw, uintptr_t *slot, uint64_t s)
{
	fast_backout(rw, (_Atomic uintptr_t *)slot, s);
	rlock_slow(rw);
}

SP_API void sp_rwmutex_runlock_slow_(sp_rwmutex *rw, uint64_t s)
{
	if (s & WRITER)
		wake_writer(rw);
	else
		request_cleanup(rw);
}

static __attribute__((noinline)) bool tryrlock_slow(sp_rwmutex *rw)
{
	uint64_t s;
	if (!counter_tryrlock(rw, &s))
		return false;
	sp_tsan_acquire(&rw->state_);
	return true;
}

SP_API bool sp_rwmutex_tryrlock(sp_rwmutex *rw)
{
	if (SP_LIKELY(fast_rlock(rw)))
		return true;
	return tryrlock_slow(rw);
}

/* ---------------------------------------------------------------- write lock */

/*
 * ThreadSanitizer hooks (sp_tsan_*), for a user's TSan build linking this
 * uninstrumented library: a writer's unlock releases on state_, which read
 * and write locks acquire; a read unlock releases on drain_, which only
 * write locks acquire (readers do not synchronize with each other).  Under
 * a user's TSan every read goes through the counter path (self_assign), where
 * the read hooks are; the table fast path carries none.
 */

/*
 * Read locks still held, seen by a writer (WRITER set): holders plus the
 * slots holding rw when the bias was on.  While WRITER is set, slots only
 * empty (a transient one appears only to back out, and counts as held while
 * visible) and holders only falls (a reader's speculative unit is extra, and
 * taken back), so the reading is never below the truth: 0 means none held.
 */
static int32_t readers_left(sp_rwmutex *rw, bool table, int32_t *slots)
{
	*slots = table ? count_slots(rw) : 0;
	return holders(atomic_load_explicit(state_of(rw), memory_order_seq_cst)) + *slots;
}

/* Adds d to holders and sets or clears CLEARING. */
static void adjust_holders(sp_rwmutex *rw, int32_t d, bool clearing)
{
	_Atomic uint64_t *st = state_of(rw);
	uint64_t s = atomic_load_explicit(st, memory_order_relaxed);
	uint64_t n;
	do {
		n = add_holders(s, d);
		n = clearing ? n | CLEARING : n & ~CLEARING;
	} while (!atomic_compare_exchange_weak_explicit(st, &s, n, memory_order_relaxed, memory_order_relaxed));
}

/*
 * With no read lock held, the slots still holding rw are phantoms (their
 * read locks were released by other threads, into holders): empty them and
 * give the units back to holders.  A transient slot (a reader about to back
 * out) may be emptied too; that reader then takes the unit back itself.  The
 * units are added first, under CLEARING, so that holders never reads lower
 * than the truth meanwhile (runlock's misuse check trusts it otherwise).
 */
static void clear_phantoms(sp_rwmutex *rw)
{
	int32_t k = count_slots(rw);
	if (k == 0)
		return;
	adjust_holders(rw, k, true);
	uint32_t h = lock_hash(rw), hw = atomic_load_explicit(&vr_hw, memory_order_seq_cst);
	int32_t cleared = 0;
	for (uint32_t t = 0; t < hw; t++) {
		_Atomic uintptr_t *slot = slot_at(t, h);
		uintptr_t v = (uintptr_t)rw;
		if (atomic_load_explicit(slot, memory_order_relaxed) == v &&
		    atomic_compare_exchange_strong_explicit(slot, &v, 0, memory_order_relaxed, memory_order_relaxed))
			cleared++;
	}
	adjust_holders(rw, cleared - k, false);
}

/*
 * Waits, WRITER set, until no read lock is held and no scan is under way
 * (a scanner that sees WRITER as it leaves wakes us).
 */
static void wait_readers(sp_rwmutex *rw, bool table)
{
	int64_t backoff = 20000; /* ns, doubling to 1 ms */
	int spins = 0;
	int32_t slots;
	for (;;) {
		uint32_t e = atomic_load_explicit(drain_of(rw), memory_order_seq_cst);
		slots = table ? count_slots(rw) : 0;
		uint64_t s = atomic_load_explicit(state_of(rw), memory_order_seq_cst);
		if (holders(s) + slots <= 0 && !(s & SCAN))
			break;
		if (spins < 4) {
			spins++;
			if (sp_spin_while_eq(drain_of(rw), e))
				continue;
		}
		if (slots == 0 && !(s & SCAN)) {
			/* Only counter holders left: their unlocks wake us reliably. */
			writer_sleep(rw, e, -1);
		} else {
			writer_sleep(rw, e, sp_now_ns() + backoff);
			backoff = backoff < 1000000 ? backoff * 2 : backoff;
		}
	}
	if (slots != 0)
		clear_phantoms(rw);
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
		int64_t t0 = bias_clock();
		wait_readers(rw, true);
		int64_t t1 = bias_clock();
		atomic_store_explicit(inhibit_of(rw), t1 + INHIBIT_FACTOR * (t1 - t0) + 1, memory_order_relaxed);
	} else if ((s & SCAN) || holders(s) != 0) {
		/* A scanner turned the bias off for a moment; phantoms (holders < 0) live in the table. */
		wait_readers(rw, (s & SCAN) || holders(s) < 0);
	}
	/*
	 * What the readers did happens before us: we read their releases (the
	 * slot stores, the holders CAS) with seq_cst loads, or with the CAS.
	 */
	sp_tsan_acquire(&rw->state_);
	sp_tsan_acquire(&rw->drain_);
}

/* Clears WRITER, turns blocked readers into holders and wakes them; sets `bias` bits. */
static void release_writer(sp_rwmutex *rw, uint64_t bias)
{
	_Atomic uint64_t *st = state_of(rw);
	uint64_t s = atomic_load_explicit(st, memory_order_relaxed);
	uint64_t n;
	for (;;) {
		if (SP_UNLIKELY(!(s & WRITER)))
			sp_fatal("rwmutex", "unlock of unlocked rwmutex");
		n = blocked(s);
		uint64_t ns = add_holders(s & ~(WRITER | BLOCKED_MASK), (int32_t)n) | bias;
		if (atomic_compare_exchange_weak_explicit(st, &s, ns, memory_order_release, memory_order_relaxed))
			break;
	}
	if (n != 0)
		sema_release(rsem_of(rw), (uint32_t)n);
	sp_mutex_unlock(&rw->w_);
}

/*
 * Under SCAN: with no read lock held, clears the phantoms.  Returns whether
 * the lock was seen idle.
 */
static bool scan_clear(sp_rwmutex *rw)
{
	int32_t slots;
	if (readers_left(rw, true, &slots) > 0)
		return false;
	if (slots != 0)
		clear_phantoms(rw);
	return true;
}

/*
 * Ends a scan: scans again while PENDING asks for it (and no writer, which
 * clears phantoms itself, has come), then clears SCAN, restoring the bias if
 * it was on and no writer waits (which is woken).
 */
static void scan_finish(sp_rwmutex *rw, uint64_t bias)
{
	_Atomic uint64_t *st = state_of(rw);
	uint64_t s = atomic_load_explicit(st, memory_order_relaxed);
	for (;;) {
		uint64_t n;
		bool again = (s & PENDING) && !(s & WRITER);
		if (again)
			n = s & ~PENDING;
		else
			n = (s & ~(SCAN | PENDING)) | ((s & WRITER) ? 0 : bias);
		if (!atomic_compare_exchange_weak_explicit(st, &s, n, memory_order_seq_cst, memory_order_relaxed))
			continue;
		if (!again) {
			if (s & WRITER)
				wake_writer(rw);
			return;
		}
		(void)scan_clear(rw);
		s = atomic_load_explicit(st, memory_order_relaxed);
	}
}

/*
 * Phantoms may be left behind with nobody writing: a table read lock was
 * released by another thread (holders < 0), or a scanner counted a reader
 * that then backed out.  Called after every such release; clears them at
 * once if the lock is idle (so that an unlocked rwmutex leaves nothing in
 * the table and may be freed and its memory reused).  A writer clears them
 * itself; a scan under way is told to look again (PENDING).  A reader whose
 * plain-store unlock is still in flight can make us see it as held: look
 * again a few times.  If a read lock really is held, its unlock comes back
 * here.
 */
static __attribute__((noinline)) void request_cleanup(sp_rwmutex *rw)
{
	_Atomic uint64_t *st = state_of(rw);
	for (int attempt = 0; attempt < 4; attempt++) {
		uint64_t s = atomic_load_explicit(st, memory_order_relaxed);
		for (;;) {
			if ((s & WRITER) || holders(s) >= 0)
				return;
			uint64_t n = (s & SCAN) ? s | PENDING : (s | SCAN) & ~RBIAS;
			if (atomic_compare_exchange_weak_explicit(st, &s, n, memory_order_seq_cst, memory_order_relaxed))
				break;
		}
		if (!(s & SCAN)) {
			bool idle = scan_clear(rw);
			scan_finish(rw, s & RBIAS);
			if (idle)
				return;
		} /* else the scanner looks again (PENDING); we look too, later */
		for (int i = 0; i < 64 << attempt; i++)
			sp_cpu_relax();
	}
}

SP_API bool sp_rwmutex_trylock(sp_rwmutex *rw)
{
	if (!sp_mutex_trylock(&rw->w_))
		return false;
	_Atomic uint64_t *st = state_of(rw);
	uint64_t s = atomic_load_explicit(st, memory_order_relaxed);
	uint64_t n;
	for (;;) {
		if (SP_UNLIKELY(s & WRITER)) { /* only set by the holder of w_: misuse */
			sp_mutex_unlock(&rw->w_);
			return false;
		}
		if (s & SCAN) { /* a phantom cleanup, a few hundred ns */
			s = scan_wait(rw);
			continue;
		}
		if (holders(s) > 0) { /* a read lock is held through the counter */
			sp_mutex_unlock(&rw->w_);
			return false;
		}
		/*
		 * Readers may be in the table (bias on) or phantoms (holders <
		 * 0): probe under SCAN, so that readers arriving meanwhile wait
		 * for the probe instead of failing.
		 */
		bool probe = (s & RBIAS) || holders(s) < 0;
		n = probe ? (s | SCAN) & ~RBIAS : s | WRITER;
		if (atomic_compare_exchange_weak_explicit(st, &s, n, memory_order_seq_cst, memory_order_relaxed))
			break;
	}
	if (n & SCAN) {
		if (!scan_clear(rw)) {
			/* Readers are in: undo, leaving the bias as it was. */
			scan_finish(rw, s & RBIAS);
			sp_mutex_unlock(&rw->w_);
			return false;
		}
		/* Idle and cleared: the scan becomes the write lock. */
		s = atomic_load_explicit(st, memory_order_relaxed);
		while (!atomic_compare_exchange_weak_explicit(st, &s, (s & ~(SCAN | PENDING)) | WRITER,
							      memory_order_seq_cst, memory_order_relaxed))
			;
	}
	sp_tsan_acquire(&rw->state_);
	sp_tsan_acquire(&rw->drain_);
	return true;
}

SP_API void sp_rwmutex_unlock(sp_rwmutex *rw)
{
	sp_tsan_release(&rw->state_);
	release_writer(rw, 0);
}
