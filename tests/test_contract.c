/*
 * tests/test_contract.c - the public contract (../shared/spec/API.md) checked
 * from a user's point of view: only <syncpool.h>, one test per statement that
 * is cheap to check.  Module suites test the algorithms; this one tests that
 * names, return values, errno conventions, zero values, INIT macros, NULL
 * contexts and the fatal message format are what the contract says.
 *
 * Fatal misuse is checked twice: as a Check death test (SIGABRT), and by
 * forking a child with stderr on a pipe so that the exact
 * "syncpool: fatal: <module>: <what>" line can be compared.
 */
#include <syncpool.h>

#include "sptest.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ------------------------------------------------------------ helpers */

/* Runs fn in a forked child with stderr on a pipe; expects SIGABRT and exactly `line`. */
static void expect_fatal(void (*fn)(void), const char *line)
{
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	fflush(NULL);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(p[0]);
		dup2(p[1], STDERR_FILENO);
		fn();
		_exit(0); /* misuse not detected */
	}
	close(p[1]);
	char buf[512];
	size_t len = 0;
	int64_t end = sptest_now_ns() + sptest_scaled(SPTEST_S(10));
	for (;;) {
		struct pollfd pf = { .fd = p[0], .events = POLLIN };
		int64_t left = (end - sptest_now_ns()) / 1000000;
		if (left <= 0 || poll(&pf, 1, (int)left) <= 0)
			break;
		ssize_t r = read(p[0], buf + len, sizeof buf - 1 - len);
		if (r <= 0)
			break;
		len += (size_t)r;
		if (len == sizeof buf - 1)
			break;
	}
	buf[len] = 0;
	close(p[0]);
	int st = 0;
	pid_t w;
	while ((w = waitpid(pid, &st, WNOHANG)) == 0 && sptest_now_ns() < end)
		sptest_sleep_ns(SPTEST_MS(1));
	if (w == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		ck_abort_msg("misuse child hung; stderr: %s", buf);
	}
	ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT,
		      "expected SIGABRT, got status %#x; stderr: %s", st, buf);
	/* Sanitizer runtimes may add their own lines: the library's line must be there. */
	ck_assert_msg(strstr(buf, line) != NULL, "stderr was \"%s\", expected \"%s\"", buf, line);
}

struct flag {
	_Atomic int v;
};
static void flag_set(struct flag *f) { atomic_store(&f->v, 1); }
static bool flag_wait(struct flag *f, int64_t timeout_ns)
{
	int64_t end = sptest_now_ns() + sptest_scaled(timeout_ns);
	while (!atomic_load(&f->v)) {
		if (sptest_now_ns() > end)
			return false;
		sptest_sleep_ns(SPTEST_MS(1) / 4);
	}
	return true;
}

/* Waits (bounded) until *v >= want. */
static bool flag_wait_count(_Atomic int *v, int want)
{
	int64_t end = sptest_now_ns() + sptest_scaled(SPTEST_S(5));
	while (atomic_load(v) < want) {
		if (sptest_now_ns() > end)
			return false;
		sptest_sleep_ns(SPTEST_MS(1) / 4);
	}
	return true;
}

/* ------------------------------------------------------------ conventions */

START_TEST(test_now_ns_monotonic)
{
	int64_t a = sp_now_ns();
	sptest_sleep_ns(SPTEST_MS(2));
	int64_t b = sp_now_ns();
	ck_assert_int_gt(a, 0);
	ck_assert_int_ge(b - a, SPTEST_MS(2));
	/* Same clock as CLOCK_MONOTONIC. */
	int64_t t = sptest_now_ns();
	ck_assert_int_lt(llabs(t - sp_now_ns()), SPTEST_MS(50) * sptest_slowdown());
}
END_TEST

static sp_mutex s_mu = SP_MUTEX_INIT;
static sp_rwmutex s_rw = SP_RWMUTEX_INIT;
static sp_waitgroup s_wg = SP_WAITGROUP_INIT;
static sp_once s_once = SP_ONCE_INIT;
static sp_cond s_cond = SP_COND_INIT;
static sp_mutex z_mu;
static sp_rwmutex z_rw;
static sp_waitgroup z_wg;
static sp_once z_once;
static sp_cond z_cond;
static int once_runs;
static void once_count(void *arg) { (void)arg; once_runs++; }

static void use_all(sp_mutex *m, sp_rwmutex *rw, sp_waitgroup *wg, sp_once *o, sp_cond *c)
{
	ck_assert(sp_mutex_trylock(m));
	ck_assert(!sp_mutex_trylock(m));
	sp_mutex_unlock(m);
	sp_mutex_lock(m);
	sp_mutex_unlock(m);
	ck_assert(sp_rwmutex_tryrlock(rw));
	ck_assert(sp_rwmutex_tryrlock(rw));
	ck_assert(!sp_rwmutex_trylock(rw));
	sp_rwmutex_runlock(rw);
	sp_rwmutex_runlock(rw);
	ck_assert(sp_rwmutex_trylock(rw));
	ck_assert(!sp_rwmutex_tryrlock(rw));
	sp_rwmutex_unlock(rw);
	sp_waitgroup_wait(wg); /* zero: returns at once */
	sp_waitgroup_add(wg, 2);
	sp_waitgroup_done(wg);
	sp_waitgroup_add(wg, -1);
	sp_waitgroup_wait(wg);
	int before = once_runs;
	sp_once_do(o, once_count, NULL);
	sp_once_do(o, once_count, NULL);
	ck_assert_int_eq(once_runs, before + 1);
	sp_cond_signal(c);
	sp_cond_broadcast(c);
	sp_mutex_lock(m);
	sp_ctx *done;
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &done), 0);
	sp_ctx_cancel(done);
	ck_assert_int_eq(sp_cond_wait_ctx(c, m, done), ECANCELED);
	sp_ctx_release(done);
	sp_mutex_unlock(m);
}

START_TEST(test_zero_value_static_init)
{
	use_all(&s_mu, &s_rw, &s_wg, &s_once, &s_cond);
}
END_TEST

START_TEST(test_zero_value_static_zero)
{
	use_all(&z_mu, &z_rw, &z_wg, &z_once, &z_cond);
}
END_TEST

START_TEST(test_zero_value_automatic)
{
	sp_mutex m = SP_MUTEX_INIT;
	sp_rwmutex rw = SP_RWMUTEX_INIT;
	sp_waitgroup wg = SP_WAITGROUP_INIT;
	sp_once o = SP_ONCE_INIT;
	sp_cond c = SP_COND_INIT;
	use_all(&m, &rw, &wg, &o, &c);
	sp_mutex m0 = { 0 };
	sp_rwmutex rw0 = { 0 };
	sp_waitgroup wg0 = { 0 };
	sp_once o0 = { 0 };
	sp_cond c0 = { 0 };
	use_all(&m0, &rw0, &wg0, &o0, &c0);
	struct all {
		sp_mutex m;
		sp_rwmutex rw;
		sp_waitgroup wg;
		sp_once o;
		sp_cond c;
	} in = { SP_MUTEX_INIT, SP_RWMUTEX_INIT, SP_WAITGROUP_INIT, SP_ONCE_INIT, SP_COND_INIT };
	use_all(&in.m, &in.rw, &in.wg, &in.o, &in.c);
}
END_TEST

START_TEST(test_zero_value_calloc)
{
	struct all {
		char pad[3];
		sp_mutex m;
		sp_rwmutex rw;
		sp_waitgroup wg;
		sp_once o;
		sp_cond c;
	} *a = calloc(1, sizeof *a);
	ck_assert_ptr_nonnull(a);
	use_all(&a->m, &a->rw, &a->wg, &a->o, &a->c);
	free(a);
}
END_TEST

/* Function pointers with exactly the contract's types (a mismatch fails to compile). */
START_TEST(test_signatures)
{
	void *(*pool_get)(sp_pool *) = sp_pool_get;
	sp_pool *(*pool_create)(const sp_pool_opts *) = sp_pool_create;
	void (*pool_put)(sp_pool *, void *) = sp_pool_put;
	int (*cleaner_start)(int64_t) = sp_pool_cleaner_start;
	void (*stats_get)(sp_pool *, sp_pool_stats *) = sp_pool_stats_get;
	void (*mlock)(sp_mutex *) = sp_mutex_lock;
	bool (*mtry)(sp_mutex *) = sp_mutex_trylock;
	bool (*rwtry)(sp_rwmutex *) = sp_rwmutex_tryrlock;
	void (*wgadd)(sp_waitgroup *, int64_t) = sp_waitgroup_add;
	void (*wgdone)(sp_waitgroup *) = sp_waitgroup_done;
	void (*oncedo)(sp_once *, void (*)(void *), void *) = sp_once_do;
	int (*cwctx)(sp_cond *, sp_mutex *, sp_ctx *) = sp_cond_wait_ctx;
	int (*sinit)(sp_sema *, int64_t) = sp_sema_init;
	int (*sacq)(sp_sema *, int64_t, sp_ctx *) = sp_sema_acquire;
	bool (*stry)(sp_sema *, int64_t) = sp_sema_try_acquire;
	sp_flight *(*fcreate)(void (*)(void *)) = sp_flight_create;
	int (*fdo)(sp_flight *, const void *, size_t, sp_flight_fn, void *, sp_ctx *,
		   sp_flight_result *) = sp_flight_do;
	void (*fforget)(sp_flight *, const void *, size_t) = sp_flight_forget;
	int (*cdl)(sp_ctx *, int64_t, sp_ctx **) = sp_ctx_with_deadline;
	int (*cval)(sp_ctx *, const void *, void *, sp_ctx **) = sp_ctx_with_value;
	bool (*cdead)(sp_ctx *, int64_t *) = sp_ctx_deadline;
	void *(*cget)(sp_ctx *, const void *) = sp_ctx_value;
	bool (*cwait)(sp_ctx *, int64_t) = sp_ctx_wait;
	sp_ctx_hook *(*after)(sp_ctx *, void (*)(void *), void *) = sp_ctx_after_func;
	bool (*hstop)(sp_ctx_hook *) = sp_ctx_hook_stop;
	sp_errgroup *(*egc)(sp_ctx *, sp_ctx **) = sp_errgroup_create;
	void (*egl)(sp_errgroup *, int) = sp_errgroup_set_limit;
	int (*ego)(sp_errgroup *, int (*)(void *), void *) = sp_errgroup_go;
	bool (*egtry)(sp_errgroup *, int (*)(void *), void *) = sp_errgroup_try_go;
	int64_t (*now)(void) = sp_now_ns;
	void *all[] = { (void *)pool_get, (void *)pool_create, (void *)pool_put, (void *)cleaner_start,
			(void *)stats_get, (void *)mlock, (void *)mtry, (void *)rwtry, (void *)wgadd,
			(void *)wgdone, (void *)oncedo, (void *)cwctx, (void *)sinit, (void *)sacq,
			(void *)stry, (void *)fcreate, (void *)fdo, (void *)fforget, (void *)cdl,
			(void *)cval, (void *)cdead, (void *)cget, (void *)cwait, (void *)after,
			(void *)hstop, (void *)egc, (void *)egl, (void *)ego, (void *)egtry, (void *)now };
	for (size_t i = 0; i < sizeof all / sizeof *all; i++)
		ck_assert_ptr_nonnull(all[i]);
	/* Exported functions reached through a pointer behave as the calls. */
	sp_waitgroup wg = SP_WAITGROUP_INIT;
	wgadd(&wg, 1);
	wgdone(&wg);
	sp_waitgroup_wait(&wg);
	sp_once o = SP_ONCE_INIT;
	int before = once_runs;
	oncedo(&o, once_count, NULL);
	sp_once_do(&o, once_count, NULL);
	ck_assert_int_eq(once_runs, before + 1);
	sp_flight_result r = { 0 };
	ck_assert(sizeof r.shared == sizeof(bool));
	ck_assert(sizeof r.err == sizeof(int));
}
END_TEST

/* ------------------------------------------------------------ fatal messages */

static void mis_mutex_unlock(void)
{
	sp_mutex m = SP_MUTEX_INIT;
	sp_mutex_unlock(&m);
}
static void mis_rw_runlock(void)
{
	sp_rwmutex rw = SP_RWMUTEX_INIT;
	sp_rwmutex_runlock(&rw);
}
static void mis_rw_unlock(void)
{
	sp_rwmutex rw = SP_RWMUTEX_INIT;
	sp_rwmutex_unlock(&rw);
}
static void mis_rw_unlock_readlocked(void)
{
	sp_rwmutex rw = SP_RWMUTEX_INIT;
	sp_rwmutex_rlock(&rw);
	sp_rwmutex_unlock(&rw);
}
static void mis_wg_done(void)
{
	sp_waitgroup wg = SP_WAITGROUP_INIT;
	sp_waitgroup_done(&wg);
}
static void mis_wg_add(void)
{
	sp_waitgroup wg = SP_WAITGROUP_INIT;
	sp_waitgroup_add(&wg, 2);
	sp_waitgroup_add(&wg, -3);
}
static sp_once mis_o;
static void mis_once_fn(void *arg)
{
	(void)arg;
	sp_once_do(&mis_o, mis_once_fn, NULL);
}
static void mis_once(void) { sp_once_do(&mis_o, mis_once_fn, NULL); }
static void mis_sema(void)
{
	sp_sema s;
	ck_assert_int_eq(sp_sema_init(&s, 4), 0);
	ck_assert_int_eq(sp_sema_acquire(&s, 2, NULL), 0);
	sp_sema_release(&s, 3);
}
static void mis_sema_unheld(void)
{
	sp_sema s;
	ck_assert_int_eq(sp_sema_init(&s, 4), 0);
	sp_sema_release(&s, 1);
}
static struct flag eg_go;
static int eg_block(void *arg)
{
	(void)arg;
	flag_wait(&eg_go, SPTEST_S(5));
	return 0;
}
static void mis_errgroup(void)
{
	sp_errgroup *g = sp_errgroup_create(NULL, NULL);
	sp_errgroup_set_limit(g, 1);
	ck_assert_int_eq(sp_errgroup_go(g, eg_block, NULL), 0);
	sp_errgroup_set_limit(g, 2);
}

static void mis_wg_overflow(void)
{
	sp_waitgroup wg = SP_WAITGROUP_INIT;
	sp_waitgroup_add(&wg, INT32_MAX);
	sp_waitgroup_add(&wg, 1);
}
static struct flag mis_started;
static int mis_fl_fn(void *arg, void **val)
{
	(void)arg;
	(void)val;
	flag_set(&mis_started);
	sptest_sleep_ns(SPTEST_S(5));
	return 0;
}
static void *mis_fl_leader(void *arg)
{
	sp_flight_result r;
	sp_flight_do((sp_flight *)arg, "k", 1, mis_fl_fn, NULL, NULL, &r);
	return NULL;
}
static void mis_flight(void)
{
	sp_flight *g = sp_flight_create(NULL);
	pthread_t t;
	pthread_create(&t, NULL, mis_fl_leader, g);
	flag_wait(&mis_started, SPTEST_S(5));
	sp_flight_destroy(g);
}
static sp_sema mis_s;
static void *mis_sema_waiter(void *arg)
{
	(void)arg;
	sp_sema_acquire(&mis_s, 1, NULL);
	return NULL;
}
static void mis_sema_destroy(void)
{
	sp_sema_init(&mis_s, 1);
	sp_sema_acquire(&mis_s, 1, NULL);
	pthread_t t;
	pthread_create(&t, NULL, mis_sema_waiter, NULL);
	int64_t end = sptest_now_ns() + sptest_scaled(SPTEST_S(5));
	while (sp_sema_try_acquire(&mis_s, 0) && sptest_now_ns() < end)
		sptest_sleep_ns(SPTEST_MS(1) / 4);
	sp_sema_destroy(&mis_s);
}

START_TEST(test_fatal_messages)
{
	expect_fatal(mis_mutex_unlock, "syncpool: fatal: mutex: unlock of unlocked mutex\n");
	expect_fatal(mis_rw_runlock, "syncpool: fatal: rwmutex: runlock of unlocked rwmutex\n");
	expect_fatal(mis_rw_unlock, "syncpool: fatal: rwmutex: unlock of unlocked rwmutex\n");
	expect_fatal(mis_rw_unlock_readlocked, "syncpool: fatal: rwmutex: unlock of unlocked rwmutex\n");
	expect_fatal(mis_wg_done, "syncpool: fatal: waitgroup: negative counter\n");
	expect_fatal(mis_wg_add, "syncpool: fatal: waitgroup: negative counter\n");
	expect_fatal(mis_once, "syncpool: fatal: once: recursive call\n");
	expect_fatal(mis_sema, "syncpool: fatal: sema: released more than held\n");
	expect_fatal(mis_sema_unheld, "syncpool: fatal: sema: released more than held\n");
	expect_fatal(mis_wg_overflow, "syncpool: fatal: waitgroup: counter overflow\n");
	expect_fatal(mis_flight, "syncpool: fatal: flight: destroy with calls in flight or results held\n");
	expect_fatal(mis_sema_destroy, "syncpool: fatal: sema: destroyed with waiters\n");
	expect_fatal(mis_errgroup, "syncpool: fatal: errgroup: modify limit while goroutines in the "
				   "group are still active\n");
}
END_TEST

START_TEST(test_death_mutex) { mis_mutex_unlock(); }
END_TEST
START_TEST(test_death_rwmutex) { mis_rw_runlock(); }
END_TEST
START_TEST(test_death_waitgroup) { mis_wg_done(); }
END_TEST
START_TEST(test_death_sema) { mis_sema(); }
END_TEST
START_TEST(test_death_once) { mis_once(); }
END_TEST

/* ------------------------------------------------------------ pool */

static _Atomic int pool_frees, pool_news, pool_resets;
static void *p_new(void *arg)
{
	(void)arg;
	atomic_fetch_add(&pool_news, 1);
	return malloc(32);
}
static void p_free(void *obj, void *arg)
{
	ck_assert_ptr_eq(arg, &pool_frees);
	atomic_fetch_add(&pool_frees, 1);
	free(obj);
}
static void p_reset(void *obj, void *arg)
{
	(void)arg;
	memset(obj, 0, 32);
	atomic_fetch_add(&pool_resets, 1);
}

static void pool_reset(void)
{
	atomic_store(&pool_frees, 0);
	atomic_store(&pool_news, 0);
	atomic_store(&pool_resets, 0);
}

static void pin_one_cpu(void)
{
	pool_reset();
	cpu_set_t s;
	ck_assert_int_eq(sched_getaffinity(0, sizeof s, &s), 0);
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &s)) {
			CPU_ZERO(&s);
			CPU_SET(c, &s);
			ck_assert_int_eq(sched_setaffinity(0, sizeof s, &s), 0);
			return;
		}
}

START_TEST(test_pool_create_einval)
{
	sp_pool_opts o;
	errno = 0;
	ck_assert_ptr_null(sp_pool_create(NULL));
	ck_assert_int_eq(errno, EINVAL);
	o = (sp_pool_opts){ 0 }; /* neither size nor free_fn */
	errno = 0;
	ck_assert_ptr_null(sp_pool_create(&o));
	ck_assert_int_eq(errno, EINVAL);
	o = (sp_pool_opts){ .new_fn = p_new }; /* new_fn without free_fn */
	errno = 0;
	ck_assert_ptr_null(sp_pool_create(&o));
	ck_assert_int_eq(errno, EINVAL);
	o = (sp_pool_opts){ .size = 32, .new_fn = p_new }; /* size with new_fn only */
	errno = 0;
	ck_assert_ptr_null(sp_pool_create(&o));
	ck_assert_int_eq(errno, EINVAL);
	o = (sp_pool_opts){ .size = 32, .free_fn = p_free, .per_cpu_cap = SP_POOL_MAX_PER_CPU_CAP + 1 };
	errno = 0;
	ck_assert_ptr_null(sp_pool_create(&o));
	ck_assert_int_eq(errno, EINVAL);
	/* Valid shapes. */
	o = (sp_pool_opts){ .size = 32 };
	sp_pool *p = sp_pool_create(&o);
	ck_assert_ptr_nonnull(p);
	sp_pool_destroy(p);
	o = (sp_pool_opts){ .free_fn = p_free, .arg = &pool_frees };
	p = sp_pool_create(&o);
	ck_assert_ptr_nonnull(p);
	sp_pool_destroy(p);
	o = (sp_pool_opts){ .size = 32, .free_fn = p_free, .new_fn = p_new, .arg = &pool_frees };
	p = sp_pool_create(&o);
	ck_assert_ptr_nonnull(p);
	sp_pool_destroy(p);
}
END_TEST

START_TEST(test_pool_get_put_stats)
{
	pin_one_cpu();
	sp_pool_opts o = { .size = 32, .new_fn = p_new, .free_fn = p_free, .reset_fn = p_reset,
			   .arg = &pool_frees };
	sp_pool *p = sp_pool_create(&o);
	ck_assert_ptr_nonnull(p);
	char *a = sp_pool_get(p);
	ck_assert_ptr_nonnull(a);
	ck_assert_int_eq(pool_news, 1);
	memset(a, 'x', 32);
	sp_pool_put(p, a);
	ck_assert_int_eq(pool_resets, 1);
	sp_pool_put(p, NULL); /* ignored, not counted */
	sp_pool_stats st;
	sp_pool_stats_get(p, &st);
	ck_assert_uint_eq(st.gets, 1);
	ck_assert_uint_eq(st.puts, 1);
	ck_assert_uint_eq(st.news, 1);
	ck_assert_uint_eq(st.cached, 1);
	ck_assert_uint_eq(st.drops, 0);
	char *b = sp_pool_get(p); /* the only cached object */
	ck_assert_ptr_eq(b, a);
	ck_assert_int_eq(b[0], 0); /* reset ran */
	sp_pool_stats_get(p, &st);
	ck_assert_uint_eq(st.gets, 2);
	ck_assert_uint_eq(st.hits_local + st.hits_stolen + st.hits_victim, 1);
	ck_assert_uint_eq(st.cached, 0);
	sp_pool_put(p, b);
	sp_pool_destroy(p); /* drops the cached object */
	ck_assert_int_eq(pool_frees, 1);
}
END_TEST

START_TEST(test_pool_no_new_fn_miss_null)
{
	pool_reset();
	sp_pool_opts o = { .free_fn = p_free, .arg = &pool_frees };
	sp_pool *p = sp_pool_create(&o);
	ck_assert_ptr_nonnull(p);
	ck_assert_ptr_null(sp_pool_get(p));
	sp_pool_stats st;
	sp_pool_stats_get(p, &st);
	ck_assert_uint_eq(st.gets, 1);
	ck_assert_uint_eq(st.news, 0);
	void *x = malloc(8);
	sp_pool_put(p, x);
	ck_assert_ptr_eq(sp_pool_get(p), x);
	free(x);
	sp_pool_destroy(p);
	ck_assert_int_eq(pool_frees, 0);
}
END_TEST

START_TEST(test_pool_cleanup_two_cycles)
{
	pin_one_cpu();
	sp_pool_opts o = { .new_fn = p_new, .free_fn = p_free, .arg = &pool_frees, .per_cpu_cap = 8 };
	sp_pool *p = sp_pool_create(&o);
	ck_assert_ptr_nonnull(p);
	void *objs[6];
	for (int i = 0; i < 6; i++)
		objs[i] = sp_pool_get(p);
	for (int i = 0; i < 6; i++)
		sp_pool_put(p, objs[i]);
	sp_pool_cleanup(p); /* primary -> victim: nothing dropped */
	sp_pool_stats st;
	sp_pool_stats_get(p, &st);
	ck_assert_int_eq(pool_frees, 0);
	ck_assert_uint_eq(st.cached, 6);
	void *v = sp_pool_get(p); /* served from the victim cache */
	ck_assert_ptr_nonnull(v);
	sp_pool_stats_get(p, &st);
	ck_assert_uint_eq(st.hits_victim, 1);
	ck_assert_int_eq(pool_news, 6);
	sp_pool_put(p, v); /* back into the primary */
	sp_pool_cleanup(p); /* victim (5) dropped, primary (1) -> victim */
	ck_assert_int_eq(pool_frees, 5);
	sp_pool_cleanup_all(); /* the last one is dropped */
	ck_assert_int_eq(pool_frees, 6);
	sp_pool_stats_get(p, &st);
	ck_assert_uint_eq(st.cached, 0);
	ck_assert_uint_eq(st.drops, 6);
	sp_pool_destroy(p);
	ck_assert_int_eq(pool_frees, 6);
}
END_TEST

START_TEST(test_pool_overflow_dropped)
{
	pin_one_cpu();
	sp_pool_opts o = { .new_fn = p_new, .free_fn = p_free, .arg = &pool_frees, .per_cpu_cap = 2 };
	sp_pool *p = sp_pool_create(&o);
	ck_assert_ptr_nonnull(p);
	void *objs[10];
	for (int i = 0; i < 10; i++)
		objs[i] = malloc(32);
	for (int i = 0; i < 10; i++)
		sp_pool_put(p, objs[i]);
	sp_pool_stats st;
	sp_pool_stats_get(p, &st);
	/* The private slot plus a stack of per_cpu_cap: 3 kept, the rest dropped. */
	ck_assert_uint_eq(st.cached, 3);
	ck_assert_uint_eq(st.drops, 7);
	ck_assert_int_eq(pool_frees, 7);
	sp_pool_destroy(p);
	ck_assert_int_eq(pool_frees, 10);
}
END_TEST

START_TEST(test_pool_jemalloc)
{
	sp_pool_opts o = { .size = 100 };
	sp_pool *p = sp_pool_create(&o);
	ck_assert_ptr_nonnull(p);
	char *a = sp_pool_get(p);
	ck_assert_ptr_nonnull(a);
	ck_assert_uint_eq((uintptr_t)a % _Alignof(max_align_t), 0);
	memset(a, 1, 100);
	sp_pool_put(p, a);
	sp_pool_cleanup(p);
	sp_pool_cleanup(p);
	sp_pool_stats st;
	sp_pool_stats_get(p, &st);
	ck_assert_uint_eq(st.cached, 0);
	ck_assert_uint_eq(st.drops, 1);
	sp_pool_destroy(p);
}
END_TEST

START_TEST(test_pool_cleaner)
{
	pool_reset();
	ck_assert_int_eq(sp_pool_cleaner_start(0), EINVAL);
	ck_assert_int_eq(sp_pool_cleaner_start(-5), EINVAL);
	sp_pool_cleaner_stop(); /* without start: nothing */
	sp_pool_opts o = { .new_fn = p_new, .free_fn = p_free, .arg = &pool_frees };
	sp_pool *p = sp_pool_create(&o);
	ck_assert_ptr_nonnull(p);
	sp_pool_put(p, malloc(32));
	ck_assert_int_eq(sp_pool_cleaner_start(SPTEST_S(10)), 0);
	ck_assert_int_eq(sp_pool_cleaner_start(SPTEST_MS(1)), 0); /* changes the interval */
	int64_t end = sptest_now_ns() + sptest_scaled(SPTEST_S(5));
	while (atomic_load(&pool_frees) == 0 && sptest_now_ns() < end)
		sptest_sleep_ns(SPTEST_MS(1));
	sp_pool_cleaner_stop();
	ck_assert_int_eq(pool_frees, 1);
	sp_pool_cleaner_stop();
	sp_pool_destroy(p);
}
END_TEST

/* ------------------------------------------------------------ mutex, rwmutex */

static sp_mutex cm = SP_MUTEX_INIT;
static long cm_count;
static void *mutex_worker(void *arg)
{
	(void)arg;
	for (int i = 0; i < 500; i++) {
		if (i & 1)
			sp_mutex_lock(&cm);
		else
			while (!sp_mutex_trylock(&cm))
				sched_yield();
		cm_count++;
		sp_mutex_unlock(&cm);
	}
	return NULL;
}

START_TEST(test_mutex_exclusion)
{
	cm_count = 0;
	sptest_run_threads(16, mutex_worker, NULL, 0, SPTEST_S(20));
	ck_assert_int_eq(cm_count, 16 * 500);
}
END_TEST

static void *unlock_other(void *arg)
{
	sp_mutex_unlock((sp_mutex *)arg);
	return NULL;
}

START_TEST(test_mutex_unlock_other_thread)
{
	sp_mutex m = SP_MUTEX_INIT;
	sp_mutex_lock(&m);
	sptest_run_threads(1, unlock_other, &m, 0, SPTEST_S(5));
	ck_assert(sp_mutex_trylock(&m));
	sp_mutex_unlock(&m);
}
END_TEST

static sp_rwmutex wrw = SP_RWMUTEX_INIT;
static struct flag w_in;
static void *rw_writer(void *arg)
{
	(void)arg;
	sp_rwmutex_lock(&wrw);
	flag_set(&w_in);
	sp_rwmutex_unlock(&wrw);
	return NULL;
}
static void *rw_runlock_other(void *arg)
{
	sp_rwmutex_runlock((sp_rwmutex *)arg);
	return NULL;
}
static void *rw_unlock_other(void *arg)
{
	sp_rwmutex_unlock((sp_rwmutex *)arg);
	return NULL;
}

START_TEST(test_rwmutex_writer_blocks_tryrlock)
{
	atomic_store(&w_in.v, 0);
	sp_rwmutex_rlock(&wrw);
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, rw_writer, NULL), 0);
	/* Once the writer waits, tryrlock fails (it may succeed before it queued). */
	int64_t end = sptest_now_ns() + sptest_scaled(SPTEST_S(5));
	bool blocked = false;
	while (!blocked && sptest_now_ns() < end) {
		if (sp_rwmutex_tryrlock(&wrw)) {
			sp_rwmutex_runlock(&wrw);
			sptest_sleep_ns(SPTEST_MS(1));
		} else {
			blocked = true;
		}
	}
	ck_assert_msg(blocked, "tryrlock kept succeeding while a writer waited");
	ck_assert(!atomic_load(&w_in.v));
	ck_assert(!sp_rwmutex_trylock(&wrw));
	sp_rwmutex_runlock(&wrw);
	ck_assert(sptest_join_within(t, SPTEST_S(5), NULL));
	ck_assert(atomic_load(&w_in.v));
	ck_assert(sp_rwmutex_tryrlock(&wrw));
	sp_rwmutex_runlock(&wrw);
}
END_TEST

START_TEST(test_rwmutex_unlock_other_thread)
{
	sp_rwmutex rw = SP_RWMUTEX_INIT;
	sp_rwmutex_rlock(&rw);
	sptest_run_threads(1, rw_runlock_other, &rw, 0, SPTEST_S(5));
	sp_rwmutex_lock(&rw);
	sptest_run_threads(1, rw_unlock_other, &rw, 0, SPTEST_S(5));
	ck_assert(sp_rwmutex_trylock(&rw));
	sp_rwmutex_unlock(&rw);
}
END_TEST

/* ------------------------------------------------------------ waitgroup, once */

static sp_waitgroup twg = SP_WAITGROUP_INIT;
static _Atomic int wg_done_count;
static void *wg_worker(void *arg)
{
	(void)arg;
	sptest_sleep_ns(SPTEST_MS(1));
	atomic_fetch_add(&wg_done_count, 1);
	sp_waitgroup_done(&twg);
	return NULL;
}

START_TEST(test_waitgroup_wait_and_reuse)
{
	for (int round = 0; round < 3; round++) {
		atomic_store(&wg_done_count, 0);
		sp_waitgroup_add(&twg, 8);
		pthread_t t[8];
		for (int i = 0; i < 8; i++)
			ck_assert_int_eq(pthread_create(&t[i], NULL, wg_worker, NULL), 0);
		sp_waitgroup_wait(&twg);
		ck_assert_int_eq(atomic_load(&wg_done_count), 8);
		for (int i = 0; i < 8; i++)
			ck_assert(sptest_join_within(t[i], SPTEST_S(5), NULL));
	}
}
END_TEST

static sp_once slow_once = SP_ONCE_INIT;
static _Atomic int slow_once_runs, slow_once_finished;
static void slow_fn(void *arg)
{
	ck_assert_ptr_eq(arg, &slow_once);
	atomic_fetch_add(&slow_once_runs, 1);
	sptest_sleep_ns(SPTEST_MS(20));
	atomic_store(&slow_once_finished, 1);
}
static void *once_worker(void *arg)
{
	(void)arg;
	sp_once_do(&slow_once, slow_fn, &slow_once);
	ck_assert_int_eq(atomic_load(&slow_once_finished), 1); /* returns after fn ran */
	return NULL;
}

START_TEST(test_once_exactly_once)
{
	sptest_run_threads(16, once_worker, NULL, 0, SPTEST_S(10));
	ck_assert_int_eq(slow_once_runs, 1);
}
END_TEST

/* ------------------------------------------------------------ cond */

static sp_mutex cvm = SP_MUTEX_INIT;
static sp_cond cv = SP_COND_INIT;
static int cv_waiting, cv_woken;
static void *cond_waiter(void *arg)
{
	(void)arg;
	sp_mutex_lock(&cvm);
	cv_waiting++;
	sp_cond_wait(&cv, &cvm);
	ck_assert(!sp_mutex_trylock(&cvm)); /* held again */
	cv_woken++;
	sp_mutex_unlock(&cvm);
	return NULL;
}
static bool wait_count(int *v, int want)
{
	int64_t end = sptest_now_ns() + sptest_scaled(SPTEST_S(5));
	for (;;) {
		sp_mutex_lock(&cvm);
		int x = *v;
		sp_mutex_unlock(&cvm);
		if (x == want)
			return true;
		if (sptest_now_ns() > end)
			return false;
		sptest_sleep_ns(SPTEST_MS(1));
	}
}

static void cond_reset(void)
{
	cv_waiting = cv_woken = 0;
}

START_TEST(test_cond_signal_one_broadcast_all)
{
	cond_reset();
	sp_cond_signal(&cv); /* nobody waits: not remembered */
	sp_cond_broadcast(&cv);
	pthread_t t[4];
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, cond_waiter, NULL), 0);
	ck_assert(wait_count(&cv_waiting, 4)); /* all enqueued (they held cvm to count) */
	sp_cond_signal(&cv);
	ck_assert(wait_count(&cv_woken, 1));
	sptest_sleep_ns(SPTEST_MS(10));
	sp_mutex_lock(&cvm);
	ck_assert_int_eq(cv_woken, 1); /* no spurious wakeups */
	sp_mutex_unlock(&cvm);
	sp_cond_broadcast(&cv);
	ck_assert(wait_count(&cv_woken, 4));
	for (int i = 0; i < 4; i++)
		ck_assert(sptest_join_within(t[i], SPTEST_S(5), NULL));
}
END_TEST

START_TEST(test_cond_wait_ctx)
{
	sp_mutex m = SP_MUTEX_INIT;
	sp_cond c = SP_COND_INIT;
	sp_ctx *ctx;
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &ctx), 0);
	sp_ctx_cancel(ctx);
	sp_mutex_lock(&m);
	ck_assert_int_eq(sp_cond_wait_ctx(&c, &m, ctx), ECANCELED);
	ck_assert(!sp_mutex_trylock(&m));
	sp_ctx_release(ctx);
	int64_t t0 = sptest_now_ns();
	ck_assert_int_eq(sp_ctx_with_timeout(NULL, SPTEST_MS(10), &ctx), 0);
	ck_assert_int_eq(sp_cond_wait_ctx(&c, &m, ctx), ETIMEDOUT);
	ck_assert_int_ge(sptest_now_ns() - t0, SPTEST_MS(10)); /* not early */
	ck_assert(!sp_mutex_trylock(&m));
	sp_ctx_release(ctx);
	sp_mutex_unlock(&m);
}
END_TEST

/* A cancelled waiter does not swallow a Signal: it goes to the other waiter. */
static sp_ctx *cv_ctx;
static int cv_ctx_ret = -1;
static void *cond_ctx_waiter(void *arg)
{
	(void)arg;
	sp_mutex_lock(&cvm);
	cv_waiting++;
	cv_ctx_ret = sp_cond_wait_ctx(&cv, &cvm, cv_ctx);
	cv_woken++;
	sp_mutex_unlock(&cvm);
	return NULL;
}

START_TEST(test_cond_cancelled_waiter_keeps_no_signal)
{
	cond_reset();
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &cv_ctx), 0);
	pthread_t a, b;
	ck_assert_int_eq(pthread_create(&a, NULL, cond_ctx_waiter, NULL), 0);
	ck_assert(wait_count(&cv_waiting, 1));
	ck_assert_int_eq(pthread_create(&b, NULL, cond_waiter, NULL), 0);
	ck_assert(wait_count(&cv_waiting, 2));
	sp_ctx_cancel(cv_ctx);
	ck_assert(sptest_join_within(a, SPTEST_S(5), NULL));
	ck_assert_int_eq(cv_ctx_ret, ECANCELED);
	sp_cond_signal(&cv);
	ck_assert(sptest_join_within(b, SPTEST_S(5), NULL));
	ck_assert_int_eq(cv_woken, 2);
	sp_ctx_release(cv_ctx);
}
END_TEST

/* ------------------------------------------------------------ sema */

START_TEST(test_sema_einval)
{
	sp_sema s;
	ck_assert_int_eq(sp_sema_init(&s, -1), EINVAL);
	ck_assert_int_eq(sp_sema_init(&s, 3), 0);
	ck_assert_int_eq(sp_sema_acquire(&s, -1, NULL), EINVAL);
	int64_t t0 = sptest_now_ns();
	ck_assert_int_eq(sp_sema_acquire(&s, 4, NULL), EINVAL); /* at once, never blocks */
	ck_assert_int_lt(sptest_now_ns() - t0, SPTEST_S(1) * sptest_slowdown());
	ck_assert(!sp_sema_try_acquire(&s, -1));
	ck_assert(!sp_sema_try_acquire(&s, 4));
	ck_assert(sp_sema_try_acquire(&s, 3)); /* nothing was taken by the failures */
	ck_assert(!sp_sema_try_acquire(&s, 1));
	ck_assert_int_eq(sp_sema_acquire(&s, 0, NULL), 0);
	sp_sema_release(&s, 3);
	sp_sema_destroy(&s);
	sp_sema z;
	ck_assert_int_eq(sp_sema_init(&z, 0), 0);
	ck_assert(sp_sema_try_acquire(&z, 0));
	ck_assert(!sp_sema_try_acquire(&z, 1));
	ck_assert_int_eq(sp_sema_acquire(&z, 1, NULL), EINVAL);
	sp_sema_destroy(&z);
}
END_TEST

START_TEST(test_sema_done_ctx_nothing_held)
{
	sp_sema s;
	ck_assert_int_eq(sp_sema_init(&s, 5), 0);
	sp_ctx *c;
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &c), 0);
	sp_ctx_cancel(c);
	ck_assert_int_eq(sp_sema_acquire(&s, 1, c), ECANCELED); /* Go #63615 */
	sp_ctx_release(c);
	ck_assert_int_eq(sp_ctx_with_timeout(NULL, 0, &c), 0);
	ck_assert_int_eq(sp_sema_acquire(&s, 1, c), ETIMEDOUT);
	sp_ctx_release(c);
	ck_assert(sp_sema_try_acquire(&s, 5));
	sp_sema_release(&s, 5);
	sp_sema_destroy(&s);
}
END_TEST

static sp_sema fs;
static int fifo_ret = -1;
static void *sema_big(void *arg)
{
	(void)arg;
	fifo_ret = sp_sema_acquire(&fs, 10, NULL);
	return NULL;
}

START_TEST(test_sema_fifo_no_barging)
{
	ck_assert_int_eq(sp_sema_init(&fs, 10), 0);
	ck_assert_int_eq(sp_sema_acquire(&fs, 10, NULL), 0);
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, sema_big, NULL), 0);
	/* try_acquire(0) fails exactly when waiters are queued. */
	int64_t end = sptest_now_ns() + sptest_scaled(SPTEST_S(5));
	while (sp_sema_try_acquire(&fs, 0) && sptest_now_ns() < end)
		sptest_sleep_ns(SPTEST_MS(1) / 4);
	ck_assert(!sp_sema_try_acquire(&fs, 0));
	sp_sema_release(&fs, 5);
	ck_assert(!sp_sema_try_acquire(&fs, 1)); /* 5 free, but the big waiter is first */
	sp_ctx *c;
	ck_assert_int_eq(sp_ctx_with_timeout(NULL, SPTEST_MS(5), &c), 0);
	ck_assert_int_eq(sp_sema_acquire(&fs, 1, c), ETIMEDOUT); /* queued behind, gave up */
	sp_ctx_release(c);
	sp_sema_release(&fs, 5);
	ck_assert(sptest_join_within(t, SPTEST_S(5), NULL));
	ck_assert_int_eq(fifo_ret, 0);
	ck_assert(!sp_sema_try_acquire(&fs, 1));
	sp_sema_release(&fs, 10);
	ck_assert(sp_sema_try_acquire(&fs, 10));
	sp_sema_release(&fs, 10);
	sp_sema_destroy(&fs);
}
END_TEST

static sp_ctx *head_ctx;
static int head_ret = -1, small_ret = -1;
static void *sema_head(void *arg)
{
	(void)arg;
	head_ret = sp_sema_acquire(&fs, 10, head_ctx);
	return NULL;
}
static void *sema_small(void *arg)
{
	(void)arg;
	small_ret = sp_sema_acquire(&fs, 3, NULL);
	return NULL;
}

START_TEST(test_sema_head_gives_up_wakes_behind)
{
	ck_assert_int_eq(sp_sema_init(&fs, 10), 0);
	ck_assert_int_eq(sp_sema_acquire(&fs, 5, NULL), 0);
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &head_ctx), 0);
	pthread_t h, s;
	ck_assert_int_eq(pthread_create(&h, NULL, sema_head, NULL), 0);
	int64_t end = sptest_now_ns() + sptest_scaled(SPTEST_S(5));
	while (sp_sema_try_acquire(&fs, 0) && sptest_now_ns() < end)
		sptest_sleep_ns(SPTEST_MS(1) / 4);
	ck_assert_int_eq(pthread_create(&s, NULL, sema_small, NULL), 0);
	sptest_sleep_ns(SPTEST_MS(5));
	ck_assert_int_eq(small_ret, -1); /* blocked behind the head */
	sp_ctx_cancel(head_ctx);
	ck_assert(sptest_join_within(h, SPTEST_S(5), NULL));
	ck_assert_int_eq(head_ret, ECANCELED);
	ck_assert(sptest_join_within(s, SPTEST_S(5), NULL));
	ck_assert_int_eq(small_ret, 0);
	sp_sema_release(&fs, 8);
	ck_assert(sp_sema_try_acquire(&fs, 10));
	sp_sema_release(&fs, 10);
	sp_ctx_release(head_ctx);
	sp_sema_destroy(&fs);
}
END_TEST

/* ------------------------------------------------------------ flight */

static _Atomic int fl_frees, fl_calls;
static sp_flight *fg;
static struct flag fl_started, fl_go;
#define FL_JOINERS 6
static sp_flight_result fl_res[FL_JOINERS + 1];
static int fl_ret[FL_JOINERS + 1];
static _Atomic int fl_arrived;
static void fl_free(void *v)
{
	atomic_fetch_add(&fl_frees, 1);
	free(v);
}
static pthread_t fl_thread;
static int fl_value(void *arg, void **val)
{
	ck_assert(pthread_equal(pthread_self(), fl_thread)); /* runs in the caller */
	ck_assert_ptr_null(*val);
	atomic_fetch_add(&fl_calls, 1);
	int *v = malloc(sizeof *v);
	*v = (int)(intptr_t)arg;
	*val = v;
	return (int)(intptr_t)arg == 7 ? EIO : 0;
}
static int fl_null(void *arg, void **val)
{
	(void)arg;
	(void)val;
	atomic_fetch_add(&fl_calls, 1);
	return 0;
}

static void flight_reset(void)
{
	atomic_store(&fl_frees, 0);
	atomic_store(&fl_calls, 0);
	atomic_store(&fl_started.v, 0);
	atomic_store(&fl_go.v, 0);
	atomic_store(&fl_arrived, 0);
	memset(fl_res, 0, sizeof fl_res);
	memset(fl_ret, 0, sizeof fl_ret);
}

START_TEST(test_flight_basic_and_errors)
{
	flight_reset();
	sp_flight *g = sp_flight_create(fl_free);
	ck_assert_ptr_nonnull(g);
	fl_thread = pthread_self();
	sp_flight_result r;
	ck_assert_int_eq(sp_flight_do(g, "k", 1, fl_value, (void *)(intptr_t)5, NULL, &r), 0);
	ck_assert_int_eq(r.err, 0);
	ck_assert(!r.shared);
	ck_assert_int_eq(*(int *)r.val, 5);
	ck_assert_int_eq(fl_frees, 0);
	sp_flight_result_release(g, &r);
	ck_assert_int_eq(fl_frees, 1);
	/* An error comes with fn's value and is not remembered. */
	ck_assert_int_eq(sp_flight_do(g, "k", 1, fl_value, (void *)(intptr_t)7, NULL, &r), 0);
	ck_assert_int_eq(r.err, EIO);
	ck_assert_int_eq(*(int *)r.val, 7);
	sp_flight_result_release(g, &r);
	ck_assert_int_eq(fl_frees, 2);
	ck_assert_int_eq(sp_flight_do(g, "k", 1, fl_value, (void *)(intptr_t)5, NULL, &r), 0);
	ck_assert_int_eq(r.err, 0);
	sp_flight_result_release(g, &r);
	ck_assert_int_eq(fl_calls, 3);
	/* val_free never for a NULL val. */
	ck_assert_int_eq(sp_flight_do(g, "k", 1, fl_null, NULL, NULL, &r), 0);
	ck_assert_ptr_null(r.val);
	sp_flight_result_release(g, &r);
	ck_assert_int_eq(fl_frees, 3);
	/* Keys are bytes: embedded NULs, the empty key. */
	ck_assert_int_eq(sp_flight_do(g, "a\0b", 3, fl_null, NULL, NULL, &r), 0);
	sp_flight_result_release(g, &r);
	ck_assert_int_eq(sp_flight_do(g, NULL, 0, fl_null, NULL, NULL, &r), 0);
	sp_flight_result_release(g, &r);
	/* EINVAL. */
	ck_assert_int_eq(sp_flight_do(NULL, "k", 1, fl_null, NULL, NULL, &r), EINVAL);
	ck_assert_int_eq(sp_flight_do(g, "k", 1, NULL, NULL, NULL, &r), EINVAL);
	ck_assert_int_eq(sp_flight_do(g, "k", 1, fl_null, NULL, NULL, NULL), EINVAL);
	ck_assert_int_eq(sp_flight_do(g, NULL, 1, fl_null, NULL, NULL, &r), EINVAL);
	/* A done context: its error at once, fn not run. */
	sp_ctx *c;
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &c), 0);
	sp_ctx_cancel(c);
	int calls = atomic_load(&fl_calls);
	ck_assert_int_eq(sp_flight_do(g, "k", 1, fl_null, NULL, c, &r), ECANCELED);
	ck_assert_int_eq(fl_calls, calls);
	sp_ctx_release(c);
	sp_flight_destroy(g);
	sp_flight *g2 = sp_flight_create(NULL); /* val_free may be NULL */
	ck_assert_ptr_nonnull(g2);
	ck_assert_int_eq(sp_flight_do(g2, "x", 1, fl_null, NULL, NULL, &r), 0);
	sp_flight_result_release(g2, &r);
	sp_flight_destroy(g2);
}
END_TEST

static int fl_slow(void *arg, void **val)
{
	(void)arg;
	int *v = malloc(sizeof *v);
	*v = 42;
	*val = v;
	atomic_fetch_add(&fl_calls, 1);
	flag_set(&fl_started);
	ck_assert(flag_wait(&fl_go, SPTEST_S(5)));
	return 0;
}
static int fl_other(void *arg, void **val)
{
	(void)arg;
	int *v = malloc(sizeof *v);
	*v = 1;
	*val = v;
	return 0;
}
static void *fl_leader(void *arg)
{
	(void)arg;
	fl_ret[0] = sp_flight_do(fg, "hot", 3, fl_slow, NULL, NULL, &fl_res[0]);
	return NULL;
}
static _Atomic int fl_tid[FL_JOINERS + 1];
static void *fl_joiner(void *arg)
{
	int i = (int)(intptr_t)arg;
	atomic_store(&fl_tid[i], sptest_gettid());
	atomic_fetch_add(&fl_arrived, 1);
	fl_ret[i] = sp_flight_do(fg, "hot", 3, fl_other, NULL, NULL, &fl_res[i]);
	return NULL;
}

START_TEST(test_flight_shared_refcount)
{
	flight_reset();
	fg = sp_flight_create(fl_free);
	ck_assert_ptr_nonnull(fg);
	pthread_t t[FL_JOINERS + 1];
	ck_assert_int_eq(pthread_create(&t[0], NULL, fl_leader, NULL), 0);
	ck_assert(flag_wait(&fl_started, SPTEST_S(5)));
	for (int i = 1; i <= FL_JOINERS; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, fl_joiner, (void *)(intptr_t)i), 0);
	ck_assert(flag_wait_count(&fl_arrived, FL_JOINERS));
	int tids[FL_JOINERS];
	for (int i = 0; i < FL_JOINERS; i++)
		tids[i] = atomic_load(&fl_tid[i + 1]);
	/* Let them reach the wait: all asleep in a futex wait (joined). */
	ck_assert(sptest_await_parked(tids, FL_JOINERS, NULL, SPTEST_S(5)));
	flag_set(&fl_go);
	for (int i = 0; i <= FL_JOINERS; i++)
		ck_assert(sptest_join_within(t[i], SPTEST_S(5), NULL));
	ck_assert_int_eq(fl_calls, 1);
	int joined = 0;
	for (int i = 0; i <= FL_JOINERS; i++) {
		ck_assert_int_eq(fl_ret[i], 0);
		ck_assert_int_eq(fl_res[i].err, 0);
		if (*(int *)fl_res[i].val == 42) {
			joined++;
			ck_assert_ptr_eq(fl_res[i].val, fl_res[0].val);
		}
	}
	ck_assert_int_ge(joined, 2);
	for (int i = 0; i <= FL_JOINERS; i++)
		if (fl_res[i].val == fl_res[0].val)
			ck_assert(fl_res[i].shared);
	/* val_free runs once, at the last reference. */
	int others = FL_JOINERS + 1 - joined;
	for (int i = 1; i <= FL_JOINERS; i++)
		sp_flight_result_release(fg, &fl_res[i]);
	ck_assert_int_eq(fl_frees, others);
	sp_flight_result_release(fg, &fl_res[0]);
	ck_assert_int_eq(fl_frees, others + 1);
	sp_flight_destroy(fg);
}
END_TEST

/* A fresh group with a leader thread inside fn on key "hot" until fl_go. */
static pthread_t start_hot_leader(void)
{
	flight_reset();
	fg = sp_flight_create(fl_free);
	ck_assert_ptr_nonnull(fg);
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, fl_leader, NULL), 0);
	ck_assert(flag_wait(&fl_started, SPTEST_S(5)));
	return t;
}

START_TEST(test_flight_ctx_and_forget)
{
	pthread_t t = start_hot_leader();
	/* A joiner whose ctx ends stops waiting; res untouched. */
	sp_ctx *c;
	ck_assert_int_eq(sp_ctx_with_timeout(NULL, SPTEST_MS(5), &c), 0);
	sp_flight_result r;
	memset(&r, 0xab, sizeof r);
	ck_assert_int_eq(sp_flight_do(fg, "hot", 3, fl_other, NULL, c, &r), ETIMEDOUT);
	unsigned char *b = (unsigned char *)&r;
	ck_assert_int_eq(b[0], 0xab);
	sp_ctx_release(c);
	/* Forget: the next Do starts a new call while the old one runs. */
	sp_flight_forget(fg, "hot", 3);
	ck_assert_int_eq(sp_flight_do(fg, "hot", 3, fl_other, NULL, NULL, &r), 0);
	ck_assert_int_eq(*(int *)r.val, 1);
	ck_assert(!r.shared);
	sp_flight_result_release(fg, &r);
	flag_set(&fl_go);
	ck_assert(sptest_join_within(t, SPTEST_S(5), NULL));
	ck_assert_int_eq(fl_ret[0], 0);
	ck_assert_int_eq(*(int *)fl_res[0].val, 42);
	/* shared: the timed-out joiner did join (Go counts it too); not asserted. */
	sp_flight_result_release(fg, &fl_res[0]);
	ck_assert_int_eq(fl_frees, 2);
	sp_flight_destroy(fg);
}
END_TEST

/* A caller whose context is already done neither starts nor joins a call. */
START_TEST(test_flight_done_ctx_does_not_join)
{
	pthread_t t = start_hot_leader();
	sp_ctx *c;
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &c), 0);
	sp_ctx_cancel(c);
	sp_flight_result r;
	ck_assert_int_eq(sp_flight_do(fg, "hot", 3, fl_other, NULL, c, &r), ECANCELED); /* in flight */
	ck_assert_int_eq(sp_flight_do(fg, "cold", 4, fl_other, NULL, c, &r), ECANCELED); /* not */
	sp_ctx_release(c);
	flag_set(&fl_go);
	ck_assert(sptest_join_within(t, SPTEST_S(5), NULL));
	ck_assert_int_eq(fl_ret[0], 0);
	ck_assert(!fl_res[0].shared); /* nobody joined */
	ck_assert_int_eq(fl_calls, 1);
	sp_flight_result_release(fg, &fl_res[0]);
	ck_assert_int_eq(fl_frees, 1);
	sp_flight_destroy(fg);
}
END_TEST

/* ------------------------------------------------------------ ctx */

static int ctx_key1, ctx_key2;

START_TEST(test_ctx_background_and_null)
{
	sp_ctx *bg = sp_ctx_background();
	ck_assert_ptr_nonnull(bg);
	ck_assert_ptr_eq(sp_ctx_background(), bg);
	sp_ctx *cs[] = { bg, NULL };
	for (int i = 0; i < 2; i++) {
		sp_ctx *c = cs[i];
		ck_assert_int_eq(sp_ctx_err(c), 0);
		int64_t d = 123;
		ck_assert(!sp_ctx_deadline(c, &d));
		ck_assert_int_eq(d, 123);
		ck_assert_ptr_null(sp_ctx_value(c, &ctx_key1));
		ck_assert(!sp_ctx_wait(c, 0));
		ck_assert(!sp_ctx_wait(c, SPTEST_MS(1)));
		sp_ctx_cancel(c);
		ck_assert_int_eq(sp_ctx_err(c), 0);
		sp_ctx_release(c);
		ck_assert_int_eq(sp_ctx_err(bg), 0);
		sp_ctx *r = sp_ctx_retain(c);
		ck_assert_int_eq(sp_ctx_err(r), 0);
		sp_ctx_release(r);
		/* NULL parent means background. */
		sp_ctx *child;
		ck_assert_int_eq(sp_ctx_with_cancel(c, &child), 0);
		ck_assert_int_eq(sp_ctx_err(child), 0);
		sp_ctx_release(child);
	}
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, NULL), EINVAL);
	ck_assert_int_eq(sp_ctx_with_deadline(NULL, 1, NULL), EINVAL);
	ck_assert_int_eq(sp_ctx_with_timeout(NULL, 1, NULL), EINVAL);
	ck_assert_int_eq(sp_ctx_with_value(NULL, &ctx_key1, NULL, NULL), EINVAL);
}
END_TEST

START_TEST(test_ctx_cancel_tree)
{
	sp_ctx *p, *c, *gc;
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &p), 0);
	ck_assert_int_eq(sp_ctx_with_value(p, &ctx_key1, &ctx_key2, &c), 0);
	ck_assert_int_eq(sp_ctx_with_cancel(c, &gc), 0);
	sp_ctx_cancel(gc); /* a child never cancels its parent */
	ck_assert_int_eq(sp_ctx_err(gc), ECANCELED);
	ck_assert_int_eq(sp_ctx_err(c), 0);
	sp_ctx_release(gc);
	ck_assert_int_eq(sp_ctx_with_cancel(c, &gc), 0);
	sp_ctx_cancel(p);
	ck_assert_int_eq(sp_ctx_err(p), ECANCELED);
	ck_assert_int_eq(sp_ctx_err(c), ECANCELED);
	ck_assert_int_eq(sp_ctx_err(gc), ECANCELED);
	ck_assert(sp_ctx_wait(gc, 0));
	ck_assert(sp_ctx_wait(gc, -1));
	sp_ctx_release(p); /* children stay valid */
	ck_assert_int_eq(sp_ctx_err(gc), ECANCELED);
	ck_assert_ptr_eq(sp_ctx_value(gc, &ctx_key1), &ctx_key2);
	sp_ctx_release(c);
	sp_ctx_release(gc);
}
END_TEST

START_TEST(test_ctx_with_under_done_parent)
{
	sp_ctx *p, *c;
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &p), 0);
	sp_ctx_cancel(p);
	ck_assert_int_eq(sp_ctx_with_cancel(p, &c), 0);
	ck_assert_int_eq(sp_ctx_err(c), ECANCELED);
	sp_ctx_release(c);
	ck_assert_int_eq(sp_ctx_with_value(p, &ctx_key1, NULL, &c), 0);
	ck_assert_int_eq(sp_ctx_err(c), ECANCELED);
	sp_ctx_release(c);
	ck_assert_int_eq(sp_ctx_with_deadline(p, sp_now_ns() + SPTEST_S(60), &c), 0);
	ck_assert_int_eq(sp_ctx_err(c), ECANCELED);
	sp_ctx_release(c);
	ck_assert_int_eq(sp_ctx_with_deadline(p, sp_now_ns() - 1, &c), 0);
	ck_assert_int_eq(sp_ctx_err(c), ECANCELED); /* the parent's error, not ETIMEDOUT */
	sp_ctx_release(c);
	ck_assert_int_eq(sp_ctx_with_timeout(p, SPTEST_S(60), &c), 0);
	ck_assert_int_eq(sp_ctx_err(c), ECANCELED);
	sp_ctx_release(c);
	sp_ctx_release(p);
	/* A parent that timed out: children get ETIMEDOUT. */
	ck_assert_int_eq(sp_ctx_with_timeout(NULL, 0, &p), 0);
	ck_assert_int_eq(sp_ctx_err(p), ETIMEDOUT);
	ck_assert_int_eq(sp_ctx_with_cancel(p, &c), 0);
	ck_assert_int_eq(sp_ctx_err(c), ETIMEDOUT);
	sp_ctx_release(c);
	ck_assert_int_eq(sp_ctx_with_value(p, &ctx_key1, NULL, &c), 0);
	ck_assert_int_eq(sp_ctx_err(c), ETIMEDOUT);
	sp_ctx_release(c);
	sp_ctx_release(p);
}
END_TEST

START_TEST(test_ctx_deadlines)
{
	int64_t now = sp_now_ns();
	sp_ctx *p, *c;
	int64_t d = 0;
	ck_assert_int_eq(sp_ctx_with_deadline(NULL, now + SPTEST_S(10), &p), 0);
	ck_assert(sp_ctx_deadline(p, &d));
	ck_assert_int_eq(d, now + SPTEST_S(10));
	ck_assert(sp_ctx_deadline(p, NULL));
	/* A later child deadline: the parent's is the earlier. */
	ck_assert_int_eq(sp_ctx_with_deadline(p, now + SPTEST_S(20), &c), 0);
	ck_assert(sp_ctx_deadline(c, &d));
	ck_assert_int_eq(d, now + SPTEST_S(10));
	sp_ctx_release(c);
	ck_assert_int_eq(sp_ctx_with_deadline(p, now + SPTEST_S(5), &c), 0);
	ck_assert(sp_ctx_deadline(c, &d));
	ck_assert_int_eq(d, now + SPTEST_S(5));
	sp_ctx_release(c);
	/* Inherited through cancel and value children. */
	ck_assert_int_eq(sp_ctx_with_value(p, &ctx_key1, NULL, &c), 0);
	ck_assert(sp_ctx_deadline(c, &d));
	ck_assert_int_eq(d, now + SPTEST_S(10));
	sp_ctx_release(c);
	sp_ctx_release(p);
	/* with_timeout: now + timeout. */
	int64_t before = sp_now_ns();
	ck_assert_int_eq(sp_ctx_with_timeout(NULL, SPTEST_S(3), &c), 0);
	ck_assert(sp_ctx_deadline(c, &d));
	ck_assert_int_ge(d, before + SPTEST_S(3));
	ck_assert_int_le(d, sp_now_ns() + SPTEST_S(3));
	sp_ctx_release(c);
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &c), 0);
	ck_assert(!sp_ctx_deadline(c, &d));
	sp_ctx_release(c);
	/* Past deadline / non-positive timeout: done at once with ETIMEDOUT. */
	ck_assert_int_eq(sp_ctx_with_deadline(NULL, sp_now_ns() - 1, &c), 0);
	ck_assert_int_eq(sp_ctx_err(c), ETIMEDOUT);
	sp_ctx_release(c);
	ck_assert_int_eq(sp_ctx_with_timeout(NULL, -5, &c), 0);
	ck_assert_int_eq(sp_ctx_err(c), ETIMEDOUT);
	sp_ctx_release(c);
	/* INT64_MAX is no deadline; a timeout that would overflow saturates to it. */
	ck_assert_int_eq(sp_ctx_with_deadline(NULL, INT64_MAX, &c), 0);
	ck_assert(!sp_ctx_deadline(c, &d));
	ck_assert_int_eq(sp_ctx_err(c), 0);
	sp_ctx_release(c);
	ck_assert_int_eq(sp_ctx_with_timeout(NULL, INT64_MAX, &c), 0);
	ck_assert(!sp_ctx_deadline(c, &d));
	ck_assert_int_eq(sp_ctx_err(c), 0);
	sp_ctx_release(c);
	/* out NULL: EINVAL for every with_* call. */
	ck_assert_int_eq(sp_ctx_with_deadline(NULL, sp_now_ns() + SPTEST_S(1), NULL), EINVAL);
	ck_assert_int_eq(sp_ctx_with_timeout(NULL, SPTEST_S(1), NULL), EINVAL);
	/*
	 * Cancelled first, then the deadline passes: the error stays ECANCELED.
	 * "First" is what the clock says after the cancel: a stalled machine may
	 * reach the cancel after the deadline, and then the deadline may win.
	 */
	ck_assert_int_eq(sp_ctx_with_timeout(NULL, SPTEST_MS(20), &c), 0);
	ck_assert(sp_ctx_deadline(c, &d));
	sp_ctx_cancel(c);
	bool first = sp_now_ns() < d;
	int e = sp_ctx_err(c);
	ck_assert_msg(e == ECANCELED || (!first && e == ETIMEDOUT), "err %d after the cancel", e);
	while (sp_now_ns() <= d + SPTEST_MS(5))
		sptest_sleep_ns(SPTEST_MS(1));
	ck_assert_int_eq(sp_ctx_err(c), e); /* never changes */
	sp_ctx_release(c);
}
END_TEST

START_TEST(test_ctx_timeout_fires_and_err_sticks)
{
	sp_ctx *p, *c;
	int64_t t0 = sptest_now_ns();
	ck_assert_int_eq(sp_ctx_with_timeout(NULL, SPTEST_MS(20), &p), 0);
	ck_assert_int_eq(sp_ctx_with_cancel(p, &c), 0);
	if (sptest_now_ns() - t0 < SPTEST_MS(15)) { /* not checkable on a stalled machine */
		ck_assert_int_eq(sp_ctx_err(c), 0);
		ck_assert(!sp_ctx_wait(c, 0));
	}
	ck_assert(sp_ctx_wait(c, SPTEST_S(5)));
	ck_assert_int_ge(sptest_now_ns() - t0, SPTEST_MS(20)); /* not early */
	ck_assert_int_eq(sp_ctx_err(p), ETIMEDOUT);
	ck_assert_int_eq(sp_ctx_err(c), ETIMEDOUT); /* the parent's deadline */
	sp_ctx_cancel(c);
	sp_ctx_cancel(p);
	ck_assert_int_eq(sp_ctx_err(c), ETIMEDOUT); /* never changes */
	ck_assert_int_eq(sp_ctx_err(p), ETIMEDOUT);
	sp_ctx_release(c);
	sp_ctx_release(p);
	/* Timeout of a wait without the context being done. */
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &c), 0);
	t0 = sptest_now_ns();
	ck_assert(!sp_ctx_wait(c, SPTEST_MS(5)));
	ck_assert_int_ge(sptest_now_ns() - t0, SPTEST_MS(5));
	sp_ctx_cancel(c);
	ck_assert_int_eq(sp_ctx_err(c), ECANCELED);
	sp_ctx_release(c);
}
END_TEST

static void *cancel_later(void *arg)
{
	sptest_sleep_ns(SPTEST_MS(5));
	sp_ctx_cancel((sp_ctx *)arg);
	return NULL;
}

START_TEST(test_ctx_wait_no_limit)
{
	sp_ctx *c;
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &c), 0);
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, cancel_later, c), 0);
	ck_assert(sp_ctx_wait(c, -1));
	ck_assert_int_eq(sp_ctx_err(c), ECANCELED);
	ck_assert(sptest_join_within(t, SPTEST_S(5), NULL));
	sp_ctx_release(c);
}
END_TEST

START_TEST(test_ctx_values)
{
	sp_ctx *a, *b, *c, *d;
	int va = 1, vb = 2, vc = 3;
	ck_assert_int_eq(sp_ctx_with_value(NULL, &ctx_key1, &va, &a), 0);
	ck_assert_int_eq(sp_ctx_with_value(a, &ctx_key2, &vb, &b), 0);
	ck_assert_int_eq(sp_ctx_with_cancel(b, &c), 0);
	ck_assert_int_eq(sp_ctx_with_value(c, &ctx_key1, &vc, &d), 0); /* shadows a's */
	ck_assert_ptr_eq(sp_ctx_value(a, &ctx_key1), &va);
	ck_assert_ptr_null(sp_ctx_value(a, &ctx_key2));
	ck_assert_ptr_eq(sp_ctx_value(c, &ctx_key1), &va);
	ck_assert_ptr_eq(sp_ctx_value(c, &ctx_key2), &vb);
	ck_assert_ptr_eq(sp_ctx_value(d, &ctx_key1), &vc);
	ck_assert_ptr_eq(sp_ctx_value(d, &ctx_key2), &vb);
	ck_assert_ptr_null(sp_ctx_value(d, &va));
	sp_ctx *r = sp_ctx_retain(d);
	ck_assert_ptr_eq(sp_ctx_value(r, &ctx_key1), &vc);
	sp_ctx_release(d);
	sp_ctx_release(c);
	sp_ctx_release(b);
	sp_ctx_release(a);
	ck_assert_ptr_eq(sp_ctx_value(r, &ctx_key2), &vb);
	sp_ctx_release(r);
}
END_TEST

START_TEST(test_ctx_retain_release)
{
	sp_ctx *c;
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &c), 0);
	sp_ctx *r = sp_ctx_retain(c);
	ck_assert_ptr_nonnull(r);
	sp_ctx *r2 = sp_ctx_retain(r);
	sp_ctx_release(r2); /* a retained handle's release only drops it */
	ck_assert_int_eq(sp_ctx_err(c), 0);
	ck_assert_int_eq(sp_ctx_err(r), 0);
	sp_ctx_release(c); /* the creator's release cancels */
	ck_assert_int_eq(sp_ctx_err(r), ECANCELED);
	ck_assert(sp_ctx_wait(r, 0));
	sp_ctx_release(r);
}
END_TEST

/*
 * The creator's release cancels (Go's `defer cancel()`) even while other
 * threads are blocked on the context with no handle of their own: each
 * blocking call holds a reference while it waits, so none of them touches
 * freed memory (ASan) and each returns ECANCELED.
 */
static sp_ctx *rw_ctx;
static sp_sema rw_sema;
static sp_mutex rw_mu;
static sp_cond rw_cond;
static sp_flight *rw_flight;
static _Atomic int rw_blocked, rw_leader_go;
static _Atomic int rw_tid[5];

static int rw_slow_load(void *arg, void **val)
{
	(void)arg;
	atomic_fetch_add(&rw_blocked, 1);
	while (!atomic_load(&rw_leader_go))
		sptest_sleep_ns(SPTEST_MS(1));
	*val = NULL;
	return 0;
}

static void *rw_waiter(void *arg)
{
	intptr_t kind = (intptr_t)arg;
	intptr_t r = -1;
	sp_flight_result fr;
	atomic_store(&rw_tid[kind], sptest_gettid());
	switch (kind) {
	case 0:
		atomic_fetch_add(&rw_blocked, 1);
		r = sp_sema_acquire(&rw_sema, 1, rw_ctx);
		break;
	case 1:
		atomic_fetch_add(&rw_blocked, 1);
		r = sp_ctx_wait(rw_ctx, -1) ? ECANCELED : 0;
		break;
	case 2:
		sp_mutex_lock(&rw_mu);
		atomic_fetch_add(&rw_blocked, 1);
		r = sp_cond_wait_ctx(&rw_cond, &rw_mu, rw_ctx);
		sp_mutex_unlock(&rw_mu);
		break;
	case 3: /* the leader: no context */
		r = sp_flight_do(rw_flight, "k", 1, rw_slow_load, NULL, NULL, &fr);
		if (r == 0)
			sp_flight_result_release(rw_flight, &fr);
		r = r == 0 ? ECANCELED : -2;
		break;
	case 4: /* a joiner waiting with the context */
		while (atomic_load(&rw_blocked) < 4)
			sptest_sleep_ns(SPTEST_MS(1));
		atomic_fetch_add(&rw_blocked, 1);
		r = sp_flight_do(rw_flight, "k", 1, rw_slow_load, NULL, rw_ctx, &fr);
		if (r == 0)
			sp_flight_result_release(rw_flight, &fr);
		break;
	}
	return (void *)r;
}

START_TEST(test_ctx_release_while_waited)
{
	for (int round = 0; round < 5; round++) {
		ck_assert_int_eq(sp_ctx_with_cancel(NULL, &rw_ctx), 0);
		ck_assert_int_eq(sp_sema_init(&rw_sema, 1), 0);
		ck_assert(sp_sema_try_acquire(&rw_sema, 1));
		ck_assert_ptr_nonnull(rw_flight = sp_flight_create(NULL));
		atomic_store(&rw_blocked, 0);
		atomic_store(&rw_leader_go, 0);
		pthread_t t[5];
		/*
		 * They have no handle, so they must be inside their calls before
		 * it goes (a release racing a call's entry would be the caller's
		 * use after free): start them one at a time, each asleep in its
		 * call (a futex wait, no internal lock contended: nobody else
		 * runs) before the next; the leader (3) sleeps in fn.
		 */
		for (intptr_t i = 0; i < 5; i++) {
			atomic_store(&rw_tid[i], 0);
			ck_assert_int_eq(pthread_create(&t[i], NULL, rw_waiter, (void *)i), 0);
			if (i == 3) {
				int64_t end = sptest_now_ns() + sptest_scaled(SPTEST_S(10));
				while (atomic_load(&rw_blocked) < 4 && sptest_now_ns() < end)
					sptest_sleep_ns(SPTEST_MS(1));
				ck_assert_int_eq(atomic_load(&rw_blocked), 4);
				continue;
			}
			int tid;
			while ((tid = atomic_load(&rw_tid[i])) == 0)
				sptest_sleep_ns(SPTEST_MS(1) / 10);
			ck_assert_msg(sptest_await_parked(&tid, 1, NULL, SPTEST_S(10)), "waiter %d never slept", (int)i);
		}
		ck_assert_int_eq(atomic_load(&rw_blocked), 5);
		sp_ctx_release(rw_ctx); /* the only handle: cancels, then drops it */
		/*
		 * The leader (3) goes last: once the call has ended, a joiner
		 * that has not run since its cancellation may take the result
		 * instead (both are done when it looks: flight.h allows either;
		 * seen under valgrind).
		 */
		static const int order[5] = { 0, 1, 2, 4, 3 };
		for (int k = 0; k < 5; k++) {
			int i = order[k];
			void *r;
			if (i == 3)
				atomic_store(&rw_leader_go, 1);
			ck_assert_msg(sptest_join_within(t[i], SPTEST_S(10), &r), "waiter %d hung", i);
			ck_assert_msg((intptr_t)r == ECANCELED, "waiter %d returned %d", i, (int)(intptr_t)r);
		}
		sp_sema_release(&rw_sema, 1);
		ck_assert(sp_sema_try_acquire(&rw_sema, 1)); /* no weight kept by the cancelled waiter */
		sp_sema_release(&rw_sema, 1);
		sp_sema_destroy(&rw_sema);
		sp_flight_destroy(rw_flight);
	}
}
END_TEST

static _Atomic int hook_runs;
static pthread_t hook_thread;
static void hook_fn(void *arg)
{
	ck_assert_ptr_eq(arg, &hook_runs);
	ck_assert(pthread_equal(pthread_self(), hook_thread));
	atomic_fetch_add(&hook_runs, 1);
}

START_TEST(test_ctx_after_func)
{
	hook_thread = pthread_self();
	atomic_store(&hook_runs, 0);
	sp_ctx *c;
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &c), 0);
	/* Stopped before done: fn never runs, stop says true. */
	sp_ctx_hook *h1 = sp_ctx_after_func(c, hook_fn, &hook_runs);
	ck_assert_ptr_nonnull(h1);
	ck_assert(sp_ctx_hook_stop(h1));
	sp_ctx_hook *h2 = sp_ctx_after_func(c, hook_fn, &hook_runs);
	ck_assert_ptr_nonnull(h2);
	ck_assert_int_eq(hook_runs, 0);
	sp_ctx_cancel(c); /* runs on the canceller */
	ck_assert_int_eq(hook_runs, 1);
	sp_ctx_cancel(c);
	ck_assert_int_eq(hook_runs, 1); /* once */
	ck_assert(!sp_ctx_hook_stop(h2));
	/* On a done context: at once, in the caller. */
	sp_ctx_hook *h3 = sp_ctx_after_func(c, hook_fn, &hook_runs);
	ck_assert_ptr_nonnull(h3);
	ck_assert_int_eq(hook_runs, 2);
	ck_assert(!sp_ctx_hook_stop(h3));
	sp_ctx_release(c);
	/* On background: never runs. */
	sp_ctx_hook *h4 = sp_ctx_after_func(NULL, hook_fn, &hook_runs);
	ck_assert_ptr_nonnull(h4);
	ck_assert(sp_ctx_hook_stop(h4));
	ck_assert_ptr_null(sp_ctx_after_func(NULL, NULL, NULL));
	ck_assert(!sp_ctx_hook_stop(NULL));
	ck_assert_int_eq(hook_runs, 2);
	/* Through a parent's cancellation. */
	sp_ctx *p;
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &p), 0);
	ck_assert_int_eq(sp_ctx_with_cancel(p, &c), 0);
	sp_ctx_hook *h5 = sp_ctx_after_func(c, hook_fn, &hook_runs);
	sp_ctx_release(p);
	ck_assert_int_eq(hook_runs, 3);
	ck_assert(!sp_ctx_hook_stop(h5));
	sp_ctx_release(c);
}
END_TEST

/* ------------------------------------------------------------ errgroup */

static int task_ok(void *arg)
{
	atomic_fetch_add((_Atomic int *)arg, 1);
	return 0;
}
static int task_eio(void *arg)
{
	(void)arg;
	return EIO;
}
static sp_ctx *eg_ctx;
static int task_watch_ctx(void *arg)
{
	(void)arg;
	return sp_ctx_wait(eg_ctx, sptest_scaled(SPTEST_S(5))) ? 0 : ETIMEDOUT;
}

START_TEST(test_errgroup_first_error_cancels)
{
	sp_errgroup *g = sp_errgroup_create(NULL, &eg_ctx);
	ck_assert_ptr_nonnull(g);
	ck_assert_ptr_nonnull(eg_ctx);
	ck_assert_int_eq(sp_ctx_err(eg_ctx), 0);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(sp_errgroup_go(g, task_watch_ctx, NULL), 0);
	ck_assert_int_eq(sp_errgroup_go(g, task_eio, NULL), 0);
	ck_assert_int_eq(sp_errgroup_wait(g), EIO);
	ck_assert_int_eq(sp_ctx_err(eg_ctx), ECANCELED);
	/* Reusable after wait; the first error is kept (as in Go). */
	_Atomic int n = 0;
	ck_assert_int_eq(sp_errgroup_go(g, task_ok, &n), 0);
	ck_assert(sp_errgroup_try_go(g, task_ok, &n));
	ck_assert_int_eq(sp_errgroup_wait(g), EIO);
	ck_assert_int_eq(n, 2);
	sp_errgroup_destroy(g);
	sp_errgroup_destroy(NULL);
}
END_TEST

START_TEST(test_errgroup_wait_cancels_ctx_and_parent)
{
	_Atomic int n = 0;
	sp_ctx *ctx;
	sp_errgroup *g = sp_errgroup_create(NULL, &ctx);
	ck_assert_ptr_nonnull(g);
	for (int i = 0; i < 16; i++)
		ck_assert_int_eq(sp_errgroup_go(g, task_ok, &n), 0);
	ck_assert_int_eq(sp_errgroup_wait(g), 0);
	ck_assert_int_eq(n, 16);
	ck_assert_int_eq(sp_ctx_err(ctx), ECANCELED);
	sp_ctx *keep = sp_ctx_retain(ctx);
	sp_errgroup_destroy(g);
	ck_assert_int_eq(sp_ctx_err(keep), ECANCELED);
	sp_ctx_release(keep);
	/* Derived from the parent. */
	sp_ctx *parent;
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &parent), 0);
	g = sp_errgroup_create(parent, &ctx);
	ck_assert_ptr_nonnull(g);
	sp_ctx_cancel(parent);
	ck_assert_int_eq(sp_ctx_err(ctx), ECANCELED);
	ck_assert_int_eq(sp_ctx_err(parent), ECANCELED);
	sp_errgroup_destroy(g);
	sp_ctx_release(parent);
	/* Under a parent already done: the group's context is done at once, tasks still run. */
	ck_assert_int_eq(sp_ctx_with_cancel(NULL, &parent), 0);
	sp_ctx_cancel(parent);
	g = sp_errgroup_create(parent, &ctx);
	ck_assert_ptr_nonnull(g);
	ck_assert_int_eq(sp_ctx_err(ctx), ECANCELED);
	n = 0;
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(sp_errgroup_go(g, task_ok, &n), 0);
	ck_assert_int_eq(sp_errgroup_wait(g), 0);
	ck_assert_int_eq(n, 4);
	sp_errgroup_destroy(g);
	sp_ctx_release(parent);
	/* ctx_out NULL: Go's zero Group. */
	g = sp_errgroup_create(NULL, NULL);
	ck_assert_ptr_nonnull(g);
	n = 0;
	ck_assert_int_eq(sp_errgroup_go(g, task_ok, &n), 0);
	ck_assert_int_eq(sp_errgroup_go(g, task_eio, NULL), 0);
	ck_assert_int_eq(sp_errgroup_wait(g), EIO);
	ck_assert_int_eq(n, 1);
	sp_errgroup_destroy(g);
}
END_TEST

static sp_sema eg_sema;
static int task_acquire(void *arg)
{
	(void)arg;
	sp_ctx *c;
	ck_assert_int_eq(sp_ctx_with_timeout(NULL, sptest_scaled(SPTEST_S(5)), &c), 0);
	int err = sp_sema_acquire(&eg_sema, 1, c);
	sp_ctx_release(c);
	return err;
}
static int task_release(void *arg)
{
	(void)arg;
	sptest_sleep_ns(SPTEST_MS(2));
	sp_sema_release(&eg_sema, 1);
	return 0;
}

START_TEST(test_errgroup_tasks_run_at_once)
{
	/* Tasks may wait for each other: they all run concurrently. */
	ck_assert_int_eq(sp_sema_init(&eg_sema, 8), 0);
	ck_assert_int_eq(sp_sema_acquire(&eg_sema, 8, NULL), 0);
	sp_errgroup *g = sp_errgroup_create(NULL, NULL);
	ck_assert_ptr_nonnull(g);
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(sp_errgroup_go(g, task_acquire, NULL), 0);
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(sp_errgroup_go(g, task_release, NULL), 0);
	ck_assert_int_eq(sp_errgroup_wait(g), 0);
	sp_errgroup_destroy(g);
	sp_sema_release(&eg_sema, 8);
	sp_sema_destroy(&eg_sema);
}
END_TEST

static struct flag lim_go;
static int task_block(void *arg)
{
	(void)arg;
	return flag_wait(&lim_go, SPTEST_S(5)) ? 0 : ETIMEDOUT;
}

START_TEST(test_errgroup_limit)
{
	atomic_store(&lim_go.v, 0);
	sp_errgroup *g = sp_errgroup_create(NULL, NULL);
	ck_assert_ptr_nonnull(g);
	sp_errgroup_set_limit(g, 0);
	ck_assert_int_eq(sp_errgroup_go(g, task_block, NULL), EAGAIN);
	ck_assert(!sp_errgroup_try_go(g, task_block, NULL));
	sp_errgroup_set_limit(g, 1);
	ck_assert_int_eq(sp_errgroup_go(g, task_block, NULL), 0);
	ck_assert(!sp_errgroup_try_go(g, task_block, NULL));
	flag_set(&lim_go);
	ck_assert_int_eq(sp_errgroup_wait(g), 0);
	ck_assert(sp_errgroup_try_go(g, task_block, NULL));
	ck_assert_int_eq(sp_errgroup_wait(g), 0);
	sp_errgroup_set_limit(g, -1);
	atomic_store(&lim_go.v, 0);
	for (int i = 0; i < 4; i++)
		ck_assert(sp_errgroup_try_go(g, task_block, NULL));
	flag_set(&lim_go);
	ck_assert_int_eq(sp_errgroup_wait(g), 0);
	sp_errgroup_destroy(g);
}
END_TEST

/* ------------------------------------------------------------ suite */

/*
 * The headers inline the uncontended paths; `(name)(...)` reaches the
 * exported functions.  Both must work on the same objects, in any mix.
 */
START_TEST(test_inline_and_exported_mix)
{
	sp_pool_opts po = { .size = 64 };
	sp_pool *p = sp_pool_create(&po);
	ck_assert_ptr_nonnull(p);
	void *a = sp_pool_get(p);
	void *b = (sp_pool_get)(p);
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	ck_assert_ptr_ne(a, b);
	(sp_pool_put)(p, a);
	sp_pool_put(p, b);
	void *c = sp_pool_get(p), *d = (sp_pool_get)(p);
	ck_assert((c == a && d == b) || (c == b && d == a)); /* both came back */
	sp_pool_put(p, c);
	(sp_pool_put)(p, d);
	(sp_pool_put)(p, NULL);
	sp_pool_put(p, NULL);
	sp_pool_stats st;
	sp_pool_stats_get(p, &st);
	ck_assert_uint_eq(st.gets, 4);
	ck_assert_uint_eq(st.puts, 4);
	ck_assert_uint_eq(st.news, 2);
	sp_pool_destroy(p);

	sp_mutex m = SP_MUTEX_INIT;
	sp_mutex_lock(&m);
	ck_assert(!sp_mutex_trylock(&m));
	(sp_mutex_unlock)(&m);
	(sp_mutex_lock)(&m);
	ck_assert(!sp_mutex_trylock(&m));
	sp_mutex_unlock(&m);
	ck_assert(sp_mutex_trylock(&m));
	sp_mutex_unlock(&m);

	sp_rwmutex rw = SP_RWMUTEX_INIT;
	for (int i = 0; i < 4; i++) { /* the bias turns on after the first counter read */
		sp_rwmutex_rlock(&rw);
		(sp_rwmutex_rlock)(&rw);
		ck_assert(!sp_rwmutex_trylock(&rw));
		sp_rwmutex_runlock(&rw);
		ck_assert(!sp_rwmutex_trylock(&rw));
		(sp_rwmutex_runlock)(&rw);
		ck_assert(sp_rwmutex_trylock(&rw));
		sp_rwmutex_unlock(&rw);
	}

	sp_sema s;
	ck_assert_int_eq(sp_sema_init(&s, 3), 0);
	ck_assert_int_eq(sp_sema_acquire(&s, 2, NULL), 0);
	ck_assert_int_eq((sp_sema_acquire)(&s, 1, NULL), 0);
	ck_assert(!sp_sema_try_acquire(&s, 1));
	(sp_sema_release)(&s, 2);
	sp_sema_release(&s, 1);
	ck_assert(sp_sema_try_acquire(&s, 3));
	sp_sema_release(&s, 3);
	ck_assert_int_eq(sp_sema_acquire(&s, 4, NULL), EINVAL);
	ck_assert_int_eq(sp_sema_acquire(&s, -1, NULL), EINVAL);
	sp_sema_destroy(&s);
}
END_TEST

static Suite *contract_suite(void)
{
	Suite *s = suite_create("contract");
	TCase *tc = tcase_create("api");
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, test_now_ns_monotonic);
	tcase_add_test(tc, test_zero_value_static_init);
	tcase_add_test(tc, test_zero_value_static_zero);
	tcase_add_test(tc, test_zero_value_automatic);
	tcase_add_test(tc, test_zero_value_calloc);
	tcase_add_test(tc, test_signatures);
	tcase_add_test(tc, test_fatal_messages);
	tcase_add_test(tc, test_pool_create_einval);
	tcase_add_test(tc, test_pool_get_put_stats);
	tcase_add_test(tc, test_pool_no_new_fn_miss_null);
	tcase_add_test(tc, test_pool_cleanup_two_cycles);
	tcase_add_test(tc, test_pool_overflow_dropped);
	tcase_add_test(tc, test_pool_jemalloc);
	tcase_add_test(tc, test_pool_cleaner);
	tcase_add_test(tc, test_mutex_exclusion);
	tcase_add_test(tc, test_mutex_unlock_other_thread);
	tcase_add_test(tc, test_rwmutex_writer_blocks_tryrlock);
	tcase_add_test(tc, test_rwmutex_unlock_other_thread);
	tcase_add_test(tc, test_waitgroup_wait_and_reuse);
	tcase_add_test(tc, test_once_exactly_once);
	tcase_add_test(tc, test_cond_signal_one_broadcast_all);
	tcase_add_test(tc, test_cond_wait_ctx);
	tcase_add_test(tc, test_cond_cancelled_waiter_keeps_no_signal);
	tcase_add_test(tc, test_sema_einval);
	tcase_add_test(tc, test_sema_done_ctx_nothing_held);
	tcase_add_test(tc, test_sema_fifo_no_barging);
	tcase_add_test(tc, test_sema_head_gives_up_wakes_behind);
	tcase_add_test(tc, test_flight_basic_and_errors);
	tcase_add_test(tc, test_flight_shared_refcount);
	tcase_add_test(tc, test_flight_ctx_and_forget);
	tcase_add_test(tc, test_flight_done_ctx_does_not_join);
	tcase_add_test(tc, test_ctx_background_and_null);
	tcase_add_test(tc, test_ctx_cancel_tree);
	tcase_add_test(tc, test_ctx_with_under_done_parent);
	tcase_add_test(tc, test_ctx_deadlines);
	tcase_add_test(tc, test_ctx_timeout_fires_and_err_sticks);
	tcase_add_test(tc, test_ctx_wait_no_limit);
	tcase_add_test(tc, test_ctx_values);
	tcase_add_test(tc, test_ctx_retain_release);
	tcase_add_test(tc, test_ctx_release_while_waited);
	tcase_add_test(tc, test_ctx_after_func);
	tcase_add_test(tc, test_errgroup_first_error_cancels);
	tcase_add_test(tc, test_errgroup_wait_cancels_ctx_and_parent);
	tcase_add_test(tc, test_errgroup_tasks_run_at_once);
	tcase_add_test(tc, test_errgroup_limit);
	tcase_add_test(tc, test_inline_and_exported_mix);
	suite_add_tcase(s, tc);

	TCase *td = tcase_create("death");
	tcase_set_timeout(td, 10);
	tcase_add_test_raise_signal(td, test_death_mutex, SIGABRT);
	tcase_add_test_raise_signal(td, test_death_rwmutex, SIGABRT);
	tcase_add_test_raise_signal(td, test_death_waitgroup, SIGABRT);
	tcase_add_test_raise_signal(td, test_death_sema, SIGABRT);
	tcase_add_test_raise_signal(td, test_death_once, SIGABRT);
	suite_add_tcase(s, td);
	return s;
}

SPTEST_SUITE(contract_suite)
