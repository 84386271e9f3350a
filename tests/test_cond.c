/* tests/test_cond.c - sp_cond (sync/cond.c): Go's Cond tests, ctx waits, no lost signal. */
#include "sptest.h"
#include "syncpool/cond.h"
#include "syncpool/ctx.h"
#include "syncpool/mutex.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "common.h"

/* Polls cond(arg) until true or timeout (scaled); false on timeout. */
static bool eventually(bool (*pred)(void *), void *arg, int64_t timeout_ns)
{
	int64_t end = sptest_now_ns() + sptest_scaled(timeout_ns);
	while (!pred(arg)) {
		if (sptest_now_ns() > end)
			return false;
		sptest_sleep_ns(100000);
	}
	return true;
}

static sp_mutex gm;
static sp_cond gc;
static _Atomic int running, awake;

static bool running_is(void *n)
{
	return atomic_load(&running) == (int)(intptr_t)n;
}

static bool awake_is(void *n)
{
	return atomic_load(&awake) == (int)(intptr_t)n;
}

static void *sig_waiter(void *arg)
{
	(void)arg;
	sp_mutex_lock(&gm);
	atomic_fetch_add(&running, 1);
	sp_cond_wait(&gc, &gm);
	atomic_fetch_add(&awake, 1);
	sp_mutex_unlock(&gm);
	return NULL;
}

/* Go's TestCondSignal: each Signal wakes exactly one waiter. */
START_TEST(test_cond_signal)
{
	enum { N = 8 };
	pthread_t t[N];
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, sig_waiter, NULL), 0);
	ck_assert(eventually(running_is, (void *)(intptr_t)N, SPTEST_S(10)));
	for (int n = 0; n < N; n++) {
		sptest_sleep_ns(SPTEST_MS(2));
		ck_assert_msg(atomic_load(&awake) == n, "thread not asleep");
		sp_mutex_lock(&gm);
		sp_cond_signal(&gc);
		sp_mutex_unlock(&gm);
		ck_assert_msg(eventually(awake_is, (void *)(intptr_t)(n + 1), SPTEST_S(10)),
			      "no thread woke");
	}
	sptest_sleep_ns(SPTEST_MS(2));
	ck_assert_int_eq(atomic_load(&awake), N);
	sp_cond_signal(&gc); /* nobody waits: nothing happens */
	for (int i = 0; i < N; i++)
		ck_assert(sptest_join_within(t[i], SPTEST_S(10), NULL));
}
END_TEST

/* Go's TestCondSignalGenerations: Signals wake waiters in arrival order. */
enum { GEN_N = 50 };
static _Atomic int gen_next_woken;
static _Atomic int gen_bad;

static void *gen_waiter(void *arg)
{
	int i = (int)(intptr_t)arg;
	sp_mutex_lock(&gm);
	atomic_store(&running, i + 1);
	sp_cond_wait(&gc, &gm);
	if (atomic_load(&gen_next_woken) != i)
		atomic_store(&gen_bad, 1);
	atomic_fetch_add(&gen_next_woken, 1);
	sp_mutex_unlock(&gm);
	return NULL;
}

START_TEST(test_cond_signal_generations)
{
	pthread_t t[GEN_N];
	for (int i = 0; i < GEN_N; i++) {
		ck_assert_int_eq(pthread_create(&t[i], NULL, gen_waiter, (void *)(intptr_t)i), 0);
		/* Wait until it is queued: it took the mutex and released it in wait. */
		ck_assert(eventually(running_is, (void *)(intptr_t)(i + 1), SPTEST_S(10)));
		sp_mutex_lock(&gm);
		sp_mutex_unlock(&gm);
	}
	for (int i = 0; i < GEN_N; i++) {
		sp_mutex_lock(&gm);
		sp_cond_signal(&gc);
		sp_mutex_unlock(&gm);
		ck_assert(sptest_join_within(t[i], SPTEST_S(10), NULL));
	}
	ck_assert_int_eq(atomic_load(&gen_bad), 0);
	ck_assert_int_eq(atomic_load(&gen_next_woken), GEN_N);
}
END_TEST

/* Go's TestCondBroadcast: every waiter of a round wakes, rounds repeat. */
enum { BC_N = 16, BC_ROUNDS = 20 };
static int bc_round;          /* under gm */
static int bc_exit;           /* under gm */
static _Atomic int bc_woken[BC_ROUNDS];
static _Atomic int bc_ready;

static void *bc_waiter(void *arg)
{
	(void)arg;
	sp_mutex_lock(&gm);
	for (int r = 0; r < BC_ROUNDS; r++) {
		atomic_fetch_add(&bc_ready, 1);
		int seen = bc_round;
		while (bc_round == seen)
			sp_cond_wait(&gc, &gm);
		atomic_fetch_add(&bc_woken[r], 1);
	}
	bc_exit++;
	sp_mutex_unlock(&gm);
	return NULL;
}

static bool bc_ready_is(void *n)
{
	return atomic_load(&bc_ready) == (int)(intptr_t)n;
}

START_TEST(test_cond_broadcast)
{
	pthread_t t[BC_N];
	for (int i = 0; i < BC_N; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, bc_waiter, NULL), 0);
	for (int r = 0; r < BC_ROUNDS; r++) {
		ck_assert(eventually(bc_ready_is, (void *)(intptr_t)((r + 1) * BC_N), SPTEST_S(10)));
		sp_mutex_lock(&gm);
		bc_round++;
		sp_cond_broadcast(&gc);
		sp_mutex_unlock(&gm);
	}
	for (int i = 0; i < BC_N; i++)
		ck_assert(sptest_join_within(t[i], SPTEST_S(10), NULL));
	for (int r = 0; r < BC_ROUNDS; r++)
		ck_assert_int_eq(atomic_load(&bc_woken[r]), BC_N);
	ck_assert_int_eq(bc_exit, BC_N);
}
END_TEST

/* Producer/consumer hammer over a small ring with Signal only: no lost wakeup. */
enum { RING = 4, PRODUCERS = 8, CONSUMERS = 8 };
static struct {
	sp_mutex m;
	sp_cond notfull, notempty;
	long buf[RING];
	int head, count;
	long produced_sum, consumed_sum;
	long consumed;
	long per_producer;
} q;

static void *producer(void *arg)
{
	long id = (long)(intptr_t)arg;
	for (long i = 1; i <= q.per_producer; i++) {
		long v = id * 1000000 + i;
		sp_mutex_lock(&q.m);
		while (q.count == RING)
			sp_cond_wait(&q.notfull, &q.m);
		q.buf[(q.head + q.count) % RING] = v;
		q.count++;
		q.produced_sum += v;
		sp_cond_signal(&q.notempty);
		sp_mutex_unlock(&q.m);
	}
	return NULL;
}

static void *consumer(void *arg)
{
	long quota = (long)(intptr_t)arg;
	for (long i = 0; i < quota; i++) {
		sp_mutex_lock(&q.m);
		while (q.count == 0)
			sp_cond_wait(&q.notempty, &q.m);
		long v = q.buf[q.head];
		q.head = (q.head + 1) % RING;
		q.count--;
		q.consumed_sum += v;
		q.consumed++;
		sp_mutex_unlock(&q.m); /* signal outside the mutex too */
		sp_cond_signal(&q.notfull);
	}
	return NULL;
}

START_TEST(test_cond_no_lost_wakeup)
{
	q.per_producer = SP_TSAN ? 500 : 5000;
	long total = q.per_producer * PRODUCERS;
	pthread_t p[PRODUCERS], c[CONSUMERS];
	for (int i = 0; i < CONSUMERS; i++)
		ck_assert_int_eq(pthread_create(&c[i], NULL, consumer, (void *)(intptr_t)(total / CONSUMERS)), 0);
	for (int i = 0; i < PRODUCERS; i++)
		ck_assert_int_eq(pthread_create(&p[i], NULL, producer, (void *)(intptr_t)(i + 1)), 0);
	for (int i = 0; i < PRODUCERS; i++)
		ck_assert_msg(sptest_join_within(p[i], SPTEST_S(40), NULL), "producer stuck: lost wakeup");
	for (int i = 0; i < CONSUMERS; i++)
		ck_assert_msg(sptest_join_within(c[i], SPTEST_S(40), NULL), "consumer stuck: lost wakeup");
	ck_assert_int_eq(q.consumed, total);
	ck_assert_int_eq(q.consumed_sum, q.produced_sum);
	ck_assert_int_eq(q.count, 0);
}
END_TEST

/* A done context returns at once, without releasing the mutex. */
START_TEST(test_cond_ctx_already_done)
{
	sp_mutex m = SP_MUTEX_INIT;
	sp_cond c = SP_COND_INIT;
	sp_ctx *ctx;
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &ctx), 0);
	sp_ctx_cancel(ctx);
	sp_mutex_lock(&m);
	ck_assert_int_eq(sp_cond_wait_ctx(&c, &m, ctx), ECANCELED);
	ck_assert(!sp_mutex_trylock(&m)); /* still held */
	sp_ctx *tctx;
	ck_assert_int_eq(sp_ctx_with_deadline(NULL, sp_now_ns() - 1, &tctx), 0);
	ck_assert_int_eq(sp_cond_wait_ctx(&c, &m, tctx), ETIMEDOUT);
	ck_assert(!sp_mutex_trylock(&m));
	sp_mutex_unlock(&m);
	ck_assert_uint_eq(c.nwait_, 0);
	sp_ctx_release(ctx);
	sp_ctx_release(tctx);
}
END_TEST

START_TEST(test_cond_ctx_timeout)
{
	sp_mutex m = SP_MUTEX_INIT;
	sp_cond c = SP_COND_INIT;
	sp_ctx *ctx;
	int64_t t0 = sptest_now_ns(); /* before: the deadline is at least t0 + 30 ms */
	ck_assert_int_eq(sp_ctx_with_timeout(NULL, SPTEST_MS(30), &ctx), 0);
	sp_mutex_lock(&m);
	ck_assert_int_eq(sp_cond_wait_ctx(&c, &m, ctx), ETIMEDOUT);
	int64_t dt = sptest_now_ns() - t0;
	ck_assert(!sp_mutex_trylock(&m));
	sp_mutex_unlock(&m);
	ck_assert_int_ge(dt, SPTEST_MS(30));
	ck_assert_int_lt(dt, sptest_scaled(SPTEST_S(5)));
	ck_assert_uint_eq(c.nwait_, 0);
	ck_assert_ptr_null(c.head_);
	sp_ctx_release(ctx);
}
END_TEST

struct cancel_arg {
	sp_ctx *ctx;
	int64_t delay;
};

static void *cancel_later(void *arg)
{
	struct cancel_arg *a = arg;
	sptest_sleep_ns(a->delay);
	sp_ctx_cancel(a->ctx);
	return NULL;
}

START_TEST(test_cond_ctx_cancel)
{
	sp_mutex m = SP_MUTEX_INIT;
	sp_cond c = SP_COND_INIT;
	sp_ctx *ctx;
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &ctx), 0);
	struct cancel_arg a = { ctx, SPTEST_MS(20) };
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, cancel_later, &a), 0);
	sp_mutex_lock(&m);
	ck_assert_int_eq(sp_cond_wait_ctx(&c, &m, ctx), ECANCELED);
	ck_assert(!sp_mutex_trylock(&m));
	sp_mutex_unlock(&m);
	ck_assert(sptest_join_within(t, SPTEST_S(10), NULL));
	sp_ctx_release(ctx);
}
END_TEST

/*
 * A cancelled waiter never consumes a Signal.  A (ctx) queues first, B
 * (no ctx) second; A's cancellation races with one Signal.  Either A got it
 * (returns 0; B still waits) or A returns ECANCELED and B gets it.
 */
struct pair {
	sp_mutex m;
	sp_cond c;
	sp_ctx *ctx;
	_Atomic int queued;
	_Atomic int a_result; /* -1 until A returns */
	_Atomic int b_woken;
};

static void *pair_a(void *arg)
{
	struct pair *p = arg;
	sp_mutex_lock(&p->m);
	atomic_fetch_add(&p->queued, 1);
	int r = sp_cond_wait_ctx(&p->c, &p->m, p->ctx);
	sp_mutex_unlock(&p->m);
	atomic_store(&p->a_result, r);
	return NULL;
}

static void *pair_b(void *arg)
{
	struct pair *p = arg;
	sp_mutex_lock(&p->m);
	atomic_fetch_add(&p->queued, 1);
	sp_cond_wait(&p->c, &p->m);
	atomic_store(&p->b_woken, 1);
	sp_mutex_unlock(&p->m);
	return NULL;
}

static bool pair_queued(struct pair *p, int n)
{
	int64_t end = sptest_now_ns() + sptest_scaled(SPTEST_S(10));
	for (;;) {
		sp_mutex_lock(&p->m); /* the waiter queued before releasing it */
		int q = atomic_load(&p->queued);
		sp_mutex_unlock(&p->m);
		if (q == n)
			return true;
		if (sptest_now_ns() > end)
			return false;
		sptest_sleep_ns(50000);
	}
}

static void *pair_cancel(void *arg)
{
	struct pair *p = arg;
	sp_ctx_cancel(p->ctx);
	return NULL;
}

static void run_pair(bool race)
{
	struct pair p = { .m = SP_MUTEX_INIT, .c = SP_COND_INIT, .a_result = -1 };
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &p.ctx), 0);
	pthread_t ta, tb, tx;
	ck_assert_int_eq(pthread_create(&ta, NULL, pair_a, &p), 0);
	ck_assert(pair_queued(&p, 1));
	ck_assert_int_eq(pthread_create(&tb, NULL, pair_b, &p), 0);
	ck_assert(pair_queued(&p, 2));
	if (race) {
		ck_assert_int_eq(pthread_create(&tx, NULL, pair_cancel, &p), 0);
		sp_cond_signal(&p.c);
		ck_assert(sptest_join_within(tx, SPTEST_S(10), NULL));
	} else {
		sp_ctx_cancel(p.ctx);
		ck_assert(sptest_join_within(ta, SPTEST_S(10), NULL));
		ck_assert_int_eq(atomic_load(&p.a_result), ECANCELED);
		sp_cond_signal(&p.c);
	}
	if (race)
		ck_assert(sptest_join_within(ta, SPTEST_S(10), NULL));
	int ra = atomic_load(&p.a_result);
	ck_assert(ra == 0 || ra == ECANCELED);
	if (ra == 0) {
		/* A took the Signal: B must still be asleep, woken by a second one. */
		sptest_sleep_ns(SPTEST_MS(1));
		ck_assert_int_eq(atomic_load(&p.b_woken), 0);
		sp_cond_signal(&p.c);
	}
	ck_assert_msg(sptest_join_within(tb, SPTEST_S(10), NULL), "signal lost to a cancelled waiter");
	ck_assert_int_eq(atomic_load(&p.b_woken), 1);
	ck_assert_uint_eq(p.c.nwait_, 0);
	sp_ctx_release(p.ctx);
}

START_TEST(test_cond_cancelled_waiter_passes_signal)
{
	run_pair(false);
}
END_TEST

START_TEST(test_cond_cancel_signal_race)
{
	int iters = SP_TSAN ? 50 : 300;
	for (int i = 0; i < iters; i++)
		run_pair(true);
}
END_TEST

/* Broadcast wakes plain and ctx waiters; a cancelled one leaves the rest queued. */
static sp_ctx *mix_ctx;
static _Atomic int mix_ok, mix_cancelled;
static void *mix_waiter(void *arg)
{
	int i = (int)(intptr_t)arg;
	sp_mutex_lock(&gm);
	atomic_fetch_add(&running, 1);
	int r = sp_cond_wait_ctx(&gc, &gm, (i % 3 == 0) ? mix_ctx : NULL);
	if (r == 0)
		atomic_fetch_add(&mix_ok, 1);
	else if (r == ECANCELED)
		atomic_fetch_add(&mix_cancelled, 1);
	sp_mutex_unlock(&gm);
	return NULL;
}

START_TEST(test_cond_broadcast_mixed)
{
	enum { N = 30 };
	pthread_t t[N];
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &mix_ctx), 0);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, mix_waiter, (void *)(intptr_t)i), 0);
	ck_assert(eventually(running_is, (void *)(intptr_t)N, SPTEST_S(10)));
	sp_mutex_lock(&gm);
	sp_mutex_unlock(&gm);
	sp_ctx_cancel(mix_ctx); /* 10 of them leave with ECANCELED */
	for (int i = 0; i < N; i += 3)
		ck_assert(sptest_join_within(t[i], SPTEST_S(10), NULL));
	ck_assert_int_eq(atomic_load(&mix_cancelled), 10);
	ck_assert_int_eq(atomic_load(&mix_ok), 0);
	sp_cond_broadcast(&gc);
	for (int i = 0; i < N; i++)
		if (i % 3)
			ck_assert(sptest_join_within(t[i], SPTEST_S(10), NULL));
	ck_assert_int_eq(atomic_load(&mix_ok), 20);
	ck_assert_uint_eq(gc.nwait_, 0);
	sp_ctx_release(mix_ctx);
}
END_TEST

/* Many ctx waiters with short timeouts against a signaller: counts add up. */
static struct {
	sp_mutex m;
	sp_cond c;
	long tokens;     /* under m */
	long got, timeouts;
} tq;

static void *tq_waiter(void *arg)
{
	(void)arg;
	for (int i = 0; i < (SP_TSAN ? 20 : 200); i++) {
		sp_ctx *ctx;
		ck_assert_int_eq(sp_ctx_with_timeout(NULL, 200000, &ctx), 0);
		sp_mutex_lock(&tq.m);
		int r = 0;
		while (tq.tokens == 0 && r == 0)
			r = sp_cond_wait_ctx(&tq.c, &tq.m, ctx);
		if (tq.tokens > 0) {
			tq.tokens--;
			tq.got++;
		} else {
			ck_assert_int_eq(r, ETIMEDOUT);
			tq.timeouts++;
		}
		sp_mutex_unlock(&tq.m);
		sp_ctx_release(ctx);
	}
	return NULL;
}

static void *tq_signaller(void *arg)
{
	(void)arg;
	for (int i = 0; i < (SP_TSAN ? 100 : 1000); i++) {
		sp_mutex_lock(&tq.m);
		tq.tokens++;
		sp_mutex_unlock(&tq.m);
		sp_cond_signal(&tq.c);
		if (i % 16 == 0)
			sptest_sleep_ns(10000);
	}
	return NULL;
}

START_TEST(test_cond_timeout_hammer)
{
	enum { W = 8 };
	pthread_t t[W + 1];
	for (int i = 0; i < W; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, tq_waiter, NULL), 0);
	ck_assert_int_eq(pthread_create(&t[W], NULL, tq_signaller, NULL), 0);
	for (int i = 0; i <= W; i++)
		ck_assert(sptest_join_within(t[i], SPTEST_S(40), NULL));
	ck_assert_int_eq(tq.got + tq.timeouts, W * (SP_TSAN ? 20 : 200));
	ck_assert_int_eq(tq.got + tq.tokens, SP_TSAN ? 100 : 1000);
	ck_assert_uint_eq(tq.c.nwait_, 0);
}
END_TEST

/*
 * Go's Cond: Signal and Broadcast wake only the threads waiting at that
 * moment; with nobody waiting, they are not remembered for a later waiter.
 */
static sp_mutex nr_mu;
static sp_cond nr_cond;
static _Atomic int nr_waiting;

static void *nr_waiter(void *arg)
{
	(void)arg;
	sp_mutex_lock(&nr_mu);
	atomic_fetch_add(&nr_waiting, 1);
	sp_cond_wait(&nr_cond, &nr_mu);
	sp_mutex_unlock(&nr_mu);
	return NULL;
}

START_TEST(test_cond_not_remembered)
{
	sp_cond_signal(&nr_cond);
	sp_cond_broadcast(&nr_cond);
	sp_ctx *t;
	ck_assert_int_eq(sp_ctx_with_timeout(NULL, SPTEST_MS(30), &t), 0);
	sp_mutex_lock(&nr_mu);
	ck_assert_int_eq(sp_cond_wait_ctx(&nr_cond, &nr_mu, t), ETIMEDOUT);
	sp_mutex_unlock(&nr_mu);
	sp_ctx_release(t);

	/* A broadcast wakes the 4 waiting now, not a 5th that comes after it. */
	pthread_t th[4];
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, nr_waiter, NULL), 0);
	for (;;) { /* all 4 inside wait: they counted under the mutex wait releases */
		sp_mutex_lock(&nr_mu);
		int n = atomic_load(&nr_waiting);
		sp_mutex_unlock(&nr_mu);
		if (n == 4)
			break;
		sptest_sleep_ns(SPTEST_MS(1));
	}
	sp_mutex_lock(&nr_mu);
	sp_cond_broadcast(&nr_cond);
	sp_mutex_unlock(&nr_mu);
	for (int i = 0; i < 4; i++)
		ck_assert_msg(sptest_join_within(th[i], SPTEST_S(10), NULL), "waiter %d not woken", i);
	ck_assert_int_eq(sp_ctx_with_timeout(NULL, SPTEST_MS(30), &t), 0);
	sp_mutex_lock(&nr_mu);
	ck_assert_int_eq(sp_cond_wait_ctx(&nr_cond, &nr_mu, t), ETIMEDOUT);
	sp_mutex_unlock(&nr_mu);
	sp_ctx_release(t);
}
END_TEST

static Suite *cond_suite(void)
{
	Suite *s = suite_create("cond");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_cond_signal);
	tcase_add_test(tc, test_cond_signal_generations);
	tcase_add_test(tc, test_cond_broadcast);
	tcase_add_test(tc, test_cond_no_lost_wakeup);
	tcase_add_test(tc, test_cond_ctx_already_done);
	tcase_add_test(tc, test_cond_ctx_timeout);
	tcase_add_test(tc, test_cond_ctx_cancel);
	tcase_add_test(tc, test_cond_cancelled_waiter_passes_signal);
	tcase_add_test(tc, test_cond_cancel_signal_race);
	tcase_add_test(tc, test_cond_broadcast_mixed);
	tcase_add_test(tc, test_cond_timeout_hammer);
	tcase_add_test(tc, test_cond_not_remembered);
	suite_add_tcase(s, tc);
	return s;
}
SPTEST_SUITE(cond_suite)
