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
 *	bits 3..31 waiters   threads registered to sleep on the sema word
 *
 * The sema word (sp_mutex.sema_) is a counting semaphore of wake-up tokens:
 * unlock posts one and wakes one sleeper; a waiter sleeps until it can take
 * one.  Tokens are interchangeable, so whichever registered waiter takes a
 * token is "the" woken waiter.
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
 * Fast paths: lock is one CAS 0 -> LOCKED (acquire), unlock one atomic
 * subtract of LOCKED (release) that finds the word 0 when nobody waits.
 */
#include "syncpool/mutex.h"

#include <stdatomic.h>

#include "common.h"
#include "park.h"

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

static inline _Atomic uint32_t *sema_of(sp_mutex *m)
{
	return (_Atomic uint32_t *)&m->sema_;
}

/* ---------------------------------------------------------------- tokens */

/* Takes one wake-up token, sleeping until one is posted. */
static void sema_acquire(_Atomic uint32_t *sema)
{
	for (;;) {
		uint32_t v = atomic_load_explicit(sema, memory_order_relaxed);
		while (v != 0) {
			if (atomic_compare_exchange_weak_explicit(sema, &v, v - 1, memory_order_acquire,
								  memory_order_relaxed))
				return;
		}
		/* A token posted right after the load makes the futex return at once. */
		if (!sp_spin_while_eq(sema, 0))
			sp_park_wait(sema, 0, -1);
	}
}

/* Posts one token and wakes one sleeper. */
static void sema_release(_Atomic uint32_t *sema)
{
	atomic_fetch_add_explicit(sema, 1, memory_order_release);
	sp_park_wake_one(sema);
}

/* ---------------------------------------------------------------- lock */

static void lock_slow(sp_mutex *m);

SP_API void sp_mutex_lock(sp_mutex *m)
{
	uint32_t old = 0;
	if (SP_LIKELY(atomic_compare_exchange_strong_explicit(state_of(m), &old, LOCKED,
							      memory_order_acquire, memory_order_relaxed)))
		return;
	lock_slow(m);
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
							  memory_order_relaxed))
			return true;
	}
}

static void lock_slow(sp_mutex *m)
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

		/* Registered as a waiter: sleep for a token. */
		if (wait_start == 0)
			wait_start = sp_now_ns();
		sema_acquire(sema_of(m));
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

static void unlock_slow(sp_mutex *m, uint32_t new);

SP_API void sp_mutex_unlock(sp_mutex *m)
{
	uint32_t new = atomic_fetch_sub_explicit(state_of(m), LOCKED, memory_order_release) - LOCKED;
	if (SP_UNLIKELY(new != 0))
		unlock_slow(m, new);
}

static void unlock_slow(sp_mutex *m, uint32_t new)
{
	_Atomic uint32_t *st = state_of(m);

	if (SP_UNLIKELY(!((new + LOCKED) & LOCKED))) {
		/* Undo the subtraction so a handler sees the old word, then die. */
		atomic_fetch_add_explicit(st, LOCKED, memory_order_relaxed);
		sp_fatal("mutex", "unlock of unlocked mutex");
	}
	if (!(new & STARVING)) {
		uint32_t old = new;
		for (;;) {
			/*
			 * Nobody to wake, or somebody is already awake / took
			 * the lock / the lock is being handed off: done.
			 */
			if ((old >> WAITER_SHIFT) == 0 || (old & (LOCKED | WOKEN | STARVING)))
				return;
			/* Take one waiter off the count and mark it woken. */
			uint32_t n = (old - WAITER) | WOKEN;
			if (atomic_compare_exchange_weak_explicit(st, &old, n, memory_order_relaxed,
								  memory_order_relaxed)) {
				sema_release(sema_of(m));
				return;
			}
		}
	}
	/*
	 * Starvation mode: hand the lock to the next waiter.  LOCKED stays
	 * clear until that waiter sets it, but STARVING keeps newcomers out.
	 */
	sema_release(sema_of(m));
}
