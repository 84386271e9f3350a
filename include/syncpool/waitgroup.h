/*
 * syncpool/waitgroup.h - wait for a collection of threads to finish (Go's
 * sync.WaitGroup).
 *
 * A WaitGroup holds a counter.  sp_waitgroup_add(wg, n) before starting n
 * pieces of work, sp_waitgroup_done(wg) as each finishes, and
 * sp_waitgroup_wait(wg) blocks until the counter is zero.
 *
 *	sp_waitgroup wg = SP_WAITGROUP_INIT;
 *	for (int i = 0; i < n; i++) { sp_waitgroup_add(&wg, 1); start(work, &wg); }
 *	sp_waitgroup_wait(&wg);        // every work item has called done
 *
 * The zero value is an empty group, ready to use (static, {0}, calloc or
 * SP_WAITGROUP_INIT).  A WaitGroup must not be copied after first use.
 *
 * Memory ordering: every sp_waitgroup_done (and every add with a negative
 * delta) happens before the return of any sp_waitgroup_wait it unblocks.
 *
 * Reuse: once a Wait has returned, the group may be used again for a new set
 * of work (as a reusable barrier).  As in Go, an add with a positive delta
 * that starts a new round (counter 0 -> positive) must happen before the
 * corresponding Wait, not concurrently with Waits of the previous round; the
 * library detects the cheap cases and reports them as fatal misuse.
 *
 * Layout (fixed ABI, 8 bytes, 8-byte aligned): one 64-bit state word,
 *	bits 63..32  the counter, a signed 32-bit value;
 *	bits 31..1   the generation, bumped each time Wait-ers are released;
 *	bit  0       set while at least one thread waits.
 * The low 32-bit half is also the futex word the waiters sleep on (a waiter
 * sleeps until the generation changes), so "counter reached zero" and "wake
 * the waiters of this round" are one atomic step and a late waiter can never
 * confuse two rounds.
 */
#ifndef SYNCPOOL_WAITGROUP_H
#define SYNCPOOL_WAITGROUP_H

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

typedef struct sp_waitgroup {
	/* private: counter << 32 | generation << 1 | waiters; see above */
	uint64_t state_ __attribute__((aligned(8)));
} sp_waitgroup;

/* The zero value: an empty group. */
#define SP_WAITGROUP_INIT { 0 }

/*
 * Adds delta (which may be negative) to the counter.  When the counter
 * reaches zero every thread blocked in sp_waitgroup_wait is released.
 * Never blocks.  Fatal ("syncpool: fatal: waitgroup: negative counter") if
 * the counter would go below zero; fatal if it would exceed INT32_MAX
 * ("counter overflow"); fatal ("add called concurrently with wait") when a
 * positive add starts a new round while threads still wait on the old one.
 */
void sp_waitgroup_add(sp_waitgroup *wg, int64_t delta);

/* sp_waitgroup_add(wg, -1).  Fatal if the counter would go negative. */
void sp_waitgroup_done(sp_waitgroup *wg);

/*
 * The fast path of add/done, inlined: one atomic add and a test, exactly
 * what a hand-rolled counter costs.  Anything else (counter reaching zero
 * with waiters, misuse, a delta outside 32 bits) goes to
 * sp_waitgroup_slow_(), which is private.  `(sp_waitgroup_add)(wg, n)` and
 * `&sp_waitgroup_add` reach the exported functions, which behave the same;
 * SP_WAITGROUP_NO_INLINE turns the macros off.  Under ThreadSanitizer this
 * add is compiled in the user's program and so instrumented: its release on
 * state_ pairs with the library's acquire annotation on the same word when
 * sp_waitgroup_wait returns - provided the translation unit is
 * instrumented: in a TSan program, build a file that is not with
 * SP_WAITGROUP_NO_INLINE, or TSan will report races on what its done()
 * published.
 */
void sp_waitgroup_slow_(sp_waitgroup *wg, int64_t delta, uint64_t state);

static inline void sp_waitgroup_add_inline_(sp_waitgroup *wg, int64_t delta)
{
	if (__builtin_expect(delta > INT32_MAX || delta < INT32_MIN, 0)) {
		sp_waitgroup_slow_(wg, delta, 0);
		return;
	}
	uint64_t d = (uint64_t)delta << 32;
	uint64_t s = __atomic_add_fetch(&wg->state_, d, __ATOMIC_ACQ_REL);
	/*
	 * Done unless the counter is now negative (below zero, or wrapped past
	 * INT32_MAX: the true value lies in [INT32_MIN, 2 * INT32_MAX], so it
	 * reads as zero only when it is zero) or someone waits (bit 0).  A
	 * counter reaching zero with nobody waiting has nothing to do.
	 */
	if (__builtin_expect((int32_t)(uint32_t)(s >> 32) < 0 || (s & 1), 0))
		sp_waitgroup_slow_(wg, delta, s);
}
#ifndef SP_WAITGROUP_NO_INLINE
#define sp_waitgroup_add(wg, delta) sp_waitgroup_add_inline_((wg), (delta))
#define sp_waitgroup_done(wg) sp_waitgroup_add_inline_((wg), -1)
#endif

/*
 * Blocks until the counter is zero; returns at once if it already is.
 * Parks (futex) rather than spinning; any number of threads may wait.
 * Synchronizes with every done/add that brought the counter to zero.
 */
void sp_waitgroup_wait(sp_waitgroup *wg);

#if defined(__cplusplus) && defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* SYNCPOOL_WAITGROUP_H */
