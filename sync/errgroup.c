/*
 * sync/errgroup.c - golang.org/x/sync/errgroup on the internal workers.
 *
 * A group is a WaitGroup of running tasks, the first error (set once with a
 * CAS, which also decides who cancels the context), and an optional limit:
 * `inuse` counts tasks holding one of `limit` slots.  A go() at the limit
 * parks on `slot_word`; a finishing task frees its slot and, if anyone
 * waits, bumps the word and wakes one (Dekker-style: waiters announce
 * themselves in `slot_waiters` before re-checking `inuse`, the releaser
 * decrements `inuse` before reading `slot_waiters`, all sequentially
 * consistent, so one of them always sees the other).
 *
 * A task frees its slot and leaves the WaitGroup from the worker's `after`
 * hook, once its thread counts as searching again, so the next go() reuses
 * that thread instead of creating another.  Each group owns its worker
 * threads (workers.h); destroy joins them once every task has finished.
 */
#include "syncpool/errgroup.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "common.h"
#include "park.h"
#include "sanitizer.h"
#include "sanitizer_ignore.h"
#include "syncpool/waitgroup.h"
#include "workers.h"

struct sp_errgroup {
	sp_waitgroup wg;             /* tasks started and not finished */
	sp_ctx *ctx;                 /* the WithContext context, or NULL */
	_Atomic int err;             /* first non-zero task result */
	_Atomic int limit;           /* < 0: no limit */
	/* Written by every finishing task and by go(): its own line. */
	SP_CACHE_ALIGNED _Atomic int32_t inuse; /* slots held */
	_Atomic int32_t slot_waiters;           /* go() calls parked at the limit */
	_Atomic uint32_t slot_word;             /* bumped on release, futex */
	sp_workers workers;                     /* the group's threads */
};

enum { TASK_HOLDS_SLOT = 1 };

static bool slot_try(sp_errgroup *g, int lim)
{
	int32_t c = atomic_load(&g->inuse);
	while (c < lim)
		if (atomic_compare_exchange_weak(&g->inuse, &c, c + 1)) {
			sp_tsan_acquire(&g->inuse); /* the task that freed the slot */
			return true;
		}
	return false;
}

static void slot_acquire(sp_errgroup *g, int lim)
{
	if (slot_try(g, lim))
		return;
	atomic_fetch_add(&g->slot_waiters, 1);
	for (;;) {
		uint32_t w = atomic_load(&g->slot_word);
		if (slot_try(g, lim))
			break;
		sp_park_wait(&g->slot_word, w, -1);
	}
	atomic_fetch_sub(&g->slot_waiters, 1);
}

static void slot_release(sp_errgroup *g)
{
	sp_tsan_release(&g->inuse);
	atomic_fetch_sub(&g->inuse, 1);
	if (atomic_load(&g->slot_waiters) > 0) {
		atomic_fetch_add(&g->slot_word, 1);
		sp_park_wake_one(&g->slot_word);
	}
}

static void task_run(sp_work *w)
{
	sp_errgroup *g = w->p[0];
	int (*fn)(void *) = (int (*)(void *))w->p[1];
	int r = fn(w->p[2]);
	if (r != 0) {
		int zero = 0;
		if (atomic_compare_exchange_strong(&g->err, &zero, r) && g->ctx)
			sp_ctx_cancel(g->ctx);
	}
}

static void task_after(sp_work *w)
{
	sp_errgroup *g = w->p[0];
	/*
	 * The task's effects happen before wait returns (it acquires on the
	 * WaitGroup's word) and before a go() that gets the freed slot.
	 */
	sp_tsan_release(&g->wg.state_);
	if (w->flags & TASK_HOLDS_SLOT)
		slot_release(g);
	sp_waitgroup_done(&g->wg); /* last touch of g */
}

static int start(sp_errgroup *g, int (*fn)(void *), void *arg, bool slot)
{
	sp_work w = {
		.run = task_run,
		.after = task_after,
		.p = { g, (void *)fn, arg },
		.flags = slot ? TASK_HOLDS_SLOT : 0,
	};
	sp_waitgroup_add(&g->wg, 1);
	int err = sp_workers_submit(&g->workers, &w);
	if (err) {
		if (slot)
			slot_release(g);
		sp_waitgroup_done(&g->wg);
	}
	return err;
}

SP_API sp_errgroup *sp_errgroup_create(sp_ctx *parent, sp_ctx **ctx_out)
{
	/* The group is written by workers: its memory is ours (sanitizer_ignore.h). */
	sp_tsan_ignore_begin();
	sp_errgroup *g = aligned_alloc(SP_CACHELINE, (sizeof *g + SP_CACHELINE - 1) &
							     ~(size_t)(SP_CACHELINE - 1));
	int err = ENOMEM;
	if (g) {
		*g = (sp_errgroup){ .limit = -1 };
		err = sp_workers_init(&g->workers);
		if (err) {
			free(g);
			g = NULL;
		}
	}
	sp_tsan_ignore_end();
	if (!g) {
		errno = err;
		return NULL;
	}
	if (ctx_out) {
		err = sp_ctx_with_cancel(parent, &g->ctx);
		if (err) {
			sp_workers_fini(&g->workers); /* no thread yet: gives the timer room back */
			sp_tsan_ignore_begin();
			free(g);
			sp_tsan_ignore_end();
			errno = err;
			return NULL;
		}
		*ctx_out = g->ctx;
	}
	return g;
}

SP_API void sp_errgroup_set_limit(sp_errgroup *g, int n)
{
	if (n >= 0 && atomic_load(&g->inuse) != 0)
		sp_fatal("errgroup", "modify limit while goroutines in the group are still active");
	atomic_store(&g->limit, n < 0 ? -1 : n);
}

SP_API int sp_errgroup_go(sp_errgroup *g, int (*fn)(void *arg), void *arg)
{
	if (g == NULL || fn == NULL)
		return EINVAL;
	int lim = atomic_load_explicit(&g->limit, memory_order_relaxed);
	if (lim == 0)
		return EAGAIN; /* Go blocks forever here */
	if (lim > 0)
		slot_acquire(g, lim);
	return start(g, fn, arg, lim > 0);
}

SP_API bool sp_errgroup_try_go(sp_errgroup *g, int (*fn)(void *arg), void *arg)
{
	if (g == NULL || fn == NULL)
		return false;
	int lim = atomic_load_explicit(&g->limit, memory_order_relaxed);
	if (lim >= 0 && !slot_try(g, lim))
		return false;
	return start(g, fn, arg, lim >= 0) == 0;
}

SP_API int sp_errgroup_wait(sp_errgroup *g)
{
	sp_waitgroup_wait(&g->wg);
	if (g->ctx)
		sp_ctx_cancel(g->ctx);
	return atomic_load(&g->err);
}

SP_API void sp_errgroup_destroy(sp_errgroup *g)
{
	if (!g)
		return;
	sp_waitgroup_wait(&g->wg);
	sp_workers_fini(&g->workers); /* joins the group's threads */
	if (g->ctx)
		sp_ctx_release(g->ctx);
	sp_tsan_ignore_begin();
	free(g);
	sp_tsan_ignore_end();
}
