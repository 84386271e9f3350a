/*
 * sync/workers.c - worker threads; see workers.h.
 *
 * A run queue plus Go's "spinning M" rule.  Submitted items go into one FIFO
 * (a ring under p->lock).  A worker is in one of three states:
 *
 *	searching  awake, looking for an item (counted in p->nsearching);
 *	running    running an item;
 *	idle       parked on its own futex word, on the idle list (LIFO).
 *
 * The invariant, kept under the lock: while the queue holds items, a worker
 * that exists is searching, or the searcher timer is armed and will make one.
 * So an item never waits long behind a running one - however long that runs
 * or blocks - only until a searcher reaches it.  nsearching also counts
 * threads being created (ncreating of them); those do not count as real
 * searchers until they run (the new thread settles its own creation), so
 *
 *  - submit queues its item only while a real searcher exists
 *    (nsearching > ncreating) or after claiming an idle worker (a claim
 *    cannot fail); with neither, and a creation in progress, it waits for
 *    that creation's outcome and looks again; with none in progress it
 *    creates a thread itself and looks again - so a failed creation is
 *    reported to a submitter that queued nothing, and nothing queued relied
 *    on it;
 *  - a searcher that takes an item and leaves more behind with no other real
 *    searcher claims an idle worker for them (the chain of wakes that
 *    spreads a burst over the CPUs); with none idle it arms the searcher
 *    timer (50 us, Go's sysmon idea) instead of creating a thread at once:
 *    if its own item is short it comes back for the others first and no
 *    thread is made - a burst of tiny tasks on a new group does not create
 *    a thread per task - while items behind a long or blocked one get a new
 *    thread from the timer thread.  A failed creation there re-arms the
 *    timer with backoff (doubling to 100 ms) until a searcher exists, which
 *    also happens when any running worker finishes.
 *
 * A worker that finishes an item becomes a searcher itself, before the
 * item's `after` hook runs, so the work that hook unblocks (errgroup's next
 * go() at its limit) finds it without any wake; a burst of tiny items is then
 * drained by already-running workers with no syscall per item.  A searcher
 * spins a little on the queue, then goes idle; an idle worker whose wait
 * times out (SP_WORKER_IDLE_NS) leaves (its thread is joined by the next
 * creation or by fini), unless it was claimed meanwhile.
 *
 * An idle worker's futex word: W_AWAKE while it heads for sleep, W_PARKED
 * once it may sleep, W_CLAIMED when a claimer (who counted it as searching
 * and took it off the idle list under the lock) wants it to search, W_EXIT
 * when fini wants it gone; the claimer wakes it only if it was W_PARKED.
 *
 * fork(): a child has none of the parent's threads.  A generation counter
 * bumped in the child makes the next submit or fini forget them (and any
 * queued item): a set with no work in flight at fork() is usable in the
 * child.
 */
#include "workers.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

#include "park.h"
#include "sanitizer.h"
#include "sanitizer_ignore.h"

enum { W_AWAKE = 0, W_PARKED = 1, W_CLAIMED = 2, W_EXIT = 3 };
enum { RETRY_IDLE, RETRY_ARMED, RETRY_FIRING };
enum { GOT_ITEM, WENT_IDLE, MUST_EXIT };

#define RETRY_MIN_NS ((int64_t)50 * 1000)
#define RETRY_MAX_NS ((int64_t)100 * 1000 * 1000)

struct sp_worker {
	struct sp_worker *next, *prev; /* idle list, under lock */
	struct sp_worker *all_next;    /* p->all, under lock */
	sp_workers *pool;
	pthread_t tid;
	bool on_list;                  /* under lock */
	bool exited;                   /* left on idle timeout, join pending */
	_Atomic uint32_t word;         /* W_* above */
};

int (*sp_workers_create_thread)(pthread_t *, const pthread_attr_t *, void *(*)(void *),
				void *) = pthread_create;

static _Atomic uint64_t fork_gen;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void workers_atfork_child(void)
{
	atomic_fetch_add_explicit(&fork_gen, 1, memory_order_relaxed);
}

static void workers_register_atfork(void)
{
	pthread_atfork(NULL, NULL, workers_atfork_child);
}

static void retry_fire(sp_timer *t);

/*
 * Everything but the ring (kept, emptied) and the timer reservation, as
 * new; fork_gen is written last, once (a concurrent check_fork reads it).
 */
static void workers_reset(sp_workers *p, uint64_t gen)
{
	atomic_store_explicit(&p->lock.v, 0, memory_order_relaxed);
	p->head = 0;
	atomic_store_explicit(&p->count, 0, memory_order_relaxed);
	p->taken = 0;
	p->idle_head = p->idle_tail = p->all = NULL;
	p->nidle = p->nsearching = p->ncreating = p->creation_waiters = p->nexited = 0;
	p->closing = false;
	atomic_store_explicit(&p->created_word, 0, memory_order_relaxed);
	atomic_store_explicit(&p->nspinning, 0, memory_order_relaxed);
	p->retry = (sp_timer){ .fire = retry_fire, .idx = -1, .reserved = true };
	p->retry_state = RETRY_IDLE;
	p->retry_backoff_ns = RETRY_MIN_NS;
	atomic_store_explicit(&p->retry_word, 0, memory_order_relaxed);
	atomic_store_explicit(&p->fork_gen, gen, memory_order_release);
}

int sp_workers_init(sp_workers *p)
{
	pthread_once(&atfork_once, workers_register_atfork);
	/*
	 * The searcher timer must never fail to arm (an accepted item may
	 * depend on it): its room in the timer heap, and the timer thread,
	 * are secured now, when failing is still an option.
	 */
	int err = sp_timer_reserve();
	if (err)
		return err;
	p->ring = NULL;
	p->cap = 0;
	workers_reset(p, atomic_load_explicit(&fork_gen, memory_order_relaxed));
	return 0;
}

#define GEN_RESETTING UINT64_MAX

/*
 * In a fork child: the parent's threads (and their items) do not exist
 * here.  The first caller resets the set (the workers' records are the
 * parent's: left alone); a concurrent first caller waits for it.
 */
static void check_fork(sp_workers *p)
{
	uint64_t gen = atomic_load_explicit(&fork_gen, memory_order_relaxed);
	uint64_t mine = atomic_load_explicit(&p->fork_gen, memory_order_acquire);
	if (SP_LIKELY(mine == gen))
		return;
	while (mine == GEN_RESETTING ||
	       !atomic_compare_exchange_weak_explicit(&p->fork_gen, &mine, GEN_RESETTING,
						      memory_order_acquire, memory_order_acquire)) {
		if (mine == gen)
			return; /* another thread reset it */
		if (mine == GEN_RESETTING) {
			sched_yield();
			mine = atomic_load_explicit(&p->fork_gen, memory_order_acquire);
		}
	}
	/* The timer heap survives fork: take the parent's armed retry out of it. */
	if (p->retry.idx >= 0)
		sp_timer_remove(&p->retry);
	workers_reset(p, gen);
}

static inline uint32_t qcount(sp_workers *p)
{
	return atomic_load_explicit(&p->count, memory_order_relaxed);
}

static inline void set_qcount(sp_workers *p, uint32_t n)
{
	atomic_store_explicit(&p->count, n, memory_order_relaxed);
}

static inline int real_searchers(const sp_workers *p)
{
	return p->nsearching - p->ncreating;
}

/* Under the lock: room for one more item, or false (ENOMEM). */
static bool ring_reserve(sp_workers *p)
{
	uint32_t n = qcount(p);
	if (n < p->cap)
		return true;
	uint32_t cap = p->cap ? p->cap * 2 : 64;
	sp_tsan_ignore_begin(); /* internal memory: see sanitizer_ignore.h */
	sp_work *r = malloc((size_t)cap * sizeof *r);
	sp_tsan_ignore_end();
	if (!r)
		return false;
	for (uint32_t i = 0; i < n; i++) {
		sp_work *from = &p->ring[(p->head + i) % p->cap];
		/* Carry each queued item's release over to its new slot (TSan). */
		sp_tsan_acquire(from);
		r[i] = *from;
		sp_tsan_release(&r[i]);
	}
	sp_tsan_ignore_begin();
	free(p->ring);
	sp_tsan_ignore_end();
	p->ring = r;
	p->cap = cap;
	p->head = 0;
	return true;
}

/* Under the lock, after ring_reserve: appends *w. */
static void enqueue(sp_workers *p, const sp_work *w)
{
	uint32_t n = qcount(p);
	sp_work *slot = &p->ring[(p->head + n) % p->cap];
	/*
	 * What the submitter did happens before run: announced on the slot,
	 * which stays put until a worker takes the item (a grown ring is a
	 * new array, taken from its new slots).
	 */
	sp_tsan_release(slot);
	*slot = *w;
	set_qcount(p, n + 1);
}

/* Under the lock: takes the oldest item; false if there is none. */
static bool dequeue(sp_workers *p, sp_work *out)
{
	if (qcount(p) == 0)
		return false;
	*out = p->ring[p->head];
	sp_tsan_acquire(&p->ring[p->head]); /* the submitter's effects */
	p->head = (p->head + 1) % p->cap;
	p->taken++;
	set_qcount(p, qcount(p) - 1);
	return true;
}

static void idle_remove(sp_workers *p, struct sp_worker *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		p->idle_head = w->next;
	if (w->next)
		w->next->prev = w->prev;
	else
		p->idle_tail = w->prev;
	w->next = w->prev = NULL;
	w->on_list = false;
	p->nidle--;
}

static void idle_push(sp_workers *p, struct sp_worker *w)
{
	atomic_store_explicit(&w->word, W_AWAKE, memory_order_relaxed);
	w->prev = NULL;
	w->next = p->idle_head;
	if (p->idle_head)
		p->idle_head->prev = w;
	else
		p->idle_tail = w;
	p->idle_head = w;
	w->on_list = true;
	p->nidle++;
}

/* Under the lock: takes the most recently idle worker as a searcher. */
static struct worker_claim {
	struct sp_worker *wake;
	bool create;
} claim_searcher(sp_workers *p)
{
	struct worker_claim c = { NULL, false };
	p->nsearching++;
	c.wake = p->idle_head;
	if (c.wake) {
		idle_remove(p, c.wake);
	} else {
		p->ncreating++;
		c.create = true;
	}
	return c;
}

/* Outside the lock: hands a claimed idle worker its claim. */
static void wake_claimed(struct sp_worker *k)
{
	if (atomic_exchange_explicit(&k->word, W_CLAIMED, memory_order_release) == W_PARKED)
		sp_park_wake_one(&k->word);
}

/*
 * Under the lock: if items are queued with no real searcher, claim an idle
 * worker for them (returned, to wake) or arm the retry timer.
 */
static struct sp_worker *rescue_locked(sp_workers *p)
{
	if (p->closing || qcount(p) == 0 || real_searchers(p) > 0)
		return NULL;
	if (p->idle_head) {
		struct sp_worker *k = p->idle_head;
		p->nsearching++;
		idle_remove(p, k);
		return k;
	}
	if (p->retry_state == RETRY_IDLE) {
		p->retry.when = sp_now_ns() + p->retry_backoff_ns;
		p->retry_state = RETRY_ARMED;
		if (sp_timer_add(&p->retry) != 0) /* reserved: only in a fork child out of threads */
			p->retry_state = RETRY_IDLE;
	}
	return NULL;
}

static void *worker_main(void *arg);

/*
 * Under the lock: a creation is over - by the new thread, first thing
 * (only a thread that runs can settle its own success, so a pending one is
 * never mistaken for a searcher that already left), or by its creator after
 * a failure.  Returns an idle worker to wake for stranded items, if any.
 */
static struct sp_worker *creation_settled(sp_workers *p)
{
	p->ncreating--;
	if (p->creation_waiters > 0) {
		atomic_fetch_add_explicit(&p->created_word, 1, memory_order_relaxed);
		sp_park_wake_all(&p->created_word);
	}
	return rescue_locked(p);
}

/* Joins and frees the workers of a list linked by all_next. */
static void join_all(struct sp_worker *list)
{
	while (list) {
		struct sp_worker *w = list;
		list = w->all_next;
		pthread_join(w->tid, NULL);
		sp_tsan_ignore_begin();
		free(w);
		sp_tsan_ignore_end();
	}
}

/* Joins the threads that left on idle timeout. */
static void reap_exited(sp_workers *p)
{
	struct sp_worker *dead = NULL;
	sp_ilock_lock(&p->lock);
	if (p->nexited > 0) {
		for (struct sp_worker **pp = &p->all; *pp;) {
			struct sp_worker *w = *pp;
			if (w->exited) {
				*pp = w->all_next;
				w->all_next = dead;
				dead = w;
			} else {
				pp = &w->all_next;
			}
		}
		p->nexited = 0;
	}
	sp_ilock_unlock(&p->lock);
	join_all(dead);
}

/*
 * Creates the thread claim_searcher counted (in nsearching and ncreating);
 * it starts as a searcher and settles the creation itself.  On failure the
 * count is undone here and items left without a searcher are rescued.
 * Either way, submits waiting for the outcome are woken.
 */
static int create_thread(sp_workers *p)
{
	reap_exited(p);
	int err = ENOMEM;
	sp_tsan_ignore_begin();
	struct sp_worker *w = calloc(1, sizeof *w);
	sp_tsan_ignore_end();
	pthread_attr_t attr;
	if (w && pthread_attr_init(&attr) == 0) {
		w->pool = p;
		sp_ilock_lock(&p->lock);
		w->all_next = p->all;
		p->all = w;
		sp_ilock_unlock(&p->lock);
		/* Workers inherit a fully blocked mask: signals go to the application's threads. */
		sigset_t all, old;
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		err = sp_workers_create_thread(&w->tid, &attr, worker_main, w);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (err == 0)
			pthread_setname_np(w->tid, "sp-worker"); /* not its creator's for long */
		pthread_attr_destroy(&attr);
		if (err)
			err = err == EAGAIN ? EAGAIN : ENOMEM;
	}
	if (!err)
		return 0; /* the thread settles the count itself (creation_settled) */
	sp_ilock_lock(&p->lock);
	p->nsearching--;
	if (w && w->pool) {
		struct sp_worker **pp = &p->all;
		while (*pp != w)
			pp = &(*pp)->all_next;
		*pp = w->all_next;
	}
	struct sp_worker *k = creation_settled(p);
	sp_ilock_unlock(&p->lock);
	if (k)
		wake_claimed(k);
	sp_tsan_ignore_begin();
	free(w);
	sp_tsan_ignore_end();
	return err;
}

/* On the timer thread: items sit with no searcher after a failed creation. */
static void retry_fire(sp_timer *t)
{
	sp_workers *p = (sp_workers *)((char *)t - offsetof(sp_workers, retry));
	struct worker_claim c = { NULL, false };
	sp_ilock_lock(&p->lock);
	p->retry_state = RETRY_FIRING;
	if (!p->closing && qcount(p) > 0 && real_searchers(p) == 0)
		c = claim_searcher(p);
	sp_ilock_unlock(&p->lock);
	int err = 0;
	if (c.wake)
		wake_claimed(c.wake);
	else if (c.create)
		err = create_thread(p);
	sp_ilock_lock(&p->lock);
	p->retry_state = RETRY_IDLE;
	if (err) {
		p->retry_backoff_ns *= 2;
		if (p->retry_backoff_ns > RETRY_MAX_NS)
			p->retry_backoff_ns = RETRY_MAX_NS;
	} else {
		p->retry_backoff_ns = RETRY_MIN_NS;
	}
	/*
	 * Items may have been stranded while this fire ran (by this creation
	 * failing, or by another worker's: rescue_locked does not arm a
	 * firing timer) - this check, under the lock, catches both.
	 */
	struct sp_worker *k = rescue_locked(p);
	if (k)
		wake_claimed(k);
	/* fini may wait for this fire to end; woken under the lock, p stays valid. */
	atomic_fetch_add_explicit(&p->retry_word, 1, memory_order_relaxed);
	sp_park_wake_all(&p->retry_word);
	sp_ilock_unlock(&p->lock);
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
 * Searching: GOT_ITEM with *out (and *next, an idle worker to wake if the
 * queue still holds items and no other real searcher exists), WENT_IDLE once
 * self is on the idle list, or MUST_EXIT when fini runs.
 */
static int search(sp_workers *p, struct sp_worker *self, sp_work *out, struct sp_worker **next)
{
	/*
	 * Spin on the queue for a few microseconds before going idle, but
	 * only one searcher per two CPUs at a time (Go's limit on spinning
	 * Ms): many workers finishing together must not all burn CPUs.
	 */
	int rounds = 0;
	if (sp_spin_limit() > 0) {
		int n = atomic_fetch_add_explicit(&p->nspinning, 1, memory_order_relaxed);
		if (n < max_spinners())
			rounds = 8;
		else
			atomic_fetch_sub_explicit(&p->nspinning, 1, memory_order_relaxed);
	}
	bool spinning = rounds > 0;
	int r;
	for (;;) {
		if (qcount(p) == 0 && rounds > 0) {
			sp_spin_while_eq(&p->count, 0);
			if (--rounds > 0 && qcount(p) == 0)
				continue;
		}
		sp_ilock_lock(&p->lock);
		if (dequeue(p, out)) {
			p->nsearching--;
			*next = rescue_locked(p); /* the items left behind */
			r = GOT_ITEM;
			break;
		}
		if (rounds == 0 || p->closing) {
			p->nsearching--;
			if (p->closing) {
				r = MUST_EXIT;
			} else {
				idle_push(p, self);
				r = WENT_IDLE;
			}
			break;
		}
		sp_ilock_unlock(&p->lock);
	}
	sp_ilock_unlock(&p->lock);
	if (spinning)
		atomic_fetch_sub_explicit(&p->nspinning, 1, memory_order_relaxed);
	return r;
}

/* Idle: true once claimed (search again), false if the thread should exit. */
static bool idle_wait(sp_workers *p, struct sp_worker *self)
{
	int64_t deadline = sp_now_ns() + SP_WORKER_IDLE_NS;
	uint32_t s = W_AWAKE;
	for (;;) {
		if (atomic_compare_exchange_strong_explicit(&self->word, &s, W_PARKED,
							    memory_order_acquire, memory_order_acquire) ||
		    s == W_PARKED) {
			if (sp_park_wait(&self->word, W_PARKED, deadline) == ETIMEDOUT) {
				sp_ilock_lock(&p->lock);
				bool leave = self->on_list;
				if (leave) {
					idle_remove(p, self);
					self->exited = true;
					p->nexited++;
				}
				sp_ilock_unlock(&p->lock);
				if (leave)
					return false;
				deadline = -1; /* claimed: the wake is on its way */
			}
			s = atomic_load_explicit(&self->word, memory_order_acquire);
		}
		if (s == W_CLAIMED)
			return true;
		if (s == W_EXIT)
			return false;
	}
}

static void *worker_main(void *arg)
{
	struct sp_worker *self = arg;
	sp_workers *p = self->pool;
	pthread_setname_np(pthread_self(), "sp-worker");
	sp_ilock_lock(&p->lock);
	struct sp_worker *k = creation_settled(p); /* counted as searching by the creator */
	sp_ilock_unlock(&p->lock);
	if (k)
		wake_claimed(k);
	for (;;) {
		sp_work w;
		struct sp_worker *next = NULL;
		int r = search(p, self, &w, &next);
		if (r == MUST_EXIT)
			return NULL;
		if (r == WENT_IDLE) {
			if (!idle_wait(p, self))
				return NULL;
			continue;
		}
		if (next)
			wake_claimed(next);
		w.run(&w);
		/* Search again - counted before `after` unblocks new work. */
		sp_ilock_lock(&p->lock);
		p->nsearching++;
		sp_ilock_unlock(&p->lock);
		if (w.after)
			w.after(&w);
	}
}

int sp_workers_submit(sp_workers *p, const sp_work *w)
{
	check_fork(p);
	sp_ilock_lock(&p->lock);
	for (;;) {
		if (!ring_reserve(p)) {
			sp_ilock_unlock(&p->lock);
			return ENOMEM;
		}
		if (real_searchers(p) > 0) {
			enqueue(p, w);
			sp_ilock_unlock(&p->lock);
			return 0;
		}
		if (p->idle_head) {
			struct worker_claim c = claim_searcher(p);
			enqueue(p, w);
			sp_ilock_unlock(&p->lock);
			wake_claimed(c.wake);
			return 0;
		}
		if (p->ncreating > 0) {
			/* Its thread may yet fail to start: wait for the outcome. */
			uint32_t seen = atomic_load_explicit(&p->created_word, memory_order_relaxed);
			p->creation_waiters++;
			sp_ilock_unlock(&p->lock);
			sp_park_wait(&p->created_word, seen, -1);
			sp_ilock_lock(&p->lock);
			p->creation_waiters--;
			continue;
		}
		claim_searcher(p); /* no idle worker: counts a thread to create */
		sp_ilock_unlock(&p->lock);
		int err = create_thread(p);
		if (err)
			return err;
		sp_ilock_lock(&p->lock);
	}
}

void sp_workers_fini(sp_workers *p)
{
	check_fork(p);
	sp_ilock_lock(&p->lock);
	p->closing = true;
	if (p->retry_state == RETRY_ARMED && sp_timer_remove(&p->retry))
		p->retry_state = RETRY_IDLE;
	while (p->retry_state != RETRY_IDLE) {
		/* The timer thread took it: wait until its fire is over. */
		uint32_t seen = atomic_load_explicit(&p->retry_word, memory_order_relaxed);
		sp_ilock_unlock(&p->lock);
		sp_park_wait(&p->retry_word, seen, -1);
		sp_ilock_lock(&p->lock);
	}
	while (p->idle_head)
		idle_remove(p, p->idle_head);
	struct sp_worker *all = p->all;
	p->all = NULL;
	sp_ilock_unlock(&p->lock);
	/* Idle ones exit when told; searchers see `closing` once the queue is empty. */
	for (struct sp_worker *w = all; w; w = w->all_next)
		if (!w->exited && atomic_exchange_explicit(&w->word, W_EXIT, memory_order_release) == W_PARKED)
			sp_park_wake_one(&w->word);
	join_all(all);
	sp_tsan_ignore_begin();
	free(p->ring);
	sp_tsan_ignore_end();
	p->ring = NULL;
	sp_timer_unreserve(); /* the retry is off the heap for good */
}
