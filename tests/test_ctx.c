/* tests/test_ctx.c - contexts (sync/ctx.c) and the watch mechanism. */
#include "sptest.h"
#include "ctx_internal.h"
#include "park.h"
#include "syncpool/ctx.h"

#include <errno.h>
#include <stdlib.h>

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
	ck_assert_int_eq(sp_ctx_err(c), 0);
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

struct waker {
	sp_ctx *c;
	int64_t at;
};
static void *cancel_later(void *arg)
{
	struct waker *w = arg;
	sptest_sleep_ns(SPTEST_MS(20));
	w->at = sp_now_ns();
	sp_ctx_cancel(w->c);
	return NULL;
}

START_TEST(test_wait_prompt)
{
	sp_ctx *c;
	pthread_t t;
	struct waker w;
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &c), 0);
	w.c = c;
	ck_assert_int_eq(pthread_create(&t, NULL, cancel_later, &w), 0);
	ck_assert(sp_ctx_wait(c, SPTEST_S(5)));
	int64_t lat = sp_now_ns() - w.at;
	ck_assert(sptest_join_within(t, SPTEST_S(5), NULL));
	ck_assert_int_lt(lat, SPTEST_MS(20));
	sp_ctx_release(c);
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
	tcase_add_test(tc, test_after_func);
	tcase_add_test(tc, test_wait_prompt);
	tcase_add_test(tc, test_wait_timeout);
	tcase_add_test(tc, test_many_children);
	tcase_add_test(tc, test_deep_chain);
	suite_add_tcase(s, tc);
	return s;
}
SPTEST_SUITE(ctx_suite)
