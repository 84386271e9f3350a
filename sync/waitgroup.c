/*
 * sync/waitgroup.c - Go's sync.WaitGroup on one 64-bit word.
 *
 * The state word (see syncpool/waitgroup.h):
 *
 *	 63           32 31                1  0
 *	[ counter (i32) | generation (31 b) | W ]
 *
 * add/done are one fetch_add on the counter half - exactly the cost of the
 * atomic add they replace - and look at the result: nothing more to do while
 * the counter is positive or nobody waits (W clear).  The add that brings
 * the counter to zero with W set releases the round: it replaces the whole
 * word by (0, generation + 1, W = 0) with a CAS and wakes every thread
 * parked on the low half.  A waiter sets W with a CAS that also proves the
 * counter still positive, then sleeps while the low half still holds
 * (generation, W): it returns when the generation moves.  Because the
 * generation lives in the same word as the counter, a waiter cannot register
 * against one round and be woken (or not) by another.  Go's rule still
 * holds: a new round's add must not race the release of the old one (between
 * the decrement that reached zero and its release CAS), which is fatal.
 *
 * The release CAS can only fail if the word changed between the fetch_add
 * that reached zero and the CAS: a concurrent add starting a new round while
 * threads wait on the old one, which Go also reports as misuse.
 */
#include "syncpool/waitgroup.h"

#include <limits.h>
#include <stdatomic.h>

#include "common.h"
#include "park.h"
#include "sanitizer.h"

#define WG_WAITERS ((uint64_t)1)
#define WG_GEN_ONE ((uint64_t)2)
#define WG_LOW_MASK ((uint64_t)0xffffffffu)

static inline _Atomic uint64_t *wg_state(sp_waitgroup *wg)
{
	return (_Atomic uint64_t *)&wg->state_;
}

/* The low 32-bit half of the state word, the futex waiters sleep on. */
static inline _Atomic uint32_t *wg_futex(sp_waitgroup *wg)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	return (_Atomic uint32_t *)(void *)&wg->state_;
#else
	return (_Atomic uint32_t *)(void *)&wg->state_ + 1;
#endif
}

static inline int32_t wg_counter(uint64_t s)
{
	return (int32_t)(uint32_t)(s >> 32);
}

__attribute__((noinline)) static void wg_release(sp_waitgroup *wg, uint64_t s)
{
	/* s: counter 0, W set.  New round: generation + 1, nobody waiting. */
	uint64_t next = ((s & WG_LOW_MASK) & ~WG_WAITERS) + WG_GEN_ONE;
	next &= WG_LOW_MASK; /* the generation wraps within its 31 bits */
	if (!atomic_compare_exchange_strong_explicit(wg_state(wg), &s, next, memory_order_acq_rel,
						     memory_order_relaxed))
		sp_fatal("waitgroup", "add called concurrently with wait");
	sp_park_wake_all(wg_futex(wg));
}

/*
 * Everything after the atomic add that is not the common case; s is the
 * state right after adding delta (unused when delta is out of range: then
 * nothing was added).
 */
SP_API void sp_waitgroup_slow_(sp_waitgroup *wg, int64_t delta, uint64_t s)
{
	if (delta > INT32_MAX || delta < INT32_MIN) {
		if (delta < 0)
			sp_fatal("waitgroup", "negative counter");
		sp_fatal("waitgroup", "counter overflow");
	}
	int64_t v = (int64_t)wg_counter(s - ((uint64_t)delta << 32)) + delta; /* exact */
	if (v < 0)
		sp_fatal("waitgroup", "negative counter");
	if (v > INT32_MAX)
		sp_fatal("waitgroup", "counter overflow");
	if ((s & WG_WAITERS) && delta > 0 && v == delta)
		sp_fatal("waitgroup", "add called concurrently with wait");
	/*
	 * Only the decrement that reached zero releases the round; an add(0)
	 * that merely sees zero with waiters (before that decrement's release
	 * CAS) must not race it.
	 */
	if (v == 0 && delta < 0 && (s & WG_WAITERS))
		wg_release(wg, s);
}

/*
 * The exported add/done: the same inline fast path as the header's.  In a
 * user's TSan build the header's inline copy is instrumented (its atomic add
 * on state_ is a release TSan sees); these copies are not, so they announce
 * the release on the same word themselves.  acq_rel
 * on the add: a done releases the work it finished; the add that reaches
 * zero acquires every earlier done before releasing the waiters.
 */
SP_API void(sp_waitgroup_add)(sp_waitgroup *wg, int64_t delta)
{
	sp_tsan_release(&wg->state_);
	sp_waitgroup_add_inline_(wg, delta);
}

SP_API void(sp_waitgroup_done)(sp_waitgroup *wg)
{
	sp_tsan_release(&wg->state_);
	sp_waitgroup_add_inline_(wg, -1);
}

SP_API void sp_waitgroup_wait(sp_waitgroup *wg)
{
	_Atomic uint64_t *st = wg_state(wg);
	uint64_t s = atomic_load_explicit(st, memory_order_acquire);
	for (;;) {
		if (wg_counter(s) == 0) {
			/* acquire load: synchronizes with the last done */
			sp_tsan_acquire(&wg->state_);
			return;
		}
		if (s & WG_WAITERS)
			break;
		if (atomic_compare_exchange_weak_explicit(st, &s, s | WG_WAITERS, memory_order_acquire,
							  memory_order_acquire)) {
			s |= WG_WAITERS;
			break;
		}
	}
	/* Registered (W set with the counter positive): wait for the round. */
	uint32_t low = (uint32_t)(s & WG_LOW_MASK);
	int spin = sp_spin_limit();
	for (;;) {
		uint64_t now = atomic_load_explicit(st, memory_order_acquire);
		if ((uint32_t)(now & WG_LOW_MASK) != low) {
			/* generation moved: our round was released */
			sp_tsan_acquire(&wg->state_);
			return;
		}
		/* Bounded spin (64-bit loads of the word), then the futex. */
		if (spin > 0) {
			spin -= 8;
			for (int i = 0; i < 8; i++)
				sp_cpu_relax();
			continue;
		}
		sp_park_wait(wg_futex(wg), low, -1);
	}
}
