/*
 * tests/test_pool.c - the per-CPU object pool (pool/).
 *
 * Ports of Go's sync.Pool tests (TestPool, TestPoolNew, TestPoolGC,
 * TestPoolRelease, TestPoolStress) plus what C adds: exact accounting of
 * every object (created == freed, no duplicate, none lost) with cleanup
 * running concurrently, stealing, overflow, reset_fn, options, the cleaner
 * thread, stats, memory going back to the OS, and AddressSanitizer poisoning.
 * The Makefile runs this suite twice: with glibc's rseq registration (the
 * restartable-sequence path) and with GLIBC_TUNABLES=glibc.pthread.rseq=0
 * (the locked fallback).
 */
#include "sptest.h"
#include "common.h"
#include "syncpool/ctx.h"
#include "syncpool/pool.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#if SP_TSAN
#define SCALE 10
#elif SP_ASAN
#define SCALE 4
#else
#define SCALE 1
#endif

/* Pins the calling thread to the CPU it is on (Go's runtime_procPin). */
static void pin_here(void)
{
	cpu_set_t s;
	int c = sched_getcpu();
	CPU_ZERO(&s);
	CPU_SET(c < 0 ? 0 : c, &s);
	(void)sched_setaffinity(0, sizeof s, &s);
}

/* The first two CPUs this process may run on; false if there is only one. */
static bool two_cpus(int *a, int *b)
{
	cpu_set_t s;
	if (sched_getaffinity(0, sizeof s, &s) != 0)
		return false;
	int n = 0;
	for (int c = 0; c < CPU_SETSIZE && n < 2; c++) {
		if (CPU_ISSET(c, &s)) {
			if (n++ == 0)
				*a = c;
			else
				*b = c;
		}
	}
	return n == 2;
}

static void pin_to(int cpu)
{
	cpu_set_t s;
	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	ck_assert_int_eq(sched_setaffinity(0, sizeof s, &s), 0);
}

/* Token objects: counted frees, never dereferenced. */
static _Atomic long tok_frees;
static void tok_free(void *obj, void *arg)
{
	(void)obj;
	(void)arg;
	atomic_fetch_add(&tok_frees, 1);
}
#define TOK(x) ((void *)(uintptr_t)(x))

/* Go's TestPool. */
START_TEST(test_pool_go_basic)
{
	atomic_store(&tok_frees, 0);
	sp_pool_opts o = { .free_fn = tok_free };
	sp_pool *p = sp_pool_create(&o);
	ck_assert_ptr_nonnull(p);
	pin_here();
	ck_assert_ptr_null(sp_pool_get(p));
	sp_pool_put(p, TOK(0xa));
	sp_pool_put(p, TOK(0xb));
	/* Go's order on one P: the private slot first, then the stack's top. */
	ck_assert_ptr_eq(sp_pool_get(p), TOK(0xa));
	ck_assert_ptr_eq(sp_pool_get(p), TOK(0xb));
	ck_assert_ptr_null(sp_pool_get(p));

	for (int i = 0; i < 100; i++)
		sp_pool_put(p, TOK(0xc));
	/* After one cleanup the victim cache keeps them alive. */
	sp_pool_cleanup(p);
	ck_assert_ptr_eq(sp_pool_get(p), TOK(0xc));
	/* A second cleanup drops the victim cache. */
	sp_pool_cleanup(p);
	ck_assert_ptr_null(sp_pool_get(p));
	ck_assert_int_eq(atomic_load(&tok_frees), 99);
	sp_pool_destroy(p);
	ck_assert_int_eq(atomic_load(&tok_frees), 99);
}
END_TEST

static _Atomic long new_ctr;
static void *ctr_new(void *arg)
{
	(void)arg;
	return TOK(atomic_fetch_add(&new_ctr, 1) + 1);
}

/* Go's TestPoolNew. */
START_TEST(test_pool_go_new)
{
	sp_pool_opts o = { .new_fn = ctr_new, .free_fn = tok_free };
	sp_pool *p = sp_pool_create(&o);
	ck_assert_ptr_nonnull(p);
	pin_here();
	ck_assert_ptr_eq(sp_pool_get(p), TOK(1));
	ck_assert_ptr_eq(sp_pool_get(p), TOK(2));
	sp_pool_put(p, TOK(42));
	ck_assert_ptr_eq(sp_pool_get(p), TOK(42));
	ck_assert_ptr_eq(sp_pool_get(p), TOK(3));
	sp_pool_stats st;
	sp_pool_stats_get(p, &st);
	ck_assert_uint_eq(st.news, 3);
	ck_assert_uint_eq(st.gets, 4);
	ck_assert_uint_eq(st.hits_local, 1);
	sp_pool_destroy(p);
}
END_TEST

/* Heap objects whose frees are counted (Go's finalizers). */
static _Atomic long heap_frees;
static void heap_free(void *obj, void *arg)
{
	(void)arg;
	free(obj);
	atomic_fetch_add(&heap_frees, 1);
}

/* Go's TestPoolGC (drain = false) and TestPoolRelease (drain = true). */
static void go_pool_gc(bool drain)
{
	enum { N = 100 };
	sp_pool_opts o = { .free_fn = heap_free, .size = 32 };
	sp_pool *p = sp_pool_create(&o);
	ck_assert_ptr_nonnull(p);
	for (int t = 0; t < 3; t++) {
		atomic_store(&heap_frees, 0);
		for (int i = 0; i < N; i++)
			sp_pool_put(p, calloc(1, 32));
		if (drain) {
			for (int i = 0; i < N; i++) {
				void *x = sp_pool_get(p);
				ck_assert_ptr_nonnull(x);
				heap_free(x, NULL);
			}
		}
		sp_pool_cleanup(p);
		sp_pool_cleanup(p);
		/* Go accepts N-1 (one pointer may stay on a stack); we hold none. */
		ck_assert_int_ge(atomic_load(&heap_frees), N - 1);
		ck_assert_int_eq(atomic_load(&heap_frees), N);
		sp_pool_stats st;
		sp_pool_stats_get(p, &st);
		ck_assert_uint_eq(st.cached, 0);
	}
	sp_pool_destroy(p);
}

START_TEST(test_pool_go_gc)
{
	go_pool_gc(false);
}
END_TEST

START_TEST(test_pool_go_release)
{
	go_pool_gc(true);
}
END_TEST

/*
 * Stress objects: each carries an id, an in-use flag and a freed flag, and
 * lives in a table until the test ends, so a duplicate (two holders), a use
 * after drop or a double drop is detected, not just crashed on.
 */
#define MAXOBJ (1 << 21)
struct sobj {
	_Atomic int inuse;
	_Atomic int freed;
	long id;
	long payload;
};
static struct sobj *objs;
static _Atomic long ncreated, nfreed;
static _Atomic int bad;

static void *sobj_new(void *arg)
{
	(void)arg;
	long i = atomic_fetch_add(&ncreated, 1);
	if (i >= MAXOBJ) {
		atomic_store(&bad, 1);
		return NULL;
	}
	objs[i].id = i;
	return &objs[i];
}

static void sobj_free(void *obj, void *arg)
{
	(void)arg;
	struct sobj *o = obj;
	if (atomic_load(&o->inuse) != 0 || atomic_exchange(&o->freed, 1) != 0)
		atomic_store(&bad, 2);
	atomic_fetch_add(&nfreed, 1);
}

static void sobj_reset(void)
{
	free(objs);
	objs = calloc(MAXOBJ, sizeof *objs);
	ck_assert_ptr_nonnull(objs);
	atomic_store(&ncreated, 0);
	atomic_store(&nfreed, 0);
	atomic_store(&bad, 0);
}

static inline void sobj_take(struct sobj *o)
{
	if (!o || o->id != o - objs || atomic_load(&o->freed) || atomic_exchange(&o->inuse, 1) != 0)
		atomic_store(&bad, 3);
	o->payload++;
}

static inline void sobj_give(struct sobj *o)
{
	if (atomic_exchange(&o->inuse, 0) != 1)
		atomic_store(&bad, 4);
}

struct stress_arg {
	sp_pool *p;
	int iters;
	long gets, puts;
};
static _Atomic bool stress_stop;

static void *stress_worker(void *v)
{
	struct stress_arg *a = v;
	struct sobj *held[4];
	for (int i = 0; i < a->iters; i++) {
		/* Mostly one object (the private slot), sometimes a few (the stack). */
		int k = (i % 7 == 0) ? 4 : 1;
		for (int j = 0; j < k; j++) {
			held[j] = sp_pool_get(a->p);
			a->gets++;
			sobj_take(held[j]);
		}
		for (int j = 0; j < k; j++) {
			sobj_give(held[j]);
			sp_pool_put(a->p, held[j]);
			a->puts++;
		}
		if (i % 1024 == 0)
			sched_yield();
	}
	return NULL;
}

static void *stress_cleaner(void *v)
{
	sp_pool *p = v;
	while (!atomic_load(&stress_stop)) {
		sp_pool_cleanup(p);
		sptest_sleep_ns(SPTEST_MS(1));
	}
	return NULL;
}

/* Go's TestPoolStress, oversubscribed, with cleanup running throughout. */
static void pool_stress(size_t cap, int nthreads, int iters)
{
	sobj_reset();
	sp_pool_opts o = { .new_fn = sobj_new, .free_fn = sobj_free, .per_cpu_cap = cap };
	sp_pool *p = sp_pool_create(&o);
	ck_assert_ptr_nonnull(p);
	struct stress_arg args[32];
	ck_assert_int_le(nthreads, 32);
	for (int i = 0; i < nthreads; i++)
		args[i] = (struct stress_arg){ .p = p, .iters = iters / SCALE };
	atomic_store(&stress_stop, false);
	pthread_t cl;
	ck_assert_int_eq(pthread_create(&cl, NULL, stress_cleaner, p), 0);
	sptest_run_threads(nthreads, stress_worker, args, sizeof args[0], SPTEST_S(60));
	atomic_store(&stress_stop, true);
	ck_assert(sptest_join_within(cl, SPTEST_S(10), NULL));
	ck_assert_int_eq(atomic_load(&bad), 0);

	/* Quiescent: the stats are exact. */
	long gets = 0, puts = 0;
	for (int i = 0; i < nthreads; i++) {
		gets += args[i].gets;
		puts += args[i].puts;
	}
	sp_pool_stats st;
	sp_pool_stats_get(p, &st);
	ck_assert_uint_eq(st.gets, (uint64_t)gets);
	ck_assert_uint_eq(st.puts, (uint64_t)puts);
	ck_assert_uint_eq(st.news, (uint64_t)atomic_load(&ncreated));
	ck_assert_uint_eq(st.drops, (uint64_t)atomic_load(&nfreed));
	ck_assert_uint_eq(st.hits_local + st.hits_stolen + st.hits_victim + st.news, (uint64_t)gets);
	/* Every object is either cached or was dropped exactly once. */
	ck_assert_uint_eq(st.cached + (uint64_t)atomic_load(&nfreed), (uint64_t)atomic_load(&ncreated));
	long cached = (long)st.cached;
	sp_pool_destroy(p);
	ck_assert_int_eq(atomic_load(&bad), 0);
	ck_assert_int_eq(atomic_load(&nfreed), atomic_load(&ncreated));
	ck_assert_int_ge(atomic_load(&ncreated), cached);
	for (long i = 0; i < atomic_load(&ncreated); i++)
		ck_assert_int_eq(atomic_load(&objs[i].freed), 1);
}

START_TEST(test_pool_stress)
{
	pool_stress(0, 16, 40000);
}
END_TEST

START_TEST(test_pool_stress_small_cap)
{
	/* A tiny cache: constant overflow drops, steals and refills. */
	pool_stress(2, 32, 10000);
}
END_TEST

/* A producer that only Puts and a consumer that only Gets. */
struct pc_arg {
	sp_pool *p;
	int cpu;
	int n;
	void **objs;
	_Atomic int *phase;
};

static void *producer(void *v)
{
	struct pc_arg *a = v;
	if (a->cpu >= 0)
		pin_to(a->cpu);
	for (int i = 0; i < a->n; i++)
		sp_pool_put(a->p, a->objs[i]);
	atomic_store(a->phase, 1);
	/* Stay running on this CPU (keeping its mm_cid) until the consumer is done. */
	int64_t end = sptest_now_ns() + sptest_scaled(SPTEST_S(20));
	while (atomic_load(a->phase) != 2 && sptest_now_ns() < end)
		sp_cpu_relax();
	return NULL;
}

START_TEST(test_pool_producer_consumer)
{
	enum { N = 200 };
	int c0, c1;
	bool pinned = two_cpus(&c0, &c1);
	sp_pool_opts o = { .new_fn = ctr_new, .free_fn = tok_free };
	sp_pool *p = sp_pool_create(&o);
	ck_assert_ptr_nonnull(p);
	void *tok[N];
	for (int i = 0; i < N; i++)
		tok[i] = TOK(0x10000 + i);
	_Atomic int phase = 0;
	struct pc_arg a = { .p = p, .cpu = pinned ? c0 : -1, .n = N, .objs = tok, .phase = &phase };
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, producer, &a), 0);
	if (pinned)
		pin_to(c1);
	int64_t end = sptest_now_ns() + sptest_scaled(SPTEST_S(20));
	while (atomic_load(&phase) != 1 && sptest_now_ns() < end)
		sched_yield();
	ck_assert_int_eq(atomic_load(&phase), 1);

	/* All but the producer CPU's private slot can be stolen: no new_fn call. */
	static bool seen[N];
	memset(seen, 0, sizeof seen);
	for (int i = 0; i < N - 1; i++) {
		void *x = sp_pool_get(p);
		uintptr_t k = (uintptr_t)x - 0x10000;
		ck_assert_uint_lt(k, N);
		ck_assert(!seen[k]);
		seen[k] = true;
	}
	sp_pool_stats st;
	sp_pool_stats_get(p, &st);
	atomic_store(&phase, 2);
	ck_assert(sptest_join_within(t, SPTEST_S(20), NULL));
	ck_assert_uint_eq(st.news, 0);
	ck_assert_uint_eq(st.gets, N - 1);
	/*
	 * Stolen, or local when the kernel gave the consumer the mm_cid the
	 * producer had while putting (mm_cid follows CPUs, not threads).
	 */
	ck_assert_uint_eq(st.hits_stolen + st.hits_local, N - 1);
	ck_assert_uint_eq(st.cached, 1);
	sp_pool_destroy(p);
}
END_TEST

/* The same, concurrently and at volume: every object arrives exactly once. */
struct flow_arg {
	sp_pool *p;
	int n;
	_Atomic int done;
};

static void *flow_producer(void *v)
{
	struct flow_arg *a = v;
	for (int i = 0; i < a->n; i++) {
		sp_pool_put(a->p, TOK(0x100000 + i));
		if (i % 64 == 0)
			sched_yield();
	}
	atomic_store(&a->done, 1);
	return NULL;
}

START_TEST(test_pool_flow)
{
	enum { N = 20000 };
	atomic_store(&tok_frees, 0);
	sp_pool_opts o = { .free_fn = tok_free, .per_cpu_cap = 64 };
	sp_pool *p = sp_pool_create(&o);
	ck_assert_ptr_nonnull(p);
	static unsigned char seen[N];
	memset(seen, 0, sizeof seen);
	struct flow_arg a = { .p = p, .n = N / SCALE };
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, flow_producer, &a), 0);
	long got = 0;
	int64_t end = sptest_now_ns() + sptest_scaled(SPTEST_S(30));
	for (;;) {
		int done = atomic_load(&a.done);
		void *x = sp_pool_get(p);
		if (x) {
			uintptr_t k = (uintptr_t)x - 0x100000;
			ck_assert_uint_lt(k, (uintptr_t)a.n);
			ck_assert_int_eq(seen[k], 0);
			seen[k] = 1;
			got++;
		} else if (done) {
			break;
		} else {
			sched_yield();
		}
		ck_assert_int_lt(sptest_now_ns(), end);
	}
	ck_assert(sptest_join_within(t, SPTEST_S(10), NULL));
	sp_pool_stats st;
	sp_pool_stats_get(p, &st);
	/* Each object was got, is still cached (private slots), or was dropped on overflow. */
	ck_assert_int_eq(got + (long)st.cached + atomic_load(&tok_frees), a.n);
	ck_assert_uint_eq(st.drops, (uint64_t)atomic_load(&tok_frees));
	ck_assert_uint_eq(st.puts, (uint64_t)a.n);
	sp_pool_destroy(p);
	ck_assert_int_eq(got + atomic_load(&tok_frees), a.n);
}
END_TEST

/* per_cpu_cap: the slot plus cap objects stay; the rest go to free_fn. */
START_TEST(test_pool_overflow)
{
	atomic_store(&tok_frees, 0);
	sp_pool_opts o = { .free_fn = tok_free, .per_cpu_cap = 4 };
	sp_pool *p = sp_pool_create(&o);
	ck_assert_ptr_nonnull(p);
	pin_here();
	for (int i = 1; i <= 10; i++)
		sp_pool_put(p, TOK(i));
	ck_assert_int_eq(atomic_load(&tok_frees), 5);
	sp_pool_stats st;
	sp_pool_stats_get(p, &st);
	ck_assert_uint_eq(st.puts, 10);
	ck_assert_uint_eq(st.drops, 5);
	ck_assert_uint_eq(st.cached, 5);
	/* Go's order: the private slot (the first put), then the stack's top. */
	ck_assert_ptr_eq(sp_pool_get(p), TOK(1));
	for (int i = 5; i >= 2; i--)
		ck_assert_ptr_eq(sp_pool_get(p), TOK(i));
	ck_assert_ptr_null(sp_pool_get(p));
	sp_pool_destroy(p);
	ck_assert_int_eq(atomic_load(&tok_frees), 5);
}
END_TEST

/*
 * Every array's area headers start unset (pool/percpu.h): the first stack
 * push on an area, in each of the two arrays cleanup alternates between,
 * must keep its object, not take the unset header for a full stack.
 */
START_TEST(test_pool_fresh_arrays)
{
	atomic_store(&tok_frees, 0);
	sp_pool_opts o = { .free_fn = tok_free, .per_cpu_cap = 4 };
	sp_pool *p = sp_pool_create(&o);
	ck_assert_ptr_nonnull(p);
	pin_here();
	for (int cycle = 0; cycle < 4; cycle++) {
		for (int i = 1; i <= 5; i++)
			sp_pool_put(p, TOK(0x100 * (cycle + 1) + i));
		ck_assert_int_eq(atomic_load(&tok_frees), 0);
		ck_assert_ptr_eq(sp_pool_get(p), TOK(0x100 * (cycle + 1) + 1));
		for (int i = 5; i >= 2; i--)
			ck_assert_ptr_eq(sp_pool_get(p), TOK(0x100 * (cycle + 1) + i));
		sp_pool_cleanup(p); /* the other array becomes the primary */
	}
	sp_pool_put(p, TOK(1));
	sp_pool_put(p, TOK(2));
	sp_pool_stats st;
	sp_pool_stats_get(p, &st);
	ck_assert_uint_eq(st.puts, 22);
	ck_assert_uint_eq(st.hits_local, 20);
	ck_assert_uint_eq(st.cached, 2);
	ck_assert_uint_eq(st.drops, 0);
	sp_pool_destroy(p);
	ck_assert_int_eq(atomic_load(&tok_frees), 2);
}
END_TEST

static _Atomic long resets;
static void count_reset(void *obj, void *arg)
{
	ck_assert_ptr_eq(arg, TOK(7));
	memset(obj, 0, 16);
	atomic_fetch_add(&resets, 1);
}

START_TEST(test_pool_reset)
{
	atomic_store(&resets, 0);
	sp_pool_opts o = { .size = 16, .reset_fn = count_reset, .arg = TOK(7) };
	sp_pool *p = sp_pool_create(&o);
	ck_assert_ptr_nonnull(p);
	pin_here();
	char *x = sp_pool_get(p);
	ck_assert_ptr_nonnull(x);
	memset(x, 0x5a, 16);
	sp_pool_put(p, x);
	sp_pool_put(p, NULL); /* ignored: no reset, not counted */
	ck_assert_int_eq(atomic_load(&resets), 1);
	char *y = sp_pool_get(p);
	ck_assert_ptr_eq(y, x);
	for (int i = 0; i < 16; i++)
		ck_assert_int_eq(y[i], 0);
	sp_pool_put(p, y);
	sp_pool_stats st;
	sp_pool_stats_get(p, &st);
	ck_assert_uint_eq(st.puts, 2);
	ck_assert_uint_eq(st.gets, 2);
	sp_pool_destroy(p);
}
END_TEST

START_TEST(test_pool_bad_opts)
{
	sp_pool_opts o;
	errno = 0;
	ck_assert_ptr_null(sp_pool_create(NULL));
	ck_assert_int_eq(errno, EINVAL);
	memset(&o, 0, sizeof o);
	errno = 0;
	ck_assert_ptr_null(sp_pool_create(&o));
	ck_assert_int_eq(errno, EINVAL);
	o = (sp_pool_opts){ .new_fn = ctr_new };
	errno = 0;
	ck_assert_ptr_null(sp_pool_create(&o));
	ck_assert_int_eq(errno, EINVAL);
	o = (sp_pool_opts){ .size = 64, .new_fn = ctr_new };
	errno = 0;
	ck_assert_ptr_null(sp_pool_create(&o));
	ck_assert_int_eq(errno, EINVAL);
	o = (sp_pool_opts){ .reset_fn = count_reset };
	errno = 0;
	ck_assert_ptr_null(sp_pool_create(&o));
	ck_assert_int_eq(errno, EINVAL);
	o = (sp_pool_opts){ .size = 64, .per_cpu_cap = SP_POOL_MAX_PER_CPU_CAP + 1 };
	errno = 0;
	ck_assert_ptr_null(sp_pool_create(&o));
	ck_assert_int_eq(errno, EINVAL);

	/* The valid shapes. */
	sp_pool_opts ok[] = {
		{ .size = 64 },
		{ .free_fn = tok_free },
		{ .free_fn = tok_free, .new_fn = ctr_new, .size = 8 },
		{ .size = 1, .per_cpu_cap = SP_POOL_MAX_PER_CPU_CAP },
	};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		sp_pool *p = sp_pool_create(&ok[i]);
		ck_assert_ptr_nonnull(p);
		sp_pool_destroy(p);
	}
	sp_pool_destroy(NULL);
}
END_TEST

START_TEST(test_pool_cleaner)
{
	ck_assert_int_eq(sp_pool_cleaner_start(0), EINVAL);
	ck_assert_int_eq(sp_pool_cleaner_start(-5), EINVAL);
	sp_pool_cleaner_stop(); /* without start: nothing */

	atomic_store(&tok_frees, 0);
	sp_pool_opts o = { .free_fn = tok_free };
	sp_pool *p = sp_pool_create(&o);
	ck_assert_ptr_nonnull(p);
	for (int i = 1; i <= 10; i++)
		sp_pool_put(p, TOK(i));
	ck_assert_int_eq(sp_pool_cleaner_start(SPTEST_MS(2)), 0);
	int64_t end = sptest_now_ns() + sptest_scaled(SPTEST_S(10));
	while (atomic_load(&tok_frees) < 10 && sptest_now_ns() < end)
		sptest_sleep_ns(SPTEST_MS(1));
	ck_assert_int_eq(atomic_load(&tok_frees), 10);

	/* A second start changes the interval; stop joins promptly even mid-wait. */
	ck_assert_int_eq(sp_pool_cleaner_start(SPTEST_S(3600)), 0);
	sptest_sleep_ns(SPTEST_MS(20));
	sp_pool_put(p, TOK(11));
	sptest_sleep_ns(SPTEST_MS(20));
	ck_assert_int_eq(atomic_load(&tok_frees), 10); /* the hour has not passed */
	int64_t t0 = sptest_now_ns();
	sp_pool_cleaner_stop();
	ck_assert_int_lt(sptest_now_ns() - t0, SPTEST_MS(500) * sptest_slowdown());
	sp_pool_cleaner_stop();

	/* Restartable. */
	ck_assert_int_eq(sp_pool_cleaner_start(SPTEST_MS(1)), 0);
	end = sptest_now_ns() + sptest_scaled(SPTEST_S(10));
	while (atomic_load(&tok_frees) < 11 && sptest_now_ns() < end)
		sptest_sleep_ns(SPTEST_MS(1));
	sp_pool_cleaner_stop();
	ck_assert_int_eq(atomic_load(&tok_frees), 11);
	sp_pool_destroy(p);
}
END_TEST

START_TEST(test_pool_cleanup_all)
{
	enum { NP = 40 };
	atomic_store(&tok_frees, 0);
	sp_pool *ps[NP];
	sp_pool_opts o = { .free_fn = tok_free, .per_cpu_cap = 8 };
	for (int i = 0; i < NP; i++) {
		ps[i] = sp_pool_create(&o);
		ck_assert_ptr_nonnull(ps[i]);
		sp_pool_put(ps[i], TOK(i + 1));
	}
	/* Destroying some pools between cleanup_all passes. */
	for (int i = 0; i < NP; i += 2)
		sp_pool_destroy(ps[i]);
	ck_assert_int_eq(atomic_load(&tok_frees), NP / 2);
	sp_pool_cleanup_all();
	ck_assert_int_eq(atomic_load(&tok_frees), NP / 2);
	sp_pool_cleanup_all();
	ck_assert_int_eq(atomic_load(&tok_frees), NP);
	for (int i = 1; i < NP; i += 2)
		sp_pool_destroy(ps[i]);
	ck_assert_int_eq(atomic_load(&tok_frees), NP);
}
END_TEST

/* The stats of one pinned thread, and a jemalloc pool's objects. */
START_TEST(test_pool_stats)
{
	sp_pool_opts o = { .size = 64 };
	sp_pool *p = sp_pool_create(&o);
	ck_assert_ptr_nonnull(p);
	pin_here();
	void *x[10];
	for (int i = 0; i < 10; i++) {
		x[i] = sp_pool_get(p);
		ck_assert_ptr_nonnull(x[i]);
		memset(x[i], i, 64);
	}
	for (int i = 0; i < 10; i++)
		sp_pool_put(p, x[i]);
	sp_pool_put(p, NULL);
	sp_pool_stats st;
	sp_pool_stats_get(p, &st);
	ck_assert_uint_eq(st.gets, 10);
	ck_assert_uint_eq(st.news, 10);
	ck_assert_uint_eq(st.puts, 10);
	ck_assert_uint_eq(st.cached, 10);
	ck_assert_uint_eq(st.hits_local, 0);
	for (int i = 0; i < 10; i++)
		ck_assert_ptr_nonnull(sp_pool_get(p));
	sp_pool_stats_get(p, &st);
	ck_assert_uint_eq(st.hits_local, 10);
	ck_assert_uint_eq(st.cached, 0);
	for (int i = 0; i < 10; i++)
		sp_pool_put(p, x[i]);
	sp_pool_cleanup(p);
	sp_pool_stats_get(p, &st);
	ck_assert_uint_eq(st.cached, 10); /* in the victim */
	void *v = sp_pool_get(p);
	ck_assert_ptr_nonnull(v);
	sp_pool_stats_get(p, &st);
	ck_assert_uint_eq(st.hits_victim, 1);
	sp_pool_put(p, v);
	sp_pool_cleanup(p);
	sp_pool_cleanup(p);
	sp_pool_stats_get(p, &st);
	ck_assert_uint_eq(st.cached, 0);
	ck_assert_uint_eq(st.drops, 10);
	ck_assert_uint_eq(st.gets, 21);
	ck_assert_uint_eq(st.puts, 21);
	sp_pool_destroy(p);
}
END_TEST

static long rss_kib(void)
{
	long pages = 0, res = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (!f)
		return -1;
	if (fscanf(f, "%ld %ld", &pages, &res) != 2)
		res = -1;
	fclose(f);
	return res * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Cleanup gives a jemalloc pool's memory back to the OS (its own arena, purged). */
START_TEST(test_pool_rss)
{
#if SP_TSAN
	return; /* TSan builds allocate with malloc (see pool.c) */
#endif
	enum { N = 4096, SZ = 4096 };
	sp_pool_opts o = { .size = SZ, .per_cpu_cap = N };
	sp_pool *p = sp_pool_create(&o);
	ck_assert_ptr_nonnull(p);
	pin_here();
	static void *x[N];
	long r0 = rss_kib();
	for (int i = 0; i < N; i++) {
		x[i] = sp_pool_get(p);
		ck_assert_ptr_nonnull(x[i]);
		memset(x[i], 1, SZ);
	}
	for (int i = 0; i < N; i++)
		sp_pool_put(p, x[i]);
	long r1 = rss_kib();
	sp_pool_cleanup(p);
	sp_pool_cleanup(p);
	long r2 = rss_kib();
	ck_assert_int_ge(r1 - r0, (long)N * SZ / 1024 / 2);
	ck_assert_int_le(r2, r1 - (long)N * SZ / 1024 / 2);
	sp_pool_destroy(p);
}
END_TEST

/*
 * Destroy with objects still out (pool.h): the cached ones are dropped, the
 * ones out stay valid memory (the built-in pool's arena is kept); with
 * free_fn the caller frees them.
 */
static _Atomic int out_frees;
static void *out_new(void *arg)
{
	(void)arg;
	return calloc(1, 64);
}
static void out_free(void *o, void *arg)
{
	(void)arg;
	atomic_fetch_add(&out_frees, 1);
	free(o);
}

START_TEST(test_pool_destroy_with_objects_out)
{
	enum { N = 64, SZ = 256 };
	static char *x[N];
	for (int round = 0; round < 3; round++) {
		sp_pool_opts o = { .size = SZ };
		sp_pool *p = sp_pool_create(&o);
		ck_assert_ptr_nonnull(p);
		for (int i = 0; i < N; i++) {
			x[i] = sp_pool_get(p);
			ck_assert_ptr_nonnull(x[i]);
			memset(x[i], i, SZ);
		}
		for (int i = 0; i < N / 2; i++)
			sp_pool_put(p, x[i]);
		sp_pool_cleanup(p); /* some in the victim, some in the primary */
		sp_pool_destroy(p);
		for (int i = N / 2; i < N; i++) { /* still usable */
			ck_assert_int_eq(x[i][SZ - 1], (char)i);
			memset(x[i], 0xa5, SZ);
		}
	}

	sp_pool_opts u = { .new_fn = out_new, .free_fn = out_free };
	sp_pool *p = sp_pool_create(&u);
	ck_assert_ptr_nonnull(p);
	for (int i = 0; i < N; i++)
		x[i] = sp_pool_get(p);
	for (int i = 0; i < N / 2; i++)
		sp_pool_put(p, x[i]);
	atomic_store(&out_frees, 0);
	sp_pool_destroy(p);
	ck_assert_int_eq(atomic_load(&out_frees), N / 2); /* only the cached ones */
	for (int i = N / 2; i < N; i++)
		out_free(x[i], NULL);
}
END_TEST

/*
 * Creating and destroying jemalloc pools does not grow the process: an
 * emptied pool's arena is reused (jemalloc keeps ~4 KiB of every arena it
 * ever created, so one new arena per pool grew RSS by 80 MiB over 20 000
 * cycles).
 */
START_TEST(test_pool_create_destroy_flat)
{
#if SP_TSAN || SP_ASAN
	return; /* TSan: malloc (pool.c); ASan: its quarantine keeps freed memory */
#endif
	enum { N = 3000 };
	sp_pool_opts o = { .size = 64 };
	long r0 = 0;
	for (int i = 0; i < N; i++) {
		if (i == N / 3)
			r0 = rss_kib(); /* after the first arenas exist */
		sp_pool *p = sp_pool_create(&o);
		ck_assert_ptr_nonnull(p);
		void *x[4];
		for (int j = 0; j < 4; j++)
			ck_assert_ptr_nonnull(x[j] = sp_pool_get(p));
		for (int j = 0; j < 4; j++)
			sp_pool_put(p, x[j]);
		sp_pool_destroy(p);
	}
	long r1 = rss_kib();
	/* 2000 cycles at ~4 KiB each would be ~8 MiB. */
	ck_assert_msg(r1 - r0 < 2048, "RSS grew by %ld KiB over %d create/destroy cycles", r1 - r0,
		      N - N / 3);
}
END_TEST

/*
 * fork: the child can use the pools, and sp_pool_cleaner_start there starts
 * a cleaner of its own (the parent's thread is not in the child).
 */
static _Atomic int fork_frees;
static void *fork_new(void *arg)
{
	(void)arg;
	return malloc(32);
}
static void fork_free(void *o, void *arg)
{
	(void)arg;
	atomic_fetch_add(&fork_frees, 1);
	free(o);
}

START_TEST(test_pool_fork_cleaner)
{
#if SP_TSAN || SP_ASAN
	return; /* the sanitizers' runtimes do not support fork with threads */
#endif
	sp_pool_opts o = { .new_fn = fork_new, .free_fn = fork_free };
	sp_pool *p = sp_pool_create(&o);
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(sp_pool_cleaner_start(3600 * INT64_C(1000000000)), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		alarm((unsigned)(10 * sptest_slowdown()));
		int bad = 0;
		if (sp_pool_cleaner_start(INT64_C(1000000)) != 0) /* 1 ms */
			bad |= 1;
		void *x[10];
		for (int i = 0; i < 10; i++)
			x[i] = sp_pool_get(p);
		for (int i = 0; i < 10; i++)
			sp_pool_put(p, x[i]);
		int64_t end = sptest_now_ns() + sptest_scaled(SPTEST_S(5));
		while (atomic_load(&fork_frees) < 10 && sptest_now_ns() < end)
			usleep(1000);
		if (atomic_load(&fork_frees) != 10)
			bad |= 2;
		sp_pool_cleaner_stop();
		sp_pool_destroy(p);
		_exit(bad);
	}
	int st = 0;
	ck_assert_msg(sptest_wait_child(pid, &st, SPTEST_S(20)), "the child hung");
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
	sp_pool_cleaner_stop();
	sp_pool_destroy(p);
}
END_TEST

/*
 * fork() while a cleanup's free_fn is running, and that free_fn uses
 * another pool (fi_p2) or releases a context with a deadline (the timer's
 * lock).  The fork's prepare handler waits for the cleanup; it deadlocked
 * once in each case: taking pool by pool (it held fi_p2's area locks while
 * waiting for fi_p1's cleanup), and running after the timer's prepare (it
 * held the timer lock while waiting for the cleaner).
 */
static sp_pool *fi_p1, *fi_p2;
static _Atomic int fi_in_free;
struct fi_obj {
	void *buf;
	sp_ctx *ctx;
};

static void fi_free(void *o, void *arg)
{
	(void)arg;
	struct fi_obj *x = o;
	atomic_store(&fi_in_free, 1);
	sptest_sleep_ns(SPTEST_MS(100)); /* the fork lands here */
	if (x->buf)
		sp_pool_put(fi_p2, x->buf);
	if (x->ctx)
		sp_ctx_release(x->ctx); /* disarms its deadline: the timer lock */
	free(x);
}

static void *fi_cleanup(void *arg)
{
	(void)arg;
	sp_pool_cleanup(fi_p1);
	return NULL;
}

static void *fi_fork(void *arg)
{
	(void)arg;
	pid_t pid = fork();
	if (pid == 0)
		_exit(0);
	int st = 0;
	if (pid > 0)
		sptest_wait_child(pid, &st, SPTEST_S(10));
	return NULL;
}

static void fi_fork_during_free(void)
{
	while (!atomic_load(&fi_in_free))
		sptest_sleep_ns(SPTEST_MS(1));
	pthread_t f;
	ck_assert_int_eq(pthread_create(&f, NULL, fi_fork, NULL), 0);
	ck_assert_msg(sptest_join_within(f, SPTEST_S(10), NULL), "fork() deadlocked against a cleanup");
}

START_TEST(test_pool_fork_during_free_fn)
{
#if SP_TSAN
	return; /* TSan reports jemalloc's own fork handlers ("double lock") */
#endif
	/* A free_fn that puts into another, newer pool, under a direct cleanup. */
	atomic_store(&fi_in_free, 0);
	fi_p1 = sp_pool_create(&(sp_pool_opts){ .free_fn = fi_free });
	fi_p2 = sp_pool_create(&(sp_pool_opts){ .size = 64 });
	ck_assert_ptr_nonnull(fi_p1);
	ck_assert_ptr_nonnull(fi_p2);
	struct fi_obj *x = calloc(1, sizeof *x);
	x->buf = sp_pool_get(fi_p2);
	sp_pool_put(fi_p1, x);
	sp_pool_cleanup(fi_p1); /* x to the victim: the next cleanup drops it */
	pthread_t c;
	ck_assert_int_eq(pthread_create(&c, NULL, fi_cleanup, NULL), 0);
	fi_fork_during_free();
	ck_assert(sptest_join_within(c, SPTEST_S(10), NULL));

	/* A free_fn that releases a context with a deadline, under the cleaner. */
	atomic_store(&fi_in_free, 0);
	x = calloc(1, sizeof *x);
	ck_assert_int_eq(sp_ctx_with_timeout(NULL, SPTEST_S(3600), &x->ctx), 0); /* timer handlers now */
	sp_pool_put(fi_p1, x);
	ck_assert_int_eq(sp_pool_cleaner_start(SPTEST_MS(10)), 0);
	fi_fork_during_free();
	sp_pool_cleaner_stop();
	sp_pool_destroy(fi_p1);
	sp_pool_destroy(fi_p2);
}
END_TEST

/*
 * cleanup_all does not hold the list of pools while a pool's free_fn runs:
 * creating and destroying other pools meanwhile does not wait for it, and a
 * destroy of the pool being cleaned waits for that cleanup (no use after
 * free: ASan).
 */
static _Atomic int ca_in_free, ca_release;
static void ca_free(void *o, void *arg)
{
	(void)arg;
	atomic_store(&ca_in_free, 1);
	int64_t end = sptest_now_ns() + sptest_scaled(SPTEST_S(10));
	while (!atomic_load(&ca_release) && sptest_now_ns() < end)
		sptest_sleep_ns(SPTEST_MS(1));
	free(o);
}

static void *ca_cleanup_all(void *arg)
{
	(void)arg;
	sp_pool_cleanup_all();
	return NULL;
}

static void *ca_destroy(void *arg)
{
	sp_pool_destroy(arg);
	return NULL;
}

START_TEST(test_pool_cleanup_all_does_not_block_create)
{
	atomic_store(&ca_in_free, 0);
	atomic_store(&ca_release, 0);
	sp_pool *slow = sp_pool_create(&(sp_pool_opts){ .free_fn = ca_free });
	ck_assert_ptr_nonnull(slow);
	sp_pool_put(slow, malloc(16));
	sp_pool_cleanup(slow); /* to the victim: the next cycle drops it */
	pthread_t c, d;
	ck_assert_int_eq(pthread_create(&c, NULL, ca_cleanup_all, NULL), 0);
	int64_t end = sptest_now_ns() + sptest_scaled(SPTEST_S(10));
	while (!atomic_load(&ca_in_free) && sptest_now_ns() < end)
		sptest_sleep_ns(SPTEST_MS(1));
	ck_assert(atomic_load(&ca_in_free));
	/* free_fn is stuck until released: create and destroy others meanwhile. */
	for (int i = 0; i < 10; i++) {
		sp_pool *q = sp_pool_create(&(sp_pool_opts){ .size = 32 });
		ck_assert_ptr_nonnull(q);
		sp_pool_put(q, sp_pool_get(q));
		sp_pool_destroy(q);
	}
	/* Destroying the pool being cleaned waits for its cycle. */
	ck_assert_int_eq(pthread_create(&d, NULL, ca_destroy, slow), 0);
	ck_assert(!sptest_join_within(d, SPTEST_MS(50), NULL));
	atomic_store(&ca_release, 1);
	ck_assert(sptest_join_within(c, SPTEST_S(10), NULL));
	ck_assert(sptest_join_within(d, SPTEST_S(10), NULL));
}
END_TEST

#if SP_ASAN
int __lsan_do_recoverable_leak_check(void) __attribute__((weak));
void __asan_poison_memory_region(void const volatile *addr, size_t size);
int __asan_address_is_poisoned(void const volatile *addr);

/* Objects cached by a live pool are not leaks (its areas are LSan roots). */
START_TEST(test_pool_lsan_live_pool)
{
	static sp_pool *live; /* global root, as a user's would be */
	sp_pool_opts o = { .new_fn = fork_new, .free_fn = fork_free };
	live = sp_pool_create(&o);
	ck_assert_ptr_nonnull(live);
	void *x[8];
	for (int i = 0; i < 8; i++)
		x[i] = sp_pool_get(live);
	for (int i = 0; i < 8; i++)
		sp_pool_put(live, x[i]);
	memset(x, 0, sizeof x); /* no copy left on the stack */
	if (__lsan_do_recoverable_leak_check)
		ck_assert_int_eq(__lsan_do_recoverable_leak_check(), 0);
	sp_pool_destroy(live);
}
END_TEST

/* A cached object of the built-in allocator is poisoned to its last byte. */
START_TEST(test_pool_asan_poison_tail)
{
	for (size_t size = 1; size <= 40; size++) {
		sp_pool_opts o = { .size = size };
		sp_pool *p = sp_pool_create(&o);
		unsigned char *x = sp_pool_get(p);
		ck_assert_ptr_nonnull(x);
		memset(x, 1, size);
		sp_pool_put(p, x);
		for (size_t i = 0; i < size; i++)
			ck_assert_msg(__asan_address_is_poisoned(x + i), "size %zu: byte %zu not poisoned", size, i);
		x = sp_pool_get(p); /* the same object back: usable again */
		for (size_t i = 0; i < size; i++)
			ck_assert(!__asan_address_is_poisoned(x + i));
		memset(x, 2, size);
		sp_pool_put(p, x);
		sp_pool_destroy(p);
	}
}
END_TEST

/* A use after Put is reported: ASan exits 1 (abort_on_error=0). */
START_TEST(test_pool_asan_use_after_put)
{
	sp_pool_opts o = { .size = 64 };
	sp_pool *p = sp_pool_create(&o);
	char *x = sp_pool_get(p);
	x[0] = 1;
	sp_pool_put(p, x);
	*(volatile char *)&x[10] = 2; /* poisoned: reported here */
	sp_pool_destroy(p);
}
END_TEST
#endif

static Suite *pool_suite(void)
{
	Suite *s = suite_create("pool");
	TCase *tc = tcase_create("go");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_pool_go_basic);
	tcase_add_test(tc, test_pool_go_new);
	tcase_add_test(tc, test_pool_go_gc);
	tcase_add_test(tc, test_pool_go_release);
	suite_add_tcase(s, tc);

	tc = tcase_create("concurrent");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_pool_stress);
	tcase_add_test(tc, test_pool_stress_small_cap);
	tcase_add_test(tc, test_pool_producer_consumer);
	tcase_add_test(tc, test_pool_flow);
	suite_add_tcase(s, tc);

	tc = tcase_create("api");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_pool_overflow);
	tcase_add_test(tc, test_pool_fresh_arrays);
	tcase_add_test(tc, test_pool_reset);
	tcase_add_test(tc, test_pool_bad_opts);
	tcase_add_test(tc, test_pool_cleaner);
	tcase_add_test(tc, test_pool_cleanup_all);
	tcase_add_test(tc, test_pool_stats);
	tcase_add_test(tc, test_pool_rss);
	tcase_add_test(tc, test_pool_destroy_with_objects_out);
	tcase_add_test(tc, test_pool_create_destroy_flat);
	tcase_add_test(tc, test_pool_fork_cleaner);
	tcase_add_test(tc, test_pool_fork_during_free_fn);
	tcase_add_test(tc, test_pool_cleanup_all_does_not_block_create);
#if SP_ASAN
	tcase_add_exit_test(tc, test_pool_asan_use_after_put, 1);
	tcase_add_test(tc, test_pool_lsan_live_pool);
	tcase_add_test(tc, test_pool_asan_poison_tail);
#endif
	suite_add_tcase(s, tc);
	return s;
}
SPTEST_SUITE(pool_suite)
