/*
 * sync/workers.c - the internal worker threads; see workers.h.
 *
 * A run queue plus Go's "spinning M" rule.  Submitted items go into one FIFO
 * (a ring under the pool lock).  A worker is in one of three states:
 *
 *	searching  awake, looking for an item (counted in pool.nsearching);
 *	running    running an item;
 *	idle       parked on its own futex word, on the idle list (LIFO).
 *
 * The invariant, kept under the lock: while the queue holds items, at least
 * one worker is searching.  So an item never waits behind a running one -
 * however long that runs or blocks - it only waits for a searcher to reach
 * it.  Submitting makes a searcher only if there is none (wake the most
 * recently idle worker, else create a thread); a searcher that takes an item
 * and leaves more behind with no other searcher makes the next one (the
 * chain of wakes that spreads a burst over the CPUs).  A worker that
 * finishes an item becomes a searcher itself, before the item's `after`
 * hook runs, so the work that hook unblocks (errgroup's next go() at its
 * limit) finds it without any wake; a burst of tiny items is then drained
 * by already-running workers with no syscall per item.  A searcher spins a
 * little on the queue, then goes idle; an idle worker whose wait times out
 * (SP_WORKER_IDLE_NS) leaves, unless it was claimed meanwhile.
 *
 * An idle worker's futex word: W_AWAKE while it heads for sleep, W_PARKED
 * once it may sleep, W_CLAIMED when a claimer (who counted it as searching
 * and took it off the idle list under the lock) wants it to search; the
 * claimer wakes it only if it was W_PARKED.
 */
#include "workers.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "common.h"
#include "ctx_internal.h"
#include "park.h"
#include "sanitizer.h"
#include "sanitizer_ignore.h"

enum { W_AWAKE = 0, W_PARKED = 1, W_CLAIMED = 2 };

struct worker {
	struct worker *next, *prev; /* idle list links, under pool.lock */
	bool on_list;               /* under pool.lock */
	_Atomic uint32_t word;      /* W_* above */
};

/* The pool: written under `lock` by submitters and workers. */
static struct {
	SP_CACHE_ALIGNED sp_ilock lock;
	sp_work *ring;              /* queued items: ring[(head + i) % cap], i < count */
	uint32_t cap, head;
	_Atomic uint32_t count;     /* written under lock; searchers spin reading it */
	uint64_t taken;             /* items dequeued so far (sequence numbers) */
	struct worker *idle_head;   /* most recently idle first */
	struct worker *idle_tail;
	int nidle;
	int nsearching;             /* searching workers, including claimed/spawning ones */
	_Atomic int nspinning;      /* searchers spinning on `count` right now */
} pool;

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* In a child of fork() none of the parent's workers exist; queued items are dropped. */
static void workers_atfork_child(void)
{
	atomic_store_explicit(&pool.lock.v, 0, memory_order_relaxed);
	atomic_store_explicit(&pool.count, 0, memory_order_relaxed);
	pool.head = 0;
	pool.idle_head = pool.idle_tail = NULL;
	pool.nidle = 0;
	pool.nsearching = 0;
}

static void workers_register_atfork(void)
{
	pthread_atfork(NULL, NULL, workers_atfork_child);
}

static inline uint32_t qcount(void)
{
	return atomic_load_explicit(&pool.count, memory_order_relaxed);
}

static inline void set_qcount(uint32_t n)
{
	atomic_store_explicit(&pool.count, n, memory_order_relaxed);
}

/* Under the lock: room for one more item, or false (ENOMEM). */
static bool ring_reserve(void)
{
	uint32_t n = qcount();
	if (n < pool.cap)
		return true;
	uint32_t cap = pool.cap ? pool.cap * 2 : 64;
	sp_tsan_ignore_begin(); /* internal memory: see sanitizer_ignore.h */
	sp_work *r = malloc((size_t)cap * sizeof *r);
	sp_tsan_ignore_end();
	if (!r)
		return false;
	for (uint32_t i = 0; i < n; i++) {
		sp_work *from = &pool.ring[(pool.head + i) % pool.cap];
		/* Carry each queued item's release over to its new slot (TSan). */
		sp_tsan_acquire(from);
		r[i] = *from;
		sp_tsan_release(&r[i]);
	}
	sp_tsan_ignore_begin();
	free(pool.ring);
	sp_tsan_ignore_end();
	pool.ring = r;
	pool.cap = cap;
	pool.head = 0;
	return true;
}

/*
 * Under the lock: takes the oldest live item, skipping withdrawn ones
 * (run == NULL, see sp_workers_submit); false if there is none.
 */
static bool dequeue(sp_work *out)
{
	while (qcount() > 0) {
		*out = pool.ring[pool.head];
		/* The submitter's effects (sp_workers_submit released on the slot). */
		sp_tsan_acquire(&pool.ring[pool.head]);
		pool.head = (pool.head + 1) % pool.cap;
		pool.taken++;
		set_qcount(qcount() - 1);
		if (out->run)
			return true;
	}
	return false;
}

static void idle_remove(struct worker *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		pool.idle_head = w->next;
	if (w->next)
		w->next->prev = w->prev;
	else
		pool.idle_tail = w->prev;
	w->next = w->prev = NULL;
	w->on_list = false;
	pool.nidle--;
}

/*
 * Under the lock: make one more searcher.  Returns the idle worker to wake,
 * or NULL with *spawn set when a thread must be created.
 */
static struct worker *claim_searcher(bool *spawn)
{
	pool.nsearching++;
	struct worker *k = pool.idle_head;
	if (k)
		idle_remove(k);
	else
		*spawn = true;
	return k;
}

static void *worker_main(void *arg);

/* Creates a worker thread, which starts as a searcher. */
static int spawn_thread(void)
{
	pthread_once(&atfork_once, workers_register_atfork);
	pthread_attr_t attr;
	sigset_t all, old;
	pthread_t t;
	if (pthread_attr_init(&attr) != 0)
		return ENOMEM;
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	/* Workers inherit a fully blocked mask: signals go to the application's threads. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int err = pthread_create(&t, &attr, worker_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	return err == 0 ? 0 : err == EAGAIN ? EAGAIN : ENOMEM;
}

/* Outside the lock: start the searcher claim_searcher chose. */
static int start_searcher(struct worker *k, bool spawn)
{
	if (k) {
		if (atomic_exchange_explicit(&k->word, W_CLAIMED, memory_order_release) == W_PARKED)
			sp_park_wake_one(&k->word);
		return 0;
	}
	if (!spawn)
		return 0;
	int err = spawn_thread();
	if (err) {
		/*
		 * Out of threads: items already queued wait for a running
		 * worker to finish (each finishing worker searches).
		 */
		sp_ilock_lock(&pool.lock);
		pool.nsearching--;
		sp_ilock_unlock(&pool.lock);
	}
	return err;
}

static int max_spinners(void)
{
	static _Atomic int cached;
	int v = atomic_load_explicit(&cached, memory_order_relaxed);
	if (v == 0) {
		long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		v = ncpu > 3 ? (int)(ncpu / 2) : 1;
		atomic_store_explicit(&cached, v, memory_order_relaxed);
	}
	return v;
}

/*
 * Searching: returns true with an item (and the searcher to start, if the
 * queue still holds items and nobody else searches), or false once self
 * went idle (on the idle list, no longer searching).
 */
static bool search(struct worker *self, sp_work *out, struct worker **next, bool *spawn)
{
	/*
	 * Spin on the queue for a few microseconds before going idle, but
	 * only one searcher per two CPUs at a time (Go's limit on spinning
	 * Ms): many workers finishing together must not all burn CPUs.
	 */
	int rounds = 0;
	if (sp_spin_limit() > 0) {
		int n = atomic_fetch_add_explicit(&pool.nspinning, 1, memory_order_relaxed);
		if (n < max_spinners())
			rounds = 8;
		else
			atomic_fetch_sub_explicit(&pool.nspinning, 1, memory_order_relaxed);
	}
	bool spinning = rounds > 0;
	for (;;) {
		if (qcount() == 0 && rounds > 0) {
			sp_spin_while_eq(&pool.count, 0);
			if (--rounds > 0 && qcount() == 0)
				continue;
		}
		sp_ilock_lock(&pool.lock);
		if (dequeue(out)) {
			pool.nsearching--;
			if (qcount() > 0 && pool.nsearching == 0)
				*next = claim_searcher(spawn);
			sp_ilock_unlock(&pool.lock);
			if (spinning)
				atomic_fetch_sub_explicit(&pool.nspinning, 1, memory_order_relaxed);
			return true;
		}
		if (rounds == 0) {
			pool.nsearching--;
			atomic_store_explicit(&self->word, W_AWAKE, memory_order_relaxed);
			self->prev = NULL;
			self->next = pool.idle_head;
			if (pool.idle_head)
				pool.idle_head->prev = self;
			else
				pool.idle_tail = self;
			pool.idle_head = self;
			self->on_list = true;
			pool.nidle++;
			sp_ilock_unlock(&pool.lock);
			if (spinning)
				atomic_fetch_sub_explicit(&pool.nspinning, 1, memory_order_relaxed);
			return false;
		}
		sp_ilock_unlock(&pool.lock);
	}
}

/* Idle: true once claimed (search again), false if the thread should exit. */
static bool idle_wait(struct worker *self)
{
	int64_t deadline = sp_now_ns() + SP_WORKER_IDLE_NS;
	uint32_t s = W_AWAKE;
	for (;;) {
		if (atomic_compare_exchange_strong_explicit(&self->word, &s, W_PARKED,
							    memory_order_acquire, memory_order_acquire) ||
		    s == W_PARKED) {
			if (sp_park_wait(&self->word, W_PARKED, deadline) == ETIMEDOUT) {
				sp_ilock_lock(&pool.lock);
				bool leave = self->on_list;
				if (leave)
					idle_remove(self);
				sp_ilock_unlock(&pool.lock);
				if (leave)
					return false;
				deadline = -1; /* claimed: the wake is on its way */
			}
			s = atomic_load_explicit(&self->word, memory_order_acquire);
		}
		if (s == W_CLAIMED)
			return true;
	}
}

static void *worker_main(void *arg)
{
	(void)arg;
	struct worker self = { 0 };
	for (;;) {
		sp_work w;
		struct worker *next = NULL;
		bool spawn = false;
		if (!search(&self, &w, &next, &spawn)) {
			if (!idle_wait(&self))
				return NULL;
			continue;
		}
		if (next || spawn)
			start_searcher(next, spawn);
		w.run(&w);
		/* Search again - counted before `after` unblocks new work. */
		sp_ilock_lock(&pool.lock);
		pool.nsearching++;
		sp_ilock_unlock(&pool.lock);
		if (w.after)
			w.after(&w);
	}
}

int sp_workers_submit(const sp_work *w)
{
	struct worker *k = NULL;
	bool spawn = false;
	sp_ilock_lock(&pool.lock);
	if (!ring_reserve()) {
		sp_ilock_unlock(&pool.lock);
		return ENOMEM;
	}
	uint32_t n = qcount();
	uint64_t seq = pool.taken + n; /* this item's sequence number */
	sp_work *slot = &pool.ring[(pool.head + n) % pool.cap];
	/*
	 * What the submitter did happens before run: announced on the slot,
	 * which stays put until a worker takes the item (a grown ring is a
	 * new array, taken from its new slots).
	 */
	sp_tsan_release(slot);
	*slot = *w;
	set_qcount(n + 1);
	if (pool.nsearching == 0)
		k = claim_searcher(&spawn);
	sp_ilock_unlock(&pool.lock);

	int err = start_searcher(k, spawn);
	if (!err)
		return 0;
	/*
	 * No thread for it: withdraw the item (a tombstone, so the positions
	 * of later items stay put) unless a worker already took it.
	 */
	sp_ilock_lock(&pool.lock);
	bool queued = seq >= pool.taken;
	if (queued)
		pool.ring[(pool.head + (uint32_t)(seq - pool.taken)) % pool.cap].run = NULL;
	sp_ilock_unlock(&pool.lock);
	return queued ? err : 0;
}
