/* tests/test_once.c - sp_once (sync/once.c): Go's TestOnce and concurrent callers. */
#include "sptest.h"
#include "syncpool/once.h"

#include <signal.h>
#include <stdatomic.h>

#include "common.h"

/* Go's TestOnce: 10 threads, fn runs exactly once, each sees it done. */
static sp_once once1 = SP_ONCE_INIT;
static _Atomic int once1_count;

static void incr(void *arg)
{
	_Atomic int *c = arg;
	atomic_fetch_add(c, 1);
}

static void *once1_caller(void *arg)
{
	(void)arg;
	sp_once_do(&once1, incr, &once1_count);
	ck_assert_int_eq(atomic_load(&once1_count), 1);
	return NULL;
}

START_TEST(test_once_go)
{
	sptest_run_threads(10, once1_caller, NULL, 0, SPTEST_S(10));
	ck_assert_int_eq(atomic_load(&once1_count), 1);
	sp_once_do(&once1, incr, &once1_count);
	(sp_once_do)(&once1, incr, &once1_count); /* the exported function */
	ck_assert_int_eq(atomic_load(&once1_count), 1);
}
END_TEST

/* A slow fn: every concurrent caller returns only after fn finished. */
static sp_once slow_once; /* zero value */
static _Atomic int slow_started, slow_finished, slow_runs;
static int slow_data; /* plain: published by the once */

static void slow_fn(void *arg)
{
	(void)arg;
	atomic_fetch_add(&slow_runs, 1);
	atomic_store(&slow_started, 1);
	sptest_sleep_ns(SPTEST_MS(100));
	slow_data = 42;
	atomic_store(&slow_finished, 1);
}

static void *slow_caller(void *arg)
{
	(void)arg;
	sp_once_do(&slow_once, slow_fn, NULL);
	ck_assert_int_eq(atomic_load(&slow_finished), 1);
	ck_assert_int_eq(slow_data, 42);
	return NULL;
}

START_TEST(test_once_slow_concurrent)
{
	sptest_run_threads(32, slow_caller, NULL, 0, SPTEST_S(10));
	ck_assert_int_eq(atomic_load(&slow_runs), 1);
}
END_TEST

/* Different onces are independent; fn's argument is passed through. */
START_TEST(test_once_many)
{
	sp_once o[64];
	int hits[64] = { 0 };
	for (int i = 0; i < 64; i++)
		o[i] = (sp_once)SP_ONCE_INIT;
	for (int r = 0; r < 3; r++)
		for (int i = 0; i < 64; i++)
			sp_once_do(&o[i], incr, &hits[i]);
	for (int i = 0; i < 64; i++)
		ck_assert_int_eq(hits[i], 1);
}
END_TEST

/* Racing first calls on fresh onces: exactly one run each, nobody early. */
enum { RACE_N = 200, RACE_T = 8 };
static sp_once race_once[RACE_N];
static _Atomic int race_runs[RACE_N];
static _Atomic int race_val[RACE_N];

static void race_fn(void *arg)
{
	int i = (int)(intptr_t)arg;
	atomic_fetch_add(&race_runs[i], 1);
	for (int k = 0; k < 100; k++)
		sp_cpu_relax();
	atomic_store_explicit(&race_val[i], 7, memory_order_relaxed);
}

static void *race_caller(void *arg)
{
	(void)arg;
	for (int i = 0; i < RACE_N; i++) {
		sp_once_do(&race_once[i], race_fn, (void *)(intptr_t)i);
		ck_assert_int_eq(atomic_load_explicit(&race_val[i], memory_order_relaxed), 7);
	}
	return NULL;
}

START_TEST(test_once_race)
{
	sptest_run_threads(RACE_T, race_caller, NULL, 0, SPTEST_S(20));
	for (int i = 0; i < RACE_N; i++)
		ck_assert_int_eq(atomic_load(&race_runs[i]), 1);
}
END_TEST

static sp_once rec_once;
static void rec_fn(void *arg)
{
	(void)arg;
	sp_once_do(&rec_once, rec_fn, NULL); /* fatal, not a deadlock */
}

START_TEST(test_once_recursive)
{
	sp_once_do(&rec_once, rec_fn, NULL);
}
END_TEST

static Suite *once_suite(void)
{
	Suite *s = suite_create("once");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_once_go);
	tcase_add_test(tc, test_once_slow_concurrent);
	tcase_add_test(tc, test_once_many);
	tcase_add_test(tc, test_once_race);
	suite_add_tcase(s, tc);
	TCase *td = tcase_create("death");
	tcase_set_timeout(td, 10);
	tcase_add_test_raise_signal(td, test_once_recursive, SIGABRT);
	suite_add_tcase(s, td);
	return s;
}
SPTEST_SUITE(once_suite)
