/*
 * bench/bench_flight.c - singleflight Do.
 *
 * Groups (syncpool against "mutex_map", the dedup a C programmer writes
 * first: one pthread mutex over a chained hash map, a malloc'd call record
 * with its own condition variable per call - Go's singleflight design in C):
 *
 *   flight_distinct_keys  Do+release cycling through 1024 distinct keys, fn
 *                         returns at once (the cost of the machinery itself);
 *                         threads 1, 2.  Go's singleflight: 97.5 ns/op and one
 *                         allocation per call at 1 thread (ANCHORS.md).
 *   flight_hot_key        8 threads on one key, fn returns at once.
 *   flight_cacheload      the cache-fill pattern: fn waits 10 us (as a load
 *                         would, sleeping), 32 threads on 16 keys.  Counters:
 *                         calls_per_fn_run (how much was deduplicated) and
 *                         allocs_per_call (heap allocations per Do).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

#include "flight_internal.h"
#include "spbench.h"
#include "syncpool/flight.h"

#define NKEYS 1024
#define KEYLEN 16
static char keys[NKEYS][KEYLEN];
static pthread_once_t keys_once = PTHREAD_ONCE_INIT;

static void keys_init(void)
{
	for (int i = 0; i < NKEYS; i++) {
		char buf[32];
		snprintf(buf, sizeof buf, "user:%010d:", i * 7919);
		memcpy(keys[i], buf, KEYLEN);
	}
}

/* ------------------------------------------------------------ mutex_map baseline */

struct mm_call {
	struct mm_call *next;
	uint64_t hash;
	size_t keylen;
	pthread_cond_t cv;
	bool done;
	int waiters; /* joiners still to read the result                 */
	void *val;
	int err;
	int dups;
	char key[]; /* copied */
};

#define MM_BUCKETS 4096
struct mm {
	pthread_mutex_t mu;
	struct mm_call *b[MM_BUCKETS];
	_Atomic uint64_t allocs;
};

static uint64_t fnv1a(const void *k, size_t n)
{
	const unsigned char *p = k;
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

static int mm_do(struct mm *m, const void *key, size_t n, sp_flight_fn fn, void *arg, void **val,
		 bool *shared)
{
	uint64_t h = fnv1a(key, n);
	struct mm_call **bp = &m->b[h % MM_BUCKETS], *c;
	pthread_mutex_lock(&m->mu);
	for (c = *bp; c; c = c->next)
		if (c->hash == h && c->keylen == n && memcmp(c->key, key, n) == 0)
			break;
	if (c) {
		c->dups++;
		c->waiters++;
		while (!c->done)
			pthread_cond_wait(&c->cv, &m->mu);
		*val = c->val;
		int err = c->err;
		*shared = true;
		if (--c->waiters == 0) {
			pthread_cond_destroy(&c->cv);
			free(c);
		}
		pthread_mutex_unlock(&m->mu);
		return err;
	}
	c = malloc(sizeof *c + n);
	atomic_fetch_add_explicit(&m->allocs, 1, memory_order_relaxed);
	c->hash = h;
	c->keylen = n;
	memcpy(c->key, key, n);
	pthread_cond_init(&c->cv, NULL);
	c->done = false;
	c->waiters = 0;
	c->dups = 0;
	c->next = *bp;
	*bp = c;
	pthread_mutex_unlock(&m->mu);

	void *v = NULL;
	int err = fn(arg, &v);

	pthread_mutex_lock(&m->mu);
	for (struct mm_call **pp = bp; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	c->val = v;
	c->err = err;
	c->done = true;
	*shared = c->dups > 0;
	if (c->waiters)
		pthread_cond_broadcast(&c->cv);
	else {
		pthread_cond_destroy(&c->cv);
		free(c);
	}
	pthread_mutex_unlock(&m->mu);
	*val = v;
	return err;
}

/* ------------------------------------------------------------ the calls */

static int fn_instant(void *arg, void **val)
{
	*val = arg;
	return 0;
}

static _Atomic uint64_t fn_runs;

static int fn_load(void *arg, void **val)
{
	atomic_fetch_add_explicit(&fn_runs, 1, memory_order_relaxed);
	struct timespec ts = { 0, 10000 }; /* 10 us: a cache load waiting on I/O */
	while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR)
		;
	*val = arg;
	return 0;
}

static sp_flight *grp;
static struct mm *mmap_;
static uint64_t allocs0;

static void setup(spb_state *st, bool ours)
{
	pthread_once(&keys_once, keys_init);
	if (spb_thread_index(st) != 0)
		return;
	atomic_store(&fn_runs, 0);
	if (ours) {
		grp = sp_flight_create(NULL);
		if (!grp) {
			spb_skip_with_error(st, "sp_flight_create failed");
			return;
		}
		/* Warm the record pools: what is measured is the steady state. */
		for (int i = 0; i < 2 * NKEYS; i++) {
			sp_flight_result r;
			sp_flight_do(grp, keys[i % NKEYS], KEYLEN, fn_instant, NULL, NULL, &r);
			sp_flight_result_release(grp, &r);
		}
		allocs0 = sp_flight_stat_allocs(grp);
	} else {
		mmap_ = calloc(1, sizeof *mmap_);
		pthread_mutex_init(&mmap_->mu, NULL);
		allocs0 = 0;
	}
}

static void teardown(spb_state *st, bool ours, bool report)
{
	if (spb_thread_index(st) != 0)
		return;
	double calls = (double)spb_iterations(st) * spb_threads(st);
	uint64_t allocs = ours ? sp_flight_stat_allocs(grp) - allocs0 : atomic_load(&mmap_->allocs);
	if (report) {
		uint64_t runs = atomic_load(&fn_runs);
		spb_counter(st, "calls_per_fn_run", runs ? calls / (double)runs : 0, SPB_COUNTER_DEFAULT);
		spb_counter(st, "allocs_per_call", calls > 0 ? (double)allocs / calls : 0,
			    SPB_COUNTER_DEFAULT);
	} else {
		spb_counter(st, "allocs_per_call", calls > 0 ? (double)allocs / calls : 0,
			    SPB_COUNTER_DEFAULT);
	}
	if (ours) {
		sp_flight_destroy(grp);
		grp = NULL;
	} else {
		pthread_mutex_destroy(&mmap_->mu);
		free(mmap_);
		mmap_ = NULL;
	}
}

/* ------------------------------------------------------------ distinct keys */

static void bm_distinct_ours(spb_state *st)
{
	setup(st, true);
	unsigned i = (unsigned)spb_thread_index(st) * (NKEYS / 2 + 1);
	SPB_LOOP(st)
	{
		sp_flight_result r;
		const char *k = keys[i++ % NKEYS];
		sp_flight_do(grp, k, KEYLEN, fn_instant, NULL, NULL, &r);
		spb_do_not_optimize(r.val);
		sp_flight_result_release(grp, &r);
	}
	spb_set_items_processed(st, spb_iterations(st));
	if (spb_thread_index(st) == 0)
		spb_set_label(st, "Go singleflight Do: 97.5 ns/op t1, 116 t2, 1 alloc/op (ANCHORS.md)");
	teardown(st, true, false);
}
SPB_REGISTER(flight_distinct_ours, .group = "flight_distinct_keys", .impl = "syncpool",
	     .fn = bm_distinct_ours, .threads = { 1, 2 });

static void bm_distinct_mm(spb_state *st)
{
	setup(st, false);
	unsigned i = (unsigned)spb_thread_index(st) * (NKEYS / 2 + 1);
	SPB_LOOP(st)
	{
		void *v;
		bool shared;
		mm_do(mmap_, keys[i++ % NKEYS], KEYLEN, fn_instant, NULL, &v, &shared);
		spb_do_not_optimize(v);
	}
	spb_set_items_processed(st, spb_iterations(st));
	teardown(st, false, false);
}
SPB_REGISTER(flight_distinct_mm, .group = "flight_distinct_keys", .impl = "mutex_map",
	     .fn = bm_distinct_mm, .threads = { 1, 2 });

/* ------------------------------------------------------------ one hot key */

static void bm_hot_ours(spb_state *st)
{
	setup(st, true);
	SPB_LOOP(st)
	{
		sp_flight_result r;
		sp_flight_do(grp, "hot", 3, fn_instant, NULL, NULL, &r);
		spb_do_not_optimize(r.val);
		sp_flight_result_release(grp, &r);
	}
	spb_set_items_processed(st, spb_iterations(st));
	teardown(st, true, false);
}
SPB_REGISTER(flight_hot_ours, .group = "flight_hot_key", .impl = "syncpool", .fn = bm_hot_ours,
	     .threads = { 8 });

static void bm_hot_mm(spb_state *st)
{
	setup(st, false);
	SPB_LOOP(st)
	{
		void *v;
		bool shared;
		mm_do(mmap_, "hot", 3, fn_instant, NULL, &v, &shared);
		spb_do_not_optimize(v);
	}
	spb_set_items_processed(st, spb_iterations(st));
	teardown(st, false, false);
}
SPB_REGISTER(flight_hot_mm, .group = "flight_hot_key", .impl = "mutex_map", .fn = bm_hot_mm,
	     .threads = { 8 });

/* ------------------------------------------------------------ cache load */

#define LOAD_KEYS 16

static void bm_load(spb_state *st, bool ours)
{
	/* Sleep 10 us, not the default 50 us timer slack on top. */
	int slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
	prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0);
	setup(st, ours);
	if (spb_thread_index(st) == 0)
		atomic_store(&fn_runs, 0); /* not the warm-up's */
	unsigned i = (unsigned)spb_thread_index(st) * 5;
	while (spb_keep_running(st)) {
		const char *k = keys[i++ % LOAD_KEYS];
		if (ours) {
			sp_flight_result r;
			sp_flight_do(grp, k, KEYLEN, fn_load, NULL, NULL, &r);
			spb_do_not_optimize(r.val);
			sp_flight_result_release(grp, &r);
		} else {
			void *v;
			bool shared;
			mm_do(mmap_, k, KEYLEN, fn_load, NULL, &v, &shared);
			spb_do_not_optimize(v);
		}
	}
	spb_set_items_processed(st, spb_iterations(st));
	teardown(st, ours, true);
	if (slack > 0)
		prctl(PR_SET_TIMERSLACK, (unsigned long)slack, 0, 0, 0);
}

static void bm_load_ours(spb_state *st) { bm_load(st, true); }
static void bm_load_mm(spb_state *st) { bm_load(st, false); }
SPB_REGISTER(flight_load_ours, .group = "flight_cacheload", .impl = "syncpool", .fn = bm_load_ours,
	     .threads = { 32 });
SPB_REGISTER(flight_load_mm, .group = "flight_cacheload", .impl = "mutex_map", .fn = bm_load_mm,
	     .threads = { 32 });
