/*
 * sync/mutex.c - sp_mutex: Go's sync.Mutex on the futex parking layer.
 *
 * The state word (sp_mutex.state_):
 *
 *	bit 0      LOCKED    the mutex is held
 *	bit 1      WOKEN     a thread is awake and about to try for the lock
 *	                     (a spinner or a just-woken waiter): unlock need not
 *	                     wake anybody
 *	bit 2      STARVING  starvation mode: unlock hands the lock to a waiter
 *	bits 3..31 waiters   threads registered to wait in the queue
 *
 * Waiters sleep in a queue outside the mutex (as Go's semaRoot, WebKit's
 * ParkingLot): a global table of buckets hashed by mutex address, each a
 * short internal lock and a FIFO list of waiter nodes that live on the
 * waiters' stacks, each with its own futex word.  Unlock wakes the node at
 * the head; a waiter that was woken but lost the race for the lock requeues
 * at the head (LIFO), so the longest waiter stays first in line.  The sema
 * word (sp_mutex.sema_) counts wake-ups posted while no waiter was queued yet
 * (a waiter registers in the state word before it reaches the queue); it is
 * only touched under the bucket lock.
 *
 * Normal mode (after Go's mutex.go).  Waiters queue and are woken one at a
 * time, but a woken waiter does not own the lock: it competes with threads
 * that just arrived, which are already running and usually win.  That keeps
 * the lock busy (throughput), at the cost of fairness.  Starvation mode: a
 * waiter that fails to get the lock after being blocked for more than 1 ms
 * sets STARVING; from then on unlock leaves the lock "held" (STARVING counts
 * as held) and hands it to the next woken waiter, newcomers do not spin and
 * queue behind.  The waiter that receives the lock returns the mutex to
 * normal mode when it was not itself blocked for more than 1 ms, or when it
 * was the last waiter: starvation mode is slow (every hand-off is a wake-up),
 * so it lasts only as long as someone is actually starving.
 *
 * Fast paths: lock is one CAS 0 -> LOCKED (acquire), unlock one CAS
 * LOCKED -> 0 (release); anything else in the word sends unlock to the slow
 * path, still holding the lock.
 */
#include "syncpool/mutex.h"

#include <stdatomic.h>
#include <stddef.h>

#include "common.h"
#include "ctx_internal.h"
#include "park.h"
#include "sanitizer.h"

#define LOCKED   1u
#define WOKEN    2u
#define STARVING 4u
#define WAITER_SHIFT 3
#define WAITER   (1u << WAITER_SHIFT)

/* A waiter blocked this long switches the mutex to starvation mode (Go's). */
#define STARVATION_NS 1000000

static inline _Atomic uint32_t *state_of(sp_mutex *m)
{
	return (_Atomic uint32_t *)&m->state_;
}

/* ---------------------------------------------------------------- waiter queue */

enum { W_WAITING, W_SLEEPING, W_WOKEN };

struct waiter {
	const sp_mutex *m;
	struct waiter *next;
	_Atomic uint32_t state; /* W_WAITING, W_SLEEPING (parked), W_WOKEN (set by the waker) */
};

/* One bucket per 128-byte line: its lock and list are written by the waiters and wakers of the mutexes hashing here. */
#define NBUCKETS 256
static struct bucket {
	SP_CACHE_ALIGNED sp_ilock lock;
	struct waiter *head, *tail;
} buckets[NBUCKETS];

static inline struct bucket *bucket_of(const sp_mutex *m)
{
	return &buckets[((uint64_t)(uintptr_t)m * UINT64_C(0x9E3779B97F4A7C15)) >> 56];
}

static inline _Atomic uint32_t *sema_of(sp_mutex *m)
{
	return (_Atomic uint32_t *)&m->sema_;
}

/*
 * Sleeps until an unlock wakes us.  lifo: queue at the head (we were woken
 * before and lost the lock).  Takes a wake-up posted before we got here
 * instead of sleeping.
 */
static void queue_wait(sp_mutex *m, bool lifo)
{
	struct bucket *b = bucket_of(m);
	struct waiter w = { m, NULL, W_WAITING };

	sp_ilock_lock(&b->lock);
	uint32_t pending = atomic_load_explicit(sema_of(m), memory_order_relaxed);
	if (pending != 0) {
		atomic_store_explicit(sema_of(m), pending - 1, memory_order_relaxed);
		sp_ilock_unlock(&b->lock);
		return;
	}
	if (lifo) {
		w.next = b->head;
		b->head = &w;
		if (b->tail == NULL)
			b->tail = &w;
	} else {
		if (b->tail != NULL)
			b->tail->next = &w;
		else
			b->head = &w;
		b->tail = &w;
	}
	sp_ilock_unlock(&b->lock);

	/* Spin a little, then say we sleep (so the waker makes the system call) and park. */
	if (sp_spin_while_eq(&w.state, W_WAITING))
		goto woken;
	uint32_t st = W_WAITING;
	if (atomic_compare_exchange_strong_explicit(&w.state, &st, W_SLEEPING, memory_order_relaxed,
						    memory_order_relaxed)) {
		while (atomic_load_explicit(&w.state, memory_order_relaxed) == W_SLEEPING)
			sp_park_wait(&w.state, W_SLEEPING, -1);
	}
woken:
	/* Acquire: pairs with the waker's exchange. */
	(void)atomic_load_explicit(&w.state, memory_order_acquire);
}

/* Wakes the first waiter queued on m, or posts a wake-up for the next one to arrive. */
static void queue_wake_one(sp_mutex *m)
{
	struct bucket *b = bucket_of(m);
	struct waiter *prev = NULL, *w;

	sp_ilock_lock(&b->lock);
	for (w = b->head; w != NULL; prev = w, w = w->next)
		if (w->m == m)
			break;
	if (w == NULL) {
		atomic_store_explicit(sema_of(m), atomic_load_explicit(sema_of(m), memory_order_relaxed) + 1,
				      memory_order_relaxed);
		sp_ilock_unlock(&b->lock);
		return;
	}
	if (prev != NULL)
		prev->next = w->next;
	else
		b->head = w->next;
	if (b->tail == w)
		b->tail = prev;
	sp_ilock_unlock(&b->lock);
	/*
	 * The node lives on the waiter's stack and may be gone as soon as its
	 * state is W_WOKEN: after the exchange only its address is used, by
	 * the futex wake (a wake on a reused address is a harmless spurious
	 * wake-up).
	 */
	_Atomic uint32_t *ws = &w->state;
	if (atomic_exchange_explicit(ws, W_WOKEN, memory_order_release) == W_SLEEPING)
		sp_park_wake_one(ws);
}

/* ---------------------------------------------------------------- lock */

static __attribute__((noinline)) void lock_slow(sp_mutex *m);

/*
 * The sp_tsan_* hooks tell a user's ThreadSanitizer (which cannot see the
 * atomics of an uninstrumented libsyncpool) that unlock releases and lock
 * acquires, on the state word.
 */
SP_API void sp_mutex_lock(sp_mutex *m)
{
	uint32_t old = 0;
	if (SP_UNLIKELY(!atomic_compare_exchange_strong_explicit(state_of(m), &old, LOCKED,
								 memory_order_acquire, memory_order_relaxed)))
		lock_slow(m);
	sp_tsan_acquire(&m->state_); /* a tail call, or nothing */
}

SP_API bool sp_mutex_trylock(sp_mutex *m)
{
	_Atomic uint32_t *st = state_of(m);
	uint32_t old = atomic_load_explicit(st, memory_order_relaxed);
	for (;;) {
		if (old & (LOCKED | STARVING))
			return false;
		/* Free in normal mode: waiters may exist; take it ahead of them, as Go does. */
		if (atomic_compare_exchange_weak_explicit(st, &old, old | LOCKED, memory_order_acquire,
							  memory_order_relaxed)) {
			sp_tsan_acquire(&m->state_);
			return true;
		}
	}
}

static __attribute__((noinline)) void lock_slow(sp_mutex *m)
{
	_Atomic uint32_t *st = state_of(m);
	const int spin_limit = sp_spin_limit();
	int64_t wait_start = 0;
	bool starving = false; /* this thread has been blocked > STARVATION_NS */
	bool awoke = false;    /* this thread owns the WOKEN bit               */
	int spun = 0;
	uint32_t old = atomic_load_explicit(st, memory_order_relaxed);

	for (;;) {
		/*
		 * Spin while the lock is held in normal mode, for a bounded
		 * time: the holder may release it soon.  Setting WOKEN tells
		 * unlock that somebody is awake already, so it wakes no sleeper
		 * (no thundering herd).  No spinning in starvation mode: the
		 * lock goes to a waiter, never to a spinner.
		 */
		if ((old & (LOCKED | STARVING)) == LOCKED && spun < spin_limit) {
			if (!awoke && !(old & WOKEN) && (old >> WAITER_SHIFT) != 0 &&
			    atomic_compare_exchange_weak_explicit(st, &old, old | WOKEN, memory_order_relaxed,
								  memory_order_relaxed))
				awoke = true;
			for (int i = 0; i < 8; i++)
				sp_cpu_relax();
			spun += 8;
			old = atomic_load_explicit(st, memory_order_relaxed);
			continue;
		}
		uint32_t new = old;
		/* Newcomers do not take a starving mutex: it belongs to the waiters. */
		if (!(old & STARVING))
			new |= LOCKED;
		if (old & (LOCKED | STARVING))
			new += WAITER;
		/*
		 * Switch to starvation mode - only while the lock is held:
		 * unlock expects a starving mutex to have waiters.
		 */
		if (starving && (old & LOCKED))
			new |= STARVING;
		if (awoke) {
			/* Woken (or spinning with WOKEN set): give the bit up either way. */
			if (SP_UNLIKELY(!(new & WOKEN)))
				sp_fatal("mutex", "inconsistent mutex state");
			new &= ~WOKEN;
		}
		if (!atomic_compare_exchange_weak_explicit(st, &old, new, memory_order_acquire,
							   memory_order_relaxed))
			continue; /* old reloaded */
		if (!(old & (LOCKED | STARVING)))
			return; /* took it with the CAS */

		/* Registered as a waiter: sleep; a waiter woken before goes first in line. */
		bool lifo = wait_start != 0;
		if (wait_start == 0)
			wait_start = sp_now_ns();
		queue_wait(m, lifo);
		starving = starving || sp_now_ns() - wait_start > STARVATION_NS;
		old = atomic_load_explicit(st, memory_order_relaxed);
		if (old & STARVING) {
			/*
			 * Starvation mode: the unlocker handed the lock to us.
			 * LOCKED is clear and we still count as a waiter: fix
			 * both, and leave starvation mode if we were served
			 * quickly or are the last waiter (otherwise two threads
			 * could hand the lock back and forth in lock-step
			 * forever at wake-up speed).
			 */
			if (SP_UNLIKELY((old & (LOCKED | WOKEN)) || (old >> WAITER_SHIFT) == 0))
				sp_fatal("mutex", "inconsistent mutex state");
			uint32_t delta = LOCKED - WAITER;
			if (!starving || (old >> WAITER_SHIFT) == 1)
				delta -= STARVING;
			atomic_fetch_add_explicit(st, delta, memory_order_acquire);
			return;
		}
		awoke = true;
		spun = 0;
	}
}

/* ---------------------------------------------------------------- unlock */

static __attribute__((noinline)) void unlock_slow(sp_mutex *m, uint32_t old);

/*
 * Unlock releases the lock and decides whom to wake in one atomic step (a
 * CAS), and afterwards never reads or writes the mutex again except to wake
 * a waiter that cannot have left (see unlock_slow): a thread that takes the
 * lock right after the release may unlock it and free its memory while
 * this unlock is still returning (POSIX allows that for pthread mutexes).
 */
static inline void unlock_impl(sp_mutex *m)
{
	uint32_t seen = LOCKED;
	if (SP_UNLIKELY(!atomic_compare_exchange_strong_explicit(state_of(m), &seen, 0, memory_order_release,
								 memory_order_relaxed)))
		unlock_slow(m, seen);
}

/* Out of line, so the release hook costs the fast path no saved registers. */
static __attribute__((noinline, cold)) void unlock_announced(sp_mutex *m)
{
	sp_tsan_release(&m->state_);
	unlock_impl(m);
}

SP_API void sp_mutex_unlock(sp_mutex *m)
{
	if (SP_UNLIKELY(sp_tsan_active()))
		unlock_announced(m);
	else
		unlock_impl(m);
}

/*
 * The inline fast paths' ways out (syncpool/mutex.h).  The inline CASes
 * are compiled in the caller (instrumented under a user's TSan); what the
 * library does here is announced as the exported functions do.  The unlock
 * entry point was renamed when its meaning changed (it now releases the
 * lock itself), so objects built against the old inline unlock fail to link.
 */
SP_API void sp_mutex_lock_slow_(sp_mutex *m)
{
	lock_slow(m);
	sp_tsan_acquire(&m->state_);
}

SP_API void sp_mutex_unlock_contended_(sp_mutex *m, uint32_t seen)
{
	sp_tsan_release(&m->state_); /* the release happens in here */
	unlock_slow(m, seen);
}

/*
 * The word had more than LOCKED in it (or not LOCKED: misuse).  One CAS
 * releases the lock and, when a sleeper must be woken (Go's unlockSlow:
 * waiters, nobody awake, normal mode), takes that waiter off the count and
 * sets WOKEN; in starvation mode it leaves STARVING, which keeps the lock
 * held for the waiter we hand it to.  After the CAS only queue_wake_one()
 * touches the mutex: the waiter we took off the count cannot return from
 * lock until it consumes our wake-up, so the mutex is still alive.  old:
 * the word as the fast path's failed CAS saw it.
 */
static __attribute__((noinline)) void unlock_slow(sp_mutex *m, uint32_t old)
{
	_Atomic uint32_t *st = state_of(m);

	for (;;) {
		if (SP_UNLIKELY(!(old & LOCKED)))
			sp_fatal("mutex", "unlock of unlocked mutex");
		uint32_t new = old - LOCKED;
		bool wake = false;
		if (new & STARVING) {
			/*
			 * Starvation mode: hand the lock to the next waiter.
			 * LOCKED stays clear until that waiter sets it, but
			 * STARVING keeps newcomers out.  The waiter at the head
			 * of the queue is the one that has waited longest
			 * (woken waiters requeue at the head).
			 */
			wake = true;
		} else if ((new >> WAITER_SHIFT) != 0 && !(new & WOKEN)) {
			/* Take one waiter off the count and mark it woken. */
			new = (new - WAITER) | WOKEN;
			wake = true;
		}
		/* else: nobody to wake, or somebody is awake already. */
		if (atomic_compare_exchange_weak_explicit(st, &old, new, memory_order_release,
							  memory_order_relaxed)) {
			if (wake)
				queue_wake_one(m);
			return;
		}
	}
}
