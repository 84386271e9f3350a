/*
 * sync/workers.h - the library's internal worker threads (errgroup's
 * "goroutines").
 *
 * One process-wide set of threads runs submitted work items.  A submitted
 * item never waits behind another one: items go into one FIFO, and while it
 * holds items at least one worker is awake searching it (Go's scheduler
 * rule for spinning Ms), so an item is started by a worker of its own even
 * if every running item blocks forever.  Threads are created only when no
 * worker is idle; an idle worker (most recently idle reused first) parks on
 * its own futex word and exits after SP_WORKER_IDLE_NS without work.
 * Workers are detached threads with every signal blocked.  After fork() the
 * child starts with no workers and an empty queue.
 */
#ifndef SP_SYNC_WORKERS_H
#define SP_SYNC_WORKERS_H

#include <stdint.h>

/* How long an idle worker waits for work before its thread exits. */
#define SP_WORKER_IDLE_NS ((int64_t)5 * 1000 * 1000 * 1000)

typedef struct sp_work sp_work;
struct sp_work {
	/* Runs the item on a worker thread. */
	void (*run)(sp_work *w);
	/*
	 * Optional: runs after `run`, once the worker is back on the idle
	 * list - so work submitted from here on (or after whatever `after`
	 * publishes) can reuse this very thread.  Must not block for long.
	 */
	void (*after)(sp_work *w);
	void *p[3];
	uintptr_t flags;
};

/*
 * Starts *w (copied) on a worker thread.  Returns 0, or EAGAIN/ENOMEM when
 * no worker was idle and no thread could be created (nothing ran then).
 * The item's effects before this call happen before `run`.
 */
int sp_workers_submit(const sp_work *w);

#endif /* SP_SYNC_WORKERS_H */
