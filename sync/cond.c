/*
 * sync/cond.c - Go's sync.Cond notify list, with withdrawable tickets.
 *
 * Go's notify list gives each waiter a ticket (wait++) under the user's
 * mutex, and queues the waiter under the list lock later, after the mutex
 * is released; Signal takes the next ticket (notify++) and wakes whichever
 * queued waiter holds it - or, if that waiter has not queued yet, lets it
 * find its ticket already notified.  That split makes a ticket impossible to
 * give back: a cancelled waiter would leave a hole that swallows a Signal.
 * Here the ticket *is* the queue position: the waiter queues its node under
 * the list lock while still holding the user's mutex, so "has a ticket" and
 * "is queued" are the same state, FIFO order is ticket order, and a waiter
 * that gives up simply unlinks its node (under the lock) - the next Signal
 * goes to the next node.
 *
 * Each waiter has its own node on its stack with its own futex word:
 *
 *	CW_SIGNALLED  set by a notifier after unlinking the node under the lock
 *	CW_PARKED     the waiter is (about to be) asleep: a notifier must wake
 *	CW_CANCELLED  set by the context's watch when ctx is done
 *
 * `queued` (under the lock) says whether the node is still on the list.  A
 * notifier unlinks it (queued = false), drops the lock, then sets
 * CW_SIGNALLED: until then the waiter may not leave.  A cancelled waiter
 * takes the lock: if still queued it unlinks itself and returns ctx's error
 * - it never got a Signal; if not, a notifier picked it and CW_SIGNALLED is
 * on its way, so it waits for it and returns 0.  A Signal is thus either
 * delivered (0) or never taken from the queue - it cannot be lost.
 */
#include "syncpool/cond.h"

#include <stdatomic.h>
#include <stdbool.h>

#include "common.h"
#include "ctx_internal.h"
#include "park.h"
#include "sanitizer.h"

enum { CW_SIGNALLED = 1, CW_PARKED = 2, CW_CANCELLED = 4 };

struct cond_waiter {
	struct cond_waiter *next, *prev; /* under the list lock */
	bool queued;                     /* under the list lock */
	_Atomic uint32_t state;          /* CW_* */
	sp_ctx_watch watch;
};

static inline sp_ilock *cond_lock(sp_cond *c)
{
	return (sp_ilock *)(void *)&c->lock_;
}

static inline _Atomic uint32_t *cond_nwait(sp_cond *c)
{
	return (_Atomic uint32_t *)&c->nwait_;
}

/* Under the lock: unlink w from the queue. */
static void cond_unlink(sp_cond *c, struct cond_waiter *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		c->head_ = w->next;
	if (w->next)
		w->next->prev = w->prev;
	else
		c->tail_ = w->prev;
	w->queued = false;
	atomic_store_explicit(cond_nwait(c), atomic_load_explicit(cond_nwait(c), memory_order_relaxed) - 1,
			      memory_order_relaxed);
}

/* After the node left the queue: deliver, then w may be gone. */
static void cond_deliver(struct cond_waiter *w)
{
	/* The notifier's effects, for the waiter's acquire on the same word. */
	sp_tsan_release(&w->state);
	uint32_t old = atomic_fetch_or_explicit(&w->state, CW_SIGNALLED, memory_order_release);
	if (old & CW_PARKED)
		sp_park_wake_one(&w->state); /* address only: harmless if w returned */
}

/* The context's watch: runs on the cancelling thread while w is alive. */
static void cond_on_done(sp_ctx_watch *cw)
{
	struct cond_waiter *w = sp_container_of(cw, struct cond_waiter, watch);
	uint32_t old = atomic_fetch_or_explicit(&w->state, CW_CANCELLED, memory_order_release);
	if (old & CW_PARKED)
		sp_park_wake_one(&w->state);
}

/*
 * Adaptive spinning, per thread: a waiter spins (bounded) on its node before
 * parking only while spinning has been paying off - the Signal arrived
 * during the spin.  When it keeps ending in a park anyway (the signaller is
 * slow or descheduled, e.g. more runnable threads than CPUs) the spin is
 * pure waste, so the thread stops spinning and only probes now and then.
 */
static _Thread_local uint32_t spin_misses, spin_probe;

static bool cond_spin(_Atomic uint32_t *word)
{
	if (spin_misses >= 2 && (++spin_probe & 15) != 0)
		return false;
	if (sp_spin_while_eq(word, 0)) {
		spin_misses = 0;
		return true;
	}
	if (spin_misses < 64)
		spin_misses++;
	return false;
}

SP_API int sp_cond_wait_ctx(sp_cond *c, sp_mutex *m, sp_ctx *ctx)
{
	struct cond_waiter w = { 0 };
	if (ctx) {
		int err = sp_ctx_watch_add(ctx, &w.watch, cond_on_done);
		if (err)
			return err; /* already done: m never released */
	}

	/* Take a ticket = join the queue, while m is still held. */
	sp_ilock_lock(cond_lock(c));
	w.prev = c->tail_;
	if (w.prev)
		w.prev->next = &w;
	else
		c->head_ = &w;
	c->tail_ = &w;
	w.queued = true;
	atomic_store_explicit(cond_nwait(c), atomic_load_explicit(cond_nwait(c), memory_order_relaxed) + 1,
			      memory_order_relaxed);
	sp_ilock_unlock(cond_lock(c));
	sp_mutex_unlock(m);

	int result = 0;
	bool cancel_seen = false;
	uint32_t s = atomic_load_explicit(&w.state, memory_order_acquire);
	if (s == 0 && cond_spin(&w.state))
		s = atomic_load_explicit(&w.state, memory_order_acquire);
	while (!(s & CW_SIGNALLED)) {
		if ((s & CW_CANCELLED) && !cancel_seen) {
			cancel_seen = true;
			sp_ilock_lock(cond_lock(c));
			bool withdraw = w.queued;
			if (withdraw)
				cond_unlink(c, &w);
			sp_ilock_unlock(cond_lock(c));
			if (withdraw) {
				result = sp_ctx_err(ctx);
				break;
			}
			/* A notifier dequeued us: its CW_SIGNALLED is on the way. */
		}
		if (!(s & CW_PARKED)) {
			if (!atomic_compare_exchange_weak_explicit(&w.state, &s, s | CW_PARKED,
								   memory_order_acquire,
								   memory_order_acquire))
				continue;
			s |= CW_PARKED;
		}
		sp_park_wait(&w.state, s, -1);
		s = atomic_load_explicit(&w.state, memory_order_acquire);
	}
	if (s & CW_SIGNALLED)
		sp_tsan_acquire(&w.state); /* woken: synchronizes with the notifier */
	if (ctx)
		sp_ctx_watch_remove(ctx, &w.watch);
	sp_mutex_lock(m);
	return result;
}

SP_API void sp_cond_wait(sp_cond *c, sp_mutex *m)
{
	(void)sp_cond_wait_ctx(c, m, NULL);
}

SP_API void sp_cond_signal(sp_cond *c)
{
	/*
	 * No waiter queued: nothing to do.  A waiter queues while holding the
	 * mutex, so a signaller ordered after it by the mutex sees it here.
	 */
	if (atomic_load_explicit(cond_nwait(c), memory_order_acquire) == 0)
		return;
	sp_ilock_lock(cond_lock(c));
	struct cond_waiter *w = c->head_;
	if (w)
		cond_unlink(c, w);
	sp_ilock_unlock(cond_lock(c));
	if (w)
		cond_deliver(w);
}

SP_API void sp_cond_broadcast(sp_cond *c)
{
	if (atomic_load_explicit(cond_nwait(c), memory_order_acquire) == 0)
		return;
	sp_ilock_lock(cond_lock(c));
	struct cond_waiter *w = c->head_;
	for (struct cond_waiter *x = w; x; x = x->next)
		x->queued = false;
	c->head_ = c->tail_ = NULL;
	atomic_store_explicit(cond_nwait(c), 0, memory_order_relaxed);
	sp_ilock_unlock(cond_lock(c));
	while (w) {
		struct cond_waiter *next = w->next; /* read before w may leave */
		cond_deliver(w);
		w = next;
	}
}
