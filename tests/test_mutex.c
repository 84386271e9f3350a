/* tests/test_mutex.c - sp_mutex (sync/mutex.c): ports of Go's mutex tests and more. */
#include "sptest.h"
#include "common.h"
#include "syncpool/mutex.h"

#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>

/* Sanitized builds run ~10x slower: scale the loops down there. */
#if SP_TSAN || SP_ASAN
#define SCALE 8
#else
#define SCALE 1
#endif

static sp_mutex static_mu = SP_MUTEX_INIT;

START_TEST(test_mutex_zero_value)
{
	ck_assert_uint_eq(sizeof(sp_mutex), 8);
	sp_mutex m = SP_MUTEX_INIT;
	sp_mutex_lock(&m);
	sp_mutex_unlock(&m);
	sp_mutex_lock(&static_mu);
	sp_mutex_unlock(&static_mu);
	sp_mutex *h = calloc(1, sizeof *h);
	ck_assert_ptr_nonnull(h);
	ck_assert(sp_mutex_trylock(h));
	sp_mutex_unlock(h);
	free(h);
}
END_TEST

/* Go's TestMutex, first part: TryLock on a free and on a held mutex. */
START_TEST(test_mutex_trylock)
{
	sp_mutex m = SP_MUTEX_INIT;
	ck_assert(sp_mutex_trylock(&m));
	ck_assert(!sp_mutex_trylock(&m));
	sp_mutex_unlock(&m);
	ck_assert(sp_mutex_trylock(&m));
	sp_mutex_unlock(&m);
	sp_mutex_lock(&m);
	ck_assert(!sp_mutex_trylock(&m));
	sp_mutex_unlock(&m);
}
END_TEST

/* ---------------------------------------------------------------- hammer */

struct hammer {
	sp_mutex mu;
	long counter;  /* plain: only the mutex protects it */
	int inside;    /* plain: must read 0 on entry       */
	int iters;
	int cs_spin;   /* relax iterations inside the critical section */
};

static void *hammer_fn(void *arg)
{
	struct hammer *h = arg;
	for (int i = 0; i < h->iters; i++) {
		/* As in Go's HammerMutex: every third round tries TryLock first. */
		if (i % 3 == 0 && sp_mutex_trylock(&h->mu)) {
			/* got it */
		} else {
			sp_mutex_lock(&h->mu);
		}
		ck_assert_int_eq(h->inside, 0);
		h->inside = 1;
		h->counter++;
		for (int k = 0; k < h->cs_spin; k++)
			sp_cpu_relax();
		h->inside = 0;
		sp_mutex_unlock(&h->mu);
	}
	return NULL;
}

/* sptest_run_threads passes args + i*stride; stride 0 gives every thread the same arg. */
static void hammer(int threads, int iters, int cs_spin)
{
	struct hammer *h = calloc(1, sizeof *h);
	ck_assert_ptr_nonnull(h);
	h->iters = iters;
	h->cs_spin = cs_spin;
	sptest_run_threads(threads, hammer_fn, h, 0, SPTEST_S(60));
	ck_assert_int_eq(h->counter, (long)threads * iters);
	ck_assert(sp_mutex_trylock(&h->mu)); /* left unlocked */
	sp_mutex_unlock(&h->mu);
	free(h);
}

/* Go's TestMutex hammer: exact non-atomic counter, 10 threads. */
START_TEST(test_mutex_hammer)
{
	hammer(10, 20000 / SCALE, 0);
}
END_TEST

/* Oversubscription: 32 threads on however few cores, with a tiny critical section. */
START_TEST(test_mutex_oversubscribed)
{
	hammer(32, 5000 / SCALE, 16);
}
END_TEST

/* 64 threads with a longer critical section: waiters block > 1 ms, starvation mode runs. */
START_TEST(test_mutex_starvation_mode)
{
	hammer(64, 300 / SCALE, 2000);
}
END_TEST

/* ---------------------------------------------------------------- fairness */

struct fair {
	sp_mutex mu;
	_Atomic bool stop;
};

static void *fair_hog(void *arg)
{
	struct fair *f = arg;
	while (!atomic_load(&f->stop)) {
		sp_mutex_lock(&f->mu);
		sptest_sleep_ns(100000); /* 100 us held */
		sp_mutex_unlock(&f->mu);
	}
	return NULL;
}

/* Go's TestMutexFairness: a thread looping on the lock must not starve another. */
START_TEST(test_mutex_fairness)
{
	struct fair *f = calloc(1, sizeof *f);
	ck_assert_ptr_nonnull(f);
	pthread_t hog;
	ck_assert_int_eq(pthread_create(&hog, NULL, fair_hog, f), 0);
	int64_t t0 = sptest_now_ns();
	for (int i = 0; i < 10; i++) {
		sptest_sleep_ns(100000);
		sp_mutex_lock(&f->mu);
		sp_mutex_unlock(&f->mu);
	}
	int64_t dt = sptest_now_ns() - t0;
	atomic_store(&f->stop, true);
	ck_assert(sptest_join_within(hog, SPTEST_S(10), NULL));
	ck_assert_msg(dt < sptest_scaled(SPTEST_S(10)), "10 acquisitions took %lld ns", (long long)dt);
	free(f);
}
END_TEST

/* ---------------------------------------------------------------- cross-thread unlock */

static void *unlock_other(void *arg)
{
	sp_mutex_unlock(arg);
	return NULL;
}

START_TEST(test_mutex_unlock_other_thread)
{
	sp_mutex m = SP_MUTEX_INIT;
	for (int i = 0; i < 100; i++) {
		sp_mutex_lock(&m);
		pthread_t t;
		ck_assert_int_eq(pthread_create(&t, NULL, unlock_other, &m), 0);
		ck_assert(sptest_join_within(t, SPTEST_S(10), NULL));
		/* Unlocked by the other thread: free again. */
		ck_assert(sp_mutex_trylock(&m));
		sp_mutex_unlock(&m);
	}
}
END_TEST

/* A waiter blocked on a mutex is released by an unlock from a third thread. */
struct handoff {
	sp_mutex mu;
	_Atomic int state;
};

static void *blocked_locker(void *arg)
{
	struct handoff *h = arg;
	atomic_store(&h->state, 1);
	sp_mutex_lock(&h->mu);
	atomic_store(&h->state, 2);
	sp_mutex_unlock(&h->mu);
	return NULL;
}

START_TEST(test_mutex_wakes_sleeper)
{
	struct handoff h = { SP_MUTEX_INIT, 0 };
	sp_mutex_lock(&h.mu);
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, blocked_locker, &h), 0);
	while (atomic_load(&h.state) != 1)
		sptest_sleep_ns(100000);
	sptest_sleep_ns(SPTEST_MS(20)); /* let it go to sleep */
	ck_assert_int_eq(atomic_load(&h.state), 1);
	pthread_t u;
	ck_assert_int_eq(pthread_create(&u, NULL, unlock_other, &h.mu), 0);
	ck_assert(sptest_join_within(u, SPTEST_S(10), NULL));
	ck_assert(sptest_join_within(t, SPTEST_S(10), NULL));
	ck_assert_int_eq(atomic_load(&h.state), 2);
}
END_TEST

/*
 * The last user frees: each round, FREE_THREADS threads lock a fresh heap
 * object's mutex, drop their reference and unlock; whoever drops the last
 * one frees the object right after its unlock - while the others may still
 * be returning from theirs.  POSIX allows this for pthread mutexes, and
 * sp_mutex_unlock never touches the mutex after releasing it unless a
 * waiter it must wake keeps it alive (sync/mutex.c).  The window such a
 * touch would need is nanoseconds wide, so this run catches it only by
 * luck (AddressSanitizer under make test-asan); what it checks for sure is
 * that the pattern works: every round completes, nothing hangs or crashes.
 */
enum { FREE_THREADS = 8 };
struct refobj {
	sp_mutex mu;
	int refs;
	char pad[40];
};
struct free_race {
	_Atomic(struct refobj *) obj;
	_Atomic int round, done;
	int rounds;
};

static void *free_race_fn(void *arg)
{
	struct free_race *f = arg;
	for (int r = 1; r <= f->rounds; r++) {
		int64_t end = sptest_now_ns() + sptest_scaled(SPTEST_S(10));
		while (atomic_load(&f->round) < r && sptest_now_ns() < end)
			sched_yield();
		if (atomic_load(&f->round) < r)
			return (void *)1;
		struct refobj *o = atomic_load(&f->obj);
		sp_mutex_lock(&o->mu);
		bool last = --o->refs == 0;
		sp_mutex_unlock(&o->mu);
		if (last)
			free(o);
		atomic_fetch_add(&f->done, 1);
	}
	return NULL;
}

START_TEST(test_mutex_free_after_unlock)
{
	struct free_race f = { .rounds = 3000 / SCALE };
	pthread_t t[FREE_THREADS];
	for (int i = 0; i < FREE_THREADS; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, free_race_fn, &f), 0);
	bool ok = true;
	for (int r = 1; r <= f.rounds && ok; r++) {
		struct refobj *o = calloc(1, sizeof *o);
		ck_assert_ptr_nonnull(o);
		o->refs = FREE_THREADS;
		atomic_store(&f.obj, o);
		atomic_store(&f.round, r);
		int64_t end = sptest_now_ns() + sptest_scaled(SPTEST_S(10));
		while (atomic_load(&f.done) < r * FREE_THREADS && (ok = sptest_now_ns() < end))
			sched_yield();
	}
	for (int i = 0; i < FREE_THREADS; i++) {
		void *res = NULL;
		ck_assert(sptest_join_within(t[i], sptest_scaled(SPTEST_S(10)), &res));
		ck_assert_ptr_null(res);
	}
	ck_assert_msg(ok, "a round did not finish");
	ck_assert_int_eq(atomic_load(&f.done), f.rounds * FREE_THREADS);
}
END_TEST

/* ---------------------------------------------------------------- many mutexes */

enum { NLOCKS = 1000 };
struct many {
	sp_mutex mu[NLOCKS];
	long count[NLOCKS];
	int iters;
};

static void *many_fn(void *arg)
{
	struct many *m = arg;
	unsigned seed = (unsigned)(uintptr_t)&seed;
	for (int i = 0; i < m->iters; i++) {
		unsigned k = (unsigned)rand_r(&seed) % NLOCKS;
		sp_mutex_lock(&m->mu[k]);
		m->count[k]++;
		sp_mutex_unlock(&m->mu[k]);
	}
	return NULL;
}

START_TEST(test_mutex_many_locks)
{
	struct many *m = calloc(1, sizeof *m);
	ck_assert_ptr_nonnull(m);
	m->iters = 50000 / SCALE;
	sptest_run_threads(4, many_fn, m, 0, SPTEST_S(60));
	long total = 0;
	for (int i = 0; i < NLOCKS; i++) {
		ck_assert(sp_mutex_trylock(&m->mu[i]));
		total += m->count[i];
	}
	ck_assert_int_eq(total, 4L * m->iters);
	free(m);
}
END_TEST

/* ---------------------------------------------------------------- misuse */

/* Go's TestMutexMisuse: Mutex.Unlock, Mutex.Unlock2. */
START_TEST(test_mutex_misuse_unlock)
{
	sp_mutex m = SP_MUTEX_INIT;
	sp_mutex_unlock(&m);
}
END_TEST

START_TEST(test_mutex_misuse_unlock2)
{
	sp_mutex m = SP_MUTEX_INIT;
	sp_mutex_lock(&m);
	sp_mutex_unlock(&m);
	sp_mutex_unlock(&m);
}
END_TEST

static Suite *mutex_suite(void)
{
	Suite *s = suite_create("mutex");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_mutex_zero_value);
	tcase_add_test(tc, test_mutex_trylock);
	tcase_add_test(tc, test_mutex_hammer);
	tcase_add_test(tc, test_mutex_oversubscribed);
	tcase_add_test(tc, test_mutex_starvation_mode);
	tcase_add_test(tc, test_mutex_fairness);
	tcase_add_test(tc, test_mutex_unlock_other_thread);
	tcase_add_test(tc, test_mutex_wakes_sleeper);
	tcase_add_test(tc, test_mutex_free_after_unlock);
	tcase_add_test(tc, test_mutex_many_locks);
	suite_add_tcase(s, tc);

	TCase *misuse = tcase_create("misuse");
	tcase_set_timeout(misuse, 10);
	tcase_add_test_raise_signal(misuse, test_mutex_misuse_unlock, SIGABRT);
	tcase_add_test_raise_signal(misuse, test_mutex_misuse_unlock2, SIGABRT);
	suite_add_tcase(s, misuse);
	return s;
}
SPTEST_SUITE(mutex_suite)
