/*
 * examples/contention.c - a lockhammer-style contention tool for syncpool's
 * locks and their peers, written with the benchmark shim (bench/spbench.h).
 *
 * Every thread loops: take the lock (exclusive, or shared for the read part
 * of a reader/writer mix), spin a critical section that also updates a word
 * of shared data, release, spin a parallel section.  google-benchmark (through
 * the shim) picks the iteration count, runs the threads and times them; this
 * program adds what lockhammer reports beside the throughput: how evenly the
 * lock was shared.
 *
 * Fairness.  google-benchmark gives every thread the same number of
 * iterations, so counts at the end are equal by construction.  The spread is
 * therefore measured over the stretch in which all threads were competing:
 * from the common start until the first thread finished its share.  At that
 * moment every thread notes how many acquisitions it had made; max/min and
 * the coefficient of variation (stddev/mean) of those counts are the fairness
 * figures (1.00 and 0.00 are perfectly even).
 *
 * Checks (always on, cheap: plain loads and stores, no extra atomic RMW):
 * an exclusive holder marks a flag and finds it clear, a reader finds it
 * clear, and the shared word - read-modify-written without atomics inside
 * the critical section - must end equal to the number of exclusive
 * acquisitions (a broken lock loses updates).  --test runs a tiny
 * configuration and verifies all of that.
 *
 *	contention --lock sp_mutex,pthread_mutex --threads 1,2,8 --cs 200ns --ps 1us
 *	contention --lock sp_rwmutex,pthread_rwlock --write-ratio 10 --threads 4
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ck_rwlock.h>
#include <ck_spinlock.h>

#include "spbench.h"
#include "syncpool/mutex.h"
#include "syncpool/rwmutex.h"

#define MAX_THREADS 1024
#define MAX_LOCKS 16
#define LINE 128

/* ------------------------------------------------------------- the locks */

/* One lock of any kind, alone on its cache lines. */
typedef union any_lock {
	sp_mutex spm;
	sp_rwmutex sprw;
	pthread_mutex_t ptm;
	pthread_rwlock_t ptrw;
	pthread_spinlock_t pts;
	ck_spinlock_fas_t fas;
	ck_spinlock_ticket_t ticket;
	ck_spinlock_mcs_t mcs;
	ck_rwlock_t ckrw;
} any_lock;

/* Per-thread lock context (the MCS queue node). */
typedef struct lock_tctx {
	ck_spinlock_mcs_context_t mcs;
} lock_tctx;

typedef struct lock_ops {
	const char *name;
	const char *what;
	bool rw;        /* has a shared (read) mode                     */
	bool exclusive; /* writers exclude each other (false: "none")   */
	bool spins;     /* waits by spinning only, never sleeps        */
	void (*init)(any_lock *l);
	void (*fini)(any_lock *l);
	void (*lock)(any_lock *l, lock_tctx *t);
	void (*unlock)(any_lock *l, lock_tctx *t);
	void (*rlock)(any_lock *l);
	void (*runlock)(any_lock *l);
} lock_ops;

static void nop_init(any_lock *l) { (void)l; }
static void nop_lock(any_lock *l, lock_tctx *t) { (void)l; (void)t; }
static void nop_r(any_lock *l) { (void)l; }

static void spm_init(any_lock *l) { l->spm = (sp_mutex)SP_MUTEX_INIT; }
static void spm_lock(any_lock *l, lock_tctx *t) { (void)t; sp_mutex_lock(&l->spm); }
static void spm_unlock(any_lock *l, lock_tctx *t) { (void)t; sp_mutex_unlock(&l->spm); }

static void sprw_init(any_lock *l) { l->sprw = (sp_rwmutex)SP_RWMUTEX_INIT; }
static void sprw_lock(any_lock *l, lock_tctx *t) { (void)t; sp_rwmutex_lock(&l->sprw); }
static void sprw_unlock(any_lock *l, lock_tctx *t) { (void)t; sp_rwmutex_unlock(&l->sprw); }
static void sprw_rlock(any_lock *l) { sp_rwmutex_rlock(&l->sprw); }
static void sprw_runlock(any_lock *l) { sp_rwmutex_runlock(&l->sprw); }

static void ptm_init(any_lock *l) { pthread_mutex_init(&l->ptm, NULL); }
static void ptm_fini(any_lock *l) { pthread_mutex_destroy(&l->ptm); }
static void ptm_lock(any_lock *l, lock_tctx *t) { (void)t; pthread_mutex_lock(&l->ptm); }
static void ptm_unlock(any_lock *l, lock_tctx *t) { (void)t; pthread_mutex_unlock(&l->ptm); }

static void pta_init(any_lock *l)
{
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP);
	pthread_mutex_init(&l->ptm, &a);
	pthread_mutexattr_destroy(&a);
}

static void ptrw_init(any_lock *l) { pthread_rwlock_init(&l->ptrw, NULL); }
static void ptrw_fini(any_lock *l) { pthread_rwlock_destroy(&l->ptrw); }
static void ptrw_lock(any_lock *l, lock_tctx *t) { (void)t; pthread_rwlock_wrlock(&l->ptrw); }
static void ptrw_unlock(any_lock *l, lock_tctx *t) { (void)t; pthread_rwlock_unlock(&l->ptrw); }
static void ptrw_rlock(any_lock *l) { pthread_rwlock_rdlock(&l->ptrw); }
static void ptrw_runlock(any_lock *l) { pthread_rwlock_unlock(&l->ptrw); }

static void pts_init(any_lock *l) { pthread_spin_init(&l->pts, PTHREAD_PROCESS_PRIVATE); }
static void pts_fini(any_lock *l) { pthread_spin_destroy(&l->pts); }
static void pts_lock(any_lock *l, lock_tctx *t) { (void)t; pthread_spin_lock(&l->pts); }
static void pts_unlock(any_lock *l, lock_tctx *t) { (void)t; pthread_spin_unlock(&l->pts); }

static void fas_init(any_lock *l) { ck_spinlock_fas_init(&l->fas); }
static void fas_lock(any_lock *l, lock_tctx *t) { (void)t; ck_spinlock_fas_lock(&l->fas); }
static void fas_unlock(any_lock *l, lock_tctx *t) { (void)t; ck_spinlock_fas_unlock(&l->fas); }

static void tkt_init(any_lock *l) { ck_spinlock_ticket_init(&l->ticket); }
static void tkt_lock(any_lock *l, lock_tctx *t) { (void)t; ck_spinlock_ticket_lock(&l->ticket); }
static void tkt_unlock(any_lock *l, lock_tctx *t) { (void)t; ck_spinlock_ticket_unlock(&l->ticket); }

static void mcs_init(any_lock *l) { ck_spinlock_mcs_init(&l->mcs); }
static void mcs_lock(any_lock *l, lock_tctx *t) { ck_spinlock_mcs_lock(&l->mcs, &t->mcs); }
static void mcs_unlock(any_lock *l, lock_tctx *t) { ck_spinlock_mcs_unlock(&l->mcs, &t->mcs); }

static void ckrw_init(any_lock *l) { ck_rwlock_init(&l->ckrw); }
static void ckrw_lock(any_lock *l, lock_tctx *t) { (void)t; ck_rwlock_write_lock(&l->ckrw); }
static void ckrw_unlock(any_lock *l, lock_tctx *t) { (void)t; ck_rwlock_write_unlock(&l->ckrw); }
static void ckrw_rlock(any_lock *l) { ck_rwlock_read_lock(&l->ckrw); }
static void ckrw_runlock(any_lock *l) { ck_rwlock_read_unlock(&l->ckrw); }

/* The table's order is the order of "all" and of --help. */
static const lock_ops LOCKS[] = {
	{ "sp_mutex", "syncpool mutex (Go's sync.Mutex: spin, then futex; starvation mode)",
	  false, true, false, spm_init, nop_init, spm_lock, spm_unlock, NULL, NULL },
	{ "sp_rwmutex", "syncpool reader/writer lock (Go's RWMutex + BRAVO reader bias)",
	  true, true, false, sprw_init, nop_init, sprw_lock, sprw_unlock, sprw_rlock, sprw_runlock },
	{ "pthread_mutex", "glibc pthread_mutex_t, default type",
	  false, true, false, ptm_init, ptm_fini, ptm_lock, ptm_unlock, NULL, NULL },
	{ "pthread_adaptive", "glibc pthread_mutex_t, PTHREAD_MUTEX_ADAPTIVE_NP (spins first)",
	  false, true, false, pta_init, ptm_fini, ptm_lock, ptm_unlock, NULL, NULL },
	{ "pthread_rwlock", "glibc pthread_rwlock_t, default (reader-preferring)",
	  true, true, false, ptrw_init, ptrw_fini, ptrw_lock, ptrw_unlock, ptrw_rlock, ptrw_runlock },
	{ "pthread_spin", "glibc pthread_spinlock_t (test-and-set, never sleeps)",
	  false, true, true, pts_init, pts_fini, pts_lock, pts_unlock, NULL, NULL },
	{ "ck_spinlock", "Concurrency Kit fetch-and-store spinlock (never sleeps)",
	  false, true, true, fas_init, nop_init, fas_lock, fas_unlock, NULL, NULL },
	{ "ck_ticket", "Concurrency Kit ticket spinlock (FIFO, never sleeps)",
	  false, true, true, tkt_init, nop_init, tkt_lock, tkt_unlock, NULL, NULL },
	{ "ck_mcs", "Concurrency Kit MCS queue spinlock (FIFO, local spinning)",
	  false, true, true, mcs_init, nop_init, mcs_lock, mcs_unlock, NULL, NULL },
	{ "ck_rwlock", "Concurrency Kit reader/writer spinlock (one counter)",
	  true, true, true, ckrw_init, nop_init, ckrw_lock, ckrw_unlock, ckrw_rlock, ckrw_runlock },
	{ "none", "no lock at all: the loop's own cost (not exclusive; not in 'all')",
	  false, false, false, nop_init, nop_init, nop_lock, nop_lock, nop_r, nop_r },
};
#define NLOCKS ((int)(sizeof LOCKS / sizeof LOCKS[0]))

/* ------------------------------------------------------------- options */

typedef struct config {
	int locks[MAX_LOCKS];
	int nlocks;
	int threads[SPB_MAX_THREADS_LIST];
	int nthreads;
	uint64_t cs_iters, ps_iters;  /* delay-loop iterations                  */
	double cs_ns, ps_ns;          /* what was asked, when given as a time   */
	bool cs_is_time, ps_is_time;
	int write_ratio;              /* percent of acquisitions that write     */
	double min_time;              /* seconds per configuration              */
	int64_t iterations;           /* fixed iterations per thread; 0: min_time */
	double max_time;              /* a run taking longer is abandoned       */
	bool test;
} config;

static config CFG;

static void usage(FILE *f)
{
	fprintf(f,
		"usage: contention [options] [--benchmark_<flag>=<value> ...]\n"
		"\n"
		"Measures a lock under contention: every thread repeatedly takes the lock,\n"
		"spins a critical section that updates shared data, releases it and spins a\n"
		"parallel section.  Prints throughput, ns per operation and how evenly the\n"
		"threads shared the lock.\n"
		"\n"
		"  --lock L[,L...]     locks to measure (default sp_mutex,pthread_mutex); 'all'\n"
		"  --threads N[,N...]  thread counts, up to %d values (default 1,2,8)\n"
		"  --cs LEN            critical-section length (default 0)\n"
		"  --ps LEN            parallel-section length (default 0)\n"
		"                      LEN: a number of delay-loop iterations, or a time with\n"
		"                      a unit: 250ns, 2us (converted by a calibration run)\n"
		"  --write-ratio P     reader/writer locks: percent of acquisitions that are\n"
		"                      writes, 0-100 (default 100: all exclusive); other locks\n"
		"                      always lock exclusively\n"
		"  --min-time S        seconds to measure each configuration (default 0.5)\n"
		"  --iterations N      run exactly N iterations per thread instead\n"
		"  --max-time S        abandon a run that takes longer (default 20 x min-time,\n"
		"                      at least 10): FIFO spinlocks with more threads than\n"
		"                      free cores can take milliseconds per hand-off\n"
		"  --test              tiny run of every lock that checks its own results\n"
		"  --help              this text\n"
		"  --benchmark_...     passed to google-benchmark (e.g. --benchmark_out=f.json\n"
		"                      --benchmark_out_format=json)\n"
		"\n"
		"locks:\n",
		SPB_MAX_THREADS_LIST);
	for (int i = 0; i < NLOCKS; i++)
		fprintf(f, "  %-17s %s%s\n", LOCKS[i].name, LOCKS[i].what,
			LOCKS[i].rw ? " [rw]" : "");
	fprintf(f,
		"\n"
		"Fairness: the acquisitions of each thread are counted from the common start\n"
		"until the first thread has finished; 'max/min' and 'cv' (stddev/mean) of\n"
		"those counts are printed (1.00 and 0.00: perfectly even).  Spinning locks\n"
		"with more threads than cores measure the scheduler as much as the lock.\n");
}

/* Prints a usage error and exits with status 2. */
static void __attribute__((noreturn, format(printf, 1, 2))) bad(const char *fmt, ...)
{
	va_list ap;
	fputs("contention: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'contention --help'.\n", stderr);
	exit(2);
}

/* Parses a lock list into c; returns NULL or an error message (static buffer). */
static const char *parse_locks(const char *s, config *c)
{
	static char msg[256];
	char buf[512];
	if (strlen(s) >= sizeof buf)
		return "--lock: list too long";
	strcpy(buf, s);
	c->nlocks = 0;
	char *save = NULL;
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (strcmp(tok, "all") == 0) {
			for (int i = 0; i < NLOCKS; i++) {
				bool dup = false;
				for (int j = 0; j < c->nlocks; j++)
					dup |= c->locks[j] == i;
				if (!LOCKS[i].exclusive || dup)
					continue;
				if (c->nlocks == MAX_LOCKS)
					return "--lock: too many locks";
				c->locks[c->nlocks++] = i;
			}
			continue;
		}
		int found = -1;
		for (int i = 0; i < NLOCKS; i++)
			if (strcmp(tok, LOCKS[i].name) == 0)
				found = i;
		if (found < 0) {
			snprintf(msg, sizeof msg, "--lock: unknown lock '%s' (--help lists them)", tok);
			return msg;
		}
		bool dup = false;
		for (int i = 0; i < c->nlocks; i++)
			dup |= c->locks[i] == found;
		if (dup)
			continue; /* each lock is measured once */
		if (c->nlocks == MAX_LOCKS)
			return "--lock: too many locks";
		c->locks[c->nlocks++] = found;
	}
	return c->nlocks ? NULL : "--lock: empty list";
}

static const char *parse_threads(const char *s, config *c)
{
	c->nthreads = 0;
	const char *p = s;
	for (;;) {
		char *end;
		errno = 0;
		long v = strtol(p, &end, 10);
		if (end == p || errno || v < 1 || v > MAX_THREADS)
			return "--threads: expected a list of thread counts 1.." "1024, like 1,2,8";
		if (c->nthreads == SPB_MAX_THREADS_LIST - 1)
			return "--threads: too many thread counts";
		c->threads[c->nthreads++] = (int)v;
		if (*end == '\0')
			break;
		if (*end != ',')
			return "--threads: expected a list of thread counts 1..1024, like 1,2,8";
		p = end + 1;
	}
	c->threads[c->nthreads] = 0;
	return NULL;
}

/* LEN: iterations, or a time ("250ns", "2us"); returns an error message or NULL. */
static const char *parse_len(const char *opt, const char *s, uint64_t *iters, double *ns,
			     bool *is_time)
{
	static char msg[128];
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (end == s || errno || !(v >= 0) || v > 1e9)
		goto fail;
	if (*end == '\0') {
		if (v != floor(v))
			goto fail;
		*iters = (uint64_t)v;
		*is_time = false;
		return NULL;
	}
	if (strcmp(end, "ns") == 0)
		*ns = v;
	else if (strcmp(end, "us") == 0)
		*ns = v * 1e3;
	else
		goto fail;
	*is_time = true;
	return NULL;
fail:
	snprintf(msg, sizeof msg,
		 "%s: expected iterations (e.g. 100) or a time (e.g. 250ns, 2us), got '%s'", opt, s);
	return msg;
}

static const char *parse_int(const char *opt, const char *s, int lo, int hi, int *out)
{
	static char msg[128];
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (end == s || *end || errno || v < lo || v > hi) {
		snprintf(msg, sizeof msg, "%s: expected an integer %d..%d, got '%s'", opt, lo, hi, s);
		return msg;
	}
	*out = (int)v;
	return NULL;
}

static const char *parse_seconds(const char *opt, const char *s, double *out)
{
	static char msg[128];
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (*end == 's' && end[1] == '\0')
		end++;
	if (end == s || *end || errno || !(v > 0) || v > 3600) {
		snprintf(msg, sizeof msg, "%s: expected seconds > 0 (e.g. 0.5), got '%s'", opt, s);
		return msg;
	}
	*out = v;
	return NULL;
}

/* ------------------------------------------------------------- delay loop */

static inline void delay(uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		__asm__ __volatile__("" : "+r"(i));
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Delay-loop iterations per nanosecond on this machine (best of a few tries). */
static double calibrate(void)
{
	double best = 0;
	uint64_t n = 2000000;
	for (int i = 0; i < 5; i++) {
		int64_t t0 = now_ns();
		delay(n);
		int64_t t = now_ns() - t0;
		if (t > 0 && (double)n / (double)t > best)
			best = (double)n / (double)t;
	}
	return best > 0 ? best : 1;
}

/* ------------------------------------------------------------- the run */

typedef struct tslot {
	alignas(LINE) int64_t ops;    /* acquisitions (= iterations)                 */
	int64_t writes;               /* exclusive acquisitions                       */
	int64_t window;               /* acquisitions when the first thread finished  */
	int64_t violations;           /* exclusion failures this thread observed     */
	bool abandoned;               /* left the loop early: --max-time exceeded    */
	int64_t t_start, t_end;
	lock_tctx tctx;
} tslot;

/* What one run (one lock, one thread count) shares; set up by thread 0. */
static struct {
	alignas(LINE) any_lock lock;
	alignas(LINE) _Atomic int64_t shared_word; /* written in the critical section */
	alignas(LINE) _Atomic int holder;          /* 1 while a writer is inside       */
	alignas(LINE) _Atomic int stop;            /* the first thread has finished   */
	alignas(LINE) _Atomic int abandon;         /* the run exceeded --max-time     */
	alignas(LINE) tslot slot[MAX_THREADS];
} RUN;

typedef struct result {
	bool have;
	int lock, threads;
	int64_t per_thread;      /* iterations each thread ran            */
	int64_t ops, writes;     /* sums over threads                     */
	int64_t shared_word;     /* final value of the protected word     */
	int64_t violations;
	int64_t ops_mismatch;    /* threads whose count != per_thread     */
	double seconds;
	double win_max, win_min, win_mean, win_cv;
	int runs;                /* times google-benchmark ran it         */
	bool abandoned;          /* exceeded --max-time; figures partial  */
} result;

static result RESULTS[MAX_LOCKS][SPB_MAX_THREADS_LIST];

static inline uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static int result_col(int threads)
{
	for (int i = 0; i < CFG.nthreads; i++)
		if (CFG.threads[i] == threads)
			return i;
	return -1;
}

/* Thread 0, after every thread left the loop: sums up and stores the result. */
static void collect(spb_state *st, int li, int nth, int64_t n)
{
	int lock_row = -1;
	for (int i = 0; i < CFG.nlocks; i++)
		if (CFG.locks[i] == li)
			lock_row = i;
	int col = result_col(nth);
	if (lock_row < 0 || col < 0)
		return;
	result *r = &RESULTS[lock_row][col];
	int runs = r->runs;
	memset(r, 0, sizeof *r);
	r->have = true;
	r->runs = runs + 1;
	r->lock = li;
	r->threads = nth;
	r->per_thread = n;
	int64_t t0 = INT64_MAX, t1 = INT64_MIN;
	double sum = 0, sumsq = 0;
	r->win_min = INFINITY;
	for (int t = 0; t < nth; t++) {
		tslot *s = &RUN.slot[t];
		r->ops += s->ops;
		r->writes += s->writes;
		r->violations += s->violations;
		r->abandoned |= s->abandoned;
		if (s->ops != n)
			r->ops_mismatch++;
		t0 = s->t_start < t0 ? s->t_start : t0;
		t1 = s->t_end > t1 ? s->t_end : t1;
		double w = (double)s->window;
		sum += w;
		sumsq += w * w;
		r->win_max = w > r->win_max ? w : r->win_max;
		r->win_min = w < r->win_min ? w : r->win_min;
	}
	r->shared_word = atomic_load_explicit(&RUN.shared_word, memory_order_relaxed);
	r->seconds = (double)(t1 - t0) / 1e9;
	r->win_mean = sum / nth;
	double var = sumsq / nth - r->win_mean * r->win_mean;
	r->win_cv = r->win_mean > 0 ? sqrt(var > 0 ? var : 0) / r->win_mean : 0;

	if (r->abandoned)
		return; /* google-benchmark reports the error; no counters */
	spb_set_items_processed(st, r->ops);
	spb_counter(st, "fair_max_min", r->win_min > 0 ? r->win_max / r->win_min : INFINITY, 0);
	spb_counter(st, "fair_cv", r->win_cv, 0);
	spb_counter(st, "violations", (double)r->violations, 0);
}

/*
 * The benchmark body, instantiated once per lock (always_inline and a
 * constant ops pointer let the compiler call each lock directly).
 */
static inline __attribute__((always_inline)) void hammer(spb_state *st, int li)
{
	const lock_ops *ops = &LOCKS[li];
	int idx = spb_thread_index(st);
	int nth = spb_threads(st);
	tslot *me = &RUN.slot[idx];
	if (idx == 0) {
		ops->init(&RUN.lock);
		atomic_store_explicit(&RUN.shared_word, 0, memory_order_relaxed);
		atomic_store_explicit(&RUN.holder, 0, memory_order_relaxed);
		atomic_store_explicit(&RUN.stop, 0, memory_order_relaxed);
		atomic_store_explicit(&RUN.abandon, 0, memory_order_relaxed);
	}
	const uint64_t cs = CFG.cs_iters, ps = CFG.ps_iters;
	/* Writes below this threshold of a 32-bit random number. */
	const uint64_t wthresh = ops->rw ? ((uint64_t)CFG.write_ratio << 32) / 100 : UINT64_MAX;
	uint64_t rng = 0x9E3779B97F4A7C15ULL * (uint64_t)(idx + 1);
	int64_t writes = 0, viol = 0, window = -1;

	int64_t n = spb_batch(st); /* start barrier: every thread begins here */
	int64_t t_start = now_ns();
	const int64_t deadline = t_start + (int64_t)(CFG.max_time * 1e9);
	int64_t i;
	for (i = 0; i < n; i++) {
		if ((i & 127) == 127 && (atomic_load_explicit(&RUN.abandon, memory_order_relaxed) ||
					 now_ns() > deadline)) {
			atomic_store_explicit(&RUN.abandon, 1, memory_order_relaxed);
			break;
		}
		if (window < 0 && atomic_load_explicit(&RUN.stop, memory_order_relaxed))
			window = i;
		bool w = wthresh == UINT64_MAX || (xorshift(&rng) >> 32) < wthresh;
		if (w) {
			ops->lock(&RUN.lock, &me->tctx);
			if (atomic_load_explicit(&RUN.holder, memory_order_relaxed))
				viol++;
			atomic_store_explicit(&RUN.holder, 1, memory_order_relaxed);
			/* Non-atomic read-modify-write: only the lock makes it exact. */
			int64_t v = atomic_load_explicit(&RUN.shared_word, memory_order_relaxed);
			delay(cs);
			atomic_store_explicit(&RUN.shared_word, v + 1, memory_order_relaxed);
			atomic_store_explicit(&RUN.holder, 0, memory_order_relaxed);
			ops->unlock(&RUN.lock, &me->tctx);
			writes++;
		} else {
			ops->rlock(&RUN.lock);
			if (atomic_load_explicit(&RUN.holder, memory_order_relaxed))
				viol++;
			int64_t v = atomic_load_explicit(&RUN.shared_word, memory_order_relaxed);
			spb_do_not_optimize(&v);
			delay(cs);
			ops->runlock(&RUN.lock);
		}
		delay(ps);
	}
	me->t_end = now_ns();
	me->t_start = t_start;
	me->ops = i;
	me->writes = writes;
	me->violations = viol;
	me->window = window < 0 ? i : window;
	me->abandoned = i < n;
	atomic_store_explicit(&RUN.stop, 1, memory_order_relaxed);
	if (i < n)
		spb_skip_with_error(st, "abandoned: the run exceeded --max-time");
	spb_batch(st); /* stop barrier: every thread has stored its slot */

	if (idx == 0 && n > 0) {
		collect(st, li, nth, n);
		ops->fini(&RUN.lock);
	}
}

#define BM(i) static void bm_##i(spb_state *st) { hammer(st, i); }
BM(0) BM(1) BM(2) BM(3) BM(4) BM(5) BM(6) BM(7) BM(8) BM(9) BM(10)
static const spb_fn BM_FNS[] = { bm_0, bm_1, bm_2, bm_3, bm_4, bm_5,
				 bm_6, bm_7, bm_8, bm_9, bm_10 };
_Static_assert(sizeof BM_FNS / sizeof BM_FNS[0] == sizeof LOCKS / sizeof LOCKS[0],
	       "one benchmark function per lock");

/* ------------------------------------------------------------- report */

static void print_results(void)
{
	printf("\n%-17s %7s %12s %10s %9s %10s %9s %6s %6s\n", "lock", "threads", "ops",
	       "Mops/s", "ns/op", "ns/op/thr", "max/min", "cv", "viol");
	for (int l = 0; l < CFG.nlocks; l++) {
		for (int t = 0; t < CFG.nthreads; t++) {
			const result *r = &RESULTS[l][t];
			if (!r->have)
				continue;
			if (r->abandoned) {
				printf("%-17s %7d   abandoned after %.1f s (--max-time); %" PRId64
				       " operations done\n", LOCKS[r->lock].name, r->threads, r->seconds,
				       r->ops);
				continue;
			}
			double nsop = r->seconds * 1e9 / (double)r->ops;
			char mm[32];
			if (r->win_min > 0)
				snprintf(mm, sizeof mm, "%.2f", r->win_max / r->win_min);
			else
				snprintf(mm, sizeof mm, "inf");
			printf("%-17s %7d %12" PRId64 " %10.3f %9.1f %10.1f %9s %6.2f %6" PRId64 "\n",
			       LOCKS[r->lock].name, r->threads, r->ops, (double)r->ops / r->seconds / 1e6,
			       nsop, nsop * r->threads, mm, r->win_cv, r->violations);
		}
	}
	printf("\nns/op: wall time / all threads' operations (1 / throughput); ns/op/thr: the same\n"
	       "times the thread count (one thread's view).  max/min, cv: spread of per-thread\n"
	       "acquisitions until the first thread finished (1.00, 0.00 = even).  viol: mutual-\n"
	       "exclusion violations seen (must be 0 for every lock but 'none').\n"
	       "google-benchmark's Time column above averages each thread's own loop time, so\n"
	       "it reads lower than ns/op here when the threads finish at different times.\n");
}

/* --test: the results of the tiny run must be internally consistent. */
static int check_results(void)
{
	int failures = 0;
	for (int l = 0; l < CFG.nlocks; l++) {
		for (int t = 0; t < CFG.nthreads; t++) {
			const result *r = &RESULTS[l][t];
			const char *name = LOCKS[CFG.locks[l]].name;
			if (!r->have) {
				printf("FAIL %s/%d: no result recorded\n", name, CFG.threads[t]);
				failures++;
				continue;
			}
			const lock_ops *ops = &LOCKS[r->lock];
			if (r->abandoned && ops->spins) {
				/* A spinning FIFO lock on an overloaded machine: not the tool's fault. */
				printf("note %s/%d: abandoned (machine oversubscribed), not checked\n",
				       name, r->threads);
				continue;
			}
#define EXPECT(cond, ...)                                                       \
	do {                                                                    \
		if (!(cond)) {                                                  \
			printf("FAIL %s/%d: ", name, r->threads);               \
			printf(__VA_ARGS__);                                    \
			printf("\n");                                           \
			failures++;                                             \
		}                                                               \
	} while (0)
			EXPECT(!r->abandoned, "abandoned after %.1f s", r->seconds);
			EXPECT(r->ops_mismatch == 0, "%" PRId64 " threads counted other than %" PRId64
			       " operations", r->ops_mismatch, r->per_thread);
			EXPECT(r->ops == r->per_thread * r->threads,
			       "operations %" PRId64 " != sum of per-thread counts %" PRId64, r->ops,
			       r->per_thread * r->threads);
			EXPECT(r->violations == 0, "%" PRId64 " mutual-exclusion violations",
			       r->violations);
			EXPECT(r->shared_word == r->writes,
			       "protected counter %" PRId64 " != exclusive acquisitions %" PRId64
			       " (lost updates)", r->shared_word, r->writes);
			if (ops->rw && CFG.write_ratio < 100 && r->ops >= 1000)
				EXPECT(r->writes < r->ops && r->writes > 0,
				       "write ratio %d%% gave %" PRId64 " writes of %" PRId64,
				       CFG.write_ratio, r->writes, r->ops);
			if (!ops->rw)
				EXPECT(r->writes == r->ops, "exclusive lock with %" PRId64
				       " non-exclusive acquisitions", r->ops - r->writes);
			EXPECT(r->win_max == (double)r->per_thread,
			       "the first finisher's window %.0f != its %" PRId64 " operations",
			       r->win_max, r->per_thread);
			EXPECT(r->win_min >= 0 && r->win_cv >= 0 && r->win_cv < 10, "bad spread");
			EXPECT(r->seconds > 0 && r->seconds < 60, "elapsed %.3f s", r->seconds);
			EXPECT(r->runs >= 1, "never ran");
#undef EXPECT
		}
	}
	return failures;
}

/* --test also checks that the option parser rejects what it should. */
static int check_parser(void)
{
	config c;
	int failures = 0;
	uint64_t it;
	double ns;
	bool tm;
#define PARSER(cond)                                                   \
	do {                                                           \
		if (!(cond)) {                                         \
			printf("FAIL parser: %s\n", #cond);            \
			failures++;                                    \
		}                                                      \
	} while (0)
	PARSER(parse_locks("sp_mutex,ck_mcs", &c) == NULL && c.nlocks == 2);
	PARSER(parse_locks("sp_mutexx", &c) != NULL);
	PARSER(parse_locks("", &c) != NULL);
	PARSER(parse_locks("all", &c) == NULL && c.nlocks == NLOCKS - 1);
	PARSER(parse_locks("none,sp_mutex,none,all", &c) == NULL && c.nlocks == NLOCKS);
	PARSER(parse_threads("1,2,8", &c) == NULL && c.nthreads == 3 && c.threads[3] == 0);
	PARSER(parse_threads("0", &c) != NULL);
	PARSER(parse_threads("2,", &c) != NULL);
	PARSER(parse_threads("2x", &c) != NULL);
	PARSER(parse_len("--cs", "100", &it, &ns, &tm) == NULL && it == 100 && !tm);
	PARSER(parse_len("--cs", "250ns", &it, &ns, &tm) == NULL && ns == 250 && tm);
	PARSER(parse_len("--cs", "2us", &it, &ns, &tm) == NULL && ns == 2000 && tm);
	PARSER(parse_len("--cs", "2ms", &it, &ns, &tm) != NULL);
	PARSER(parse_len("--cs", "-1", &it, &ns, &tm) != NULL);
	PARSER(parse_len("--cs", "1.5", &it, &ns, &tm) != NULL);
	int v;
	PARSER(parse_int("--write-ratio", "101", 0, 100, &v) != NULL);
	PARSER(parse_int("--write-ratio", "25", 0, 100, &v) == NULL && v == 25);
	double s;
	PARSER(parse_seconds("--min-time", "0", &s) != NULL);
	PARSER(parse_seconds("--min-time", "0.25s", &s) == NULL && s == 0.25);
#undef PARSER
	return failures;
}

int main(int argc, char **argv)
{
	/* google-benchmark's own flags pass through; ours go to getopt. */
	char *bargv[64];
	int bargc = 0;
	char *oargv[256];
	int oargc = 0;
	bargv[bargc++] = argv[0];
	bargv[bargc++] = "--benchmark_counters_tabular=true";
	for (int i = 0; i < argc; i++) {
		if (i > 0 && strncmp(argv[i], "--benchmark_", 12) == 0) {
			if (bargc == 63)
				bad("too many --benchmark_ flags");
			bargv[bargc++] = argv[i];
		} else {
			if (oargc == 255)
				bad("too many arguments");
			oargv[oargc++] = argv[i];
		}
	}
	oargv[oargc] = NULL;

	CFG = (config){ .write_ratio = 100, .min_time = 0.5 };
	parse_locks("sp_mutex,pthread_mutex", &CFG);
	parse_threads("1,2,8", &CFG);
	bool locks_given = false, threads_given = false;

	static const struct option longopts[] = {
		{ "lock", required_argument, NULL, 'l' },
		{ "threads", required_argument, NULL, 't' },
		{ "cs", required_argument, NULL, 'c' },
		{ "ps", required_argument, NULL, 'p' },
		{ "write-ratio", required_argument, NULL, 'w' },
		{ "min-time", required_argument, NULL, 'm' },
		{ "iterations", required_argument, NULL, 'i' },
		{ "max-time", required_argument, NULL, 'M' },
		{ "test", no_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	opterr = 0;
	int opt;
	const char *err = NULL;
	while ((opt = getopt_long(oargc, oargv, ":h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'l': err = parse_locks(optarg, &CFG); locks_given = true; break;
		case 't': err = parse_threads(optarg, &CFG); threads_given = true; break;
		case 'c': err = parse_len("--cs", optarg, &CFG.cs_iters, &CFG.cs_ns, &CFG.cs_is_time); break;
		case 'p': err = parse_len("--ps", optarg, &CFG.ps_iters, &CFG.ps_ns, &CFG.ps_is_time); break;
		case 'w': err = parse_int("--write-ratio", optarg, 0, 100, &CFG.write_ratio); break;
		case 'm': err = parse_seconds("--min-time", optarg, &CFG.min_time); break;
		case 'M': err = parse_seconds("--max-time", optarg, &CFG.max_time); break;
		case 'i': {
			int v = 0;
			err = parse_int("--iterations", optarg, 1, 1000000000, &v);
			CFG.iterations = v;
			break;
		}
		case 'T': CFG.test = true; break;
		case 'h': usage(stdout); return 0;
		case ':': bad("option '%s' needs a value", oargv[optind - 1]);
		default:
			if (optopt)
				bad("unknown option '-%c'", optopt);
			bad("unknown option '%s'", oargv[optind - 1]);
		}
		if (err)
			bad("%s", err);
	}
	if (optind < oargc)
		bad("unexpected argument '%s'", oargv[optind]);

	int failures = 0;
	if (CFG.test) {
		failures += check_parser();
		/* Tiny and fast, unless the caller chose locks or threads. */
		if (!locks_given)
			parse_locks("all", &CFG);
		if (!threads_given)
			parse_threads("1,2,4", &CFG);
		CFG.cs_iters = 20, CFG.cs_is_time = false;
		CFG.ps_iters = 20, CFG.ps_is_time = false;
		CFG.write_ratio = 25;
		CFG.iterations = 4000; /* spinning locks: fewer, see below */
		CFG.max_time = 2;
	}
	if (CFG.max_time == 0)
		CFG.max_time = CFG.min_time * 20 > 10 ? CFG.min_time * 20 : 10;
	if (CFG.cs_is_time || CFG.ps_is_time) {
		double per_ns = calibrate();
		if (CFG.cs_is_time)
			CFG.cs_iters = (uint64_t)llround(CFG.cs_ns * per_ns);
		if (CFG.ps_is_time)
			CFG.ps_iters = (uint64_t)llround(CFG.ps_ns * per_ns);
		printf("calibration: %.2f delay-loop iterations per ns\n", per_ns);
	}
	printf("critical section %" PRIu64 " iterations, parallel section %" PRIu64
	       " iterations, write ratio %d%% (rw locks), ", CFG.cs_iters, CFG.ps_iters,
	       CFG.write_ratio);
	if (CFG.iterations)
		printf("%" PRId64 " iterations per thread%s\n", CFG.iterations,
		       CFG.test ? " (spinning locks: 200)" : "");
	else
		printf("min time %.3g s per run\n", CFG.min_time);
	fflush(stdout);

	for (int l = 0; l < CFG.nlocks; l++) {
		const lock_ops *ops = &LOCKS[CFG.locks[l]];
		spb_bench b = { .group = "contention", .impl = ops->name, .fn = BM_FNS[CFG.locks[l]],
				.min_time = CFG.iterations ? 0 : CFG.min_time,
				.iterations = CFG.iterations };
		/*
		 * --test on a busy 2-core machine: a FIFO spinlock whose next owner
		 * is preempted waits a scheduler slice per hand-off, so keep them short.
		 */
		if (CFG.test && ops->spins)
			b.iterations = 200;
		memcpy(b.threads, CFG.threads, sizeof b.threads);
		spb_register(&b);
	}
	bargv[bargc] = NULL;
	if (spb_main(bargc, bargv) != 0)
		bad("google-benchmark rejected a --benchmark_ flag");
	fflush(stdout);
	print_results();

	if (CFG.test) {
		failures += check_results();
		if (failures) {
			printf("contention --test: %d check(s) FAILED\n", failures);
			return 1;
		}
		printf("contention --test: ok (%d locks x %d thread counts checked)\n", CFG.nlocks,
		       CFG.nthreads);
	}
	return 0;
}
