/*
 * sync/sema.c - the weighted semaphore (x/sync semaphore.Weighted) on the
 * parking layer.  See include/syncpool/sema.h for the contract.
 *
 * State word (64 bits, s->state_):
 *
 *	bit 63      WAITERS: the queue is non-empty (set and cleared under the
 *	            lock, together with the queue)
 *	bits 0..62  cur: weight held, or handed to granted waiters
 *
 * Fast paths (no lock): acquire CASes cur += n while WAITERS is clear and n
 * fits; release CASes cur -= n while WAITERS is clear.  While WAITERS is
 * set no acquire succeeds without the lock (FIFO: nobody barges), and every
 * release takes the lock, subtracts there and hands out what it freed (so
 * that it touches the semaphore after its release only under the lock,
 * while queued waiters keep it alive: see release_queued()).
 * Under the lock grant() serves the queue head while it fits: it adds the
 * head's n to cur itself (while WAITERS is set cur changes only under the
 * lock, so its reading stays true; a lock-free release that lowered cur
 * just before WAITERS was set is served by the acquirer that set it, which
 * calls grant() when it becomes the head), unlinks the waiter
 * and, after the lock is dropped, sets GRANTED in the waiter's futex word
 * and wakes it if it sleeps.  So a woken waiter owns its weight already.
 * The next head is woken ahead of its turn (see grant()).
 *
 * A waiter lives on its own stack: it is freed when acquire returns, so
 * nobody touches it after setting GRANTED or CANCELLED but the futex wake
 * (which only hashes the address).  `queued` (under the lock) tells an
 * abandoning waiter whether it is still in the queue or was granted; in the
 * latter case it waits for GRANTED, which follows promptly, and gives the
 * weight back.
 */
#include "syncpool/sema.h"

#include <assert.h>
#include <errno.h>

#include "common.h"
#include "ctx_internal.h"
#include "park.h"
#include "sanitizer.h"

#define WAITERS (UINT64_C(1) << 63)
#define CUR_MASK (WAITERS - 1)

/* Waiter futex word bits. */
enum {
	W_GRANTED = 1,   /* weight is ours (set after unlinking, by grant)  */
	W_CANCELLED = 2, /* ctx done (set by the watch fn)                  */
	W_SLEEPING = 4,  /* parked: the setter of 1 or 2 must wake it      */
	W_AHEAD = 8,     /* became the head: woken early to spin (below)    */
};

typedef struct sema_waiter sema_waiter;
struct sema_waiter {
	sema_waiter *next, *prev;
	int64_t n;
	bool queued;             /* in s's queue (under the lock)        */
	_Atomic uint32_t word;
	sp_ctx_watch watch;
};

static_assert(sizeof(_Atomic uint64_t) == sizeof(uint64_t), "state word size");
static_assert(sizeof(sp_ilock) == sizeof(uint32_t), "lock word size");

static inline _Atomic uint64_t *state(sp_sema *s)
{
	return (_Atomic uint64_t *)&s->state_;
}

static inline sp_ilock *qlock(sp_sema *s)
{
	return (sp_ilock *)&s->lock_;
}

SP_API int sp_sema_init(sp_sema *s, int64_t size)
{
	if (s == NULL || size < 0)
		return EINVAL;
	atomic_init(state(s), 0);
	s->size_ = size;
	s->lock_ = 0;
	s->spare_ = 0;
	s->head_ = s->tail_ = NULL;
	return 0;
}

SP_API void sp_sema_destroy(sp_sema *s)
{
	if (atomic_load_explicit(state(s), memory_order_acquire) & WAITERS)
		sp_fatal("sema", "destroyed with waiters");
}

/* ------------------------------------------------------------ queue */

static void enqueue(sp_sema *s, sema_waiter *w)
{
	sema_waiter *t = s->tail_;
	w->next = NULL;
	w->prev = t;
	if (t)
		t->next = w;
	else
		s->head_ = w;
	s->tail_ = w;
	w->queued = true;
}

static void unlink_waiter(sp_sema *s, sema_waiter *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		s->head_ = w->next;
	if (w->next)
		w->next->prev = w->prev;
	else
		s->tail_ = w->prev;
	w->queued = false;
}

/*
 * Serves the head of the queue while it fits (lock held) and returns the
 * granted waiters as a list linked through `next`, to be signalled with
 * signal() once the lock is dropped.  Clears WAITERS when the queue
 * empties.
 *
 * Wake-ahead: when it granted someone, the waiter now at the head is next.
 * If it sleeps it is woken now (*ahead, after the unlock) to spin, so that
 * its wake-up latency overlaps the current holder's turn instead of
 * following it: with more threads than cores a strict FIFO hand-off is a
 * convoy (every turn goes to a thread that is not running), and this puts
 * the next thread on a run queue before its turn comes.
 */
static sema_waiter *grant(sp_sema *s, _Atomic uint32_t **ahead)
{
	sema_waiter *granted = NULL, **tailp = &granted;
	for (;;) {
		sema_waiter *w = s->head_;
		if (w == NULL) {
			atomic_fetch_and_explicit(state(s), ~WAITERS, memory_order_relaxed);
			break;
		}
		uint64_t cur = atomic_load_explicit(state(s), memory_order_acquire) & CUR_MASK;
		if (w->n > s->size_ - (int64_t)cur) {
			if (granted) {
				uint32_t old = atomic_fetch_or_explicit(&w->word, W_AHEAD,
									memory_order_relaxed);
				if ((old & (W_AHEAD | W_SLEEPING)) == W_SLEEPING)
					*ahead = &w->word;
			}
			break;
		}
		atomic_fetch_add_explicit(state(s), (uint64_t)w->n, memory_order_acquire);
		unlink_waiter(s, w);
		w->next = NULL;
		*tailp = w;
		tailp = &w->next;
	}
	return granted;
}

/* After the unlock: sets GRANTED in each granted waiter, wakes the sleepers. */
static void signal(sema_waiter *w, _Atomic uint32_t *ahead)
{
	while (w) {
		sema_waiter *next = w->next;
		uint32_t old = atomic_fetch_or_explicit(&w->word, W_GRANTED, memory_order_release);
		if (old & W_SLEEPING)
			sp_park_wake_one(&w->word);
		w = next; /* w may be gone now */
	}
	if (ahead)
		sp_park_wake_one(ahead); /* may be gone too: the kernel only hashes it */
}

/* ------------------------------------------------------------ release */

/*
 * Gives back n with waiters queued, or finds the queue gone and returns
 * false.  The subtraction happens under the lock, together with the grants
 * it allows: while WAITERS is set (it is set and cleared only under the
 * lock) no acquire can take the freed weight without the lock and no waiter
 * can be served by anyone else, so whoever could destroy the semaphore is
 * still inside one of its calls.  Once the lock is dropped the semaphore
 * may be gone (the granted waiters return, release, destroy): only the
 * granted nodes, alive until GRANTED, and futex addresses are touched.
 */
static bool release_queued(sp_sema *s, int64_t n)
{
	sp_ilock_lock(qlock(s));
	if (!(atomic_load_explicit(state(s), memory_order_relaxed) & WAITERS)) {
		sp_ilock_unlock(qlock(s));
		return false;
	}
	uint64_t old = atomic_fetch_sub_explicit(state(s), (uint64_t)n, memory_order_release);
	if (SP_UNLIKELY((old & CUR_MASK) < (uint64_t)n))
		sp_fatal("sema", "released more than held");
	_Atomic uint32_t *ahead = NULL;
	sema_waiter *g = grant(s, &ahead);
	sp_ilock_unlock(qlock(s));
	signal(g, ahead);
	return true;
}

/*
 * Every release: with no waiter queued, one CAS subtracts n and nothing is
 * touched after it (the next acquirer may destroy the semaphore at once);
 * with waiters, release_queued().  old: the word as last seen.
 */
static void release_from(sp_sema *s, int64_t n, uint64_t old)
{
	for (;;) {
		if (old & WAITERS) {
			if (release_queued(s, n))
				return;
			old = atomic_load_explicit(state(s), memory_order_relaxed);
			continue;
		}
		if (SP_UNLIKELY((old & CUR_MASK) < (uint64_t)n))
			sp_fatal("sema", "released more than held");
		if (atomic_compare_exchange_weak_explicit(state(s), &old, old - (uint64_t)n, memory_order_release,
							  memory_order_relaxed))
			return;
	}
}

/* The inline release's way out (syncpool/sema.h): its CAS failed on old. */
SP_API void sp_sema_release_contended_(sp_sema *s, int64_t n, uint64_t old)
{
	sp_tsan_release(&s->state_); /* the release happens in here */
	release_from(s, n, old);
}

SP_API void sp_sema_release(sp_sema *s, int64_t n)
{
	if (n < 0)
		sp_fatal("sema", "released more than held");
	sp_tsan_release(&s->state_);
	release_from(s, n, atomic_load_explicit(state(s), memory_order_relaxed));
}

/* ------------------------------------------------------------ acquire */

/* One lock-free attempt loop; false once WAITERS is set or n does not fit. */
static inline bool try_fast(sp_sema *s, int64_t n)
{
	uint64_t st = atomic_load_explicit(state(s), memory_order_relaxed);
	while (!(st & WAITERS) && n <= s->size_ - (int64_t)st) {
		if (atomic_compare_exchange_weak_explicit(state(s), &st, st + (uint64_t)n,
							  memory_order_acquire, memory_order_relaxed)) {
			sp_tsan_acquire(&s->state_);
			return true;
		}
	}
	return false;
}

SP_API bool sp_sema_try_acquire(sp_sema *s, int64_t n)
{
	if (n < 0 || n > s->size_)
		return false;
	return try_fast(s, n);
}

static void on_ctx_done(sp_ctx_watch *cw)
{
	sema_waiter *w = sp_container_of(cw, sema_waiter, watch);
	uint32_t old = atomic_fetch_or_explicit(&w->word, W_CANCELLED, memory_order_release);
	if (old & W_SLEEPING)
		sp_park_wake_one(&w->word);
}

/*
 * Parks until a bit of `mask` is set in w's word.  `spin`: first spin a
 * bounded while (worth it only near the head of the queue).  Woken early
 * by wake-ahead, it spins again before parking.
 */
static uint32_t wait_bits(sema_waiter *w, uint32_t mask, bool spin)
{
	for (;;) {
		uint32_t v = atomic_load_explicit(&w->word, memory_order_acquire);
		if (v & mask)
			return v;
		if (spin) {
			spin = false;
			if (sp_spin_while_eq(&w->word, v))
				continue;
		}
		if (!(v & W_SLEEPING)) {
			if (!atomic_compare_exchange_weak_explicit(&w->word, &v, v | W_SLEEPING,
								   memory_order_relaxed,
								   memory_order_relaxed))
				continue;
			v |= W_SLEEPING;
		}
		sp_park_wait(&w->word, v, -1);
		uint32_t now = atomic_load_explicit(&w->word, memory_order_relaxed);
		if ((now & W_AHEAD) && !(v & W_AHEAD) && !(now & mask)) {
			atomic_fetch_and_explicit(&w->word, ~(uint32_t)W_SLEEPING, memory_order_relaxed);
			spin = true;
		}
	}
}

/*
 * The waiter stops waiting with err: leaves the queue, or - if grant()
 * already took it - waits for the GRANTED bit and gives the weight back.
 */
static int abandon(sp_sema *s, sema_waiter *w, int err)
{
	sp_ilock_lock(qlock(s));
	if (w->queued) {
		bool was_head = s->head_ == w;
		unlink_waiter(s, w);
		sema_waiter *g = NULL;
		_Atomic uint32_t *ahead = NULL;
		if (s->head_ == NULL)
			atomic_fetch_and_explicit(state(s), ~WAITERS, memory_order_relaxed);
		else if (was_head)
			g = grant(s, &ahead); /* those behind may fit now */
		sp_ilock_unlock(qlock(s));
		signal(g, ahead);
		return err;
	}
	sp_ilock_unlock(qlock(s));
	wait_bits(w, W_GRANTED, true);
	sp_sema_release(s, w->n);
	return err;
}

/* Weight obtained without a registered watch: a ctx made done before the
 * release that freed it (hb via the acquire on state) must still win. */
static int recheck_err(sp_sema *s, int64_t n, int err)
{
	if (SP_UNLIKELY(err))
		sp_sema_release(s, n);
	return err;
}

static int recheck(sp_sema *s, int64_t n, sp_ctx *ctx)
{
	return recheck_err(s, n, ctx ? sp_ctx_err(ctx) : 0);
}

static int acquire_slow(sp_sema *s, int64_t n, sp_ctx *ctx)
{
	sema_waiter w = { .n = n };

	sp_ilock_lock(qlock(s));
	if (try_fast(s, n)) {
		sp_ilock_unlock(qlock(s));
		return recheck(s, n, ctx);
	}
	if (s->head_ == NULL)
		atomic_fetch_or_explicit(state(s), WAITERS, memory_order_relaxed);
	enqueue(s, &w);
	/* A release between the try and the flag saw no WAITERS: serve it now. */
	_Atomic uint32_t *ahead = NULL;
	bool head = s->head_ == &w;
	sema_waiter *g = head ? grant(s, &ahead) : NULL;
	sp_ilock_unlock(qlock(s));
	signal(g, ahead);
	if (atomic_load_explicit(&w.word, memory_order_acquire) & W_GRANTED) {
		sp_tsan_acquire(&s->state_); /* the releases that freed our weight */
		return recheck(s, n, ctx);
	}

	int err = sp_ctx_watch_add(ctx, &w.watch, on_ctx_done);
	if (err)
		return abandon(s, &w, err);
	wait_bits(&w, W_GRANTED | W_CANCELLED, head);
	/* After this, CANCELLED cannot appear; ctx's handle may be gone: w.watch.err. */
	sp_ctx_watch_remove(ctx, &w.watch);
	uint32_t v = atomic_load_explicit(&w.word, memory_order_acquire);
	if (v & W_CANCELLED)
		return abandon(s, &w, w.watch.err);
	sp_tsan_acquire(&s->state_); /* handed off: every release before the grant */
	/*
	 * The context may be done with our watch not yet called (the
	 * canceller calls the watches one at a time, and the remove above
	 * took ours off its list): as in Go, weight granted to a waiter whose
	 * context is done goes back.
	 */
	return recheck_err(s, n, w.watch.err);
}

SP_API int sp_sema_acquire(sp_sema *s, int64_t n, sp_ctx *ctx)
{
	if (n < 0 || n > s->size_)
		return EINVAL;
	if (ctx) {
		int err = sp_ctx_err(ctx);
		if (err)
			return err;
	}
	if (SP_LIKELY(try_fast(s, n)))
		return recheck(s, n, ctx);
	return acquire_slow(s, n, ctx);
}
