/*
 * sync/timer.c - the shared deadline thread: a min-heap of sp_timer under
 * one small lock, served by one lazily started detached thread.  See timer.h.
 *
 * Wake protocol: the thread reads `seq` under the lock, records the deadline
 * it will sleep until in `sleep_until`, drops the lock and parks on `seq`
 * with that deadline.  An add that lands earlier than `sleep_until` bumps
 * `seq` under the lock (so a thread between unlock and park sees a changed
 * word and does not sleep) and wakes it after unlocking.  While the thread
 * is awake `sleep_until` is INT64_MIN: it will look at the heap again anyway.
 */
#include "timer.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>

#include "ctx_internal.h"
#include "park.h"
#include "sanitizer.h"
#include "sanitizer_ignore.h"

/* An sp_timer_unreserve asking the thread to leave; on the asker's stack. */
struct stop_req {
	_Atomic uint32_t done;  /* set (and woken) once the thread decided     */
	bool exited;            /* it left: the asker joins it                 */
	pthread_t thread;
};

static struct {
	sp_ilock lock;
	_Atomic uint32_t seq;   /* bumped to wake the thread early             */
	bool started;
	bool own;               /* started by a reservation and only used by
	                           reserved timers since: it may leave with the
	                           last reservation                             */
	pthread_t thread;       /* the running thread (joinable)               */
	struct stop_req *stop;  /* a pending request to leave, or NULL         */
	int64_t sleep_until;    /* what the parked thread waits for            */
	sp_timer **heap;
	int32_t n, cap;
	int32_t reserved;       /* sp_timer_reserve calls not yet given back   */
	int32_t n_reserved;     /* reserved timers on the heap (within n)      */
} T;

static void heap_set(int32_t i, sp_timer *t)
{
	T.heap[i] = t;
	t->idx = i;
}

static void sift_up(int32_t i)
{
	sp_timer *t = T.heap[i];
	while (i > 0) {
		int32_t p = (i - 1) / 2;
		if (T.heap[p]->when <= t->when)
			break;
		heap_set(i, T.heap[p]);
		i = p;
	}
	heap_set(i, t);
}

static void sift_down(int32_t i)
{
	sp_timer *t = T.heap[i];
	for (;;) {
		int32_t c = 2 * i + 1;
		if (c >= T.n)
			break;
		if (c + 1 < T.n && T.heap[c + 1]->when < T.heap[c]->when)
			c++;
		if (t->when <= T.heap[c]->when)
			break;
		heap_set(i, T.heap[c]);
		i = c;
	}
	heap_set(i, t);
}

/* Takes the entry at i off the heap (lock held). */
static void heap_delete(int32_t i)
{
	sp_timer *t = T.heap[i];
	T.n--;
	if (i != T.n) {
		heap_set(i, T.heap[T.n]);
		if (i > 0 && T.heap[(i - 1) / 2]->when > T.heap[i]->when)
			sift_up(i);
		else
			sift_down(i);
	}
	t->idx = -1;
	if (t->reserved)
		T.n_reserved--;
}

static void *timer_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "sp-timer");
	sp_ilock_lock(&T.lock);
	for (;;) {
		if (T.stop) {
			/* Leave only if still nobody needs us (an add may have come). */
			struct stop_req *r = T.stop;
			bool leave = T.n == 0 && T.reserved == 0 && T.own;
			T.stop = NULL;
			if (leave)
				T.started = false;
			r->exited = leave;
			atomic_store_explicit(&r->done, 1, memory_order_release);
			sp_park_wake_all(&r->done); /* the asker may be gone: a stale wake is harmless */
			if (leave) {
				sp_ilock_unlock(&T.lock);
				return NULL;
			}
		}
		if (T.n > 0 && T.heap[0]->when <= sp_now_ns()) {
			sp_timer *t = T.heap[0];
			if (!t->reserved)
				T.own = false; /* served a deadline (one armed before a fork, say) */
			heap_delete(0);
			T.sleep_until = INT64_MIN;
			sp_ilock_unlock(&T.lock);
			sp_tsan_acquire(t); /* what its adder did before sp_timer_add */
			t->fire(t);
			sp_ilock_lock(&T.lock);
			continue;
		}
		int64_t until = T.n > 0 ? T.heap[0]->when : -1;
		T.sleep_until = T.n > 0 ? until : INT64_MAX;
		uint32_t seq = atomic_load_explicit(&T.seq, memory_order_relaxed);
		sp_ilock_unlock(&T.lock);
		sp_park_wait(&T.seq, seq, until);
		sp_ilock_lock(&T.lock);
		T.sleep_until = INT64_MIN;
	}
	return NULL;
}

/*
 * fork(): the heap is consistent in the child (the lock is held across the
 * fork), but the thread does not exist there; the next sp_timer_add in the
 * child starts one, which then serves every armed timer.
 */
static void timer_atfork_prepare(void)
{
	sp_ilock_lock(&T.lock);
}

static void timer_atfork_parent(void)
{
	sp_ilock_unlock(&T.lock);
}

_Atomic bool sp_timer_orphans_;

static void timer_atfork_child(void)
{
	atomic_store_explicit(&T.lock.v, 0, memory_order_relaxed);
	T.started = false;
	T.stop = NULL; /* its asker is a thread of the parent */
	T.sleep_until = INT64_MIN;
	/*
	 * Timers armed before the fork have no thread to fire them.  Starting
	 * one here (a thread created in an atfork handler) would break
	 * ThreadSanitizer's fork support and cost every fork-then-exec a
	 * thread; the child's first timer or context wait starts it instead.
	 */
	atomic_store_explicit(&sp_timer_orphans_, T.n > 0, memory_order_relaxed);
}

static void timer_register_atfork(void)
{
	pthread_atfork(timer_atfork_prepare, timer_atfork_parent, timer_atfork_child);
}

static pthread_once_t timer_atfork_once = PTHREAD_ONCE_INIT;

void sp_timer_atfork_init(void)
{
	pthread_once(&timer_atfork_once, timer_register_atfork);
}

/* Starts the thread with every signal blocked (lock held). */
static int timer_start(void)
{
	pthread_attr_t attr;
	pthread_t th;
	sigset_t all, old;

	if (pthread_attr_init(&attr) != 0)
		return EAGAIN;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int r = pthread_create(&th, &attr, timer_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (r != 0)
		return EAGAIN;
	pthread_setname_np(th, "sp-timer"); /* named from here too: visible at once */
	T.started = true;
	T.own = false;
	T.thread = th;
	T.sleep_until = INT64_MIN;
	atomic_store_explicit(&sp_timer_orphans_, false, memory_order_relaxed);
	return 0;
}

/* Lock held: makes room for `more` unreserved timers beyond the invariant. */
static int heap_grow(int32_t more)
{
	int32_t need = T.n - T.n_reserved + T.reserved + more;
	if (need <= T.cap)
		return 0;
	int32_t cap = T.cap ? T.cap : 64;
	while (cap < need)
		cap *= 2;
	sp_tsan_ignore_begin(); /* internal memory: see sanitizer_ignore.h */
	sp_timer **h = realloc(T.heap, (size_t)cap * sizeof *h);
	sp_tsan_ignore_end();
	if (!h)
		return ENOMEM;
	T.heap = h;
	T.cap = cap;
	return 0;
}

int sp_timer_reserve(void)
{
	pthread_once(&timer_atfork_once, timer_register_atfork);
	sp_ilock_lock(&T.lock);
	int r = 0;
	if (!T.started) {
		r = timer_start();
		T.own = r == 0;
	}
	if (r == 0)
		r = heap_grow(1);
	if (r == 0)
		T.reserved++;
	sp_ilock_unlock(&T.lock);
	return r;
}

/*
 * The last reservation gone, no timer armed, and the thread only ever
 * served reservations: it leaves, and is joined here - so a program whose
 * last errgroup is destroyed has no library thread left.  A thread that
 * served an unreserved timer (a context deadline) stays for good.
 */
void sp_timer_unreserve(void)
{
	struct stop_req r = { .exited = false };
	bool ask = false;
	sp_ilock_lock(&T.lock);
	T.reserved--;
	/* Never from the thread itself (a fire function - a deadline's hook - may get here). */
	if (T.reserved == 0 && T.n == 0 && T.own && T.started && !T.stop &&
	    !pthread_equal(T.thread, pthread_self())) {
		r.thread = T.thread;
		T.stop = &r;
		atomic_fetch_add_explicit(&T.seq, 1, memory_order_relaxed);
		ask = true;
	}
	sp_ilock_unlock(&T.lock);
	if (!ask)
		return;
	sp_park_wake_one(&T.seq);
	while (!atomic_load_explicit(&r.done, memory_order_acquire))
		sp_park_wait(&r.done, 0, -1);
	if (r.exited)
		pthread_join(r.thread, NULL);
}

void sp_timer_resume_slow(void)
{
	sp_ilock_lock(&T.lock);
	if (!T.started && T.n > 0)
		(void)timer_start(); /* own stays false: it serves deadlines, it stays */
	else
		atomic_store_explicit(&sp_timer_orphans_, false, memory_order_relaxed);
	sp_ilock_unlock(&T.lock);
}

int sp_timer_add(sp_timer *t)
{
	bool wake = false;

	pthread_once(&timer_atfork_once, timer_register_atfork);
	sp_tsan_release(t); /* for the timer thread, before fire */
	sp_ilock_lock(&T.lock);
	if (!T.started) {
		int r = timer_start();
		if (r) {
			sp_ilock_unlock(&T.lock);
			return r;
		}
		/* Started for a reservation (in a fork child): it may leave with it. */
		T.own = t->reserved && T.n == T.n_reserved;
	}
	if (!t->reserved)
		T.own = false; /* a context deadline: the thread stays for good */
	/*
	 * Room: cap >= (unreserved timers on the heap) + T.reserved always
	 * holds, so a reserved timer (its room counted in T.reserved, not yet
	 * used) always fits; an unreserved one may need the heap to grow.
	 */
	if (t->reserved) {
		T.n_reserved++;
	} else if (heap_grow(1) != 0) {
		sp_ilock_unlock(&T.lock);
		return ENOMEM;
	}
	T.n++;
	heap_set(T.n - 1, t);
	sift_up(T.n - 1);
	if (t->when < T.sleep_until) {
		T.sleep_until = t->when;
		atomic_fetch_add_explicit(&T.seq, 1, memory_order_relaxed);
		wake = true;
	}
	sp_ilock_unlock(&T.lock);
	if (wake)
		sp_park_wake_one(&T.seq);
	return 0;
}

bool sp_timer_remove(sp_timer *t)
{
	bool removed = false;

	sp_ilock_lock(&T.lock);
	if (t->idx >= 0) {
		heap_delete(t->idx);
		removed = true;
	}
	sp_ilock_unlock(&T.lock);
	return removed;
}
