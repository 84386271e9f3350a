/*
 * tests/test_flight.c - singleflight (sync/flight.c).
 *
 * Ports of x/sync/singleflight's tests (TestDo, TestDoErr, TestDoDupSuppress,
 * TestForget, TestDoChan - the last as context-aware waiting), then what Go
 * does not have: reference-counted values with abandoned waiters, keys that
 * are byte strings, a 64-thread hammer with exact invariants, and destroy.
 */
#include "sptest.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "flight_internal.h"
#include "park.h"
#include "syncpool/ctx.h"
#include "syncpool/flight.h"

#if SP_TSAN || SP_ASAN
#define SLOW 1
#else
#define SLOW 0
#endif

/* ------------------------------------------------------------ helpers */

/* A gate: threads wait (bounded) until it is opened. */
struct gate {
	_Atomic uint32_t open;
};

static bool gate_wait(struct gate *g, int64_t timeout_ns)
{
	int64_t dl = sp_now_ns() + sptest_scaled(timeout_ns);
	while (!atomic_load(&g->open))
		if (sp_park_wait(&g->open, 0, dl) == ETIMEDOUT)
			return atomic_load(&g->open) != 0;
	return true;
}

static void gate_open(struct gate *g)
{
	atomic_store(&g->open, 1);
	sp_park_wake_all(&g->open);
}

/* Waits (bounded) until *v >= want. */
static bool await_at_least(_Atomic int *v, int want, int64_t timeout_ns)
{
	int64_t dl = sp_now_ns() + sptest_scaled(timeout_ns);
	while (atomic_load(v) < want) {
		if (sp_now_ns() > dl)
			return false;
		sptest_sleep_ns(SPTEST_MS(1));
	}
	return true;
}

/*
 * Threads that will block in sp_flight_do note their kernel id first; the
 * test then waits until all of them sleep in a futex wait (a joiner on its
 * call, a leader on its gate) instead of sleeping and hoping they got there:
 * a joiner that comes only after the call ended leads a call of its own.
 */
struct tids {
	_Atomic int n;
	_Atomic int id[16];
};

static void tids_note(struct tids *t)
{
	int i = atomic_fetch_add(&t->n, 1);
	ck_assert_int_lt(i, 16);
	atomic_store(&t->id[i], sptest_gettid());
}

/* Waits until n threads noted their ids and all of them sleep in a futex wait. */
static void tids_await_parked(struct tids *t, int n)
{
	int ids[16];
	ck_assert(await_at_least(&t->n, n, SPTEST_S(10)));
	for (int i = 0; i < n; i++) {
		while ((ids[i] = atomic_load(&t->id[i])) == 0)
			sched_yield();
	}
	ck_assert_msg(sptest_await_parked(ids, n, NULL, SPTEST_S(10)), "the waiters never blocked");
}

static _Atomic int freed;
static void count_free(void *v)
{
	(void)v;
	atomic_fetch_add(&freed, 1);
}

static void free_and_count(void *v)
{
	free(v);
	atomic_fetch_add(&freed, 1);
}

static int fn_bar(void *arg, void **val)
{
	if (arg)
		atomic_fetch_add((_Atomic int *)arg, 1);
	*val = "bar";
	return 0;
}

/* ------------------------------------------------------------ TestDo */

START_TEST(test_do)
{
	atomic_store(&freed, 0);
	sp_flight *g = sp_flight_create(count_free);
	ck_assert_ptr_nonnull(g);
	_Atomic int calls = 0;
	sp_flight_result r;
	ck_assert_int_eq(sp_flight_do(g, "key", 3, fn_bar, &calls, NULL, &r), 0);
	ck_assert_str_eq((const char *)r.val, "bar");
	ck_assert_int_eq(r.err, 0);
	ck_assert(!r.shared);
	ck_assert_int_eq(atomic_load(&calls), 1);
	ck_assert_int_eq(atomic_load(&freed), 0);
	sp_flight_result_release(g, &r);
	ck_assert_int_eq(atomic_load(&freed), 1);
	ck_assert_ptr_null(r.ref);
	sp_flight_result_release(g, &r); /* a cleared result: no-op */
	ck_assert_int_eq(atomic_load(&freed), 1);

	/* The call ended: the next Do runs fn again. */
	ck_assert_int_eq(sp_flight_do(g, "key", 3, fn_bar, &calls, NULL, &r), 0);
	ck_assert_int_eq(atomic_load(&calls), 2);
	sp_flight_result_release(g, &r);
	ck_assert_int_eq(atomic_load(&freed), 2);
	sp_flight_destroy(g);
}
END_TEST

/* ------------------------------------------------------------ TestDoErr */

static int fn_err(void *arg, void **val)
{
	atomic_fetch_add((_Atomic int *)arg, 1);
	(void)val;
	return EIO;
}

static int fn_err_with_val(void *arg, void **val)
{
	(void)arg;
	*val = malloc(16);
	return ENOENT;
}

START_TEST(test_do_err)
{
	atomic_store(&freed, 0);
	sp_flight *g = sp_flight_create(free_and_count);
	ck_assert_ptr_nonnull(g);
	_Atomic int calls = 0;
	sp_flight_result r;
	ck_assert_int_eq(sp_flight_do(g, "key", 3, fn_err, &calls, NULL, &r), 0);
	ck_assert_int_eq(r.err, EIO);
	ck_assert_ptr_null(r.val);
	sp_flight_result_release(g, &r);
	ck_assert_int_eq(atomic_load(&freed), 0); /* NULL value: no val_free */
	/* An error is not cached. */
	ck_assert_int_eq(sp_flight_do(g, "key", 3, fn_err, &calls, NULL, &r), 0);
	ck_assert_int_eq(r.err, EIO);
	ck_assert_int_eq(atomic_load(&calls), 2);
	sp_flight_result_release(g, &r);

	/* A value stored alongside an error is handed out and freed once. */
	ck_assert_int_eq(sp_flight_do(g, "k2", 2, fn_err_with_val, NULL, NULL, &r), 0);
	ck_assert_int_eq(r.err, ENOENT);
	ck_assert_ptr_nonnull(r.val);
	sp_flight_result_release(g, &r);
	ck_assert_int_eq(atomic_load(&freed), 1);
	sp_flight_destroy(g);
}
END_TEST

START_TEST(test_bad_args)
{
	sp_flight *g = sp_flight_create(NULL);
	sp_flight_result r;
	ck_assert_int_eq(sp_flight_do(NULL, "k", 1, fn_bar, NULL, NULL, &r), EINVAL);
	ck_assert_int_eq(sp_flight_do(g, "k", 1, NULL, NULL, NULL, &r), EINVAL);
	ck_assert_int_eq(sp_flight_do(g, "k", 1, fn_bar, NULL, NULL, NULL), EINVAL);
	ck_assert_int_eq(sp_flight_do(g, NULL, 1, fn_bar, NULL, NULL, &r), EINVAL);
	/* A NULL empty key is the empty key. */
	ck_assert_int_eq(sp_flight_do(g, NULL, 0, fn_bar, NULL, NULL, &r), 0);
	ck_assert_str_eq((const char *)r.val, "bar");
	sp_flight_result_release(g, &r);
	sp_flight_forget(g, "absent", 6); /* nothing in flight: no-op */
	sp_flight_destroy(g);
	sp_flight_destroy(NULL);
}
END_TEST

/* ------------------------------------------------------------ TestDoDupSuppress */

struct dup {
	sp_flight *g;
	struct gate gate;
	_Atomic int calls, started, got_bar, shared;
	struct tids tids;
};

static int fn_dup(void *arg, void **val)
{
	struct dup *d = arg;
	if (atomic_fetch_add(&d->calls, 1) == 0) {
		/* The first call waits, so that the others pile up behind it. */
		ck_assert(gate_wait(&d->gate, SPTEST_S(10)));
	}
	*val = "bar";
	return 0;
}

static void *dup_thread(void *arg)
{
	struct dup *d = arg;
	atomic_fetch_add(&d->started, 1);
	tids_note(&d->tids);
	sp_flight_result r;
	ck_assert_int_eq(sp_flight_do(d->g, "key", 3, fn_dup, d, NULL, &r), 0);
	if (r.val && strcmp(r.val, "bar") == 0)
		atomic_fetch_add(&d->got_bar, 1);
	if (r.shared)
		atomic_fetch_add(&d->shared, 1);
	sp_flight_result_release(d->g, &r);
	return NULL;
}

START_TEST(test_do_dup_suppress)
{
	enum { N = 10 };
	static struct dup d;
	memset(&d, 0, sizeof d);
	d.g = sp_flight_create(NULL);
	pthread_t t[N];
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, dup_thread, &d), 0);
	/* All started; once all are blocked (the first in fn, the others joined), let it end. */
	ck_assert(await_at_least(&d.started, N, SPTEST_S(10)));
	ck_assert(await_at_least(&d.calls, 1, SPTEST_S(10)));
	tids_await_parked(&d.tids, N);
	gate_open(&d.gate);
	for (int i = 0; i < N; i++)
		ck_assert(sptest_join_within(t[i], SPTEST_S(10), NULL));
	int calls = atomic_load(&d.calls);
	ck_assert_msg(calls > 0 && calls < N, "number of calls = %d; want over 0 and less than %d",
		      calls, N);
	ck_assert_int_eq(atomic_load(&d.got_bar), N);
	ck_assert_int_ge(atomic_load(&d.shared), N - calls + 1);
	sp_flight_destroy(d.g);
}
END_TEST

/* ------------------------------------------------------------ TestForget */

struct fgt {
	sp_flight *g;
	struct gate unblock1, unblock2;
	_Atomic int started1, started2, calls3;
	int main_tid;
};

static int fn_first(void *arg, void **val)
{
	struct fgt *f = arg;
	atomic_store(&f->started1, 1);
	ck_assert(gate_wait(&f->unblock1, SPTEST_S(10)));
	*val = (void *)(uintptr_t)1;
	return 0;
}

static int fn_second(void *arg, void **val)
{
	struct fgt *f = arg;
	atomic_store(&f->started2, 1);
	ck_assert(gate_wait(&f->unblock2, SPTEST_S(10)));
	*val = (void *)(uintptr_t)2;
	return 0;
}

static int fn_third(void *arg, void **val)
{
	struct fgt *f = arg;
	atomic_fetch_add(&f->calls3, 1);
	*val = (void *)(uintptr_t)3;
	return 0;
}

static void *forget_first(void *arg)
{
	struct fgt *f = arg;
	sp_flight_result r;
	ck_assert_int_eq(sp_flight_do(f->g, "key", 3, fn_first, f, NULL, &r), 0);
	ck_assert_int_eq((int)(uintptr_t)r.val, 1);
	ck_assert(!r.shared);
	sp_flight_result_release(f->g, &r);
	return NULL;
}

static void *forget_second(void *arg)
{
	struct fgt *f = arg;
	sp_flight_result r;
	ck_assert_int_eq(sp_flight_do(f->g, "key", 3, fn_second, f, NULL, &r), 0);
	ck_assert_int_eq((int)(uintptr_t)r.val, 2);
	ck_assert(r.shared);
	sp_flight_result_release(f->g, &r);
	return NULL;
}

/* Ends the second call once the main thread has joined it (sleeps in the join). */
static void *forget_opener(void *arg)
{
	struct fgt *f = arg;
	ck_assert_msg(sptest_await_parked(&f->main_tid, 1, NULL, SPTEST_S(10)), "the third Do never blocked");
	gate_open(&f->unblock2);
	return NULL;
}

START_TEST(test_forget)
{
	static struct fgt f;
	memset(&f, 0, sizeof f);
	f.g = sp_flight_create(NULL);
	pthread_t t1, t2, t3;
	ck_assert_int_eq(pthread_create(&t1, NULL, forget_first, &f), 0);
	ck_assert(await_at_least(&f.started1, 1, SPTEST_S(10)));
	sp_flight_forget(f.g, "key", 3);
	/* The first call still runs, yet the next Do starts a new one. */
	ck_assert_int_eq(pthread_create(&t2, NULL, forget_second, &f), 0);
	ck_assert(await_at_least(&f.started2, 1, SPTEST_S(10)));
	gate_open(&f.unblock1);
	ck_assert(sptest_join_within(t1, SPTEST_S(10), NULL));
	/*
	 * The first call's end must not have removed the second: a third Do
	 * joins the second call (which ends only after we joined it).
	 */
	f.main_tid = sptest_gettid();
	ck_assert_int_eq(pthread_create(&t3, NULL, forget_opener, &f), 0);
	sp_flight_result r;
	ck_assert_int_eq(sp_flight_do(f.g, "key", 3, fn_third, &f, NULL, &r), 0);
	ck_assert_int_eq(atomic_load(&f.calls3), 0);
	ck_assert_int_eq((int)(uintptr_t)r.val, 2);
	ck_assert(r.shared);
	sp_flight_result_release(f.g, &r);
	ck_assert(sptest_join_within(t2, SPTEST_S(10), NULL));
	ck_assert(sptest_join_within(t3, SPTEST_S(10), NULL));
	/* Now nothing is in flight: a fourth Do runs its own fn. */
	ck_assert_int_eq(sp_flight_do(f.g, "key", 3, fn_third, &f, NULL, &r), 0);
	ck_assert_int_eq((int)(uintptr_t)r.val, 3);
	ck_assert(!r.shared);
	sp_flight_result_release(f.g, &r);
	sp_flight_destroy(f.g);
}
END_TEST

/* ------------------------------------------------------------ TestDoChan: ctx-aware waiting */

struct cw {
	sp_flight *g;
	struct gate gate;
	_Atomic int calls, started, joined_ok;
	_Atomic int leader_done;
	struct tids tids; /* the waiters that must join */
};

static int fn_slow(void *arg, void **val)
{
	struct cw *c = arg;
	atomic_fetch_add(&c->calls, 1);
	atomic_store(&c->started, 1);
	ck_assert(gate_wait(&c->gate, SPTEST_S(20)));
	int *v = malloc(sizeof *v);
	*v = 42;
	*val = v;
	return 0;
}

static void *cw_leader(void *arg)
{
	struct cw *c = arg;
	sp_flight_result r;
	ck_assert_int_eq(sp_flight_do(c->g, "key", 3, fn_slow, c, NULL, &r), 0);
	ck_assert_int_eq(*(int *)r.val, 42);
	ck_assert(r.shared);
	atomic_store(&c->leader_done, 1);
	sp_flight_result_release(c->g, &r);
	return NULL;
}

static void *cw_waiter(void *arg)
{
	struct cw *c = arg;
	tids_note(&c->tids);
	sp_flight_result r;
	ck_assert_int_eq(sp_flight_do(c->g, "key", 3, fn_slow, c, NULL, &r), 0);
	ck_assert_int_eq(*(int *)r.val, 42);
	ck_assert(r.shared);
	atomic_fetch_add(&c->joined_ok, 1);
	sp_flight_result_release(c->g, &r);
	return NULL;
}

struct ctx_waiter {
	struct cw *c;
	sp_ctx *ctx;
	int rc;
	int64_t returned_at;
	bool note; /* joins for sure (no timeout): notes its id in c->tids */
};

static void *cw_ctx_waiter(void *arg)
{
	struct ctx_waiter *w = arg;
	if (w->note)
		tids_note(&w->c->tids);
	sp_flight_result r = { 0 };
	w->rc = sp_flight_do(w->c->g, "key", 3, fn_slow, w->c, w->ctx, &r);
	w->returned_at = sp_now_ns();
	if (w->rc == 0)
		sp_flight_result_release(w->c->g, &r);
	return NULL;
}

START_TEST(test_do_ctx)
{
	enum { NPLAIN = 4 };
	static struct cw c;
	memset(&c, 0, sizeof c);
	atomic_store(&freed, 0);
	c.g = sp_flight_create(free_and_count);
	pthread_t lead, plain[NPLAIN], tc, tt;
	ck_assert_int_eq(pthread_create(&lead, NULL, cw_leader, &c), 0);
	ck_assert(await_at_least(&c.started, 1, SPTEST_S(10)));
	for (int i = 0; i < NPLAIN; i++)
		ck_assert_int_eq(pthread_create(&plain[i], NULL, cw_waiter, &c), 0);

	/* One waiter with a context we cancel, one with a 30 ms timeout. */
	struct ctx_waiter wc = { .c = &c, .note = true }, wt = { .c = &c };
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &wc.ctx), 0);
	ck_assert_int_eq(sp_ctx_with_timeout(NULL, SPTEST_MS(30), &wt.ctx), 0);
	ck_assert_int_eq(pthread_create(&tc, NULL, cw_ctx_waiter, &wc), 0);
	ck_assert_int_eq(pthread_create(&tt, NULL, cw_ctx_waiter, &wt), 0);
	tids_await_parked(&c.tids, NPLAIN + 1); /* the plain waiters and wc joined and sleep */
	int64_t t0 = sp_now_ns();
	sp_ctx_cancel(wc.ctx);
	ck_assert(sptest_join_within(tc, SPTEST_S(5), NULL));
	ck_assert_int_eq(wc.rc, ECANCELED);
	ck_assert_int_lt(wc.returned_at - t0, (SLOW ? SPTEST_MS(500) : SPTEST_MS(100)) * sptest_slowdown());
	ck_assert(sptest_join_within(tt, SPTEST_S(5), NULL));
	ck_assert_int_eq(wt.rc, ETIMEDOUT);

	/* The call went on: fn still running, nobody else returned. */
	ck_assert_int_eq(atomic_load(&c.calls), 1);
	ck_assert_int_eq(atomic_load(&c.leader_done), 0);
	ck_assert_int_eq(atomic_load(&c.joined_ok), 0);

	/* A context already done neither joins nor starts a call. */
	sp_flight_result r;
	ck_assert_int_eq(sp_flight_do(c.g, "key", 3, fn_slow, &c, wc.ctx, &r), ECANCELED);
	ck_assert_int_eq(sp_flight_do(c.g, "other", 5, fn_slow, &c, wc.ctx, &r), ECANCELED);
	ck_assert_int_eq(atomic_load(&c.calls), 1);

	gate_open(&c.gate);
	ck_assert(sptest_join_within(lead, SPTEST_S(10), NULL));
	for (int i = 0; i < NPLAIN; i++)
		ck_assert(sptest_join_within(plain[i], SPTEST_S(10), NULL));
	ck_assert_int_eq(atomic_load(&c.joined_ok), NPLAIN);
	ck_assert_int_eq(atomic_load(&c.calls), 1);
	ck_assert_int_eq(atomic_load(&freed), 1);
	sp_ctx_release(wc.ctx);
	sp_ctx_release(wt.ctx);
	sp_flight_destroy(c.g);
}
END_TEST

/* A live context (never done) behaves as no context; the leader's ctx does not stop fn. */
START_TEST(test_do_ctx_leader_not_interrupted)
{
	static struct cw c;
	memset(&c, 0, sizeof c);
	atomic_store(&freed, 0);
	c.g = sp_flight_create(free_and_count);
	struct ctx_waiter lw = { .c = &c };
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &lw.ctx), 0);
	pthread_t lead;
	ck_assert_int_eq(pthread_create(&lead, NULL, cw_ctx_waiter, &lw), 0);
	ck_assert(await_at_least(&c.started, 1, SPTEST_S(10)));
	sp_ctx_cancel(lw.ctx);
	sptest_sleep_ns(SPTEST_MS(10));
	ck_assert(!sptest_join_within(lead, SPTEST_MS(1), NULL)); /* still in fn */
	gate_open(&c.gate);
	ck_assert(sptest_join_within(lead, SPTEST_S(10), NULL));
	ck_assert_int_eq(lw.rc, 0); /* the leader ran fn to the end and got its result */
	ck_assert_int_eq(atomic_load(&freed), 1);
	sp_ctx_release(lw.ctx);
	sp_flight_destroy(c.g);
}
END_TEST

/* ------------------------------------------------------------ value reference counting */

static void *cw_waiter_hold(void *arg)
{
	struct ctx_waiter *w = arg;
	if (w->note)
		tids_note(&w->c->tids);
	sp_flight_result *r = malloc(sizeof *r);
	w->rc = sp_flight_do(w->c->g, "key", 3, fn_slow, w->c, w->ctx, r);
	return r; /* released by the test */
}

static void *cw_leader_hold(void *arg)
{
	struct cw *c = arg;
	sp_flight_result *r = malloc(sizeof *r);
	ck_assert_int_eq(sp_flight_do(c->g, "key", 3, fn_slow, c, NULL, r), 0);
	return r;
}

START_TEST(test_refcount_abandoned)
{
	enum { NHOLD = 3, NABANDON = 3 };
	static struct cw c;
	memset(&c, 0, sizeof c);
	atomic_store(&freed, 0);
	c.g = sp_flight_create(free_and_count);
	pthread_t lead, hold[NHOLD], ab[NABANDON];
	struct ctx_waiter hw[NHOLD], aw[NABANDON];
	ck_assert_int_eq(pthread_create(&lead, NULL, cw_leader_hold, &c), 0);
	ck_assert(await_at_least(&c.started, 1, SPTEST_S(10)));
	for (int i = 0; i < NHOLD; i++) {
		hw[i] = (struct ctx_waiter){ .c = &c, .note = true };
		ck_assert_int_eq(pthread_create(&hold[i], NULL, cw_waiter_hold, &hw[i]), 0);
	}
	sp_ctx *cancel;
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &cancel), 0);
	for (int i = 0; i < NABANDON; i++) {
		aw[i] = (struct ctx_waiter){ .c = &c, .ctx = cancel, .note = true };
		ck_assert_int_eq(pthread_create(&ab[i], NULL, cw_waiter_hold, &aw[i]), 0);
	}
	tids_await_parked(&c.tids, NHOLD + NABANDON); /* all joined the call */
	sp_ctx_cancel(cancel); /* the abandoning waiters leave, holding nothing */
	for (int i = 0; i < NABANDON; i++) {
		void *rp;
		ck_assert(sptest_join_within(ab[i], SPTEST_S(5), &rp));
		ck_assert_int_eq(aw[i].rc, ECANCELED);
		free(rp);
	}
	gate_open(&c.gate);
	sp_flight_result *rs[NHOLD + 1];
	ck_assert(sptest_join_within(lead, SPTEST_S(10), (void **)&rs[NHOLD]));
	for (int i = 0; i < NHOLD; i++) {
		ck_assert(sptest_join_within(hold[i], SPTEST_S(10), (void **)&rs[i]));
		ck_assert_int_eq(hw[i].rc, 0);
	}
	/* Everyone holds the same value; it is freed at the last release, once. */
	void *val0 = rs[0]->val;
	ck_assert_ptr_nonnull(val0);
	for (int i = 0; i <= NHOLD; i++) {
		ck_assert_ptr_eq(rs[i]->val, val0);
		ck_assert(rs[i]->shared);
		ck_assert_int_eq(atomic_load(&freed), 0);
		sp_flight_result_release(c.g, rs[i]);
		free(rs[i]);
	}
	ck_assert_int_eq(atomic_load(&freed), 1);
	ck_assert_int_eq(atomic_load(&c.calls), 1);
	sp_ctx_release(cancel);
	sp_flight_destroy(c.g);
}
END_TEST

/* ------------------------------------------------------------ two keys in parallel */

struct two {
	sp_flight *g;
	_Atomic uint32_t b_started;
	bool a_saw_b;
};

static int fn_a(void *arg, void **val)
{
	struct two *t = arg;
	int64_t dl = sp_now_ns() + SPTEST_S(10);
	while (!atomic_load(&t->b_started))
		if (sp_park_wait(&t->b_started, 0, dl) == ETIMEDOUT)
			break;
	t->a_saw_b = atomic_load(&t->b_started) != 0;
	*val = "A";
	return 0;
}

static int fn_b(void *arg, void **val)
{
	struct two *t = arg;
	atomic_store(&t->b_started, 1);
	sp_park_wake_all(&t->b_started);
	*val = "B";
	return 0;
}

static void *two_a(void *arg)
{
	struct two *t = arg;
	sp_flight_result r;
	ck_assert_int_eq(sp_flight_do(t->g, "A", 1, fn_a, t, NULL, &r), 0);
	ck_assert_str_eq(r.val, "A");
	sp_flight_result_release(t->g, &r);
	return NULL;
}

START_TEST(test_two_keys_concurrent)
{
	static struct two t;
	memset(&t, 0, sizeof t);
	t.g = sp_flight_create(NULL);
	pthread_t ta;
	ck_assert_int_eq(pthread_create(&ta, NULL, two_a, &t), 0);
	sptest_sleep_ns(SPTEST_MS(5));
	/* While fn for A blocks, a call for B runs (no lock held across fn). */
	sp_flight_result r;
	ck_assert_int_eq(sp_flight_do(t.g, "B", 1, fn_b, &t, NULL, &r), 0);
	ck_assert_str_eq(r.val, "B");
	ck_assert(!r.shared);
	sp_flight_result_release(t.g, &r);
	ck_assert(sptest_join_within(ta, SPTEST_S(10), NULL));
	ck_assert(t.a_saw_b);
	sp_flight_destroy(t.g);
}
END_TEST

/* ------------------------------------------------------------ binary keys */

#define NBK 14
static unsigned char bk_long1[1000], bk_long2[1000], bk_40[40], bk_41a[41], bk_41b[41];
/* Longer than the key buffers a record keeps for reuse (HEAP_KEY_KEEP): freed after the call. */
static unsigned char bk_huge1[5000], bk_huge2[5000];
static const struct bkey {
	const void *p;
	size_t n;
} bkeys[NBK] = {
	{ "", 0 },
	{ "\0", 1 },
	{ "\0\0", 2 },
	{ "a", 1 },
	{ "a\0", 2 },
	{ "a\0b", 3 },
	{ "a\0c", 3 }, /* differs from the one above only after a NUL */
	{ bk_40, 40 },
	{ bk_41a, 41 },
	{ bk_41b, 41 }, /* differs from bk_41a only in its last byte */
	{ bk_long1, 1000 },
	{ bk_long2, 1000 }, /* differs from bk_long1 only in its last byte */
	{ bk_huge1, 5000 },
	{ bk_huge2, 5000 }, /* differs from bk_huge1 only in its last byte */
};

struct bk {
	sp_flight *g;
	struct gate gate;
	_Atomic int running;
	_Atomic int calls[NBK];
};

struct bk_arg {
	struct bk *b;
	int i;
};

static int fn_bk(void *arg, void **val)
{
	struct bk_arg *a = arg;
	atomic_fetch_add(&a->b->calls[a->i], 1);
	atomic_fetch_add(&a->b->running, 1);
	ck_assert(gate_wait(&a->b->gate, SPTEST_S(20)));
	*val = (void *)(uintptr_t)(a->i + 100);
	return 0;
}

static void *bk_leader(void *arg)
{
	struct bk_arg *a = arg;
	sp_flight_result r;
	ck_assert_int_eq(sp_flight_do(a->b->g, bkeys[a->i].p, bkeys[a->i].n, fn_bk, a, NULL, &r), 0);
	ck_assert_int_eq((int)(uintptr_t)r.val, a->i + 100);
	sp_flight_result_release(a->b->g, &r);
	return NULL;
}

START_TEST(test_binary_keys)
{
	memset(bk_long1, 'x', sizeof bk_long1);
	memset(bk_long2, 'x', sizeof bk_long2);
	bk_long1[0] = bk_long2[0] = 0;
	bk_long2[999] = 'y';
	memset(bk_huge1, 'h', sizeof bk_huge1);
	memset(bk_huge2, 'h', sizeof bk_huge2);
	bk_huge2[4999] = 'i';
	memset(bk_40, 0, sizeof bk_40);
	memset(bk_41a, 0, sizeof bk_41a);
	memset(bk_41b, 0, sizeof bk_41b);
	bk_41b[40] = 1;

	static struct bk b;
	memset(&b, 0, sizeof b);
	b.g = sp_flight_create(NULL);
	struct bk_arg args[NBK];
	pthread_t t[NBK];
	/* One leader per key, all in flight at once: no two keys were merged. */
	for (int i = 0; i < NBK; i++) {
		args[i] = (struct bk_arg){ &b, i };
		ck_assert_int_eq(pthread_create(&t[i], NULL, bk_leader, &args[i]), 0);
	}
	ck_assert(await_at_least(&b.running, NBK, SPTEST_S(10)));

	/* A copy of each key (another buffer, same bytes) joins its call. */
	for (int i = 0; i < NBK; i++) {
		unsigned char *copy = malloc(bkeys[i].n + 1);
		memcpy(copy, bkeys[i].p, bkeys[i].n);
		sp_ctx *ctx;
		ck_assert_int_eq(sp_ctx_with_timeout(NULL, SPTEST_MS(5), &ctx), 0);
		sp_flight_result r;
		ck_assert_int_eq(sp_flight_do(b.g, copy, bkeys[i].n, fn_bk, &args[i], ctx, &r), ETIMEDOUT);
		sp_ctx_release(ctx);
		free(copy);
	}
	for (int i = 0; i < NBK; i++)
		ck_assert_int_eq(atomic_load(&b.calls[i]), 1);
	gate_open(&b.gate);
	for (int i = 0; i < NBK; i++)
		ck_assert(sptest_join_within(t[i], SPTEST_S(10), NULL));
	sp_flight_destroy(b.g);
}
END_TEST

/* ------------------------------------------------------------ hammer */

#define HAM_KEYS 4
struct ham_val {
	int key;
	int run;
};

struct ham {
	sp_flight *g;
	_Atomic int runs[HAM_KEYS];
	_Atomic long calls, shared, bad;
	int iters;
};

struct ham_fnarg {
	struct ham *h;
	int key;
};

static int fn_ham(void *arg, void **val)
{
	struct ham_fnarg *a = arg;
	struct ham_val *v = malloc(sizeof *v);
	v->key = a->key;
	v->run = atomic_fetch_add(&a->h->runs[a->key], 1);
	/* Long enough that other callers pile up behind it. */
	sptest_sleep_ns(SLOW ? 1000000 : 100000);
	*val = v;
	return a->key == 3 ? EAGAIN : 0; /* one key's calls fail: errors too are shared */
}

static void *ham_thread(void *arg)
{
	struct ham *h = arg;
	static _Atomic int next_id;
	int id = atomic_fetch_add(&next_id, 1);
	for (int i = 0; i < h->iters; i++) {
		int k = (i + id) % HAM_KEYS;
		char key[16];
		int n = 0;
		key[n++] = 'k';
		key[n++] = 0;
		key[n++] = (char)('0' + k);
		struct ham_fnarg a = { h, k };
		sp_flight_result r;
		if (sp_flight_do(h->g, key, (size_t)n, fn_ham, &a, NULL, &r) != 0) {
			atomic_fetch_add(&h->bad, 1);
			continue;
		}
		const struct ham_val *v = r.val;
		if (!v || v->key != k || r.err != (k == 3 ? EAGAIN : 0))
			atomic_fetch_add(&h->bad, 1);
		if (r.shared)
			atomic_fetch_add(&h->shared, 1);
		atomic_fetch_add(&h->calls, 1);
		sp_flight_result_release(h->g, &r);
	}
	return NULL;
}

START_TEST(test_hammer)
{
	enum { T = 64 };
	static struct ham h;
	memset(&h, 0, sizeof h);
	atomic_store(&freed, 0);
	h.iters = SLOW ? 40 : 200;
	h.g = sp_flight_create(free_and_count);
	sptest_run_threads(T, ham_thread, &h, 0, SPTEST_S(SLOW ? 120 : 30));
	long calls = atomic_load(&h.calls);
	long runs = 0;
	for (int k = 0; k < HAM_KEYS; k++)
		runs += atomic_load(&h.runs[k]);
	ck_assert_int_eq(atomic_load(&h.bad), 0);
	ck_assert_int_eq(calls, (long)T * h.iters);
	ck_assert_msg(runs * 4 < calls, "fn ran %ld times for %ld calls", runs, calls);
	ck_assert_int_eq(atomic_load(&h.shared) + runs >= calls, 1);
	/* Every value produced was freed exactly once, after its last release. */
	ck_assert_int_eq(atomic_load(&freed), runs);
	sp_flight_destroy(h.g);
}
END_TEST

/* ------------------------------------------------------------ contexts racing the end of calls */

struct race {
	sp_flight *g;
	_Atomic int runs, got, gave_up, bad;
	int iters;
};

static int fn_race(void *arg, void **val)
{
	struct race *rc = arg;
	int *v = malloc(sizeof *v);
	*v = 7;
	atomic_fetch_add(&rc->runs, 1);
	sptest_sleep_ns(100000);
	*val = v;
	return 0;
}

static void *race_thread(void *arg)
{
	struct race *rc = arg;
	unsigned seed = (unsigned)(uintptr_t)&seed;
	for (int i = 0; i < rc->iters; i++) {
		/* Deadlines around fn's duration: some waiters leave just as the call ends. */
		sp_ctx *ctx;
		int64_t t = (int64_t)(rand_r(&seed) % 200000);
		if (sp_ctx_with_timeout(NULL, t, &ctx) != 0) {
			atomic_fetch_add(&rc->bad, 1);
			continue;
		}
		sp_flight_result r;
		int e = sp_flight_do(rc->g, "race", 4, fn_race, rc, ctx, &r);
		if (e == 0) {
			if (!r.val || *(int *)r.val != 7)
				atomic_fetch_add(&rc->bad, 1);
			atomic_fetch_add(&rc->got, 1);
			sp_flight_result_release(rc->g, &r);
		} else if (e == ETIMEDOUT) {
			atomic_fetch_add(&rc->gave_up, 1);
		} else {
			atomic_fetch_add(&rc->bad, 1);
		}
		sp_ctx_release(ctx);
	}
	return NULL;
}

START_TEST(test_ctx_race)
{
	enum { T = 32 };
	static struct race rc;
	memset(&rc, 0, sizeof rc);
	atomic_store(&freed, 0);
	rc.iters = SLOW ? 20 : 100;
	rc.g = sp_flight_create(free_and_count);
	sptest_run_threads(T, race_thread, &rc, 0, SPTEST_S(SLOW ? 120 : 30));
	ck_assert_int_eq(atomic_load(&rc.bad), 0);
	ck_assert_int_eq(atomic_load(&rc.got) + atomic_load(&rc.gave_up), T * rc.iters);
	ck_assert_int_gt(atomic_load(&rc.got), 0);
	/* Every value freed exactly once, whoever held it last. */
	ck_assert_int_eq(atomic_load(&freed), atomic_load(&rc.runs));
	sp_flight_destroy(rc.g);
}
END_TEST

/* ------------------------------------------------------------ many in flight; destroy; allocation */

static int fn_key_val(void *arg, void **val)
{
	*val = arg;
	return 0;
}

struct nest {
	sp_flight *g;
	int depth, max;
	_Atomic int peak;
};

static int fn_nest(void *arg, void **val)
{
	struct nest *n = arg;
	int d = ++n->depth;
	if (d > atomic_load(&n->peak))
		atomic_store(&n->peak, d);
	char key[64];
	memset(key, 'n', sizeof key);
	memcpy(key, &d, sizeof d);
	size_t len = d % 2 ? 8 : sizeof key; /* inline and heap-copied keys */
	if (d < n->max) {
		sp_flight_result r;
		ck_assert_int_eq(sp_flight_do(n->g, key, len, fn_nest, n, NULL, &r), 0);
		ck_assert_int_eq(r.err, 0);
		sp_flight_result_release(n->g, &r);
	}
	*val = malloc(32);
	n->depth--;
	return 0;
}

START_TEST(test_many_in_flight_and_destroy)
{
	/* fn calls Do for a new key, 400 deep: 400 calls in flight at once
	 * (tables grow), then all end (tables shrink). */
	struct nest n = { .max = 400 };
	atomic_store(&freed, 0);
	n.g = sp_flight_create(free_and_count);
	for (int round = 0; round < 3; round++) {
		sp_flight_result r;
		ck_assert_int_eq(sp_flight_do(n.g, "root", 4, fn_nest, &n, NULL, &r), 0);
		sp_flight_result_release(n.g, &r);
	}
	ck_assert_int_eq(atomic_load(&n.peak), 400);
	ck_assert_int_eq(atomic_load(&freed), 3 * 400);
	/* 400 calls in 64 shards grew some tables past 8 slots... */
	ck_assert_uint_gt(sp_flight_stat_slots(n.g), 64 * 8);
	/* ...and a long quiet stretch of single calls shrinks them back. */
	for (int i = 0; i < 64 * 1024; i++) {
		sp_flight_result r;
		ck_assert_int_eq(sp_flight_do(n.g, &i, sizeof i, fn_key_val, NULL, NULL, &r), 0);
		sp_flight_result_release(n.g, &r);
	}
	ck_assert_uint_eq(sp_flight_stat_slots(n.g), 64 * 8);
	sp_flight_destroy(n.g); /* ASan: nothing leaks */
}
END_TEST

START_TEST(test_steady_state_allocates_nothing)
{
	sp_flight *g = sp_flight_create(NULL);
	char keys[1024][12];
	for (int i = 0; i < 1024; i++)
		memcpy(keys[i], &i, sizeof i), memset(keys[i] + sizeof i, 'k', 12 - sizeof i);
	char longkey[100];
	memset(longkey, 'L', sizeof longkey);
	for (int i = 0; i < 2048; i++) {
		sp_flight_result r;
		ck_assert_int_eq(sp_flight_do(g, keys[i % 1024], 12, fn_key_val, keys[i % 1024], NULL, &r), 0);
		ck_assert_ptr_eq(r.val, keys[i % 1024]);
		sp_flight_result_release(g, &r);
	}
	uint64_t warm = sp_flight_stat_allocs(g);
	ck_assert_int_le(warm, 64 * 2);
	for (int i = 0; i < 100000; i++) {
		sp_flight_result r;
		ck_assert_int_eq(sp_flight_do(g, keys[i % 1024], 12, fn_key_val, NULL, NULL, &r), 0);
		sp_flight_result_release(g, &r);
	}
	ck_assert_int_eq(sp_flight_stat_allocs(g), warm);
	/* A long key allocates its buffer once, then reuses it. */
	sp_flight_result r;
	ck_assert_int_eq(sp_flight_do(g, longkey, sizeof longkey, fn_key_val, NULL, NULL, &r), 0);
	sp_flight_result_release(g, &r);
	warm = sp_flight_stat_allocs(g);
	for (int i = 0; i < 1000; i++) {
		ck_assert_int_eq(sp_flight_do(g, longkey, sizeof longkey, fn_key_val, NULL, NULL, &r), 0);
		sp_flight_result_release(g, &r);
	}
	ck_assert_int_eq(sp_flight_stat_allocs(g), warm);
	/* A huge key's buffer is not kept for reuse (the record is). */
	char *huge = malloc(1 << 16);
	memset(huge, 'H', 1 << 16);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(sp_flight_do(g, huge, 1 << 16, fn_key_val, huge, NULL, &r), 0);
		ck_assert_ptr_eq(r.val, huge);
		sp_flight_result_release(g, &r);
	}
	ck_assert_int_eq(sp_flight_stat_allocs(g), warm + 3);
	free(huge);
	sp_flight_destroy(g);
}
END_TEST

/* ------------------------------------------------------------ misuse */

START_TEST(test_destroy_with_result_held)
{
	/* Get a shared result (a joiner's), retrying in the unlikely case the
	 * joiner came too late and led its own call. */
	static struct cw c;
	for (int attempt = 0; attempt < 20; attempt++) {
		memset(&c, 0, sizeof c);
		c.g = sp_flight_create(free_and_count);
		pthread_t lead, join;
		struct ctx_waiter jw = { .c = &c, .note = true };
		ck_assert_int_eq(pthread_create(&lead, NULL, cw_leader_hold, &c), 0);
		ck_assert(await_at_least(&c.started, 1, SPTEST_S(10)));
		ck_assert_int_eq(pthread_create(&join, NULL, cw_waiter_hold, &jw), 0);
		tids_await_parked(&c.tids, 1);
		gate_open(&c.gate);
		sp_flight_result *rl, *rj;
		ck_assert(sptest_join_within(lead, SPTEST_S(10), (void **)&rl));
		ck_assert(sptest_join_within(join, SPTEST_S(10), (void **)&rj));
		sp_flight_result_release(c.g, rl);
		if (rj->shared)
			sp_flight_destroy(c.g); /* fatal: rj still held */
		sp_flight_result_release(c.g, rj);
		sp_flight_destroy(c.g);
	}
}
END_TEST

static int fn_destroys(void *arg, void **val)
{
	(void)val;
	sp_flight_destroy(arg); /* fatal: this very call is in flight */
	return 0;
}

START_TEST(test_destroy_in_flight)
{
	sp_flight *g = sp_flight_create(NULL);
	sp_flight_result r;
	sp_flight_do(g, "k", 1, fn_destroys, g, NULL, &r);
}
END_TEST

static Suite *flight_suite(void)
{
	Suite *s = suite_create("flight");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_do);
	tcase_add_test(tc, test_do_err);
	tcase_add_test(tc, test_bad_args);
	tcase_add_test(tc, test_do_dup_suppress);
	tcase_add_test(tc, test_forget);
	tcase_add_test(tc, test_do_ctx);
	tcase_add_test(tc, test_do_ctx_leader_not_interrupted);
	tcase_add_test(tc, test_refcount_abandoned);
	tcase_add_test(tc, test_two_keys_concurrent);
	tcase_add_test(tc, test_binary_keys);
	tcase_add_test(tc, test_hammer);
	tcase_add_test(tc, test_ctx_race);
	tcase_add_test(tc, test_many_in_flight_and_destroy);
	tcase_add_test(tc, test_steady_state_allocates_nothing);
	suite_add_tcase(s, tc);

	TCase *misuse = tcase_create("misuse");
	tcase_set_timeout(misuse, 10);
	tcase_add_test_raise_signal(misuse, test_destroy_with_result_held, SIGABRT);
	tcase_add_test_raise_signal(misuse, test_destroy_in_flight, SIGABRT);
	suite_add_tcase(s, misuse);
	return s;
}
SPTEST_SUITE(flight_suite)
