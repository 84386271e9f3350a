/* tests/test_errgroup.c - sp_errgroup (sync/errgroup.c, sync/workers.c): Go's errgroup tests. */
#include "sptest.h"
#include "syncpool/ctx.h"
#include "syncpool/errgroup.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "workers.h"

static int ret_code(void *arg)
{
	return (int)(intptr_t)arg;
}

/* Go's TestZeroGroup: Wait after each Go returns the first error so far. */
START_TEST(test_errgroup_zero_group)
{
	static const int cases[][3] = {
		{ -1 }, { 0, -1 }, { 1, -1 }, { 1, 0, -1 }, { 1, 0, 2 },
	};
	for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
		sp_errgroup *g = sp_errgroup_create(NULL, NULL);
		ck_assert_ptr_nonnull(g);
		int first = 0;
		for (int i = 0; i < 3 && cases[c][i] >= 0; i++) {
			int e = cases[c][i];
			ck_assert_int_eq(sp_errgroup_go(g, ret_code, (void *)(intptr_t)e), 0);
			if (first == 0)
				first = e;
			ck_assert_int_eq(sp_errgroup_wait(g), first);
		}
		ck_assert_int_eq(sp_errgroup_wait(g), first);
		sp_errgroup_destroy(g);
	}
	sp_errgroup_destroy(NULL);
}
END_TEST

/* Go's TestWithContext: Wait returns the error and the context is done. */
START_TEST(test_errgroup_with_context)
{
	static const int cases[][3] = { { -1 }, { 0, -1 }, { EIO, -1 }, { EIO, 0, -1 } };
	static const int want[] = { 0, 0, EIO, EIO };
	for (size_t c = 0; c < 4; c++) {
		sp_ctx *ctx = NULL;
		sp_errgroup *g = sp_errgroup_create(NULL, &ctx);
		ck_assert_ptr_nonnull(g);
		ck_assert_ptr_nonnull(ctx);
		ck_assert_int_eq(sp_ctx_err(ctx), 0);
		for (int i = 0; i < 3 && cases[c][i] >= 0; i++)
			ck_assert_int_eq(sp_errgroup_go(g, ret_code, (void *)(intptr_t)cases[c][i]), 0);
		ck_assert_int_eq(sp_errgroup_wait(g), want[c]);
		ck_assert_int_eq(sp_ctx_err(ctx), ECANCELED); /* Wait cancels */
		sp_errgroup_destroy(g);
	}
}
END_TEST

/* The first error cancels the context while other tasks still run. */
static int wait_ctx_task(void *arg)
{
	sp_ctx *ctx = arg;
	return sp_ctx_wait(ctx, SPTEST_S(10)) ? 0 : ETIMEDOUT;
}

START_TEST(test_errgroup_first_error_cancels)
{
	sp_ctx *parent = NULL, *ctx = NULL;
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &parent), 0);
	sp_errgroup *g = sp_errgroup_create(parent, &ctx);
	ck_assert_ptr_nonnull(g);
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(sp_errgroup_go(g, wait_ctx_task, ctx), 0);
	sptest_sleep_ns(SPTEST_MS(10));
	ck_assert_int_eq(sp_ctx_err(ctx), 0);
	ck_assert_int_eq(sp_errgroup_go(g, ret_code, (void *)(intptr_t)EPIPE), 0);
	ck_assert_int_eq(sp_errgroup_wait(g), EPIPE); /* the waiters all woke */
	ck_assert_int_eq(sp_ctx_err(parent), 0);      /* a child never cancels its parent */
	sp_errgroup_destroy(g);
	sp_ctx_release(parent);
}
END_TEST

/* The parent's cancellation reaches the group's context. */
START_TEST(test_errgroup_parent_cancel)
{
	sp_ctx *parent = NULL, *ctx = NULL;
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &parent), 0);
	sp_errgroup *g = sp_errgroup_create(parent, &ctx);
	ck_assert_ptr_nonnull(g);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(sp_errgroup_go(g, wait_ctx_task, ctx), 0);
	sp_ctx_cancel(parent);
	ck_assert_int_eq(sp_errgroup_wait(g), 0);
	ck_assert_int_eq(sp_ctx_err(ctx), ECANCELED);
	sp_errgroup_destroy(g);
	sp_ctx_release(parent);
}
END_TEST

/* Go's TestTryGo. */
struct chan {
	_Atomic int tokens; /* sends not yet received */
	_Atomic int release; /* receives allowed */
};
static struct chan tch;

static int chan_send(void *arg)
{
	(void)arg;
	/* Blocks until a receiver takes this send (an unbuffered channel). */
	for (;;) {
		int r = atomic_load(&tch.release);
		if (r > 0 && atomic_compare_exchange_weak(&tch.release, &r, r - 1))
			break;
		sptest_sleep_ns(100000);
	}
	atomic_fetch_add(&tch.tokens, 1);
	return 0;
}

/* A NULL fn is a bad argument (API.md: EINVAL, state unchanged), not a crash later. */
START_TEST(test_errgroup_null_fn)
{
	sp_errgroup *g = sp_errgroup_create(NULL, NULL);
	ck_assert_int_eq(sp_errgroup_go(g, NULL, NULL), EINVAL);
	ck_assert(!sp_errgroup_try_go(g, NULL, NULL));
	ck_assert_int_eq(sp_errgroup_go(NULL, ret_code, NULL), EINVAL);
	sp_errgroup_set_limit(g, 1);
	ck_assert_int_eq(sp_errgroup_go(g, NULL, NULL), EINVAL); /* no slot taken */
	ck_assert_int_eq(sp_errgroup_go(g, ret_code, NULL), 0);
	ck_assert_int_eq(sp_errgroup_wait(g), 0);
	sp_errgroup_destroy(g);
}
END_TEST

START_TEST(test_errgroup_try_go)
{
	sp_errgroup *g = sp_errgroup_create(NULL, NULL);
	const int n = 42;
	sp_errgroup_set_limit(g, 42);
	for (int i = 0; i < n; i++)
		ck_assert_msg(sp_errgroup_try_go(g, chan_send, NULL), "TryGo failed at %d", i);
	ck_assert_msg(!sp_errgroup_try_go(g, chan_send, NULL), "TryGo succeeded at the limit");
	atomic_fetch_add(&tch.release, n);
	ck_assert_int_eq(sp_errgroup_wait(g), 0);
	ck_assert_int_eq(atomic_load(&tch.tokens), n);

	ck_assert(sp_errgroup_try_go(g, chan_send, NULL));
	atomic_fetch_add(&tch.release, 1);
	ck_assert_int_eq(sp_errgroup_wait(g), 0);

	/* Switch limit. */
	sp_errgroup_set_limit(g, 1);
	ck_assert(sp_errgroup_try_go(g, chan_send, NULL));
	ck_assert(!sp_errgroup_try_go(g, chan_send, NULL));
	atomic_fetch_add(&tch.release, 1);
	ck_assert_int_eq(sp_errgroup_wait(g), 0);

	/* Block all calls. */
	sp_errgroup_set_limit(g, 0);
	for (int i = 0; i < 1 << 10; i++)
		ck_assert(!sp_errgroup_try_go(g, chan_send, NULL));
	ck_assert_int_eq(sp_errgroup_go(g, chan_send, NULL), EAGAIN);
	ck_assert_int_eq(sp_errgroup_wait(g), 0);
	ck_assert_int_eq(atomic_load(&tch.tokens), n + 2);
	sp_errgroup_set_limit(g, -1);
	sp_errgroup_destroy(g);
}
END_TEST

/* Go's TestGoLimit: never more than the limit active. */
enum { GO_LIMIT = 10 };
static _Atomic int active, max_active;

static int limited_task(void *arg)
{
	(void)arg;
	int n = atomic_fetch_add(&active, 1) + 1;
	int m = atomic_load(&max_active);
	while (n > m && !atomic_compare_exchange_weak(&max_active, &m, n))
		;
	if (n > GO_LIMIT)
		return E2BIG;
	sptest_sleep_ns(1000);
	atomic_fetch_sub(&active, 1);
	return 0;
}

START_TEST(test_errgroup_go_limit)
{
	sp_errgroup *g = sp_errgroup_create(NULL, NULL);
	sp_errgroup_set_limit(g, GO_LIMIT);
	int n = SP_TSAN ? 1 << 8 : 1 << 10;
	for (int i = 0; i <= n; i++)
		ck_assert_int_eq(sp_errgroup_go(g, limited_task, NULL), 0);
	ck_assert_int_eq(sp_errgroup_wait(g), 0);
	ck_assert_int_le(atomic_load(&max_active), GO_LIMIT);
	ck_assert_int_ge(atomic_load(&max_active), 1);
	sp_errgroup_destroy(g);
}
END_TEST

/* Changing the limit while limited tasks run is fatal, as in Go. */
static _Atomic int hold_release;
static int hold_task(void *arg)
{
	(void)arg;
	while (!atomic_load(&hold_release))
		sptest_sleep_ns(SPTEST_MS(1));
	return 0;
}

START_TEST(test_errgroup_set_limit_active)
{
	sp_errgroup *g = sp_errgroup_create(NULL, NULL);
	sp_errgroup_set_limit(g, 2);
	ck_assert_int_eq(sp_errgroup_go(g, hold_task, NULL), 0);
	sp_errgroup_set_limit(g, 3); /* fatal */
}
END_TEST

/* 10 000 tiny tasks with limit 4 run on few, reused threads. */
enum { MAX_TIDS = 64 };
static pthread_t tids[MAX_TIDS];
static int ntids;
static _Atomic int tid_lock, tid_overflow, tiny_count;

static int tiny_task(void *arg)
{
	(void)arg;
	pthread_t self = pthread_self();
	int z = 0;
	while (!atomic_compare_exchange_weak(&tid_lock, &z, 1))
		z = 0;
	int i;
	for (i = 0; i < ntids; i++)
		if (pthread_equal(tids[i], self))
			break;
	if (i == ntids) {
		if (ntids < MAX_TIDS)
			tids[ntids++] = self;
		else
			atomic_store(&tid_overflow, 1);
	}
	atomic_store(&tid_lock, 0);
	atomic_fetch_add(&tiny_count, 1);
	return 0;
}

START_TEST(test_errgroup_reuses_threads)
{
	int n = SP_TSAN ? 2000 : 10000;
	sp_errgroup *g = sp_errgroup_create(NULL, NULL);
	sp_errgroup_set_limit(g, 4);
	for (int i = 0; i < n; i++)
		ck_assert_int_eq(sp_errgroup_go(g, tiny_task, NULL), 0);
	ck_assert_int_eq(sp_errgroup_wait(g), 0);
	ck_assert_int_eq(atomic_load(&tiny_count), n);
	ck_assert_int_eq(atomic_load(&tid_overflow), 0);
	/* 4 at a time; a few more may be made while a finished one goes idle. */
	if (getenv("SPTEST_VERBOSE")) fprintf(stderr, "errgroup: %d tasks ran on %d threads\n", n, ntids);
	ck_assert_msg(ntids <= 8, "%d distinct threads ran %d tasks with limit 4", ntids, n);
	sp_errgroup_destroy(g);
}
END_TEST

/* Tasks run at once: they may wait for each other (no queueing behind a blocked task). */
static _Atomic int rendezvous;
static int meet_task(void *arg)
{
	int n = (int)(intptr_t)arg;
	atomic_fetch_add(&rendezvous, 1);
	int64_t end = sptest_now_ns() + sptest_scaled(SPTEST_S(10));
	while (atomic_load(&rendezvous) < n)
		if (sptest_now_ns() > end)
			return ETIMEDOUT;
		else
			sptest_sleep_ns(100000);
	return 0;
}

START_TEST(test_errgroup_tasks_run_at_once)
{
	enum { N = 64 };
	sp_errgroup *g = sp_errgroup_create(NULL, NULL);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(sp_errgroup_go(g, meet_task, (void *)(intptr_t)N), 0);
	ck_assert_int_eq(sp_errgroup_wait(g), 0);
	sp_errgroup_destroy(g);
}
END_TEST

/* Nested: tasks start tasks in the same group; destroy waits for them. */
static sp_errgroup *nest_g;
static _Atomic int nest_count;
static int nest_leaf(void *arg)
{
	(void)arg;
	atomic_fetch_add(&nest_count, 1);
	return 0;
}
static int nest_task(void *arg)
{
	(void)arg;
	for (int i = 0; i < 10; i++)
		if (sp_errgroup_go(nest_g, nest_leaf, NULL) != 0)
			return EIO;
	atomic_fetch_add(&nest_count, 1);
	return 0;
}

START_TEST(test_errgroup_nested)
{
	nest_g = sp_errgroup_create(NULL, NULL);
	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(sp_errgroup_go(nest_g, nest_task, NULL), 0);
	ck_assert_int_eq(sp_errgroup_wait(nest_g), 0);
	ck_assert_int_eq(atomic_load(&nest_count), 110);
	sp_errgroup_destroy(nest_g);
}
END_TEST

/* Several threads drive their own groups at once (the worker pool is shared). */
static void *group_driver(void *arg)
{
	(void)arg;
	int rounds = SP_TSAN ? 5 : 30;
	for (int r = 0; r < rounds; r++) {
		sp_ctx *ctx;
		sp_errgroup *g = sp_errgroup_create(NULL, &ctx);
		ck_assert_ptr_nonnull(g);
		if (r & 1)
			sp_errgroup_set_limit(g, 3);
		for (int i = 0; i < 20; i++)
			ck_assert_int_eq(sp_errgroup_go(g, ret_code, (void *)(intptr_t)(i == 7 ? EIO : 0)), 0);
		ck_assert_int_eq(sp_errgroup_wait(g), EIO);
		ck_assert_int_eq(sp_ctx_err(ctx), ECANCELED);
		sp_errgroup_destroy(g);
	}
	return NULL;
}

START_TEST(test_errgroup_many_groups)
{
	sptest_run_threads(8, group_driver, NULL, 0, SPTEST_S(30));
}
END_TEST

/* Destroy without wait joins the running tasks. */
static _Atomic int slow_done;
static int slow_task(void *arg)
{
	(void)arg;
	sptest_sleep_ns(SPTEST_MS(20));
	atomic_fetch_add(&slow_done, 1);
	return 0;
}

START_TEST(test_errgroup_destroy_joins)
{
	sp_errgroup *g = sp_errgroup_create(NULL, NULL);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(sp_errgroup_go(g, slow_task, NULL), 0);
	sp_errgroup_destroy(g);
	ck_assert_int_eq(atomic_load(&slow_done), 5);
}
END_TEST

/*
 * Thread creation failing (injected through sp_workers_create_thread): a
 * go() either returns an error or its task starts at once, even while every
 * other task blocks - never 0 with the task stranded behind a thread that
 * then failed to start.
 */
enum { CREATE_OK, CREATE_FAIL, CREATE_FAIL_FIRST_WAITS, CREATE_FAIL_ODD, CREATE_FAIL_UNTIL_RELEASE };
static _Atomic int create_mode;
static _Atomic int create_calls, create_in_hook, create_release;
static int create_hook(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg)
{
	int mode = atomic_load(&create_mode);
	if (mode == CREATE_OK)
		return pthread_create(t, a, fn, arg);
	int n = atomic_fetch_add(&create_calls, 1);
	if (mode == CREATE_FAIL_ODD && n % 2 == 0)
		return pthread_create(t, a, fn, arg);
	if (mode == CREATE_FAIL_UNTIL_RELEASE && atomic_load(&create_release))
		return pthread_create(t, a, fn, arg);
	if (mode == CREATE_FAIL_FIRST_WAITS && n == 0) {
		/* Hold this creation's outcome until the test says so. */
		atomic_store(&create_in_hook, 1);
		int64_t end = sptest_now_ns() + sptest_scaled(SPTEST_S(10));
		while (!atomic_load(&create_release) && sptest_now_ns() < end)
			sptest_sleep_ns(100000);
	}
	return EAGAIN;
}

static _Atomic int gate_open, gate_started, gate_finished;
static int gate_task(void *arg)
{
	(void)arg;
	atomic_fetch_add(&gate_started, 1);
	int64_t end = sptest_now_ns() + sptest_scaled(SPTEST_S(20));
	while (!atomic_load(&gate_open) && sptest_now_ns() < end)
		sptest_sleep_ns(SPTEST_MS(1)); /* 100+ of these poll at once: keep it light */
	atomic_fetch_add(&gate_finished, 1);
	return atomic_load(&gate_open) ? 0 : ETIMEDOUT;
}

/* Every task whose go() returned 0 starts within a bounded time. */
static void expect_started(int n)
{
	int64_t end = sptest_now_ns() + SPTEST_S(3) * sptest_slowdown();
	while (atomic_load(&gate_started) < n && sptest_now_ns() < end)
		sptest_sleep_ns(200000);
	int started = atomic_load(&gate_started);
	ck_assert_msg(started == n, "%d of %d accepted tasks started", started, n);
}

/* Starts gate tasks with creation failing until a go() fails: no worker is spare or idle. */
static int exhaust_workers(sp_errgroup *g)
{
	atomic_store(&create_mode, CREATE_FAIL);
	int ok = 0;
	for (; ok < 4096; ok++)
		if (sp_errgroup_go(g, gate_task, NULL) != 0)
			break;
	ck_assert_int_lt(ok, 4096);
	expect_started(ok);
	return ok;
}

static void finish_gate_tasks(sp_errgroup *g, int ok)
{
	atomic_store(&create_mode, CREATE_OK);
	atomic_store(&gate_open, 1);
	ck_assert_int_eq(sp_errgroup_wait(g), 0);
	ck_assert_int_eq(atomic_load(&gate_finished), ok);
	/* Creation works again: the group is usable. */
	ck_assert_int_eq(sp_errgroup_go(g, ret_code, NULL), 0);
	ck_assert_int_eq(sp_errgroup_wait(g), 0);
	sp_errgroup_destroy(g);
	sp_workers_create_thread = pthread_create;
}

static sp_errgroup *race_g;
static void *race_go(void *arg)
{
	(void)arg;
	return (void *)(intptr_t)sp_errgroup_go(race_g, gate_task, NULL);
}

/* Lets S1's creation fail once S2 (thread *arg) sleeps waiting for its outcome. */
static void *release_when_parked(void *arg)
{
	int tid = *(int *)arg;
	bool parked = sptest_await_parked(&tid, 1, NULL, SPTEST_S(5));
	atomic_store(&create_release, 1);
	return (void *)(intptr_t)parked;
}

/*
 * The reviewer's interleaving: S1 finds nobody to run its task and creates
 * a thread; S2 submits while that creation is pending; the creation fails.
 * S2 must not have been told 0 on the strength of S1's thread.
 */
START_TEST(test_errgroup_create_fails_while_pending)
{
	sp_workers_create_thread = create_hook;
	race_g = sp_errgroup_create(NULL, NULL);
	int ok = exhaust_workers(race_g);
	atomic_store(&create_calls, 0);
	atomic_store(&create_mode, CREATE_FAIL_FIRST_WAITS);
	pthread_t s1;
	ck_assert_int_eq(pthread_create(&s1, NULL, race_go, NULL), 0);
	int64_t end = sptest_now_ns() + SPTEST_S(5);
	while (!atomic_load(&create_in_hook) && sptest_now_ns() < end)
		sptest_sleep_ns(100000);
	ck_assert(atomic_load(&create_in_hook));
	/* S2 (this thread) waits for the pending creation's outcome: fail it then. */
	int self = sptest_gettid();
	pthread_t rel;
	ck_assert_int_eq(pthread_create(&rel, NULL, release_when_parked, &self), 0);
	int r2 = sp_errgroup_go(race_g, gate_task, NULL); /* S2, S1's creation pending */
	atomic_store(&create_release, 1);
	void *r1, *s2_waited;
	ck_assert(sptest_join_within(rel, SPTEST_S(10), &s2_waited));
	ck_assert(sptest_join_within(s1, SPTEST_S(10), &r1));
	ck_assert_int_eq((int)(intptr_t)r1, EAGAIN);
	ck_assert(r2 == 0 || r2 == EAGAIN);
	ok += r2 == 0;
	expect_started(ok);
	finish_gate_tasks(race_g, ok);
}
END_TEST

/* Many submitters while every other creation fails: each success starts. */
enum { FAIL_SUBMITTERS = 8, FAIL_PER_SUBMITTER = 16 };
static _Atomic int fail_ok, fail_bad;
static void *fail_submitter(void *arg)
{
	(void)arg;
	for (int i = 0; i < FAIL_PER_SUBMITTER; i++) {
		int r = sp_errgroup_go(race_g, gate_task, NULL);
		if (r == 0)
			atomic_fetch_add(&fail_ok, 1);
		else if (r != EAGAIN)
			atomic_fetch_add(&fail_bad, 1);
	}
	return NULL;
}

START_TEST(test_errgroup_create_fails_concurrent)
{
	sp_workers_create_thread = create_hook;
	race_g = sp_errgroup_create(NULL, NULL);
	int ok = exhaust_workers(race_g);
	atomic_store(&create_mode, CREATE_FAIL_ODD);
	sptest_run_threads(FAIL_SUBMITTERS, fail_submitter, NULL, 0, SPTEST_S(20));
	ck_assert_int_eq(atomic_load(&fail_bad), 0);
	ok += atomic_load(&fail_ok);
	ck_assert_int_gt(atomic_load(&fail_ok), 0);
	ck_assert_int_lt(atomic_load(&fail_ok), FAIL_SUBMITTERS * FAIL_PER_SUBMITTER);
	expect_started(ok);
	finish_gate_tasks(race_g, ok);
}
END_TEST

/*
 * A worker takes an item and leaves another behind while no thread can be
 * created for it: both go() calls returned 0, so the second task must start
 * as soon as creation works again (the retry timer), not when the first
 * task - blocked here until the test ends - finishes.
 */
START_TEST(test_errgroup_create_fails_in_chain)
{
	/*
	 * The interleaving needs the worker's wake to be slower than two go()
	 * calls, which holds about half the time: repeat until it happens.
	 */
	bool hit = false;
	for (int attempt = 0; attempt < 12 && !hit; attempt++) {
		atomic_store(&gate_open, 0);
		atomic_store(&gate_started, 0);
		atomic_store(&gate_finished, 0);
		atomic_store(&create_calls, 0);
		atomic_store(&create_release, 0);
		atomic_store(&create_mode, CREATE_OK);
		sp_workers_create_thread = create_hook;
		race_g = sp_errgroup_create(NULL, NULL);
		ck_assert_ptr_nonnull(race_g);
		/* One worker thread, parked idle. */
		ck_assert_int_eq(sp_errgroup_go(race_g, ret_code, NULL), 0);
		ck_assert_int_eq(sp_errgroup_wait(race_g), 0);
		sptest_sleep_ns(SPTEST_MS(20));
		atomic_store(&create_mode, CREATE_FAIL_UNTIL_RELEASE);
		int ra = sp_errgroup_go(race_g, gate_task, NULL);
		int rb = sp_errgroup_go(race_g, gate_task, NULL);
		ck_assert_int_eq(ra, 0);
		ck_assert(rb == 0 || rb == EAGAIN); /* EAGAIN: the worker took A before B came */
		hit = rb == 0;
		if (hit) {
			/* B waits for a thread: creation keeps failing, and is retried (timer, 50 us up). */
			int64_t end = sptest_now_ns() + sptest_scaled(SPTEST_S(5));
			while (atomic_load(&create_calls) < 2 && sptest_now_ns() < end)
				sptest_sleep_ns(SPTEST_MS(1));
			int calls = atomic_load(&create_calls);
			ck_assert_msg(calls >= 2, "%d creation attempts: no retry after the chain's", calls);
			atomic_store(&create_release, 1);
		}
		if (getenv("SPTEST_VERBOSE"))
			fprintf(stderr, "errgroup: chain case %s (attempt %d), %d creation attempts\n",
				hit ? "hit" : "missed", attempt, atomic_load(&create_calls));
		expect_started(1 + hit);
		finish_gate_tasks(race_g, 1 + hit);
	}
	ck_assert_msg(hit, "the interleaving never happened in 12 attempts");
}
END_TEST

/* This process's threads named `name` (the library names its threads). */
static int count_threads(const char *name)
{
	DIR *d = opendir("/proc/self/task");
	ck_assert_ptr_nonnull(d);
	int n = 0;
	for (struct dirent *e; (e = readdir(d)) != NULL;) {
		if (e->d_name[0] == '.')
			continue;
		char path[300], comm[32] = "";
		snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
		FILE *f = fopen(path, "r");
		if (f) {
			if (fgets(comm, sizeof comm, f))
				comm[strcspn(comm, "\n")] = 0;
			fclose(f);
		}
		n += strcmp(comm, name) == 0;
	}
	closedir(d);
	return n;
}

/* Threads are the group's own: destroy joins every one of them. */
START_TEST(test_errgroup_destroy_joins_threads)
{
	enum { N = 16 };
	ck_assert_int_eq(count_threads("sp-worker"), 0);
	ck_assert_int_eq(count_threads("sp-timer"), 0); /* a fresh test process */
	sp_errgroup *g = sp_errgroup_create(NULL, NULL);
	atomic_store(&rendezvous, 0);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(sp_errgroup_go(g, meet_task, (void *)(intptr_t)N), 0);
	ck_assert_int_eq(sp_errgroup_wait(g), 0);
	int during = count_threads("sp-worker");
	ck_assert_int_ge(during, N); /* N tasks met: N threads at once */
	/* >= 1: a worker the timer thread just created has its name for a moment. */
	ck_assert_int_ge(count_threads("sp-timer"), 1);
	sp_errgroup_destroy(g);
	/* A joined thread may linger in /proc for a moment after its exit. */
	int64_t end = sptest_now_ns() + sptest_scaled(SPTEST_S(2));
	int after;
	while ((after = count_threads("sp-worker")) != 0 && sptest_now_ns() < end)
		sptest_sleep_ns(SPTEST_MS(1));
	ck_assert_msg(after == 0, "%d worker threads left after destroy (%d during)", after, during);
	/* The timer thread served only this group: destroy joined it too. */
	end = sptest_now_ns() + sptest_scaled(SPTEST_S(2));
	while ((after = count_threads("sp-timer")) != 0 && sptest_now_ns() < end)
		sptest_sleep_ns(SPTEST_MS(1));
	ck_assert_msg(after == 0, "the timer thread outlived the last group");
	/* A context deadline keeps it for good; groups come and go around it. */
	sp_ctx *dl;
	ck_assert_int_eq(sp_ctx_with_timeout(NULL, SPTEST_S(60), &dl), 0);
	g = sp_errgroup_create(NULL, NULL);
	ck_assert_int_eq(sp_errgroup_go(g, ret_code, NULL), 0);
	ck_assert_int_eq(sp_errgroup_wait(g), 0);
	sp_errgroup_destroy(g);
	ck_assert_int_eq(count_threads("sp-timer"), 1);
	sp_ctx_release(dl);
}
END_TEST

/* Waits (bounded) for a forked child; it must exit with status 0. */
static void expect_child_ok(pid_t pid)
{
	int status = 0;
	ck_assert_msg(sptest_wait_child(pid, &status, SPTEST_S(20)), "the child hung");
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
}

/* A group with no task running at fork() works in the child (its threads do not exist there). */
START_TEST(test_errgroup_after_fork)
{
	/*
	 * The sanitizers cannot start threads in the child of a threaded
	 * process: TSan refuses, ASan's allocator lock may be held by a
	 * thread of the parent (seen: the child's new thread hangs in it).
	 */
	if (SP_TSAN || SP_ASAN)
		return;
	sp_errgroup *g = sp_errgroup_create(NULL, NULL);
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(sp_errgroup_go(g, ret_code, NULL), 0);
	ck_assert_int_eq(sp_errgroup_wait(g), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		atomic_store(&rendezvous, 0);
		int bad = 0;
		for (int i = 0; i < 4; i++)
			bad |= sp_errgroup_go(g, meet_task, (void *)(intptr_t)4) != 0;
		bad |= sp_errgroup_wait(g) != 0;
		sp_errgroup_destroy(g);
		/*
		 * The tasks waited for each other, so the child's timer thread
		 * started (the searcher timer); destroying the last group
		 * joins it, as in the parent (it was left running once).
		 */
		bad |= (count_threads("sp-timer") != 0) << 1;
		bad |= (count_threads("sp-worker") != 0) << 2;
		_exit(bad);
	}
	expect_child_ok(pid);
	ck_assert_int_eq(sp_errgroup_go(g, ret_code, NULL), 0); /* the parent's threads still serve */
	ck_assert_int_eq(sp_errgroup_wait(g), 0);
	sp_errgroup_destroy(g);
}
END_TEST

/*
 * A fork child whose first group starts the timer thread, which then fires
 * a deadline armed in the parent; that deadline's hook destroys the group -
 * the last one - on the timer thread.  The destroy must not ask the timer
 * thread to leave and wait for itself (it hung there once).
 */
static sp_errgroup *hook_g;
static _Atomic int hook_destroyed, hook_in_child, hook_child_ready;
static void destroy_group_hook(void *arg)
{
	(void)arg;
	/*
	 * In the child, the deadline may be past by the time the timer thread
	 * starts (a slow machine): destroy only once the child's go/wait are
	 * done with the group, not under them.
	 */
	if (atomic_load(&hook_in_child)) {
		int64_t end = sptest_now_ns() + sptest_scaled(SPTEST_S(5));
		while (!atomic_load(&hook_child_ready) && sptest_now_ns() < end)
			sptest_sleep_ns(SPTEST_MS(1));
	}
	sp_errgroup_destroy(hook_g);
	atomic_store(&hook_destroyed, 1);
}

START_TEST(test_errgroup_destroyed_by_deadline_hook_after_fork)
{
	if (SP_TSAN || SP_ASAN)
		return; /* as in test_errgroup_after_fork */
	sp_ctx *c;
	ck_assert_int_eq(sp_ctx_with_timeout(NULL, SPTEST_MS(100), &c), 0);
	sp_ctx_hook *h = sp_ctx_after_func(c, destroy_group_hook, NULL);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		atomic_store(&hook_in_child, 1);
		hook_g = sp_errgroup_create(NULL, NULL); /* starts the child's timer thread */
		int bad = hook_g == NULL || sp_errgroup_go(hook_g, ret_code, NULL) != 0 ||
			  sp_errgroup_wait(hook_g) != 0;
		atomic_store(&hook_child_ready, 1);
		int64_t end = sptest_now_ns() + sptest_scaled(SPTEST_S(5));
		while (!atomic_load(&hook_destroyed) && sptest_now_ns() < end)
			sptest_sleep_ns(SPTEST_MS(1));
		bad |= !atomic_load(&hook_destroyed);
		/* The timer thread still serves deadlines. */
		sp_ctx *d;
		bad |= sp_ctx_with_timeout(NULL, SPTEST_MS(10), &d) != 0;
		bad |= !bad && !sp_ctx_wait(d, SPTEST_S(5));
		_exit(bad ? 1 : 0);
	}
	expect_child_ok(pid);
	sp_ctx_cancel(c);
	ck_assert(!sp_ctx_hook_stop(h)); /* it ran here too, with hook_g NULL */
	sp_ctx_release(c);
}
END_TEST

static Suite *errgroup_suite(void)
{
	Suite *s = suite_create("errgroup");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_errgroup_zero_group);
	tcase_add_test(tc, test_errgroup_with_context);
	tcase_add_test(tc, test_errgroup_first_error_cancels);
	tcase_add_test(tc, test_errgroup_parent_cancel);
	tcase_add_test(tc, test_errgroup_try_go);
	tcase_add_test(tc, test_errgroup_null_fn);
	tcase_add_test(tc, test_errgroup_go_limit);
	tcase_add_test(tc, test_errgroup_reuses_threads);
	tcase_add_test(tc, test_errgroup_tasks_run_at_once);
	tcase_add_test(tc, test_errgroup_nested);
	tcase_add_test(tc, test_errgroup_many_groups);
	tcase_add_test(tc, test_errgroup_destroy_joins);
	tcase_add_test(tc, test_errgroup_create_fails_while_pending);
	tcase_add_test(tc, test_errgroup_create_fails_concurrent);
	tcase_add_test(tc, test_errgroup_create_fails_in_chain);
	tcase_add_test(tc, test_errgroup_destroy_joins_threads);
	tcase_add_test(tc, test_errgroup_after_fork);
	tcase_add_test(tc, test_errgroup_destroyed_by_deadline_hook_after_fork);
	suite_add_tcase(s, tc);
	TCase *td = tcase_create("death");
	tcase_set_timeout(td, 10);
	tcase_add_test_raise_signal(td, test_errgroup_set_limit_active, SIGABRT);
	suite_add_tcase(s, td);
	return s;
}
SPTEST_SUITE(errgroup_suite)
