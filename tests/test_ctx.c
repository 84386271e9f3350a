/* tests/test_ctx.c - contexts (sync/ctx.c) and the watch mechanism. */
#include "sptest.h"
#include "common.h"
#include "ctx_internal.h"
#include "park.h"
#include "syncpool/ctx.h"

#include <errno.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>
#include <string.h>
#include <stdlib.h>

#if SP_TSAN || SP_ASAN
#define SCALE 3
#else
#define SCALE 1
#endif

START_TEST(test_background)
{
	sp_ctx *bg = sp_ctx_background();
	int64_t d = 7;
	ck_assert_ptr_nonnull(bg);
	ck_assert_int_eq(sp_ctx_err(bg), 0);
	ck_assert_int_eq(sp_ctx_err(NULL), 0);
	ck_assert(!sp_ctx_deadline(bg, &d));
	ck_assert_int_eq(d, 7);
	ck_assert_ptr_null(sp_ctx_value(bg, &d));
	ck_assert(!sp_ctx_wait(bg, SPTEST_MS(1)));
	ck_assert(!sp_ctx_wait(NULL, 0));
	sp_ctx_cancel(bg);
	ck_assert_int_eq(sp_ctx_err(bg), 0);
	ck_assert_ptr_eq(sp_ctx_retain(bg), bg);
	sp_ctx_release(bg);
	sp_ctx_release(bg);
	sp_ctx_release(NULL);
}
END_TEST

START_TEST(test_cancel_basic)
{
	sp_ctx *c;
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &c), 0);
	ck_assert_int_eq(sp_ctx_err(c), 0);
	ck_assert(!sp_ctx_wait(c, 0));
	sp_ctx_cancel(c);
	ck_assert_int_eq(sp_ctx_err(c), ECANCELED);
	ck_assert(sp_ctx_wait(c, 0));
	ck_assert(sp_ctx_wait(c, -1));
	sp_ctx_cancel(c);
	ck_assert_int_eq(sp_ctx_err(c), ECANCELED);
	sp_ctx_release(c);
}
END_TEST

START_TEST(test_cancel_tree)
{
	sp_ctx *p, *c1, *c2, *g, *v;
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &p), 0);
	ck_assert_int_eq(sp_ctx_with_cancel(p, &c1), 0);
	ck_assert_int_eq(sp_ctx_with_timeout(p, SPTEST_S(100), &c2), 0);
	ck_assert_int_eq(sp_ctx_with_cancel(c1, &g), 0);
	ck_assert_int_eq(sp_ctx_with_value(g, &g, &p, &v), 0);
	/* A child never cancels its parent. */
	sp_ctx_cancel(c2);
	ck_assert_int_eq(sp_ctx_err(c2), ECANCELED);
	ck_assert_int_eq(sp_ctx_err(p), 0);
	ck_assert_int_eq(sp_ctx_err(c1), 0);
	sp_ctx_cancel(p);
	ck_assert_int_eq(sp_ctx_err(p), ECANCELED);
	ck_assert_int_eq(sp_ctx_err(c1), ECANCELED);
	ck_assert_int_eq(sp_ctx_err(g), ECANCELED);
	ck_assert_int_eq(sp_ctx_err(v), ECANCELED);
	/* A child of a done parent is done at once. */
	sp_ctx *late;
	ck_assert_int_eq(sp_ctx_with_cancel(g, &late), 0);
	ck_assert_int_eq(sp_ctx_err(late), ECANCELED);
	sp_ctx_release(late);
	sp_ctx_release(p);
	sp_ctx_release(c2);
	sp_ctx_release(v);
	sp_ctx_release(c1);
	sp_ctx_release(g);
}
END_TEST

START_TEST(test_release_cancels_owner_only)
{
	sp_ctx *c, *ch;
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &c), 0);
	ck_assert_int_eq(sp_ctx_with_cancel(c, &ch), 0);
	sp_ctx *r = sp_ctx_retain(c);
	sp_ctx *r2 = sp_ctx_retain(r);
	sp_ctx_release(r2);
	ck_assert_int_eq(sp_ctx_err(c), 0);
	sp_ctx_release(c); /* creator's release: cancels */
	ck_assert_int_eq(sp_ctx_err(r), ECANCELED);
	ck_assert_int_eq(sp_ctx_err(ch), ECANCELED);
	sp_ctx_release(r);
	/* The child outlives its parent's handles. */
	ck_assert_int_eq(sp_ctx_err(ch), ECANCELED);
	sp_ctx_release(ch);
}
END_TEST

START_TEST(test_child_outlives_parent)
{
	sp_ctx *p, *c;
	static int k1, k2;
	ck_assert_int_eq(sp_ctx_with_value(NULL, &k1, &k1, &p), 0);
	ck_assert_int_eq(sp_ctx_with_value(p, &k2, &k2, &c), 0);
	sp_ctx *keep = sp_ctx_retain(c);
	sp_ctx_release(c);
	ck_assert_ptr_eq(sp_ctx_value(keep, &k1), &k1);
	sp_ctx_release(p);
	ck_assert_ptr_eq(sp_ctx_value(keep, &k1), &k1);
	ck_assert_ptr_eq(sp_ctx_value(keep, &k2), &k2);
	sp_ctx_release(keep);
}
END_TEST

START_TEST(test_deadline)
{
	sp_ctx *c;
	int64_t t0 = sp_now_ns(), d = 0;
	ck_assert_int_eq(sp_ctx_with_timeout(NULL, SPTEST_MS(30), &c), 0);
	ck_assert(sp_ctx_deadline(c, &d));
	ck_assert_int_ge(d, t0 + SPTEST_MS(30));
	/* Not done before its deadline. On a stalled machine (valgrind, a loaded
	 * CI host) the 30 ms may already have passed: then the clock must say so. */
	int e = sp_ctx_err(c);
	int64_t now = sp_now_ns();
	ck_assert_msg(e == 0 || (e == ETIMEDOUT && now >= d),
	              "err %d %lld ns before the deadline", e, (long long)(d - now));
	ck_assert(sp_ctx_wait(c, SPTEST_S(5)));
	int64_t dt = sp_now_ns() - t0;
	ck_assert_int_ge(dt, SPTEST_MS(30));
	ck_assert_int_eq(sp_ctx_err(c), ETIMEDOUT);
	sp_ctx_cancel(c);
	ck_assert_int_eq(sp_ctx_err(c), ETIMEDOUT); /* never changes */
	sp_ctx_release(c);
}
END_TEST

START_TEST(test_deadline_past)
{
	sp_ctx *c, *c2;
	ck_assert_int_eq(sp_ctx_with_deadline(NULL, sp_now_ns() - 1, &c), 0);
	ck_assert_int_eq(sp_ctx_err(c), ETIMEDOUT);
	ck_assert_int_eq(sp_ctx_with_timeout(NULL, -5, &c2), 0);
	ck_assert_int_eq(sp_ctx_err(c2), ETIMEDOUT);
	sp_ctx_release(c);
	sp_ctx_release(c2);
}
END_TEST

START_TEST(test_parent_deadline_earlier)
{
	sp_ctx *p, *c;
	int64_t dp, dc;
	ck_assert_int_eq(sp_ctx_with_timeout(NULL, SPTEST_MS(20), &p), 0);
	ck_assert_int_eq(sp_ctx_with_timeout(p, SPTEST_S(100), &c), 0);
	ck_assert(sp_ctx_deadline(p, &dp));
	ck_assert(sp_ctx_deadline(c, &dc));
	ck_assert_int_eq(dp, dc);
	ck_assert(sp_ctx_wait(c, SPTEST_S(5)));
	ck_assert_int_eq(sp_ctx_err(c), ETIMEDOUT);
	ck_assert_int_eq(sp_ctx_err(p), ETIMEDOUT);
	sp_ctx_release(c);
	sp_ctx_release(p);
}
END_TEST

static _Atomic int hook_runs;
static void hook_fn(void *arg)
{
	atomic_fetch_add(&hook_runs, 1);
	atomic_store((_Atomic int *)arg, 1);
}

START_TEST(test_after_func)
{
	_Atomic int flag = 0;
	sp_ctx *c;
	atomic_store(&hook_runs, 0);
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &c), 0);
	sp_ctx_hook *h1 = sp_ctx_after_func(c, hook_fn, &flag);
	sp_ctx_hook *h2 = sp_ctx_after_func(c, hook_fn, &flag);
	ck_assert(sp_ctx_hook_stop(h2)); /* stopped before: fn never runs */
	ck_assert_int_eq(atomic_load(&hook_runs), 0);
	sp_ctx_cancel(c);
	ck_assert_int_eq(atomic_load(&hook_runs), 1);
	ck_assert(!sp_ctx_hook_stop(h1)); /* ran */
	/* Registered on a done context: runs at once, in the caller. */
	atomic_store(&flag, 0);
	sp_ctx_hook *h3 = sp_ctx_after_func(c, hook_fn, &flag);
	ck_assert_int_eq(atomic_load(&flag), 1);
	ck_assert(!sp_ctx_hook_stop(h3));
	sp_ctx_release(c);
	/* Background: never runs. */
	sp_ctx_hook *h4 = sp_ctx_after_func(NULL, hook_fn, &flag);
	ck_assert(sp_ctx_hook_stop(h4));
	ck_assert_int_eq(atomic_load(&hook_runs), 2);
}
END_TEST

/*
 * Hooks of one context run in registration order, and a hook may stop a
 * sibling: one not yet run never runs (the stop returns true at once - it
 * used to wait forever for the sibling, which runs after it on the same
 * thread); one that ran already makes the stop return false.
 */
struct sibling {
	int order[4];
	_Atomic int n;
	sp_ctx_hook *victim;   /* stopped by the stopper */
	int stop_result;       /* 1 true, 0 false, -1 not called */
};
static struct sibling sib;
static void sib_record(void *arg)
{
	sib.order[atomic_fetch_add(&sib.n, 1)] = (int)(intptr_t)arg;
}
static void sib_stopper(void *arg)
{
	sib_record(arg);
	sib.stop_result = sp_ctx_hook_stop(sib.victim) ? 1 : 0;
	sib.victim = NULL;
}

START_TEST(test_hook_stops_sibling)
{
	for (int later = 0; later < 2; later++) {
		sp_ctx *c;
		memset(&sib, 0, sizeof sib);
		sib.stop_result = -1;
		ck_assert_int_eq(sp_ctx_with_cancel(NULL, &c), 0);
		sp_ctx_hook *first = sp_ctx_after_func(c, sib_record, (void *)1);
		sp_ctx_hook *victim_early = later ? NULL : sp_ctx_after_func(c, sib_record, (void *)2);
		sp_ctx_hook *stopper = sp_ctx_after_func(c, sib_stopper, (void *)3);
		sp_ctx_hook *victim_late = later ? sp_ctx_after_func(c, sib_record, (void *)2) : NULL;
		sp_ctx_hook *last = sp_ctx_after_func(c, sib_record, (void *)4);
		sib.victim = later ? victim_late : victim_early;
		sp_ctx_cancel(c); /* hung here before the fix (later == 1) */
		if (later) {
			/* 1, 3 (stops 2 before it ran), 4 */
			ck_assert_int_eq(atomic_load(&sib.n), 3);
			ck_assert_int_eq(sib.stop_result, 1);
			ck_assert_int_eq(sib.order[0], 1);
			ck_assert_int_eq(sib.order[1], 3);
			ck_assert_int_eq(sib.order[2], 4);
		} else {
			/* 1, 2, 3 (2 ran already), 4 */
			ck_assert_int_eq(atomic_load(&sib.n), 4);
			ck_assert_int_eq(sib.stop_result, 0);
			for (int i = 0; i < 4; i++)
				ck_assert_int_eq(sib.order[i], i + 1);
		}
		ck_assert(!sp_ctx_hook_stop(first));
		ck_assert(!sp_ctx_hook_stop(stopper));
		ck_assert(!sp_ctx_hook_stop(last));
		sp_ctx_release(c);
	}
}
END_TEST

/* Promptness: best of 5 within a few ms (a loaded machine may stall one trial). */
struct waker {
	sp_ctx *c;
	int64_t woke;
	_Atomic int tid;
};
static void *wait_and_stamp(void *arg)
{
	struct waker *w = arg;
	atomic_store(&w->tid, sptest_gettid());
	ck_assert(sp_ctx_wait(w->c, SPTEST_S(5)));
	w->woke = sp_now_ns();
	return NULL;
}

START_TEST(test_wait_prompt)
{
	int64_t best = INT64_MAX;
	for (int trial = 0; trial < 5; trial++) {
		pthread_t t;
		struct waker w = { NULL, 0, 0 };
		ck_assert_int_eq(sp_ctx_with_cancel(NULL, &w.c), 0);
		ck_assert_int_eq(pthread_create(&t, NULL, wait_and_stamp, &w), 0);
		while (!atomic_load(&w.tid))
			sptest_sleep_ns(SPTEST_MS(1) / 10);
		int tid = atomic_load(&w.tid);
		ck_assert(sptest_await_parked(&tid, 1, NULL, SPTEST_S(5))); /* asleep in the wait */
		int64_t t0 = sp_now_ns();
		sp_ctx_cancel(w.c);
		ck_assert(sptest_join_within(t, SPTEST_S(5), NULL));
		ck_assert_int_lt(w.woke - t0, sptest_scaled(SPTEST_S(1)));
		if (w.woke - t0 < best)
			best = w.woke - t0;
		sp_ctx_release(w.c);
	}
	ck_assert_int_lt(best, sptest_scaled(SPTEST_MS(5 * SCALE)));
}
END_TEST

START_TEST(test_wait_timeout)
{
	sp_ctx *c;
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &c), 0);
	int64_t t0 = sp_now_ns();
	ck_assert(!sp_ctx_wait(c, SPTEST_MS(15)));
	ck_assert_int_ge(sp_now_ns() - t0, SPTEST_MS(15));
	sp_ctx_release(c);
}
END_TEST

START_TEST(test_many_children)
{
	enum { N = 10000 };
	sp_ctx *p, **ch = malloc(N * sizeof *ch);
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &p), 0);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(i % 3 ? sp_ctx_with_cancel(p, &ch[i])
				       : sp_ctx_with_timeout(p, SPTEST_S(100) + i, &ch[i]), 0);
	/* Release half before the parent's cancel: they leave the parent's list. */
	for (int i = 0; i < N; i += 2)
		sp_ctx_release(ch[i]);
	sp_ctx_release(p);
	for (int i = 1; i < N; i += 2) {
		ck_assert_int_eq(sp_ctx_err(ch[i]), ECANCELED);
		sp_ctx_release(ch[i]);
	}
	free(ch);
}
END_TEST

START_TEST(test_deep_chain)
{
	/* Cancellation walks the tree without recursion; freeing too. */
	enum { N = 100000 };
	sp_ctx **c = malloc(N * sizeof *c);
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &c[0]), 0);
	for (int i = 1; i < N; i++)
		ck_assert_int_eq(sp_ctx_with_cancel(c[i - 1], &c[i]), 0);
	sp_ctx_cancel(c[0]);
	ck_assert_int_eq(sp_ctx_err(c[N - 1]), ECANCELED);
	for (int i = 0; i < N; i++) /* root first: the leaf frees the chain */
		sp_ctx_release(c[i]);
	free(c);
}
END_TEST


START_TEST(test_values)
{
	static int ka, kb, kc;
	int va = 1, vb = 2, va2 = 3;
	sp_ctx *a, *b, *c, *d;
	ck_assert_int_eq(sp_ctx_with_value(NULL, &ka, &va, &a), 0);
	ck_assert_int_eq(sp_ctx_with_cancel(a, &b), 0);
	ck_assert_int_eq(sp_ctx_with_value(b, &kb, &vb, &c), 0);
	ck_assert_int_eq(sp_ctx_with_value(c, &ka, &va2, &d), 0); /* shadows ka */
	ck_assert_ptr_eq(sp_ctx_value(a, &ka), &va);
	ck_assert_ptr_null(sp_ctx_value(a, &kb));
	ck_assert_ptr_eq(sp_ctx_value(b, &ka), &va);
	ck_assert_ptr_eq(sp_ctx_value(c, &kb), &vb);
	ck_assert_ptr_eq(sp_ctx_value(c, &ka), &va);
	ck_assert_ptr_eq(sp_ctx_value(d, &ka), &va2);
	ck_assert_ptr_null(sp_ctx_value(d, &kc));
	ck_assert_ptr_null(sp_ctx_value(NULL, &ka));
	/* Values survive cancellation; the value context is cancellable. */
	sp_ctx_cancel(c);
	ck_assert_int_eq(sp_ctx_err(d), ECANCELED);
	ck_assert_int_eq(sp_ctx_err(b), 0);
	ck_assert_ptr_eq(sp_ctx_value(d, &kb), &vb);
	sp_ctx_release(a);
	sp_ctx_release(b);
	sp_ctx_release(c);
	ck_assert_ptr_eq(sp_ctx_value(d, &ka), &va2);
	sp_ctx_release(d);
	ck_assert_int_eq(sp_ctx_with_value(NULL, &ka, &va, NULL), EINVAL);
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, NULL), EINVAL);
}
END_TEST

START_TEST(test_child_deadline_earlier)
{
	sp_ctx *p, *c, *g;
	int64_t dp, dc;
	ck_assert_int_eq(sp_ctx_with_timeout(NULL, SPTEST_S(100), &p), 0);
	ck_assert_int_eq(sp_ctx_with_timeout(p, SPTEST_MS(10), &c), 0);
	ck_assert_int_eq(sp_ctx_with_cancel(c, &g), 0);
	ck_assert(sp_ctx_deadline(p, &dp));
	ck_assert(sp_ctx_deadline(g, &dc));
	ck_assert_int_lt(dc, dp);
	ck_assert(sp_ctx_wait(g, SPTEST_S(5)));
	ck_assert_int_eq(sp_ctx_err(g), ETIMEDOUT);
	ck_assert_int_eq(sp_ctx_err(c), ETIMEDOUT);
	ck_assert_int_eq(sp_ctx_err(p), 0);
	sp_ctx_release(g);
	sp_ctx_release(c);
	ck_assert_int_eq(sp_ctx_err(p), 0);
	sp_ctx_release(p);
}
END_TEST

/* An earlier deadline added later wakes the timer thread for it. */
START_TEST(test_timer_earlier_wakes)
{
	sp_ctx *late, *soon;
	ck_assert_int_eq(sp_ctx_with_timeout(NULL, SPTEST_S(100), &late), 0);
	sptest_sleep_ns(SPTEST_MS(5)); /* the timer thread sleeps for `late` */
	int64_t t0 = sp_now_ns();
	ck_assert_int_eq(sp_ctx_with_timeout(NULL, SPTEST_MS(10), &soon), 0);
	ck_assert(sp_ctx_wait(soon, SPTEST_S(5)));
	ck_assert_int_lt(sp_now_ns() - t0, SPTEST_MS(500) * sptest_slowdown());
	ck_assert_int_eq(sp_ctx_err(late), 0);
	sp_ctx_release(soon);
	sp_ctx_release(late);
}
END_TEST

/*
 * Many deadlines, some cancelled early: each ends with the right error, on
 * time.  A cancel is "early" only if it returned before the deadline: a
 * stalled machine may reach it later, and then the deadline may win.
 */
START_TEST(test_timer_many)
{
	enum { N = 2000 };
	sp_ctx **c = malloc(N * sizeof *c);
	static bool late_cancel[N];
	int64_t t0 = sp_now_ns();
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(sp_ctx_with_timeout(NULL, SPTEST_MS(100) + (i * 7919 % N) * 10000, &c[i]), 0);
		late_cancel[i] = false;
		if (i % 3 == 0) {
			int64_t d;
			ck_assert(sp_ctx_deadline(c[i], &d));
			sp_ctx_cancel(c[i]);
			late_cancel[i] = sp_now_ns() >= d;
		}
	}
	for (int i = 0; i < N; i++) {
		ck_assert(sp_ctx_wait(c[i], SPTEST_S(10)));
		int e = sp_ctx_err(c[i]);
		if (i % 3 == 0 && late_cancel[i])
			ck_assert(e == ECANCELED || e == ETIMEDOUT);
		else
			ck_assert_int_eq(e, i % 3 == 0 ? ECANCELED : ETIMEDOUT);
	}
	ck_assert_int_lt(sp_now_ns() - t0, sptest_scaled(SPTEST_S(5)));
	for (int i = 0; i < N; i++)
		sp_ctx_release(c[i]);
	free(c);
}
END_TEST

/* Releasing a context with an armed deadline disarms it (no leak, no late fire). */
START_TEST(test_timer_release_disarms)
{
	for (int i = 0; i < 1000; i++) {
		sp_ctx *c, *ch;
		ck_assert_int_eq(sp_ctx_with_timeout(NULL, SPTEST_S(100), &c), 0);
		ck_assert_int_eq(sp_ctx_with_timeout(c, SPTEST_S(50), &ch), 0);
		sp_ctx_release(c);
		ck_assert_int_eq(sp_ctx_err(ch), ECANCELED);
		sp_ctx_release(ch);
	}
}
END_TEST

static _Atomic int tfire;
static void note_fire(void *arg)
{
	(void)arg;
	atomic_fetch_add(&tfire, 1);
}

START_TEST(test_after_func_timer)
{
	sp_ctx *c;
	atomic_store(&tfire, 0);
	ck_assert_int_eq(sp_ctx_with_timeout(NULL, SPTEST_MS(5), &c), 0);
	sp_ctx_hook *h = sp_ctx_after_func(c, note_fire, NULL);
	ck_assert_ptr_nonnull(h);
	ck_assert(sp_ctx_wait(c, SPTEST_S(5)));
	ck_assert(!sp_ctx_hook_stop(h)); /* fn ran on the timer thread, and has returned */
	ck_assert_int_eq(atomic_load(&tfire), 1);
	sp_ctx_release(c);
	ck_assert_ptr_null(sp_ctx_after_func(NULL, NULL, NULL));
	ck_assert(!sp_ctx_hook_stop(NULL));
}
END_TEST

/* A hook fn may cancel another context (AfterFunc linking two contexts). */
static void cancel_other(void *arg)
{
	sp_ctx_cancel(arg);
}

START_TEST(test_after_func_links)
{
	sp_ctx *a, *b, *bc;
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &a), 0);
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &b), 0);
	ck_assert_int_eq(sp_ctx_with_cancel(a, &bc), 0);
	sp_ctx_hook *h = sp_ctx_after_func(a, cancel_other, b);
	sp_ctx_hook *h2 = sp_ctx_after_func(a, cancel_other, bc); /* a descendant being cancelled */
	sp_ctx_release(a);
	ck_assert_int_eq(sp_ctx_err(b), ECANCELED);
	ck_assert_int_eq(sp_ctx_err(bc), ECANCELED);
	ck_assert(!sp_ctx_hook_stop(h));
	ck_assert(!sp_ctx_hook_stop(h2));
	sp_ctx_release(b);
	sp_ctx_release(bc);
}
END_TEST

/* sp_ctx_watch: remove returns false only after fn has returned. */
struct slow_watch {
	sp_ctx_watch w;
	_Atomic int entered, finished;
};
static void slow_fn(sp_ctx_watch *w)
{
	struct slow_watch *sw = sp_container_of(w, struct slow_watch, w);
	atomic_store(&sw->entered, 1);
	sptest_sleep_ns(SPTEST_MS(30));
	atomic_store(&sw->finished, 1);
}
static void *cancel_thread(void *arg)
{
	sp_ctx_cancel(arg);
	return NULL;
}

START_TEST(test_watch_remove_waits)
{
	sp_ctx *c;
	pthread_t t;
	struct slow_watch sw = { .entered = 0 };
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &c), 0);
	ck_assert_int_eq(sp_ctx_watch_add(c, &sw.w, slow_fn), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, cancel_thread, c), 0);
	while (!atomic_load(&sw.entered))
		sptest_sleep_ns(SPTEST_MS(1) / 10);
	ck_assert(!sp_ctx_watch_remove(c, &sw.w));
	ck_assert_int_eq(atomic_load(&sw.finished), 1);
	ck_assert(!sp_ctx_watch_remove(c, &sw.w)); /* again: harmless */
	ck_assert(sptest_join_within(t, SPTEST_S(5), NULL));
	/* Added to a done context: not registered. */
	struct slow_watch sw2 = { .entered = 0 };
	ck_assert_int_eq(sp_ctx_watch_add(c, &sw2.w, slow_fn), ECANCELED);
	ck_assert(sp_ctx_watch_remove(c, &sw2.w));
	ck_assert_int_eq(atomic_load(&sw2.entered), 0);
	sp_ctx_release(c);
	/* Removed before: true, fn never runs. */
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &c), 0);
	ck_assert_int_eq(sp_ctx_watch_add(c, &sw2.w, slow_fn), 0);
	ck_assert(sp_ctx_watch_remove(c, &sw2.w));
	sp_ctx_release(c);
	ck_assert_int_eq(atomic_load(&sw2.entered), 0);
	/* Background: nothing registered. */
	ck_assert_int_eq(sp_ctx_watch_add(NULL, &sw2.w, slow_fn), 0);
	ck_assert(sp_ctx_watch_remove(NULL, &sw2.w));
}
END_TEST

/*
 * Races: threads create children (with deadlines, values, hooks, waits) of a
 * shared parent and cancel/release them while the parent is cancelled at a
 * random moment; afterwards every child is done, every hook ran exactly
 * once or was stopped, and nothing leaks (ASan).
 */
static sp_ctx *race_parent;
static _Atomic int race_hook_runs, race_hook_ran_stops;
static void race_hook(void *arg)
{
	(void)arg;
	atomic_fetch_add(&race_hook_runs, 1);
}

static void *race_thread(void *arg)
{
	unsigned seed = (unsigned)(intptr_t)arg;
	sp_ctx *mine = sp_ctx_retain(race_parent);
	for (int i = 0; i < 400; i++) {
		sp_ctx *c, *g;
		int k = rand_r(&seed) % 3;
		int r = k == 0 ? sp_ctx_with_cancel(mine, &c)
			: k == 1 ? sp_ctx_with_timeout(mine, rand_r(&seed) % 100000, &c)
				 : sp_ctx_with_value(mine, &race_parent, &seed, &c);
		ck_assert_int_eq(r, 0);
		ck_assert_int_eq(sp_ctx_with_cancel(c, &g), 0);
		sp_ctx_hook *h = sp_ctx_after_func(g, race_hook, NULL);
		sp_ctx *keep = sp_ctx_retain(g);
		if (rand_r(&seed) % 2)
			sp_ctx_cancel(c);
		if (rand_r(&seed) % 2)
			sp_ctx_wait(g, rand_r(&seed) % 20000);
		sp_ctx_release(c);
		ck_assert_int_ne(sp_ctx_err(g), 0); /* the parent's release cancelled it */
		if (!sp_ctx_hook_stop(h))
			atomic_fetch_add(&race_hook_ran_stops, 1);
		sp_ctx_release(g);
		sp_ctx_release(keep);
	}
	sp_ctx_release(mine);
	return NULL;
}

static void *race_canceller(void *arg)
{
	(void)arg;
	sptest_sleep_ns(SPTEST_MS(3));
	sp_ctx_cancel(race_parent);
	return NULL;
}

START_TEST(test_concurrent_tree)
{
	enum { N = 16 };
	pthread_t t[N], k;
	atomic_store(&race_hook_runs, 0);
	atomic_store(&race_hook_ran_stops, 0);
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &race_parent), 0);
	ck_assert_int_eq(pthread_create(&k, NULL, race_canceller, NULL), 0);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, race_thread, (void *)(intptr_t)(i + 1)), 0);
	for (int i = 0; i < N; i++)
		ck_assert(sptest_join_within(t[i], SPTEST_S(30), NULL));
	ck_assert(sptest_join_within(k, SPTEST_S(5), NULL));
	ck_assert_int_eq(sp_ctx_err(race_parent), ECANCELED);
	ck_assert_int_eq(atomic_load(&race_hook_runs), atomic_load(&race_hook_ran_stops));
	ck_assert_int_eq(atomic_load(&race_hook_runs), N * 400); /* every grandchild got done */
	sp_ctx_release(race_parent);
}
END_TEST

/*
 * A hook that cancels an ancestor of its own context, from inside the
 * cancellation that runs it (direct cancel, creator's release, and the
 * timer thread): the nested cancel must not wait for the outer one, or the
 * thread deadlocks (and, on the timer thread, no deadline fires again).
 */
static void hook_cancel_ctx(void *arg)
{
	sp_ctx_cancel(arg);
}

START_TEST(test_hook_cancels_ancestor)
{
	for (int mode = 0; mode < 3; mode++) {
		sp_ctx *p, *c;
		ck_assert_int_eq(sp_ctx_with_cancel(NULL, &p), 0);
		if (mode == 2)
			ck_assert_int_eq(sp_ctx_with_timeout(p, SPTEST_MS(5), &c), 0);
		else
			ck_assert_int_eq(sp_ctx_with_cancel(p, &c), 0);
		sp_ctx_hook *h = sp_ctx_after_func(c, hook_cancel_ctx, p);
		ck_assert_ptr_nonnull(h);
		if (mode == 0) {
			sp_ctx_cancel(c);
		} else if (mode == 1) {
			sp_ctx *keep = sp_ctx_retain(c);
			sp_ctx_release(c); /* the creator's release cancels c */
			c = keep;
		} else {
			ck_assert(sp_ctx_wait(p, SPTEST_S(5)));
		}
		ck_assert(!sp_ctx_hook_stop(h)); /* fn ran */
		ck_assert_int_eq(sp_ctx_err(p), ECANCELED);
		ck_assert_int_ne(sp_ctx_err(c), 0);
		sp_ctx_release(c);
		sp_ctx_release(p);
	}
	/* The timer thread still serves deadlines afterwards. */
	sp_ctx *t;
	ck_assert_int_eq(sp_ctx_with_timeout(NULL, SPTEST_MS(5), &t), 0);
	ck_assert(sp_ctx_wait(t, SPTEST_S(5)));
	ck_assert_int_eq(sp_ctx_err(t), ETIMEDOUT);
	sp_ctx_release(t);
}
END_TEST

/* Waiters on one context from many threads all wake on one cancel. */
static void *ctx_waiter(void *arg)
{
	ck_assert(sp_ctx_wait(arg, SPTEST_S(10)));
	return NULL;
}

START_TEST(test_many_waiters)
{
	enum { N = 32 };
	pthread_t t[N];
	sp_ctx *c, *ch;
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &c), 0);
	ck_assert_int_eq(sp_ctx_with_value(c, &c, NULL, &ch), 0);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, ctx_waiter, i % 2 ? c : ch), 0);
	sptest_sleep_ns(SPTEST_MS(10));
	sp_ctx_cancel(c);
	for (int i = 0; i < N; i++)
		ck_assert(sptest_join_within(t[i], SPTEST_S(5), NULL));
	sp_ctx_release(ch);
	sp_ctx_release(c);
}
END_TEST

/*
 * fork: a deadline armed before the fork fires in the child too, which has
 * no timer thread until something starts one - here, the wait itself.
 */
static void fork_hook_fn(void *arg)
{
	atomic_fetch_add((_Atomic int *)arg, 1);
}

START_TEST(test_deadline_armed_before_fork)
{
	if (SP_TSAN || SP_ASAN)
		return; /* their runtimes cannot start threads in a threaded process's child */
	sp_ctx *c, *h;
	ck_assert_int_eq(sp_ctx_with_timeout(NULL, SPTEST_MS(30), &c), 0);
	ck_assert_int_eq(sp_ctx_with_timeout(NULL, SPTEST_MS(30), &h), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* A hook alone starts the thread too (no wait in this half). */
		static _Atomic int fired;
		sp_ctx_hook *hk = sp_ctx_after_func(h, fork_hook_fn, (void *)&fired);
		int64_t end = sptest_now_ns() + sptest_scaled(SPTEST_S(5));
		while (!atomic_load(&fired) && sptest_now_ns() < end)
			sptest_sleep_ns(SPTEST_MS(1));
		bool hooked = atomic_load(&fired) == 1;
		sp_ctx_hook_stop(hk);
		bool done = sp_ctx_wait(c, sptest_scaled(SPTEST_S(5)));
		_exit(done && sp_ctx_err(c) == ETIMEDOUT && hooked ? 0 : 1);
	}
	int st = 0;
	ck_assert_msg(sptest_wait_child(pid, &st, SPTEST_S(20)), "the child hung");
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
	ck_assert(sp_ctx_wait(c, SPTEST_S(5)));
	sp_ctx_release(c);
	sp_ctx_release(h);
}
END_TEST

/*
 * A child made after the parent's deadline passed, before the timer thread
 * fired it, is done at once (ctx.h), whatever its own deadline - and so is
 * the parent: a child is never done before the ancestor whose deadline it
 * inherits.
 */
START_TEST(test_parent_deadline_passed_unfired)
{
	int missed = 0;
	for (int i = 0; i < 200; i++) {
		sp_ctx *p, *q, *c[4];
		int64_t dl = sp_now_ns() + 20000;
		ck_assert_int_eq(sp_ctx_with_deadline(NULL, dl, &p), 0);
		ck_assert_int_eq(sp_ctx_with_cancel(p, &q), 0);
		while (sp_now_ns() <= dl)
			;
		if (i % 2) { /* through a grandchild: the grandparent's deadline fires */
			sp_ctx *g;
			ck_assert_int_eq(sp_ctx_with_timeout(q, SPTEST_S(100), &g), 0);
			if (sp_ctx_err(g) != ETIMEDOUT || sp_ctx_err(q) != ETIMEDOUT)
				missed++;
			sp_ctx_release(g);
		}
		ck_assert_int_eq(sp_ctx_with_timeout(p, 0, &c[0]), 0);
		if (sp_ctx_err(p) != ETIMEDOUT) /* fired with it: never a child before its parent */
			missed++;
		ck_assert_int_eq(sp_ctx_with_deadline(p, sp_now_ns() - 1, &c[1]), 0);
		ck_assert_int_eq(sp_ctx_with_cancel(p, &c[2]), 0); /* p is done by now */
		ck_assert_int_eq(sp_ctx_with_timeout(p, SPTEST_S(100), &c[3]), 0);
		for (int k = 0; k < 4; k++) {
			if (sp_ctx_err(c[k]) != ETIMEDOUT)
				missed++;
			sp_ctx_release(c[k]);
		}
		sp_ctx_release(q);
		sp_ctx_release(p);
	}
	ck_assert_int_eq(missed, 0);
}
END_TEST

static Suite *ctx_suite(void)
{
	Suite *s = suite_create("ctx");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, test_background);
	tcase_add_test(tc, test_cancel_basic);
	tcase_add_test(tc, test_cancel_tree);
	tcase_add_test(tc, test_release_cancels_owner_only);
	tcase_add_test(tc, test_child_outlives_parent);
	tcase_add_test(tc, test_deadline);
	tcase_add_test(tc, test_deadline_past);
	tcase_add_test(tc, test_parent_deadline_earlier);
	tcase_add_test(tc, test_parent_deadline_passed_unfired);
	tcase_add_test(tc, test_deadline_armed_before_fork);
	tcase_add_test(tc, test_after_func);
	tcase_add_test(tc, test_hook_stops_sibling);
	tcase_add_test(tc, test_wait_prompt);
	tcase_add_test(tc, test_wait_timeout);
	tcase_add_test(tc, test_many_children);
	tcase_add_test(tc, test_deep_chain);
	tcase_add_test(tc, test_values);
	tcase_add_test(tc, test_child_deadline_earlier);
	tcase_add_test(tc, test_timer_earlier_wakes);
	tcase_add_test(tc, test_timer_many);
	tcase_add_test(tc, test_timer_release_disarms);
	tcase_add_test(tc, test_after_func_timer);
	tcase_add_test(tc, test_after_func_links);
	tcase_add_test(tc, test_watch_remove_waits);
	tcase_add_test(tc, test_concurrent_tree);
	tcase_add_test(tc, test_hook_cancels_ancestor);
	tcase_add_test(tc, test_many_waiters);
	suite_add_tcase(s, tc);
	return s;
}
SPTEST_SUITE(ctx_suite)
