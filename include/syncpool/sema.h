/*
 * syncpool/sema.h - a weighted semaphore (golang.org/x/sync/semaphore.Weighted).
 *
 * A semaphore of a given size hands out weight: acquire(n) waits until n
 * units are free and takes them, release(n) gives them back.  Waiters are
 * served strictly in arrival order (FIFO): a large request at the head of
 * the queue blocks smaller ones behind it, so large requests never starve,
 * and neither acquire nor try_acquire takes weight past a non-empty queue.
 * A typical use bounds concurrent work by its cost:
 *
 *	sp_sema mem;                          // 1 GiB of buffers in flight
 *	sp_sema_init(&mem, 1 << 30);
 *	...
 *	int err = sp_sema_acquire(&mem, job_bytes, ctx);
 *	if (err)                              // ctx done first: nothing held
 *		return err;
 *	run(job);
 *	sp_sema_release(&mem, job_bytes);
 *
 * Design: the held weight and a "waiters queued" flag share one 64-bit
 * word, so an uncontended acquire or release is one atomic step with no
 * lock.  Once anybody waits, every acquire queues behind them and every
 * release takes a small internal lock and hands freed weight straight to
 * the waiters at the head (tokio's batch semaphore): a woken waiter already
 * owns its weight and never competes for it again.  Waiting ends in a futex
 * park; the context is watched through the library's one context-wait
 * mechanism, so a cancelled waiter wakes at once.
 *
 * Ordering: a release happens before the acquire that obtains (some of) the
 * weight it released, as an unlock before a lock.
 */
#ifndef SYNCPOOL_SEMA_H
#define SYNCPOOL_SEMA_H

#include <stdbool.h>
#include <stdint.h>

#include "syncpool/ctx.h"

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

/*
 * The semaphore.  Fields are private (accessed atomically by the library;
 * plain integers here so the header is valid C++).  Initialise with
 * sp_sema_init; it must not be copied or moved after that.  The hot word is
 * written by every acquire and release: put a semaphore shared by many
 * threads on its own cache line if its neighbours are hot too.
 */
typedef struct sp_sema {
	uint64_t state_;   /* held weight | bit 63: waiters are queued        */
	int64_t size_;     /* total weight, fixed at init                     */
	uint32_t lock_;    /* internal lock over the waiter queue             */
	uint32_t spare_;
	void *head_;       /* FIFO of waiters (nodes on the waiters' stacks)  */
	void *tail_;
} sp_sema;

/*
 * Prepares s with `size` units of weight, none held.  Returns 0, or EINVAL
 * if size < 0 (s is then unchanged).  Not thread-safe with other uses of s.
 */
int sp_sema_init(sp_sema *s, int64_t size);

/*
 * Ends the use of s.  Weight still held is not an error.  Fatal ("destroyed
 * with waiters") if a thread is still waiting in sp_sema_acquire.  s may be
 * destroyed and freed as soon as no thread waits in it - also by a waiter
 * whose acquire just returned while the release that let it through is
 * still returning: a release touches s only while waiters keep it alive.
 */
void sp_sema_destroy(sp_sema *s);

/*
 * Acquires n units, waiting (parked) until they are free and every earlier
 * waiter has been served, or until ctx (NULL: never done) is done.
 * Returns 0 with n held; otherwise nothing is held and it returns:
 *   EINVAL     n < 0, or n > size (it could never be satisfied; Go's
 *              Acquire would block until ctx is done instead);
 *   ECANCELED / ETIMEDOUT  ctx's error: ctx was already done on entry -
 *              even if the weight was free (Go issue 63615) - or became
 *              done while waiting.  A waiter granted its weight at the
 *              moment its context ended gives the weight back (waking those
 *              it now lets through) and returns the error.
 * A waiter that gives up at the head of the queue wakes the waiters behind
 * it that now fit.  acquire(0) succeeds at once unless waiters are queued.
 * Synchronizes with the releases whose weight it obtains.  Blocks.
 */
int sp_sema_acquire(sp_sema *s, int64_t n, sp_ctx *ctx);

/*
 * Acquires n units only if that needs no wait: true when n are free and no
 * waiter is queued (it never barges past a waiter), false otherwise -
 * including n < 0 or n > size.  Never blocks.
 */
bool sp_sema_try_acquire(sp_sema *s, int64_t n);

/*
 * Releases n units, handing them to the waiters at the head of the queue
 * that they let through and waking those.  Any thread may release weight
 * acquired by another.  Fatal ("released more than held") if n exceeds the
 * weight held, or n < 0.  Never blocks beyond the short internal lock.
 */
void sp_sema_release(sp_sema *s, int64_t n);

/*
 * The uncontended acquire (no context) and release, inlined: a CAS each,
 * as in the exported functions, without the calls.  Anything else (a
 * context, waiters, n out of range, misuse) goes to the exported functions
 * or the private sp_sema_release_contended_.  `(sp_sema_acquire)(...)`
 * and `&sp_sema_acquire` reach the exported functions, which behave the
 * same; SP_SEMA_NO_INLINE turns the macros off.  Under ThreadSanitizer these
 * atomics are compiled into the user's program and so seen by it - provided
 * that translation unit is instrumented (in a TSan program, build a file
 * that is not with SP_SEMA_NO_INLINE; see mutex.h).
 */
void sp_sema_release_contended_(sp_sema *s, int64_t n, uint64_t seen_state);

static inline int sp_sema_acquire_inline_(sp_sema *s, int64_t n, sp_ctx *ctx)
{
	if (!ctx && n >= 0) {
		uint64_t st = __atomic_load_n(&s->state_, __ATOMIC_RELAXED);
		/* No waiter queued (bit 63) and n fits: take it, else queue. */
		if (__builtin_expect(!(st >> 63) && n <= s->size_ - (int64_t)st, 1) &&
		    __builtin_expect(__atomic_compare_exchange_n(&s->state_, &st, st + (uint64_t)n, 1,
								 __ATOMIC_ACQUIRE, __ATOMIC_RELAXED),
				     1))
			return 0;
	}
	return (sp_sema_acquire)(s, n, ctx);
}

static inline void sp_sema_release_inline_(sp_sema *s, int64_t n)
{
	if (__builtin_expect(n < 0, 0)) {
		(sp_sema_release)(s, n); /* fatal */
		return;
	}
	uint64_t st = __atomic_load_n(&s->state_, __ATOMIC_RELAXED);
	/* No waiter queued (bit 63) and n held: give it back; else the library. */
	if (__builtin_expect(!(st >> 63) && st >= (uint64_t)n, 1) &&
	    __builtin_expect(__atomic_compare_exchange_n(&s->state_, &st, st - (uint64_t)n, 1,
							 __ATOMIC_RELEASE, __ATOMIC_RELAXED),
			     1))
		return;
	sp_sema_release_contended_(s, n, st);
}

#if !defined(SP_BUILDING_LIBRARY_) && !defined(SP_SEMA_NO_INLINE)
#define sp_sema_acquire(s, n, ctx) sp_sema_acquire_inline_((s), (n), (ctx))
#define sp_sema_release(s, n) sp_sema_release_inline_((s), (n))
#endif

#if defined(__cplusplus) && defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* SYNCPOOL_SEMA_H */
