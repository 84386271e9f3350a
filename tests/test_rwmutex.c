/* tests/test_rwmutex.c - sp_rwmutex (sync/rwmutex.c): ports of Go's RWMutex tests and more. */
#include "sptest.h"
#include "common.h"
#include "syncpool/rwmutex.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if SP_TSAN || SP_ASAN
#define SCALE 8
#else
#define SCALE 1
#endif

static sp_rwmutex static_rw = SP_RWMUTEX_INIT;

START_TEST(test_rwmutex_zero_value)
{
	ck_assert_uint_eq(sizeof(sp_rwmutex), 32);
	sp_rwmutex rw = SP_RWMUTEX_INIT;
	for (int i = 0; i < 3; i++) { /* unbiased, then biased */
		sp_rwmutex_rlock(&rw);
		sp_rwmutex_runlock(&rw);
	}
	sp_rwmutex_lock(&rw);
	sp_rwmutex_unlock(&rw);
	sp_rwmutex_rlock(&static_rw);
	sp_rwmutex_runlock(&static_rw);
	sp_rwmutex *h = calloc(1, sizeof *h);
	ck_assert_ptr_nonnull(h);
	ck_assert(sp_rwmutex_trylock(h));
	sp_rwmutex_unlock(h);
	free(h);
}
END_TEST

START_TEST(test_rwmutex_try)
{
	sp_rwmutex rw = SP_RWMUTEX_INIT;
	for (int round = 0; round < 3; round++) { /* bias off, on, revoked */
		ck_assert(sp_rwmutex_tryrlock(&rw));
		ck_assert(sp_rwmutex_tryrlock(&rw)); /* second one goes through the counter */
		ck_assert(!sp_rwmutex_trylock(&rw));
		sp_rwmutex_runlock(&rw);
		ck_assert(!sp_rwmutex_trylock(&rw));
		sp_rwmutex_runlock(&rw);
		ck_assert(sp_rwmutex_trylock(&rw));
		ck_assert(!sp_rwmutex_tryrlock(&rw));
		ck_assert(!sp_rwmutex_trylock(&rw));
		sp_rwmutex_unlock(&rw);
	}
	/* A failed trylock against a biased reader leaves the lock usable. */
	sp_rwmutex_rlock(&rw);
	sp_rwmutex_runlock(&rw);
	sp_rwmutex_rlock(&rw);
	ck_assert(!sp_rwmutex_trylock(&rw));
	ck_assert(sp_rwmutex_tryrlock(&rw));
	sp_rwmutex_runlock(&rw);
	sp_rwmutex_runlock(&rw);
	sp_rwmutex_lock(&rw);
	sp_rwmutex_unlock(&rw);
}
END_TEST

/* ---------------------------------------------------------------- parallel readers */

struct par {
	sp_rwmutex rw;
	_Atomic int inside;
	int n;
};

static void *par_reader(void *arg)
{
	struct par *p = arg;
	sp_rwmutex_rlock(&p->rw);
	atomic_fetch_add(&p->inside, 1);
	/* All n readers must hold the read lock at once (bounded by the join timeout). */
	while (atomic_load(&p->inside) < p->n)
		sptest_sleep_ns(100000);
	sp_rwmutex_runlock(&p->rw);
	return NULL;
}

/* Go's TestParallelReaders. */
START_TEST(test_rwmutex_parallel_readers)
{
	static const int counts[] = { 1, 3, 4, 16 };
	for (unsigned k = 0; k < sizeof counts / sizeof counts[0]; k++) {
		struct par *p = calloc(1, sizeof *p);
		ck_assert_ptr_nonnull(p);
		p->n = counts[k];
		sptest_run_threads(p->n, par_reader, p, 0, SPTEST_S(10));
		ck_assert(sp_rwmutex_trylock(&p->rw));
		sp_rwmutex_unlock(&p->rw);
		free(p);
	}
}
END_TEST

/* ---------------------------------------------------------------- hammer */

struct hammer {
	sp_rwmutex rw;
	_Atomic int activity;
	long a, b;     /* plain: writers keep a == b; readers check it */
	long writes;   /* plain, under the write lock */
	int iters;
	int write_every;
};

static void hammer_reader(struct hammer *h)
{
	int n = atomic_fetch_add(&h->activity, 1);
	ck_assert_msg(n >= 0 && n < 10000, "reader saw activity %d", n);
	ck_assert_int_eq(h->a, h->b);
	for (int i = 0; i < 20; i++)
		sp_cpu_relax();
	atomic_fetch_sub(&h->activity, 1);
}

static void hammer_writer(struct hammer *h)
{
	int n = atomic_fetch_add(&h->activity, 10000);
	ck_assert_msg(n == 0, "writer saw activity %d", n);
	h->a++;
	for (int i = 0; i < 20; i++)
		sp_cpu_relax();
	h->b++;
	h->writes++;
	atomic_fetch_sub(&h->activity, 10000);
}

static void *hammer_fn(void *arg)
{
	struct hammer *h = arg;
	unsigned seed = (unsigned)(uintptr_t)&seed;
	for (int i = 0; i < h->iters; i++) {
		unsigned r = (unsigned)rand_r(&seed);
		if (r % (unsigned)h->write_every == 0) {
			if (r & 0x100000 && sp_rwmutex_trylock(&h->rw)) {
				hammer_writer(h);
			} else {
				sp_rwmutex_lock(&h->rw);
				hammer_writer(h);
			}
			sp_rwmutex_unlock(&h->rw);
		} else {
			if (r & 0x100000 && sp_rwmutex_tryrlock(&h->rw)) {
				hammer_reader(h);
			} else {
				sp_rwmutex_rlock(&h->rw);
				hammer_reader(h);
			}
			sp_rwmutex_runlock(&h->rw);
		}
	}
	return NULL;
}

static void hammer(int threads, int iters, int write_every)
{
	struct hammer *h = calloc(1, sizeof *h);
	ck_assert_ptr_nonnull(h);
	h->iters = iters;
	h->write_every = write_every;
	sptest_run_threads(threads, hammer_fn, h, 0, SPTEST_S(60));
	ck_assert_int_eq(h->a, h->writes);
	ck_assert_int_eq(h->b, h->writes);
	ck_assert_int_eq(atomic_load(&h->activity), 0);
	ck_assert(sp_rwmutex_trylock(&h->rw));
	sp_rwmutex_unlock(&h->rw);
	free(h);
}

/* Go's TestRWMutex (HammerRWMutex), with several read/write mixes. */
START_TEST(test_rwmutex_hammer)
{
	hammer(4, 10000 / SCALE, 2);
	hammer(10, 6000 / SCALE, 10);
	hammer(10, 15000 / SCALE, 100);
	hammer(8, 15000 / SCALE, 1000);
}
END_TEST

/* Oversubscription: 32 threads on few cores, exact counter under the write lock. */
START_TEST(test_rwmutex_oversubscribed)
{
	hammer(32, 3000 / SCALE, 4);
	hammer(32, 3000 / SCALE, 50);
}
END_TEST

/* ---------------------------------------------------------------- writer preference */

struct pref {
	sp_rwmutex rw;
	_Atomic int writer_state; /* 1 waiting, 2 inside, 3 done */
	_Atomic int reader_state; /* 1 waiting, 2 inside         */
	_Atomic int order;        /* who got in first after the writer */
};

static void *pref_writer(void *arg)
{
	struct pref *p = arg;
	atomic_store(&p->writer_state, 1);
	sp_rwmutex_lock(&p->rw);
	atomic_store(&p->writer_state, 2);
	sptest_sleep_ns(SPTEST_MS(10));
	ck_assert_int_eq(atomic_load(&p->reader_state), 1); /* reader still blocked */
	atomic_store(&p->writer_state, 3);
	sp_rwmutex_unlock(&p->rw);
	return NULL;
}

static void *pref_reader(void *arg)
{
	struct pref *p = arg;
	atomic_store(&p->reader_state, 1);
	sp_rwmutex_rlock(&p->rw);
	ck_assert_int_eq(atomic_load(&p->writer_state), 3); /* the writer went first */
	atomic_store(&p->reader_state, 2);
	sp_rwmutex_runlock(&p->rw);
	return NULL;
}

/*
 * A blocked writer stops new readers: rlock blocks, tryrlock fails, until the
 * writer has been in and out.  holds: how many read locks the first reader
 * takes (1: through the table once biased; 2: the second through the counter).
 */
static void writer_preference(int holds, bool biased)
{
	struct pref *p = calloc(1, sizeof *p);
	ck_assert_ptr_nonnull(p);
	if (biased) {
		sp_rwmutex_rlock(&p->rw); /* first read turns the bias on */
		sp_rwmutex_runlock(&p->rw);
	}
	for (int i = 0; i < holds; i++)
		sp_rwmutex_rlock(&p->rw);
	pthread_t w, r;
	ck_assert_int_eq(pthread_create(&w, NULL, pref_writer, p), 0);
	/*
	 * Until the writer has announced itself (WRITER in the state word: it
	 * holds the lock or waits for readers), new readers may still get in;
	 * a sleep is no proof of that on a slow machine: wait for the bit.
	 */
	int64_t end = sptest_now_ns() + sptest_scaled(SPTEST_S(5));
	while (!(__atomic_load_n(&p->rw.state_, __ATOMIC_SEQ_CST) & SP_RWMUTEX_WRITER_) &&
	       sptest_now_ns() < end)
		sptest_sleep_ns(100000);
	ck_assert_msg(__atomic_load_n(&p->rw.state_, __ATOMIC_SEQ_CST) & SP_RWMUTEX_WRITER_,
		      "the writer never announced itself");
	sptest_sleep_ns(SPTEST_MS(20));
	ck_assert_int_eq(atomic_load(&p->writer_state), 1); /* blocked by our read locks */
	ck_assert(!sp_rwmutex_tryrlock(&p->rw));
	ck_assert(!sp_rwmutex_trylock(&p->rw));
	ck_assert_int_eq(pthread_create(&r, NULL, pref_reader, p), 0);
	while (atomic_load(&p->reader_state) != 1)
		sptest_sleep_ns(100000);
	sptest_sleep_ns(SPTEST_MS(20));
	ck_assert_int_eq(atomic_load(&p->reader_state), 1); /* blocked behind the writer */
	for (int i = 0; i < holds; i++)
		sp_rwmutex_runlock(&p->rw);
	ck_assert(sptest_join_within(w, SPTEST_S(10), NULL));
	ck_assert(sptest_join_within(r, SPTEST_S(10), NULL));
	ck_assert_int_eq(atomic_load(&p->reader_state), 2);
	free(p);
}

START_TEST(test_rwmutex_writer_preference)
{
	writer_preference(1, false);
	writer_preference(1, true);
	writer_preference(2, true);
	writer_preference(3, false);
}
END_TEST

/* ---------------------------------------------------------------- cross-thread unlock */

static void *do_unlock(void *arg)
{
	sp_rwmutex_unlock(arg);
	return NULL;
}

static void *do_runlock(void *arg)
{
	sp_rwmutex_runlock(arg);
	return NULL;
}

static void *do_runlock2(void *arg)
{
	sp_rwmutex_runlock(arg);
	sp_rwmutex_runlock(arg);
	return NULL;
}

static void run_on_other_thread(void *(*fn)(void *), sp_rwmutex *rw)
{
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, fn, rw), 0);
	ck_assert(sptest_join_within(t, SPTEST_S(10), NULL));
}

START_TEST(test_rwmutex_unlock_other_thread)
{
	sp_rwmutex rw = SP_RWMUTEX_INIT;
	for (int i = 0; i < 20; i++) {
		sp_rwmutex_lock(&rw);
		run_on_other_thread(do_unlock, &rw);
		ck_assert(sp_rwmutex_tryrlock(&rw)); /* biased after the first round */
		run_on_other_thread(do_runlock, &rw);
		ck_assert(sp_rwmutex_trylock(&rw));
		sp_rwmutex_unlock(&rw);
		/* One read lock through the table, one through the counter, both released elsewhere. */
		sp_rwmutex_rlock(&rw);
		sp_rwmutex_rlock(&rw);
		run_on_other_thread(do_runlock2, &rw);
		ck_assert(sp_rwmutex_trylock(&rw));
		sp_rwmutex_unlock(&rw);
	}
}
END_TEST

/* Read locks handed between threads while writers run: tokens must balance. */
struct relay {
	sp_rwmutex rw;
	_Atomic int activity;
	int iters;
};

static void *relay_fn(void *arg)
{
	struct relay *r = arg;
	for (int i = 0; i < r->iters; i++) {
		if (i % 16 == 0) {
			sp_rwmutex_lock(&r->rw);
			ck_assert_int_eq(atomic_fetch_add(&r->activity, 10000), 0);
			atomic_fetch_sub(&r->activity, 10000);
			sp_rwmutex_unlock(&r->rw);
			continue;
		}
		sp_rwmutex_rlock(&r->rw);
		ck_assert_int_lt(atomic_fetch_add(&r->activity, 1), 10000);
		atomic_fetch_sub(&r->activity, 1);
		/* Release it from a fresh thread half of the time. */
		if (i % 2)
			run_on_other_thread(do_runlock, &r->rw);
		else
			sp_rwmutex_runlock(&r->rw);
	}
	return NULL;
}

START_TEST(test_rwmutex_runlock_relay)
{
	struct relay *r = calloc(1, sizeof *r);
	ck_assert_ptr_nonnull(r);
	r->iters = 800 / SCALE;
	sptest_run_threads(4, relay_fn, r, 0, SPTEST_S(60));
	ck_assert(sp_rwmutex_trylock(&r->rw));
	sp_rwmutex_unlock(&r->rw);
	free(r);
}
END_TEST


/* A read lock taken through the table and released by another thread leaves
 * a phantom slot: a writer must still get in, and the lock must stay usable. */
START_TEST(test_rwmutex_phantom_then_writer)
{
	sp_rwmutex rw = SP_RWMUTEX_INIT;
	sp_rwmutex_rlock(&rw); /* turns the bias on */
	sp_rwmutex_runlock(&rw);
	for (int i = 0; i < 10; i++) {
		sp_rwmutex_rlock(&rw);
		sp_rwmutex_rlock(&rw);
		run_on_other_thread(do_runlock, &rw); /* one release on our behalf... */
		ck_assert(!sp_rwmutex_trylock(&rw));  /* ...one read lock still held */
		sp_rwmutex_runlock(&rw);
		sp_rwmutex_lock(&rw); /* clears the phantom */
		sp_rwmutex_unlock(&rw);
		sptest_sleep_ns(SPTEST_MS(1)); /* let the bias come back */
	}
	sp_rwmutex_rlock(&rw);
	sp_rwmutex_runlock(&rw);
	ck_assert(sp_rwmutex_trylock(&rw));
	sp_rwmutex_unlock(&rw);
}
END_TEST

/* A thread exits holding a read lock; its table slot number is reused by new
 * threads; the lock is released later by the main thread. */
static void *rlock_and_exit(void *arg)
{
	sp_rwmutex_rlock(arg);
	return NULL;
}

static void *read_once(void *arg)
{
	sp_rwmutex_rlock(arg);
	sp_rwmutex_runlock(arg);
	return NULL;
}

START_TEST(test_rwmutex_holder_exits)
{
	sp_rwmutex rw = SP_RWMUTEX_INIT;
	sp_rwmutex_rlock(&rw);
	sp_rwmutex_runlock(&rw);
	for (int i = 0; i < 4; i++) {
		run_on_other_thread(rlock_and_exit, &rw);
		for (int k = 0; k < 8; k++)
			run_on_other_thread(read_once, &rw);
		ck_assert(!sp_rwmutex_trylock(&rw));
		sp_rwmutex_runlock(&rw);
		sp_rwmutex_lock(&rw);
		sp_rwmutex_unlock(&rw);
	}
}
END_TEST

/* More live threads than table lines: the extra ones read through the counter. */
struct crowd {
	sp_rwmutex rw;
	_Atomic int inside;
	_Atomic bool go;
	int n;
};

static void *crowd_reader(void *arg)
{
	struct crowd *c = arg;
	sp_rwmutex_rlock(&c->rw);
	atomic_fetch_add(&c->inside, 1);
	while (!atomic_load(&c->go))
		sptest_sleep_ns(SPTEST_MS(1));
	sp_rwmutex_runlock(&c->rw);
	return NULL;
}

static void *crowd_writer(void *arg)
{
	struct crowd *c = arg;
	sp_rwmutex_lock(&c->rw);
	ck_assert_int_eq(atomic_load(&c->inside), c->n); /* every reader came in first */
	atomic_store(&c->inside, -1);
	sp_rwmutex_unlock(&c->rw);
	return NULL;
}

START_TEST(test_rwmutex_crowd)
{
	struct crowd *c = calloc(1, sizeof *c);
	ck_assert_ptr_nonnull(c);
	c->n = 300;
	sp_rwmutex_rlock(&c->rw); /* bias on */
	sp_rwmutex_runlock(&c->rw);
	pthread_t *t = calloc((size_t)c->n, sizeof *t);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	for (int i = 0; i < c->n; i++)
		ck_assert_int_eq(pthread_create(&t[i], &attr, crowd_reader, c), 0);
	int64_t end = sptest_now_ns() + sptest_scaled(SPTEST_S(20));
	while (atomic_load(&c->inside) < c->n && sptest_now_ns() < end)
		sptest_sleep_ns(SPTEST_MS(1));
	ck_assert_int_eq(atomic_load(&c->inside), c->n);
	pthread_t w;
	ck_assert_int_eq(pthread_create(&w, NULL, crowd_writer, c), 0);
	sptest_sleep_ns(SPTEST_MS(10));
	ck_assert_int_eq(atomic_load(&c->inside), c->n); /* writer waits for all 300 */
	atomic_store(&c->go, true);
	for (int i = 0; i < c->n; i++)
		ck_assert(sptest_join_within(t[i], SPTEST_S(20), NULL));
	ck_assert(sptest_join_within(w, SPTEST_S(20), NULL));
	ck_assert_int_eq(atomic_load(&c->inside), -1);
	pthread_attr_destroy(&attr);
	free(t);
	free(c);
}
END_TEST


/* After a cross-thread runlock leaves the lock unlocked, the table holds
 * nothing for it: its memory can be reused for a fresh rwmutex. */
static void *lock_unlock(void *arg)
{
	sp_rwmutex_lock(arg);
	sp_rwmutex_unlock(arg);
	return NULL;
}

START_TEST(test_rwmutex_reuse_after_cross_runlock)
{
	sp_rwmutex *rw = calloc(1, sizeof *rw);
	ck_assert_ptr_nonnull(rw);
	for (int i = 0; i < 20; i++) {
		sp_rwmutex_rlock(rw); /* turns the bias on (first round) */
		sp_rwmutex_runlock(rw);
		sp_rwmutex_rlock(rw); /* through the table */
		run_on_other_thread(do_runlock, rw);
		/* Unlocked now: "free" it and start a new lock at the same address. */
		memset(rw, 0, sizeof *rw);
		sp_rwmutex_rlock(rw);
		sp_rwmutex_runlock(rw);
		pthread_t t;
		ck_assert_int_eq(pthread_create(&t, NULL, lock_unlock, rw), 0);
		ck_assert_msg(sptest_join_within(t, SPTEST_S(10), NULL), "writer hung on a reused rwmutex");
	}
	free(rw);
}
END_TEST

/*
 * Races that used to leave phantom slots in an unlocked rwmutex (a fresh
 * lock at the same address then inherited them: writers hung) or made
 * tryrlock fail with no writer anywhere.  Each round: the main thread
 * read-locks through its table slot, helpers race a cross-thread runlock of
 * it against a write trylock, a second cross-thread runlock or a tryrlock;
 * then the lock is reused as a new zero lock and must be clean.  Bounded:
 * ROUNDS rounds or RACE_MS, whichever comes first.
 */
enum { RACE_ROUNDS = 1000000, RACE_MS = 400, RACE_MIN_ROUNDS = 50 };

struct race {
	sp_rwmutex rw;
	_Atomic unsigned go, own, owned, done, stop;
	_Atomic long tryrlock_failures;
};

static void race_relax(unsigned *seed, unsigned span)
{
	unsigned n = (unsigned)rand_r(seed) % span;
	for (unsigned i = 0; i < n; i++)
		sp_cpu_relax();
}

/* Waits for round r (or the end); returns false at the end. */
static bool race_round(_Atomic unsigned *word, unsigned r, struct race *x)
{
	while (atomic_load(word) < r) {
		if (atomic_load(&x->stop))
			return false;
		sched_yield();
	}
	return !atomic_load(&x->stop);
}

static void race_wait_done(struct race *x, unsigned n)
{
	while (atomic_load(&x->done) != n)
		sched_yield();
}

static void *race_runlocker(void *arg)
{
	struct race *x = arg;
	unsigned seed = (unsigned)(uintptr_t)&seed;
	for (unsigned r = 1; race_round(&x->go, r, x); r++) {
		race_relax(&seed, 48);
		sp_rwmutex_runlock(&x->rw);
		atomic_fetch_add(&x->done, 1);
	}
	return NULL;
}

static void *race_slow_runlocker(void *arg)
{
	struct race *x = arg;
	unsigned seed = (unsigned)(uintptr_t)&seed;
	for (unsigned r = 1; race_round(&x->go, r, x); r++) {
		race_relax(&seed, 3000);
		sp_rwmutex_runlock(&x->rw);
		atomic_fetch_add(&x->done, 1);
	}
	return NULL;
}

static void *race_trylocker(void *arg)
{
	struct race *x = arg;
	unsigned seed = (unsigned)(uintptr_t)&seed;
	for (unsigned r = 1; race_round(&x->go, r, x); r++) {
		race_relax(&seed, 48);
		if (sp_rwmutex_trylock(&x->rw))
			sp_rwmutex_unlock(&x->rw);
		atomic_fetch_add(&x->done, 1);
	}
	return NULL;
}

static void *race_tryreader(void *arg)
{
	struct race *x = arg;
	unsigned seed = (unsigned)(uintptr_t)&seed;
	for (unsigned r = 1; race_round(&x->go, r, x); r++) {
		race_relax(&seed, 32);
		if (sp_rwmutex_tryrlock(&x->rw))
			sp_rwmutex_runlock(&x->rw);
		else
			atomic_fetch_add(&x->tryrlock_failures, 1);
		atomic_fetch_add(&x->done, 1);
	}
	return NULL;
}

/* Takes a second table read lock each round (released by a runlocker). */
static void *race_owner(void *arg)
{
	struct race *x = arg;
	for (unsigned r = 1; race_round(&x->own, r, x); r++) {
		sp_rwmutex_rlock(&x->rw);
		atomic_store(&x->owned, r);
	}
	return NULL;
}

/* The lock is unlocked: reuse its memory as a new zero lock, which must be clean. */
static void race_check_reuse(struct race *x, unsigned r)
{
	memset(&x->rw, 0, sizeof x->rw);
	sp_rwmutex_rlock(&x->rw);
	sp_rwmutex_runlock(&x->rw);
	ck_assert_msg(sp_rwmutex_trylock(&x->rw),
		      "round %u: fresh rwmutex not write-lockable (stale phantom slot), state %#llx", r,
		      (unsigned long long)x->rw.state_);
	sp_rwmutex_unlock(&x->rw);
}

/*
 * Widens the race windows: once WIDEN threads have had table slots at the
 * same time, every table scan covers WIDEN thread numbers (10-20x longer).
 */
enum { WIDEN = 192 };
struct widen {
	sp_rwmutex rw;
	_Atomic int in;
};

static void *widen_fn(void *arg)
{
	struct widen *w = arg;
	sp_rwmutex_rlock(&w->rw); /* takes a thread number and a slot */
	atomic_fetch_add(&w->in, 1);
	while (atomic_load(&w->in) < WIDEN)
		sched_yield();
	sp_rwmutex_runlock(&w->rw);
	return NULL;
}

static void race_widen(void)
{
	struct widen *w = calloc(1, sizeof *w);
	ck_assert_ptr_nonnull(w);
	sp_rwmutex_rlock(&w->rw);
	sp_rwmutex_runlock(&w->rw); /* bias on */
	sptest_run_threads(WIDEN, widen_fn, w, 0, SPTEST_S(20));
	free(w);
}

static void race_run(int nthreads, void *(*fns[])(void *), bool two_slots, bool reuse)
{
	race_widen();
	struct race *x = calloc(1, sizeof *x);
	ck_assert_ptr_nonnull(x);
	pthread_t t[4];
	for (int i = 0; i < nthreads; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, fns[i], x), 0);
	unsigned helpers = (unsigned)nthreads - (two_slots ? 1u : 0u);
	int64_t end = sptest_now_ns() + SPTEST_MS(RACE_MS);
	unsigned r;
	/* At least RACE_MIN_ROUNDS, however slow the machine (valgrind: a few per ms). */
	for (r = 1; r <= RACE_ROUNDS / SCALE && (r <= RACE_MIN_ROUNDS || sptest_now_ns() < end); r++) {
		if (reuse) {
			memset(&x->rw, 0, sizeof x->rw);
			sp_rwmutex_rlock(&x->rw);
			sp_rwmutex_runlock(&x->rw); /* bias on */
		}
		sp_rwmutex_rlock(&x->rw); /* through the main thread's slot */
		if (two_slots) {
			atomic_store(&x->own, r);
			while (atomic_load(&x->owned) != r)
				sched_yield();
		}
		atomic_store(&x->done, 0);
		atomic_store(&x->go, r);
		race_wait_done(x, helpers);
		if (reuse)
			race_check_reuse(x, r);
	}
	atomic_store(&x->stop, 1);
	for (int i = 0; i < nthreads; i++)
		ck_assert(sptest_join_within(t[i], SPTEST_S(10), NULL));
	ck_assert_int_eq(x->tryrlock_failures, 0);
	if (!reuse) {
		ck_assert(sp_rwmutex_trylock(&x->rw));
		sp_rwmutex_unlock(&x->rw);
		race_check_reuse(x, r);
	}
	ck_assert_uint_gt(r, RACE_MIN_ROUNDS);
	free(x);
}

/* A cross-thread runlock against a failing write trylock. */
START_TEST(test_rwmutex_phantom_vs_trylock)
{
	void *(*fns[])(void *) = { race_runlocker, race_trylocker };
	race_run(2, fns, false, true);
}
END_TEST

/* Two cross-thread runlocks (of two table read locks), no writer at all. */
START_TEST(test_rwmutex_phantom_two_cleaners)
{
	void *(*fns[])(void *) = { race_owner, race_runlocker, race_slow_runlocker };
	race_run(3, fns, true, true);
}
END_TEST

/* No writer in the program: tryrlock never fails, whatever the phantom cleanup does. */
START_TEST(test_rwmutex_tryrlock_no_writer)
{
	void *(*fns[])(void *) = { race_runlocker, race_tryreader };
	race_run(2, fns, false, false);
}
END_TEST

/* ---------------------------------------------------------------- many locks */

enum { NLOCKS = 1000 };
struct many {
	sp_rwmutex rw[NLOCKS];
	long a[NLOCKS], b[NLOCKS];
	_Atomic long writes;
	int iters;
};

static void *many_fn(void *arg)
{
	struct many *m = arg;
	unsigned seed = (unsigned)(uintptr_t)&seed;
	long writes = 0;
	for (int i = 0; i < m->iters; i++) {
		unsigned r = (unsigned)rand_r(&seed);
		unsigned k = r % NLOCKS, k2 = (r >> 10) % NLOCKS;
		if ((r >> 20) % 8 == 0) {
			sp_rwmutex_lock(&m->rw[k]);
			m->a[k]++;
			m->b[k]++;
			sp_rwmutex_unlock(&m->rw[k]);
			writes++;
		} else {
			/* Two read locks at once: their table slots may collide. */
			sp_rwmutex_rlock(&m->rw[k]);
			if (k2 != k)
				sp_rwmutex_rlock(&m->rw[k2]);
			ck_assert_int_eq(m->a[k], m->b[k]);
			ck_assert_int_eq(m->a[k2], m->b[k2]);
			if (k2 != k)
				sp_rwmutex_runlock(&m->rw[k2]);
			sp_rwmutex_runlock(&m->rw[k]);
		}
	}
	atomic_fetch_add(&m->writes, writes);
	return NULL;
}

START_TEST(test_rwmutex_many_locks)
{
	struct many *m = calloc(1, sizeof *m);
	ck_assert_ptr_nonnull(m);
	m->iters = 100000 / SCALE;
	sptest_run_threads(4, many_fn, m, 0, SPTEST_S(60));
	long total = 0;
	for (int i = 0; i < NLOCKS; i++) {
		ck_assert(sp_rwmutex_trylock(&m->rw[i]));
		total += m->a[i];
		sp_rwmutex_unlock(&m->rw[i]);
	}
	ck_assert_int_eq(total, atomic_load(&m->writes));
	free(m);
}
END_TEST

/* ---------------------------------------------------------------- misuse */

START_TEST(test_rwmutex_misuse_runlock)
{
	sp_rwmutex rw = SP_RWMUTEX_INIT;
	sp_rwmutex_runlock(&rw);
}
END_TEST

START_TEST(test_rwmutex_misuse_runlock2)
{
	sp_rwmutex rw = SP_RWMUTEX_INIT;
	sp_rwmutex_rlock(&rw);
	sp_rwmutex_runlock(&rw);
	sp_rwmutex_rlock(&rw); /* biased now: through the table */
	sp_rwmutex_runlock(&rw);
	sp_rwmutex_runlock(&rw);
}
END_TEST

START_TEST(test_rwmutex_misuse_runlock_locked)
{
	sp_rwmutex rw = SP_RWMUTEX_INIT;
	sp_rwmutex_lock(&rw);
	sp_rwmutex_runlock(&rw);
}
END_TEST

START_TEST(test_rwmutex_misuse_unlock)
{
	sp_rwmutex rw = SP_RWMUTEX_INIT;
	sp_rwmutex_unlock(&rw);
}
END_TEST

START_TEST(test_rwmutex_misuse_unlock2)
{
	sp_rwmutex rw = SP_RWMUTEX_INIT;
	sp_rwmutex_lock(&rw);
	sp_rwmutex_unlock(&rw);
	sp_rwmutex_unlock(&rw);
}
END_TEST

START_TEST(test_rwmutex_misuse_unlock_rlocked)
{
	sp_rwmutex rw = SP_RWMUTEX_INIT;
	sp_rwmutex_rlock(&rw);
	sp_rwmutex_unlock(&rw);
}
END_TEST

static Suite *rwmutex_suite(void)
{
	Suite *s = suite_create("rwmutex");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_rwmutex_zero_value);
	tcase_add_test(tc, test_rwmutex_try);
	tcase_add_test(tc, test_rwmutex_parallel_readers);
	tcase_add_test(tc, test_rwmutex_hammer);
	tcase_add_test(tc, test_rwmutex_oversubscribed);
	tcase_add_test(tc, test_rwmutex_writer_preference);
	tcase_add_test(tc, test_rwmutex_unlock_other_thread);
	tcase_add_test(tc, test_rwmutex_runlock_relay);
	tcase_add_test(tc, test_rwmutex_phantom_then_writer);
	tcase_add_test(tc, test_rwmutex_holder_exits);
	tcase_add_test(tc, test_rwmutex_crowd);
	tcase_add_test(tc, test_rwmutex_reuse_after_cross_runlock);
	tcase_add_test(tc, test_rwmutex_phantom_vs_trylock);
	tcase_add_test(tc, test_rwmutex_phantom_two_cleaners);
	tcase_add_test(tc, test_rwmutex_tryrlock_no_writer);
	tcase_add_test(tc, test_rwmutex_many_locks);
	suite_add_tcase(s, tc);

	TCase *misuse = tcase_create("misuse");
	tcase_set_timeout(misuse, 10);
	tcase_add_test_raise_signal(misuse, test_rwmutex_misuse_runlock, SIGABRT);
	tcase_add_test_raise_signal(misuse, test_rwmutex_misuse_runlock2, SIGABRT);
	tcase_add_test_raise_signal(misuse, test_rwmutex_misuse_runlock_locked, SIGABRT);
	tcase_add_test_raise_signal(misuse, test_rwmutex_misuse_unlock, SIGABRT);
	tcase_add_test_raise_signal(misuse, test_rwmutex_misuse_unlock2, SIGABRT);
	tcase_add_test_raise_signal(misuse, test_rwmutex_misuse_unlock_rlocked, SIGABRT);
	suite_add_tcase(s, misuse);
	return s;
}
SPTEST_SUITE(rwmutex_suite)
