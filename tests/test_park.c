/* tests/test_park.c - the futex parking layer (sync/park.c). */
#include "sptest.h"
#include "park.h"

#include <errno.h>

START_TEST(test_park_value_differs)
{
	_Atomic uint32_t w = 1;
	/* The word does not hold the expected value: returns at once. */
	ck_assert_int_eq(sp_park_wait(&w, 0, -1), 0);
}
END_TEST

START_TEST(test_park_deadline)
{
	_Atomic uint32_t w = 0;
	int64_t t0 = sp_now_ns();
	ck_assert_int_eq(sp_park_wait(&w, 0, t0 + SPTEST_MS(20)), ETIMEDOUT);
	int64_t dt = sp_now_ns() - t0;
	ck_assert_int_ge(dt, SPTEST_MS(20));
	/* A deadline already past returns at once. */
	ck_assert_int_eq(sp_park_wait(&w, 0, t0), ETIMEDOUT);
}
END_TEST

static _Atomic uint32_t wake_word;
static _Atomic int woke;

static void *parker(void *arg)
{
	(void)arg;
	while (atomic_load(&wake_word) == 0)
		sp_park_wait(&wake_word, 0, -1);
	atomic_fetch_add(&woke, 1);
	return NULL;
}

START_TEST(test_park_wake_all)
{
	enum { N = 16 };
	pthread_t t[N];
	atomic_store(&wake_word, 0);
	atomic_store(&woke, 0);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, parker, NULL), 0);
	sptest_sleep_ns(SPTEST_MS(20));
	ck_assert_int_eq(atomic_load(&woke), 0);
	atomic_store(&wake_word, 1);
	sp_park_wake_all(&wake_word);
	for (int i = 0; i < N; i++)
		ck_assert(sptest_join_within(t[i], SPTEST_S(5), NULL));
	ck_assert_int_eq(atomic_load(&woke), N);
}
END_TEST

START_TEST(test_spin_bounded)
{
	_Atomic uint32_t w = 7;
	ck_assert_int_ge(sp_spin_limit(), 0);
	/* Nobody changes the word: the spin gives up. */
	ck_assert(!sp_spin_while_eq(&w, 7));
	ck_assert(sp_spin_while_eq(&w, 8));
}
END_TEST

static Suite *park_suite(void)
{
	Suite *s = suite_create("park");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 10);
	tcase_add_test(tc, test_park_value_differs);
	tcase_add_test(tc, test_park_deadline);
	tcase_add_test(tc, test_park_wake_all);
	tcase_add_test(tc, test_spin_bounded);
	suite_add_tcase(s, tc);
	return s;
}
SPTEST_SUITE(park_suite)
