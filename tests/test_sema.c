/*
 * tests/test_sema.c - the weighted semaphore (sync/sema.c): ports of
 * x/sync's semaphore tests, FIFO order, cancellation and a cancellation
 * storm.
 */
#include "sptest.h"
#include "common.h"
#include "ctx_internal.h"
#include "syncpool/ctx.h"
#include "syncpool/sema.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if SP_TSAN || SP_ASAN
#define SCALE 4
#else
#define SCALE 1
#endif

/* The queue's ends, read under the semaphore's internal lock (white-box). */
static void *peek(sp_sema *s, bool tail)
{
	sp_ilock *l = (sp_ilock *)&s->lock_;
	sp_ilock_lock(l);
	void *p = tail ? s->tail_ : s->head_;
	sp_ilock_unlock(l);
	return p;
}

/* Waits (bounded) until the queue's tail differs from `prev`; returns it. */
static void *wait_enqueued(sp_sema *s, void *prev)
{
	int64_t end = sptest_now_ns() + sptest_scaled(SPTEST_S(5));
	void *t;
	while ((t = peek(s, true)) == prev || t == NULL) {
		ck_assert_msg(sptest_now_ns() < end, "waiter never queued");
		sptest_sleep_ns(SPTEST_MS(1) / 10);
	}
	return t;
}

static int acquire_timeout(sp_sema *s, int64_t n, int64_t timeout_ns)
{
	sp_ctx *c;
	ck_assert_int_eq(sp_ctx_with_timeout(NULL, timeout_ns, &c), 0);
	int err = sp_sema_acquire(s, n, c);
	sp_ctx_release(c);
	return err;
}

START_TEST(test_init_args)
{
	sp_sema s;
	ck_assert_int_eq(sp_sema_init(&s, -1), EINVAL);
	ck_assert_int_eq(sp_sema_init(&s, 0), 0);
	ck_assert_int_eq(sp_sema_acquire(&s, 0, NULL), 0);
	ck_assert_int_eq(sp_sema_acquire(&s, 1, NULL), EINVAL);
	ck_assert(sp_sema_try_acquire(&s, 0));
	ck_assert(!sp_sema_try_acquire(&s, 1));
	sp_sema_destroy(&s);
	ck_assert_int_eq(sp_sema_init(&s, 3), 0);
	ck_assert_int_eq(sp_sema_acquire(&s, -1, NULL), EINVAL);
	ck_assert(!sp_sema_try_acquire(&s, -1));
	ck_assert(!sp_sema_try_acquire(&s, 4));
	ck_assert_int_eq(sp_sema_acquire(&s, 3, NULL), 0);
	sp_sema_release(&s, 3);
	ck_assert(sp_sema_try_acquire(&s, 3));
	sp_sema_release(&s, 3);
	sp_sema_destroy(&s);
}
END_TEST

/* x/sync TestWeighted, plus the held-weight invariant. */
static sp_sema hammer_sem;
static _Atomic int64_t hammer_held;
static _Atomic int hammer_over;

static void *hammer(void *arg)
{
	int64_t n = (int64_t)(intptr_t)arg;
	unsigned seed = (unsigned)n * 7919u + 1;
	int loops = 2000 / SCALE;
	for (int i = 0; i < loops; i++) {
		ck_assert_int_eq(sp_sema_acquire(&hammer_sem, n, NULL), 0);
		int64_t h = atomic_fetch_add(&hammer_held, n) + n;
		if (h > hammer_sem.size_)
			atomic_store(&hammer_over, 1);
		if (rand_r(&seed) % 8 == 0)
			sptest_sleep_ns(rand_r(&seed) % 20000);
		atomic_fetch_sub(&hammer_held, n);
		sp_sema_release(&hammer_sem, n);
	}
	return NULL;
}

START_TEST(test_weighted_hammer)
{
	enum { N = 16 };
	static char args[N];
	ck_assert_int_eq(sp_sema_init(&hammer_sem, N), 0);
	atomic_store(&hammer_held, 0);
	atomic_store(&hammer_over, 0);
	(void)args;
	pthread_t t[N];
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, hammer, (void *)(intptr_t)i), 0);
	for (int i = 0; i < N; i++)
		ck_assert(sptest_join_within(t[i], SPTEST_S(60), NULL));
	ck_assert_int_eq(atomic_load(&hammer_over), 0);
	ck_assert(sp_sema_try_acquire(&hammer_sem, N));
	sp_sema_release(&hammer_sem, N);
	sp_sema_destroy(&hammer_sem);
}
END_TEST

/* x/sync TestWeightedPanic: releasing unheld weight is fatal. */
START_TEST(test_weighted_panic)
{
	sp_sema s;
	sp_sema_init(&s, 1);
	sp_sema_release(&s, 1);
}
END_TEST

START_TEST(test_release_too_much_panic)
{
	sp_sema s;
	sp_sema_init(&s, 5);
	ck_assert_int_eq(sp_sema_acquire(&s, 2, NULL), 0);
	sp_sema_release(&s, 3);
}
END_TEST

START_TEST(test_weighted_try_acquire)
{
	sp_sema s;
	sp_sema_init(&s, 2);
	bool tries[4];
	ck_assert_int_eq(sp_sema_acquire(&s, 1, NULL), 0);
	tries[0] = sp_sema_try_acquire(&s, 1);
	tries[1] = sp_sema_try_acquire(&s, 1);
	sp_sema_release(&s, 2);
	tries[2] = sp_sema_try_acquire(&s, 1);
	ck_assert_int_eq(sp_sema_acquire(&s, 1, NULL), 0);
	tries[3] = sp_sema_try_acquire(&s, 1);
	ck_assert(tries[0] && !tries[1] && tries[2] && !tries[3]);
	sp_sema_release(&s, 2);
	sp_sema_destroy(&s);
}
END_TEST

START_TEST(test_weighted_acquire)
{
	sp_sema s;
	sp_sema_init(&s, 2);
	int r[4];
	ck_assert_int_eq(sp_sema_acquire(&s, 1, NULL), 0);
	/* Those that must succeed get a long timeout: a slow machine (valgrind) may take 10 ms to get there. */
	r[0] = acquire_timeout(&s, 1, SPTEST_S(10));
	r[1] = acquire_timeout(&s, 1, SPTEST_MS(10));
	sp_sema_release(&s, 2);
	r[2] = acquire_timeout(&s, 1, SPTEST_S(10));
	ck_assert_int_eq(sp_sema_acquire(&s, 1, NULL), 0);
	r[3] = acquire_timeout(&s, 1, SPTEST_MS(10));
	ck_assert_int_eq(r[0], 0);
	ck_assert_int_eq(r[1], ETIMEDOUT);
	ck_assert_int_eq(r[2], 0);
	ck_assert_int_eq(r[3], ETIMEDOUT);
	sp_sema_release(&s, 2);
	ck_assert(sp_sema_try_acquire(&s, 2));
	sp_sema_destroy(&s);
}
END_TEST

/* x/sync TestWeightedDoesntBlockIfTooBig: here n > size is EINVAL at once. */
static sp_sema small_sem;
static void *small_user(void *arg)
{
	(void)arg;
	for (int i = 0; i < 5; i++) {
		ck_assert_int_eq(acquire_timeout(&small_sem, 1, sptest_scaled(SPTEST_S(10))), 0);
		sptest_sleep_ns(SPTEST_MS(1));
		sp_sema_release(&small_sem, 1);
	}
	return NULL;
}

START_TEST(test_doesnt_block_if_too_big)
{
	sp_sema_init(&small_sem, 2);
	sp_ctx *c;
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &c), 0);
	int64_t t0 = sp_now_ns();
	ck_assert_int_eq(sp_sema_acquire(&small_sem, 3, c), EINVAL);
	ck_assert_int_lt(sp_now_ns() - t0, SPTEST_MS(100) * sptest_slowdown());
	ck_assert_ptr_null(peek(&small_sem, false));
	sptest_run_threads(6, small_user, NULL, 0, SPTEST_S(20));
	sp_ctx_release(c);
	ck_assert(sp_sema_try_acquire(&small_sem, 2));
	sp_sema_destroy(&small_sem);
}
END_TEST

/* x/sync TestLargeAcquireDoesntStarve. */
static sp_sema starve_sem;
static _Atomic bool starve_running;
static void *starve_worker(void *arg)
{
	(void)arg;
	while (atomic_load(&starve_running)) {
		sptest_sleep_ns(SPTEST_MS(1));
		sp_sema_release(&starve_sem, 1);
		ck_assert_int_eq(sp_sema_acquire(&starve_sem, 1, NULL), 0);
	}
	sp_sema_release(&starve_sem, 1);
	return NULL;
}

START_TEST(test_large_acquire_doesnt_starve)
{
	enum { N = 8 };
	pthread_t t[N];
	sp_sema_init(&starve_sem, N);
	atomic_store(&starve_running, true);
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(sp_sema_acquire(&starve_sem, 1, NULL), 0);
		ck_assert_int_eq(pthread_create(&t[i], NULL, starve_worker, NULL), 0);
	}
	ck_assert_int_eq(acquire_timeout(&starve_sem, N, sptest_scaled(SPTEST_S(10))), 0);
	atomic_store(&starve_running, false);
	sp_sema_release(&starve_sem, N);
	for (int i = 0; i < N; i++)
		ck_assert(sptest_join_within(t[i], SPTEST_S(10), NULL));
	ck_assert(sp_sema_try_acquire(&starve_sem, N));
	sp_sema_destroy(&starve_sem);
}
END_TEST

/*
 * x/sync TestAllocCancelDoesntStarve: a cancelled large head lets the small
 * one in.  Cancelled by the test once the small one queued behind it (as in
 * Go): a 100 ms timeout used to end it before a slow machine had queued the
 * small one at all.
 */
static sp_sema cancel_sem;
static sp_ctx *cancel_large_ctx;
static void *large_with_timeout(void *arg)
{
	(void)arg;
	ck_assert_int_eq(sp_sema_acquire(&cancel_sem, 10, cancel_large_ctx), ECANCELED);
	return NULL;
}
static void *small_forever(void *arg)
{
	*(int *)arg = sp_sema_acquire(&cancel_sem, 1, NULL);
	sp_sema_release(&cancel_sem, 1);
	return NULL;
}

START_TEST(test_alloc_cancel_doesnt_starve)
{
	pthread_t big, small;
	int r = -1;
	sp_sema_init(&cancel_sem, 10);
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &cancel_large_ctx), 0);
	ck_assert_int_eq(sp_sema_acquire(&cancel_sem, 1, NULL), 0);
	ck_assert_int_eq(pthread_create(&big, NULL, large_with_timeout, NULL), 0);
	void *t1 = wait_enqueued(&cancel_sem, NULL);
	ck_assert_int_eq(pthread_create(&small, NULL, small_forever, &r), 0);
	wait_enqueued(&cancel_sem, t1);
	sp_ctx_cancel(cancel_large_ctx);
	ck_assert(sptest_join_within(small, SPTEST_S(5), NULL));
	ck_assert_int_eq(r, 0);
	ck_assert(sptest_join_within(big, SPTEST_S(5), NULL));
	sp_ctx_release(cancel_large_ctx);
	sp_sema_release(&cancel_sem, 1);
	ck_assert(sp_sema_try_acquire(&cancel_sem, 10));
	sp_sema_destroy(&cancel_sem);
}
END_TEST

/*
 * x/sync TestWeightedAcquireCanceled (Go #63615): a waiter cancelled before
 * enough weight is free fails and holds nothing; an already-done context
 * fails even when the weight is free.
 */
struct canceled_arg {
	sp_sema *s;
	sp_ctx *c;
};
static void *cancel_then_release(void *p)
{
	struct canceled_arg *a = p;
	wait_enqueued(a->s, NULL);
	sp_ctx_cancel(a->c);
	sp_sema_release(a->s, 1);
	return NULL;
}

START_TEST(test_weighted_acquire_canceled)
{
	sp_sema s;
	sp_ctx *c;
	pthread_t t;
	sp_sema_init(&s, 2);
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &c), 0);
	ck_assert_int_eq(sp_sema_acquire(&s, 1, NULL), 0);
	struct canceled_arg a = { &s, c };
	ck_assert_int_eq(pthread_create(&t, NULL, cancel_then_release, &a), 0);
	ck_assert_int_eq(sp_sema_acquire(&s, 2, c), ECANCELED);
	ck_assert(sptest_join_within(t, SPTEST_S(5), NULL));
	ck_assert(sp_sema_try_acquire(&s, 2));
	sp_sema_release(&s, 2);
	/* Done context, weight free: still fails, holds nothing. */
	ck_assert_int_eq(sp_sema_acquire(&s, 1, c), ECANCELED);
	ck_assert(sp_sema_try_acquire(&s, 2));
	sp_sema_release(&s, 2);
	sp_ctx_release(c);
	sp_sema_destroy(&s);
}
END_TEST

/* FIFO: waiters are served in arrival order. */
enum { FIFO_N = 12 };
static sp_sema fifo_sem;
static _Atomic int fifo_pos;
static int fifo_order[FIFO_N];
static void *fifo_waiter(void *arg)
{
	int id = (int)(intptr_t)arg;
	ck_assert_int_eq(sp_sema_acquire(&fifo_sem, 1, NULL), 0);
	fifo_order[atomic_fetch_add(&fifo_pos, 1)] = id;
	sp_sema_release(&fifo_sem, 1);
	return NULL;
}

START_TEST(test_fifo_order)
{
	pthread_t t[FIFO_N];
	void *tail = NULL;
	sp_sema_init(&fifo_sem, 1);
	atomic_store(&fifo_pos, 0);
	ck_assert_int_eq(sp_sema_acquire(&fifo_sem, 1, NULL), 0);
	for (int i = 0; i < FIFO_N; i++) {
		ck_assert_int_eq(pthread_create(&t[i], NULL, fifo_waiter, (void *)(intptr_t)i), 0);
		tail = wait_enqueued(&fifo_sem, tail);
	}
	/* No barging past the queue, even for weight that is free. */
	sp_sema_release(&fifo_sem, 1);
	for (int i = 0; i < FIFO_N; i++)
		ck_assert(sptest_join_within(t[i], SPTEST_S(5), NULL));
	for (int i = 0; i < FIFO_N; i++)
		ck_assert_int_eq(fifo_order[i], i);
	sp_sema_destroy(&fifo_sem);
}
END_TEST

/* A large head blocks smaller requests behind it; try_acquire does not barge. */
struct req {
	sp_sema *s;
	int64_t n;
	sp_ctx *c;
	_Atomic int state; /* 0 waiting, 1 acquired, 2 failed */
	int err;
};
static void *requester(void *p)
{
	struct req *r = p;
	r->err = sp_sema_acquire(r->s, r->n, r->c);
	atomic_store(&r->state, r->err ? 2 : 1);
	return NULL;
}

static void wait_state(struct req *r, int want)
{
	int64_t end = sptest_now_ns() + sptest_scaled(SPTEST_S(5));
	while (atomic_load(&r->state) != want) {
		ck_assert_msg(sptest_now_ns() < end, "state %d never reached", want);
		sptest_sleep_ns(SPTEST_MS(1) / 10);
	}
}

/* Starts a requester per r[i], in order, each queued before the next starts. */
static void queue_in_order(sp_sema *s, int n, pthread_t *t, struct req *r)
{
	void *tail = NULL;
	for (int i = 0; i < n; i++) {
		ck_assert_int_eq(pthread_create(&t[i], NULL, requester, &r[i]), 0);
		tail = wait_enqueued(s, tail);
	}
}

START_TEST(test_large_head_blocks_small)
{
	sp_sema s;
	pthread_t ta, tb;
	sp_sema_init(&s, 4);
	ck_assert_int_eq(sp_sema_acquire(&s, 3, NULL), 0);
	struct req a = { &s, 4, NULL, 0, 0 }, b = { &s, 1, NULL, 0, 0 };
	ck_assert_int_eq(pthread_create(&ta, NULL, requester, &a), 0);
	void *t1 = wait_enqueued(&s, NULL);
	ck_assert_int_eq(pthread_create(&tb, NULL, requester, &b), 0);
	wait_enqueued(&s, t1);
	sptest_sleep_ns(SPTEST_MS(5));
	ck_assert_int_eq(atomic_load(&b.state), 0); /* 1 unit free, but a is first */
	ck_assert(!sp_sema_try_acquire(&s, 1));
	ck_assert_int_eq(acquire_timeout(&s, 1, SPTEST_MS(5)), ETIMEDOUT);
	sp_sema_release(&s, 3);
	wait_state(&a, 1);
	sptest_sleep_ns(SPTEST_MS(2));
	ck_assert_int_eq(atomic_load(&b.state), 0);
	sp_sema_release(&s, 4);
	wait_state(&b, 1);
	ck_assert(sptest_join_within(ta, SPTEST_S(5), NULL));
	ck_assert(sptest_join_within(tb, SPTEST_S(5), NULL));
	sp_sema_release(&s, 1);
	ck_assert(sp_sema_try_acquire(&s, 4));
	sp_sema_destroy(&s);
}
END_TEST

/* acquire(0) is a request like any other: it queues behind waiters (x/sync). */
START_TEST(test_acquire_zero_queues)
{
	sp_sema s;
	pthread_t ta, tz;
	sp_sema_init(&s, 2);
	ck_assert_int_eq(sp_sema_acquire(&s, 2, NULL), 0);
	ck_assert_int_eq(sp_sema_acquire(&s, 0, NULL), 0); /* nobody queued: at once */
	struct req a = { &s, 1, NULL, 0, 0 }, z = { &s, 0, NULL, 0, 0 };
	ck_assert_int_eq(pthread_create(&ta, NULL, requester, &a), 0);
	void *t1 = wait_enqueued(&s, NULL);
	ck_assert(!sp_sema_try_acquire(&s, 0));
	ck_assert_int_eq(acquire_timeout(&s, 0, SPTEST_MS(5)), ETIMEDOUT);
	ck_assert_int_eq(pthread_create(&tz, NULL, requester, &z), 0);
	wait_enqueued(&s, t1);
	sptest_sleep_ns(SPTEST_MS(2));
	ck_assert_int_eq(atomic_load(&z.state), 0);
	sp_sema_release(&s, 1); /* a's turn, then z's (0 fits) */
	wait_state(&a, 1);
	wait_state(&z, 1);
	ck_assert(sptest_join_within(ta, SPTEST_S(5), NULL));
	ck_assert(sptest_join_within(tz, SPTEST_S(5), NULL));
	sp_sema_release(&s, 2);
	ck_assert(sp_sema_try_acquire(&s, 2));
	sp_sema_release(&s, 2);
	sp_sema_destroy(&s);
}
END_TEST

/* A failed init leaves the semaphore as it was (API.md: state unchanged). */
START_TEST(test_init_einval_unchanged)
{
	sp_sema s, copy;
	memset(&s, 0xa5, sizeof s);
	memcpy(&copy, &s, sizeof s);
	ck_assert_int_eq(sp_sema_init(&s, -1), EINVAL);
	ck_assert_int_eq(sp_sema_init(&s, INT64_MIN), EINVAL);
	ck_assert(memcmp(&s, &copy, sizeof s) == 0);
}
END_TEST

/* A waiter cancelled in the middle of the queue leaves; the order of the others holds. */
START_TEST(test_cancelled_middle_waiter)
{
	sp_sema s;
	pthread_t t[3];
	sp_sema_init(&s, 2);
	ck_assert_int_eq(sp_sema_acquire(&s, 2, NULL), 0);
	sp_ctx *c;
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &c), 0);
	struct req r[3] = { { &s, 1, NULL, 0, 0 }, { &s, 1, c, 0, 0 }, { &s, 2, NULL, 0, 0 } };
	struct req *a = &r[0], *b = &r[1], *d = &r[2];
	queue_in_order(&s, 3, t, r);
	sp_ctx_cancel(c);
	wait_state(b, 2);
	ck_assert_int_eq(b->err, ECANCELED);
	sptest_sleep_ns(SPTEST_MS(2));
	ck_assert_int_eq(atomic_load(&a->state), 0); /* nothing was freed by b leaving */
	ck_assert_int_eq(atomic_load(&d->state), 0);
	sp_sema_release(&s, 1);
	wait_state(a, 1);
	sptest_sleep_ns(SPTEST_MS(2));
	ck_assert_int_eq(atomic_load(&d->state), 0); /* needs 2: 1 is held by a */
	sp_sema_release(&s, 1);
	sp_sema_release(&s, 1); /* a's */
	wait_state(d, 1);
	for (int i = 0; i < 3; i++)
		ck_assert(sptest_join_within(t[i], SPTEST_S(5), NULL));
	ck_assert(!sp_sema_try_acquire(&s, 1));
	sp_sema_release(&s, 2);
	ck_assert(sp_sema_try_acquire(&s, 2));
	sp_sema_release(&s, 2);
	sp_ctx_release(c);
	sp_sema_destroy(&s);
}
END_TEST

/* A cancelled head wakes those behind it promptly. */
START_TEST(test_cancelled_head_wakes_next)
{
	sp_sema s;
	pthread_t t[3];
	sp_sema_init(&s, 4);
	ck_assert_int_eq(sp_sema_acquire(&s, 2, NULL), 0);
	sp_ctx *c;
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &c), 0);
	struct req r[3] = { { &s, 4, c, 0, 0 }, { &s, 1, NULL, 0, 0 }, { &s, 1, NULL, 0, 0 } };
	struct req *a = &r[0], *b = &r[1], *d = &r[2];
	queue_in_order(&s, 3, t, r);
	int64_t t0 = sp_now_ns();
	sp_ctx_cancel(c);
	wait_state(b, 1);
	wait_state(d, 1);
	ck_assert_int_lt(sp_now_ns() - t0, SPTEST_MS(500) * sptest_slowdown());
	wait_state(a, 2);
	ck_assert_int_eq(a->err, ECANCELED);
	for (int i = 0; i < 3; i++)
		ck_assert(sptest_join_within(t[i], SPTEST_S(5), NULL));
	sp_sema_release(&s, 4);
	ck_assert(sp_sema_try_acquire(&s, 4));
	sp_ctx_release(c);
	sp_sema_destroy(&s);
}
END_TEST

/*
 * Promptness: a waiter returns within a few ms of its context's cancel.
 * The latency is taken in the waiter itself; on a loaded machine one trial
 * can lose its CPU for a while, so the best of 5 must be a few ms and none
 * may take long.
 */
struct prompt {
	sp_sema *s;
	sp_ctx *c;
	int err;
	int64_t returned;
};
static void *prompt_waiter(void *p)
{
	struct prompt *a = p;
	a->err = sp_sema_acquire(a->s, 1, a->c);
	a->returned = sp_now_ns();
	return NULL;
}

START_TEST(test_cancel_prompt)
{
	sp_sema s;
	int64_t best = INT64_MAX;
	sp_sema_init(&s, 1);
	ck_assert_int_eq(sp_sema_acquire(&s, 1, NULL), 0);
	for (int trial = 0; trial < 5; trial++) {
		pthread_t t;
		struct prompt a = { &s, NULL, -1, 0 };
		ck_assert_int_eq(sp_ctx_with_cancel(NULL, &a.c), 0);
		ck_assert_int_eq(pthread_create(&t, NULL, prompt_waiter, &a), 0);
		wait_enqueued(&s, NULL);
		sptest_sleep_ns(SPTEST_MS(2));
		int64_t t0 = sp_now_ns();
		sp_ctx_cancel(a.c);
		ck_assert(sptest_join_within(t, SPTEST_S(5), NULL));
		ck_assert_int_eq(a.err, ECANCELED);
		int64_t lat = a.returned - t0;
		ck_assert_int_lt(lat, SPTEST_S(1) * sptest_slowdown());
		if (lat < best)
			best = lat;
		ck_assert_ptr_null(peek(&s, false));
		sp_ctx_release(a.c);
	}
	ck_assert_int_lt(best, SPTEST_MS(5 * SCALE) * sptest_slowdown());
	sp_sema_release(&s, 1);
	ck_assert(sp_sema_try_acquire(&s, 1));
	sp_sema_destroy(&s);
}
END_TEST

/*
 * Cancellation storm: many threads with short random timeouts and weights
 * while others acquire and release; the held weight never exceeds the size
 * and, at the end, the full size can be acquired again (no weight lost).
 */
enum { STORM_SIZE = 8 };
static sp_sema storm_sem;
static _Atomic int64_t storm_held;
static _Atomic int storm_over;
static _Atomic int64_t storm_ok, storm_timeouts;

static void *storm_thread(void *arg)
{
	unsigned seed = (unsigned)(intptr_t)arg * 2654435761u;
	int loops = 300 / SCALE;
	for (int i = 0; i < loops; i++) {
		int64_t n = 1 + rand_r(&seed) % 4;
		sp_ctx *c = NULL;
		int kind = rand_r(&seed) % 4;
		if (kind == 0)
			ck_assert_int_eq(sp_ctx_with_timeout(NULL, rand_r(&seed) % 200000, &c), 0);
		else if (kind == 1)
			ck_assert_int_eq(sp_ctx_with_timeout(NULL, SPTEST_MS(1) + rand_r(&seed) % SPTEST_MS(2), &c), 0);
		int err = sp_sema_acquire(&storm_sem, n, c);
		if (err == 0) {
			if (atomic_fetch_add(&storm_held, n) + n > STORM_SIZE)
				atomic_store(&storm_over, 1);
			atomic_fetch_add(&storm_ok, 1);
			if (rand_r(&seed) % 4 == 0)
				sptest_sleep_ns(rand_r(&seed) % 50000);
			atomic_fetch_sub(&storm_held, n);
			sp_sema_release(&storm_sem, n);
		} else {
			ck_assert_int_eq(err, ETIMEDOUT);
			atomic_fetch_add(&storm_timeouts, 1);
		}
		sp_ctx_release(c);
	}
	return NULL;
}

START_TEST(test_cancel_storm)
{
	enum { N = 32 };
	pthread_t t[N];
	sp_sema_init(&storm_sem, STORM_SIZE);
	atomic_store(&storm_held, 0);
	atomic_store(&storm_over, 0);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, storm_thread, (void *)(intptr_t)(i + 1)), 0);
	for (int i = 0; i < N; i++)
		ck_assert(sptest_join_within(t[i], SPTEST_S(60), NULL));
	ck_assert_int_eq(atomic_load(&storm_over), 0);
	ck_assert_int_gt(atomic_load(&storm_ok), 0);
	ck_assert_ptr_null(peek(&storm_sem, false));
	ck_assert(sp_sema_try_acquire(&storm_sem, STORM_SIZE));
	sp_sema_release(&storm_sem, STORM_SIZE);
	sp_sema_destroy(&storm_sem);
}
END_TEST

/* Size 1 as a mutex: exclusive, under contention, many more threads than cores. */
static sp_sema mutex_sem;
static int64_t mutex_counter;
static void *mutex_thread(void *arg)
{
	(void)arg;
	for (int i = 0; i < 5000 / SCALE; i++) {
		ck_assert_int_eq(sp_sema_acquire(&mutex_sem, 1, NULL), 0);
		mutex_counter++;
		sp_sema_release(&mutex_sem, 1);
	}
	return NULL;
}

START_TEST(test_size1_exclusive)
{
	enum { N = 16 };
	sp_sema_init(&mutex_sem, 1);
	mutex_counter = 0;
	sptest_run_threads(N, mutex_thread, NULL, 0, SPTEST_S(60));
	ck_assert_int_eq(mutex_counter, (int64_t)N * (5000 / SCALE));
	ck_assert(sp_sema_try_acquire(&mutex_sem, 1));
	sp_sema_destroy(&mutex_sem);
}
END_TEST

/*
 * The context is done (its canceller is still calling the watches: a slow
 * AfterFunc hook registered first holds it), and only then is the weight
 * released to a waiter whose watch has not been called yet.  The waiter
 * must not keep weight freed after its context was done: it gives it back
 * and returns the context's error (Go's Acquire checks ctx after ready).
 */
static _Atomic int slow_hook_in, slow_hook_go;
static void slow_hook(void *arg)
{
	(void)arg;
	atomic_store(&slow_hook_in, 1);
	int64_t end = sptest_now_ns() + sptest_scaled(SPTEST_S(5));
	while (!atomic_load(&slow_hook_go) && sptest_now_ns() < end)
		sptest_sleep_ns(100000);
}
static sp_sema pend_sem;
static sp_ctx *pend_ctx;
static _Atomic int pend_tid;
static void *pend_acquirer(void *arg)
{
	(void)arg;
	atomic_store(&pend_tid, sptest_gettid());
	return (void *)(intptr_t)sp_sema_acquire(&pend_sem, 1, pend_ctx);
}
static void *pend_canceller(void *arg)
{
	(void)arg;
	sp_ctx_cancel(pend_ctx);
	return NULL;
}

START_TEST(test_grant_after_ctx_done_pending_watch)
{
	ck_assert_int_eq(sp_sema_init(&pend_sem, 1), 0);
	ck_assert_int_eq(sp_sema_acquire(&pend_sem, 1, NULL), 0); /* main holds the unit */
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &pend_ctx), 0);
	sp_ctx_hook *h = sp_ctx_after_func(pend_ctx, slow_hook, NULL); /* runs first */
	pthread_t y, c;
	ck_assert_int_eq(pthread_create(&y, NULL, pend_acquirer, NULL), 0);
	wait_enqueued(&pend_sem, NULL);
	/* y queued; its watch (added right after, after the hook) when it sleeps */
	int ytid = atomic_load(&pend_tid);
	ck_assert(sptest_await_parked(&ytid, 1, NULL, SPTEST_S(5)));
	ck_assert_int_eq(pthread_create(&c, NULL, pend_canceller, NULL), 0);
	int64_t end = sptest_now_ns() + sptest_scaled(SPTEST_S(5));
	while (!atomic_load(&slow_hook_in) && sptest_now_ns() < end)
		sptest_sleep_ns(100000);
	ck_assert(atomic_load(&slow_hook_in));
	ck_assert_int_eq(sp_ctx_err(pend_ctx), ECANCELED); /* done, y's watch not called yet */
	sp_sema_release(&pend_sem, 1); /* after the context is done */
	void *r;
	ck_assert(sptest_join_within(y, SPTEST_S(10), &r));
	atomic_store(&slow_hook_go, 1);
	ck_assert(sptest_join_within(c, SPTEST_S(10), NULL));
	ck_assert_int_eq((int)(intptr_t)r, ECANCELED);
	ck_assert(sp_sema_try_acquire(&pend_sem, 1)); /* the weight came back */
	sp_sema_release(&pend_sem, 1);
	ck_assert(!sp_ctx_hook_stop(h));
	sp_ctx_release(pend_ctx);
	sp_sema_destroy(&pend_sem);
}
END_TEST

/*
 * A release that finds waiters gives its weight back only under the queue
 * lock.  Were it to subtract first and then take the lock to serve the
 * queue, another release could serve the waiter meanwhile, and the waiter
 * could return, release and destroy the semaphore (x/sync's "acquire the
 * full weight to wait for the workers" idiom) before the first release has
 * touched the queue: a use after free (see sync/sema.c).  White-box: the
 * test holds the internal lock and checks that a release blocked on it has
 * not given its weight back yet.
 */
static sp_sema uaf_sem;
static _Atomic int uaf_tid;

static void *uaf_full_acquirer(void *arg)
{
	(void)arg;
	return (void *)(intptr_t)sp_sema_acquire(&uaf_sem, 2, NULL);
}

static void *uaf_releaser(void *arg)
{
	(void)arg;
	atomic_store(&uaf_tid, sptest_gettid());
	sp_sema_release(&uaf_sem, 1);
	return NULL;
}

START_TEST(test_release_with_waiters_subtracts_under_lock)
{
	ck_assert_int_eq(sp_sema_init(&uaf_sem, 2), 0);
	ck_assert_int_eq(sp_sema_acquire(&uaf_sem, 1, NULL), 0); /* worker A's unit */
	ck_assert_int_eq(sp_sema_acquire(&uaf_sem, 1, NULL), 0); /* worker C's unit */
	pthread_t w, a;
	ck_assert_int_eq(pthread_create(&w, NULL, uaf_full_acquirer, NULL), 0);
	wait_enqueued(&uaf_sem, NULL);
	ck_assert(__atomic_load_n(&uaf_sem.state_, __ATOMIC_RELAXED) >> 63); /* WAITERS */

	sp_ilock *l = (sp_ilock *)&uaf_sem.lock_;
	sp_ilock_lock(l);
	ck_assert_int_eq(pthread_create(&a, NULL, uaf_releaser, NULL), 0);
	int64_t end = sptest_now_ns() + sptest_scaled(SPTEST_S(5));
	while (atomic_load(&uaf_tid) == 0 && sptest_now_ns() < end)
		sptest_sleep_ns(100000);
	int atid = atomic_load(&uaf_tid);
	ck_assert_int_ne(atid, 0);
	bool parked = sptest_await_parked(&atid, 1, &uaf_sem.lock_, SPTEST_S(5));
	/* A waits for the lock with both units still counted as held. */
	uint64_t st = __atomic_load_n(&uaf_sem.state_, __ATOMIC_RELAXED);
	sp_ilock_unlock(l);
	ck_assert(parked);
	ck_assert_uint_eq(st & ~(UINT64_C(1) << 63), 2);

	ck_assert(sptest_join_within(a, SPTEST_S(10), NULL));
	sp_sema_release(&uaf_sem, 1); /* C's: now W fits */
	void *r;
	ck_assert(sptest_join_within(w, SPTEST_S(10), &r));
	ck_assert_int_eq((int)(intptr_t)r, 0);
	ck_assert_uint_eq(__atomic_load_n(&uaf_sem.state_, __ATOMIC_RELAXED), 2);
	sp_sema_release(&uaf_sem, 2);
	sp_sema_destroy(&uaf_sem);
}
END_TEST

static Suite *sema_suite(void)
{
	Suite *s = suite_create("sema");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_init_args);
	tcase_add_test(tc, test_weighted_hammer);
	tcase_add_test_raise_signal(tc, test_weighted_panic, SIGABRT);
	tcase_add_test_raise_signal(tc, test_release_too_much_panic, SIGABRT);
	tcase_add_test(tc, test_weighted_try_acquire);
	tcase_add_test(tc, test_weighted_acquire);
	tcase_add_test(tc, test_release_with_waiters_subtracts_under_lock);
	tcase_add_test(tc, test_doesnt_block_if_too_big);
	tcase_add_test(tc, test_large_acquire_doesnt_starve);
	tcase_add_test(tc, test_alloc_cancel_doesnt_starve);
	tcase_add_test(tc, test_weighted_acquire_canceled);
	tcase_add_test(tc, test_fifo_order);
	tcase_add_test(tc, test_large_head_blocks_small);
	tcase_add_test(tc, test_cancelled_head_wakes_next);
	tcase_add_test(tc, test_cancel_prompt);
	tcase_add_test(tc, test_cancel_storm);
	tcase_add_test(tc, test_size1_exclusive);
	tcase_add_test(tc, test_grant_after_ctx_done_pending_watch);
	tcase_add_test(tc, test_acquire_zero_queues);
	tcase_add_test(tc, test_init_einval_unchanged);
	tcase_add_test(tc, test_cancelled_middle_waiter);
	suite_add_tcase(s, tc);
	return s;
}
SPTEST_SUITE(sema_suite)
