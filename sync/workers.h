/*
 * sync/workers.h - worker threads for errgroup's "goroutines".
 *
 * An sp_workers is one set of threads (each errgroup embeds its own) that
 * runs submitted work items.  A submitted item never waits behind another
 * one: items go into one FIFO, and while it holds items at least one worker
 * is awake searching it (Go's scheduler rule for spinning Ms), so an item is
 * started by a worker of its own even if every running item blocks forever.
 * Threads are created only when no worker is searching or idle; an idle
 * worker (most recently idle reused first) parks on its own futex word and
 * its thread exits after SP_WORKER_IDLE_NS without work.  sp_workers_fini
 * stops and joins every thread.  Worker threads have every signal blocked.
 *
 * Thread creation can fail (EAGAIN, ENOMEM).  A submit never queues its item
 * on the strength of a thread still being created: it waits for that
 * creation's outcome first, so a failure is reported to the submitter whose
 * item has no thread, and no item that was accepted depends on it.  When a
 * worker taking an item leaves others behind with no worker idle, a new
 * thread for them is made from the shared timer thread 50 us later unless a
 * worker came back for them first; a failed creation there is retried with
 * backoff (doubling to 100 ms) until a thread exists for them.
 */
#ifndef SP_SYNC_WORKERS_H
#define SP_SYNC_WORKERS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common.h"
#include "ctx_internal.h"
#include "timer.h"

/* How long an idle worker waits for work before its thread exits. */
#define SP_WORKER_IDLE_NS ((int64_t)5 * 1000 * 1000 * 1000)

typedef struct sp_work sp_work;
struct sp_work {
	/* Runs the item on a worker thread. */
	void (*run)(sp_work *w);
	/*
	 * Optional: runs after `run`, once the worker is counted as
	 * searching again - so work submitted from here on (or after whatever
	 * `after` publishes) can reuse this very thread.  Must not block for
	 * long.  It may be the last thing to touch the owner of the
	 * sp_workers (errgroup's done): after it, the worker touches only the
	 * sp_workers, which sp_workers_fini keeps alive until it is joined.
	 */
	void (*after)(sp_work *w);
	void *p[3];
	uintptr_t flags;
};

struct sp_worker;

/* One set of worker threads.  Zero-filled then sp_workers_init. */
typedef struct sp_workers {
	SP_CACHE_ALIGNED sp_ilock lock;
	sp_work *ring;              /* queued items: ring[(head + i) % cap], i < count */
	uint32_t cap, head;
	_Atomic uint32_t count;     /* written under lock; searchers spin reading it */
	uint64_t taken;             /* items dequeued so far */
	struct sp_worker *idle_head; /* most recently idle first */
	struct sp_worker *idle_tail;
	struct sp_worker *all;      /* every thread not yet joined */
	int nidle;
	int nsearching;             /* searchers, including claimed and being-created ones */
	int ncreating;              /* thread creations in progress (within nsearching) */
	int creation_waiters;       /* submits waiting for a creation's outcome */
	int nexited;                /* threads on `all` that left on idle timeout */
	bool closing;               /* sp_workers_fini started */
	_Atomic uint32_t created_word; /* bumped when a creation ends; futex */
	_Atomic int nspinning;      /* searchers spinning on `count` right now */
	_Atomic uint64_t fork_gen;  /* fork generation the state belongs to */
	/* The searcher timer, for items left without a searcher (see above). */
	sp_timer retry;
	int retry_state;            /* RETRY_* in workers.c, under lock */
	int64_t retry_backoff_ns;
	_Atomic uint32_t retry_word; /* futex: fini waits for a firing retry */
} sp_workers;

/*
 * Prepares p (any memory).  0, or EAGAIN/ENOMEM when the shared timer
 * thread or room for p's searcher timer cannot be had (nothing to undo).
 */
int sp_workers_init(sp_workers *p);

/*
 * Starts *w (copied) on a worker thread of p.  Returns 0, or EAGAIN/ENOMEM
 * when no worker was searching or idle and no thread could be created
 * (nothing runs then).  The item's effects before this call happen before
 * `run`.  Not after sp_workers_fini has started.
 */
int sp_workers_submit(sp_workers *p, const sp_work *w);

/*
 * Stops and joins every thread of p and frees its memory.  Every submitted
 * item must have finished (its `after` returned or running).  Must not be
 * called from one of p's workers.
 */
void sp_workers_fini(sp_workers *p);

/*
 * For tests only: how worker threads are created (pthread_create).  A test
 * may point it at a wrapper that fails, to exercise the failure paths; set
 * it only while no submit is in progress and no thread creation can be
 * retried (every group that ever failed a creation is destroyed).
 */
extern int (*sp_workers_create_thread)(pthread_t *, const pthread_attr_t *,
				       void *(*)(void *), void *);

#endif /* SP_SYNC_WORKERS_H */
