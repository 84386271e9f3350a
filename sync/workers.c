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
 * The invariant, kept under the lock: every queued item has a searcher of
 * its own - nsearching >= count.  A searcher takes exactly one item (count
 * and nsearching drop together) and goes idle only when the queue is empty,
 * so every queued item is taken by some thread that exists already: an item
 * never waits behind a running one - however long that runs or blocks - and
 * never depends on a thread that is yet to be created.
 *
 * So submitting queues the item only if there is a spare searcher
 * (nsearching > count) or an idle worker to claim as one (wake the most
 * recently idle worker; a claim cannot fail).  Otherwise it creates a thread
 * that gets the item directly, never through the queue: if the thread cannot
 * be created, nothing was queued and the submit fails with nothing to undo,
 * and no other submitter ever counted on that thread.  (An earlier rule - at
 * least one searcher while the queue is non-empty, created lazily by the
 * submitter or by a searcher leaving items behind - let a submitter return 0
 * behind a searcher whose thread then failed to start, and its item was
 * stranded with every other worker blocked.)
 *
 * A worker that finishes an item becomes a searcher itself, before the
 * item's `after` hook runs, so the work that hook unblocks (errgroup's next
 * go() at its limit) is queued to it without any wake; a burst of tiny items
 * is then drained by already-running workers with no syscall per item.  A
 * searcher spins a little on the queue, then goes idle; an idle worker whose
 * wait times out (SP_WORKER_IDLE_NS) leaves, unless it was claimed meanwhile.
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
	struct worker *idle_head;   /* most recently idle first */
	struct worker *idle_tail;
	int nidle;
	int nsearching;             /* searching workers, claimed ones included; >= count */
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

/* Under the lock: takes the oldest item; false if there is none. */
static bool dequeue(sp_work *out)
{
	uint32_t n = qcount();
	if (n == 0)
		return false;
	*out = pool.ring[pool.head];
	/* The submitter's effects (sp_workers_submit released on the slot). */
	sp_tsan_acquire(&pool.ring[pool.head]);
	pool.head = (pool.head + 1) % pool.cap;
	set_qcount(n - 1);
	return true;
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

int (*sp_workers_create_thread)(pthread_t *, const pthread_attr_t *, void *(*)(void *),
				void *) = pthread_create;

/*
 * Under the lock: make the most recently idle worker a searcher; NULL if
 * no worker is idle.
 */
static struct worker *claim_idle(void)
{
	struct worker *k = pool.idle_head;
	if (k) {
		idle_remove(k);
		pool.nsearching++;
	}
	return k;
}

/* Outside the lock: wake the worker claim_idle chose. */
static void wake_claimed(struct worker *k)
{
	if (atomic_exchange_explicit(&k->word, W_CLAIMED, memory_order_release) == W_PARKED)
		sp_park_wake_one(&k->word);
}

static void *worker_main(void *arg);

/* Creates a worker thread whose first item is *first (copied). */
static int spawn_thread(const sp_work *first)
{
	pthread_once(&atfork_once, workers_register_atfork);
	sp_tsan_ignore_begin(); /* internal memory: see sanitizer_ignore.h */
	sp_work *item = malloc(sizeof *item);
	if (item)
		*item = *first;
	sp_tsan_ignore_end();
	if (!item)
		return ENOMEM;
	pthread_attr_t attr;
	sigset_t all, old;
	pthread_t t;
	int err = pthread_attr_init(&attr);
	if (err == 0) {
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		/* Workers inherit a fully blocked mask: signals go to the application's threads. */
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		err = sp_workers_create_thread(&t, &attr, worker_main, item);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		pthread_attr_destroy(&attr);
	}
	if (err == 0)
		return 0;
	sp_tsan_ignore_begin();
	free(item);
	sp_tsan_ignore_end();
	return err == EAGAIN ? EAGAIN : ENOMEM;
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
 * Searching: returns true with an item, or false once self went idle (on
 * the idle list, no longer searching).  Either way nsearching >= count
 * holds: an item taken leaves one searcher and one item fewer; going idle
 * happens only with the queue empty.
 */
static bool search(struct worker *self, sp_work *out)
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
	struct worker self = { 0 };
	sp_work w;
	/* The first item, handed over by spawn_thread. */
	sp_tsan_ignore_begin();
	w = *(sp_work *)arg;
	free(arg);
	sp_tsan_ignore_end();
	for (;;) {
		w.run(&w);
		/* Search again - counted before `after` unblocks new work. */
		sp_ilock_lock(&pool.lock);
		pool.nsearching++;
		sp_ilock_unlock(&pool.lock);
		if (w.after)
			w.after(&w);
		while (!search(&self, &w))
			if (!idle_wait(&self))
				return NULL;
	}
}

int sp_workers_submit(const sp_work *w)
{
	sp_ilock_lock(&pool.lock);
	struct worker *k = NULL;
	/* Queue it only for a searcher of its own: a spare one, else a claimed idle one. */
	if ((uint32_t)pool.nsearching <= qcount() && !(k = claim_idle())) {
		sp_ilock_unlock(&pool.lock);
		return spawn_thread(w); /* the item goes to the new thread, not the queue */
	}
	if (!ring_reserve()) {
		sp_ilock_unlock(&pool.lock);
		if (k) /* a spare searcher now, still counted: idle again once the queue is empty */
			wake_claimed(k);
		return ENOMEM;
	}
	uint32_t n = qcount();
	sp_work *slot = &pool.ring[(pool.head + n) % pool.cap];
	/*
	 * What the submitter did happens before run: announced on the slot,
	 * which stays put until a worker takes the item (a grown ring is a
	 * new array, taken from its new slots).
	 */
	sp_tsan_release(slot);
	*slot = *w;
	set_qcount(n + 1);
	sp_ilock_unlock(&pool.lock);
	if (k)
		wake_claimed(k);
	return 0;
}
