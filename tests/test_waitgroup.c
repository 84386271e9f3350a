/* tests/test_waitgroup.c - sp_waitgroup (sync/waitgroup.c): Go's WaitGroup tests. */
#include "sptest.h"
#include "syncpool/waitgroup.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>

#include "common.h"

/* Go's TestWaitGroup: wg1 as a latch, wg2 as a barrier, reused 8 times by 16 threads. */
struct barrier_round {
	sp_waitgroup *wg1, *wg2;
	_Atomic int exited;
};

static void *barrier_worker(void *arg)
{
	struct barrier_round *r = arg;
	sp_waitgroup_done(r->wg1);
	sp_waitgroup_wait(r->wg2);
	atomic_fetch_add(&r->exited, 1);
	return NULL;
}

START_TEST(test_waitgroup_barrier_reused)
{
	enum { N = 16, ROUNDS = 8 };
	sp_waitgroup wg1 = SP_WAITGROUP_INIT, wg2 = SP_WAITGROUP_INIT;
	for (int round = 0; round < ROUNDS; round++) {
		struct barrier_round r = { &wg1, &wg2, 0 };
		pthread_t t[N];
		sp_waitgroup_add(&wg1, N);
		sp_waitgroup_add(&wg2, N);
		for (int i = 0; i < N; i++)
			ck_assert_int_eq(pthread_create(&t[i], NULL, barrier_worker, &r), 0);
		sp_waitgroup_wait(&wg1);
		for (int i = 0; i < N; i++) {
			ck_assert_msg(atomic_load(&r.exited) == 0, "released group too soon");
			sp_waitgroup_done(&wg2);
		}
		for (int i = 0; i < N; i++)
			ck_assert_msg(sptest_join_within(t[i], SPTEST_S(10), NULL),
				      "barrier failed to unlock a waiter");
		ck_assert_int_eq(atomic_load(&r.exited), N);
	}
}
END_TEST

START_TEST(test_waitgroup_zero)
{
	sp_waitgroup wg = SP_WAITGROUP_INIT;
	sp_waitgroup_wait(&wg); /* zero counter: returns at once */
	sp_waitgroup_add(&wg, 3);
	(sp_waitgroup_add)(&wg, -2); /* the exported functions */
	(sp_waitgroup_done)(&wg);
	sp_waitgroup_wait(&wg);
	static sp_waitgroup zero; /* static zero value */
	sp_waitgroup_wait(&zero);
	ck_assert_uint_eq(sizeof(sp_waitgroup), 8);
}
END_TEST

START_TEST(test_waitgroup_negative)
{
	sp_waitgroup wg = SP_WAITGROUP_INIT;
	sp_waitgroup_add(&wg, 1);
	sp_waitgroup_done(&wg);
	sp_waitgroup_done(&wg); /* fatal: negative counter */
}
END_TEST

START_TEST(test_waitgroup_negative_big)
{
	sp_waitgroup wg = SP_WAITGROUP_INIT;
	sp_waitgroup_add(&wg, 5);
	sp_waitgroup_add(&wg, -6);
}
END_TEST

START_TEST(test_waitgroup_overflow)
{
	sp_waitgroup wg = SP_WAITGROUP_INIT;
	sp_waitgroup_add(&wg, INT32_MAX);
	sp_waitgroup_add(&wg, 1);
}
END_TEST

/*
 * Go's "WaitGroup misuse: Add called concurrently with Wait": an add that
 * starts a new round while the old round's waiters are still to be released
 * is fatal.  That moment - counter 0 with the waiters bit (bit 0) set, between
 * the last done's decrement and its release - is too short to hit from
 * threads, so these white-box tests set the state word to it.
 */
START_TEST(test_waitgroup_add_during_release)
{
	sp_waitgroup wg = SP_WAITGROUP_INIT;
	__atomic_store_n(&wg.state_, (uint64_t)1, __ATOMIC_RELAXED); /* counter 0, waiters */
	sp_waitgroup_add(&wg, 1); /* fatal */
}
END_TEST

/* The same bit with the counter positive is an ordinary wait: adds are fine. */
START_TEST(test_waitgroup_add_while_waited)
{
	sp_waitgroup wg = SP_WAITGROUP_INIT;
	__atomic_store_n(&wg.state_, ((uint64_t)1 << 32) | 1, __ATOMIC_RELAXED); /* counter 1, waiters */
	sp_waitgroup_add(&wg, 1);
	sp_waitgroup_done(&wg);
	sp_waitgroup_done(&wg); /* releases the round: nobody was really parked */
	uint64_t st = __atomic_load_n(&wg.state_, __ATOMIC_RELAXED);
	ck_assert_uint_eq(st >> 32, 0);  /* counter 0 */
	ck_assert_uint_eq(st & 1, 0);    /* waiters bit cleared */
	ck_assert_uint_ne(st, 0);        /* the generation moved */
	sp_waitgroup_wait(&wg);          /* returns at once */
}
END_TEST

/* Go's TestWaitGroupRace / "no early wake": Wait returns only after every Done. */
struct race_arg {
	sp_waitgroup *wg;
	_Atomic int *n;
};

static void *race_worker(void *arg)
{
	struct race_arg *a = arg;
	sched_yield();
	atomic_fetch_add(a->n, 1);
	sp_waitgroup_done(a->wg);
	return NULL;
}

static void *race_waiter(void *arg)
{
	struct race_arg *a = arg;
	sp_waitgroup_wait(a->wg);
	return (void *)(intptr_t)atomic_load(a->n);
}

START_TEST(test_waitgroup_no_early_wake)
{
	int iters = SP_TSAN ? 100 : 1000;
	for (int it = 0; it < iters; it++) {
		sp_waitgroup wg = SP_WAITGROUP_INIT;
		_Atomic int n = 0;
		struct race_arg a = { &wg, &n };
		pthread_t w[2], wt[2];
		sp_waitgroup_add(&wg, 2);
		for (int i = 0; i < 2; i++)
			ck_assert_int_eq(pthread_create(&wt[i], NULL, race_waiter, &a), 0);
		for (int i = 0; i < 2; i++)
			ck_assert_int_eq(pthread_create(&w[i], NULL, race_worker, &a), 0);
		sp_waitgroup_wait(&wg);
		ck_assert_int_eq(atomic_load(&n), 2);
		for (int i = 0; i < 2; i++) {
			void *ret;
			ck_assert(sptest_join_within(wt[i], SPTEST_S(10), &ret));
			ck_assert_int_eq((int)(intptr_t)ret, 2);
			ck_assert(sptest_join_within(w[i], SPTEST_S(10), NULL));
		}
	}
}
END_TEST

/* Many waiters, many doners, many rounds on one group; exact counts. */
enum { HAM_THREADS = 32 };
static sp_waitgroup ham_wg;
static _Atomic int ham_done_count;
static _Atomic int ham_round;

static void *ham_worker(void *arg)
{
	(void)arg;
	atomic_fetch_add(&ham_done_count, 1);
	sp_waitgroup_done(&ham_wg);
	sp_waitgroup_wait(&ham_wg); /* everyone also waits: a barrier */
	ck_assert_int_eq(atomic_load(&ham_done_count) % HAM_THREADS, 0);
	return NULL;
}

START_TEST(test_waitgroup_hammer)
{
	int rounds = SP_TSAN ? 10 : 50;
	for (int r = 0; r < rounds; r++) {
		sp_waitgroup_add(&ham_wg, HAM_THREADS);
		sptest_run_threads(HAM_THREADS, ham_worker, NULL, 0, SPTEST_S(20));
		ck_assert_int_eq(atomic_load(&ham_done_count), (r + 1) * HAM_THREADS);
		atomic_fetch_add(&ham_round, 1);
	}
	sp_waitgroup_wait(&ham_wg);
}
END_TEST

/* A waiter that arrives late (after the round ended) returns at once. */
START_TEST(test_waitgroup_wait_many_times)
{
	sp_waitgroup wg = SP_WAITGROUP_INIT;
	for (int i = 0; i < 100; i++) {
		sp_waitgroup_add(&wg, 1);
		sp_waitgroup_done(&wg);
		sp_waitgroup_wait(&wg);
		sp_waitgroup_wait(&wg);
	}
}
END_TEST

static Suite *waitgroup_suite(void)
{
	Suite *s = suite_create("waitgroup");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_waitgroup_barrier_reused);
	tcase_add_test(tc, test_waitgroup_zero);
	tcase_add_test(tc, test_waitgroup_no_early_wake);
	tcase_add_test(tc, test_waitgroup_hammer);
	tcase_add_test(tc, test_waitgroup_wait_many_times);
	tcase_add_test(tc, test_waitgroup_add_while_waited);
	suite_add_tcase(s, tc);
	TCase *td = tcase_create("death");
	tcase_add_test_raise_signal(td, test_waitgroup_negative, SIGABRT);
	tcase_add_test_raise_signal(td, test_waitgroup_negative_big, SIGABRT);
	tcase_add_test_raise_signal(td, test_waitgroup_overflow, SIGABRT);
	tcase_add_test_raise_signal(td, test_waitgroup_add_during_release, SIGABRT);
	suite_add_tcase(s, td);
	return s;
}
SPTEST_SUITE(waitgroup_suite)
