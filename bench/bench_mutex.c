/*
 * bench/bench_mutex.c - sp_mutex beside pthread_mutex and Concurrency Kit.
 *
 *   mutex_uncontended  lock+unlock on one thread (ck_rwlock's read pair is
 *                      there too: the figure the issue asks us to match)
 *   mutex_contended    2, 8 and 32 threads (2 cores: 32 is oversubscribed)
 *                      hammering one lock around a tiny critical section;
 *                      "spread" = max/min per-thread acquisitions at the
 *                      moment the first thread finishes (lockhammer's
 *                      fairness figure: 1 is perfectly fair)
 */
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>

#include <ck_rwlock.h>
#include <ck_spinlock.h>

#include "spbench.h"
#include "syncpool/mutex.h"

#include "fairness.h"

/* ---------------------------------------------------------------- uncontended */

static void bm_sp_uncontended(spb_state *st)
{
	static sp_mutex m = SP_MUTEX_INIT;
	SPB_LOOP(st) {
		sp_mutex_lock(&m);
		spb_clobber_memory();
		sp_mutex_unlock(&m);
	}
	spb_set_items_processed(st, spb_iterations(st));
}
SPB_REGISTER(mutex_unc_sp, .group = "mutex_uncontended", .impl = "syncpool", .fn = bm_sp_uncontended,
	     .threads = { 1 });

static void bm_pt_uncontended(spb_state *st)
{
	static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
	SPB_LOOP(st) {
		pthread_mutex_lock(&m);
		spb_clobber_memory();
		pthread_mutex_unlock(&m);
	}
	spb_set_items_processed(st, spb_iterations(st));
}
SPB_REGISTER(mutex_unc_pt, .group = "mutex_uncontended", .impl = "pthread", .fn = bm_pt_uncontended,
	     .threads = { 1 });

static void bm_ckspin_uncontended(spb_state *st)
{
	static ck_spinlock_fas_t m = CK_SPINLOCK_FAS_INITIALIZER;
	SPB_LOOP(st) {
		ck_spinlock_fas_lock(&m);
		spb_clobber_memory();
		ck_spinlock_fas_unlock(&m);
	}
	spb_set_items_processed(st, spb_iterations(st));
}
SPB_REGISTER(mutex_unc_ckspin, .group = "mutex_uncontended", .impl = "ck_spinlock", .fn = bm_ckspin_uncontended,
	     .threads = { 1 });

static void bm_ckrw_uncontended(spb_state *st)
{
	static ck_rwlock_t l = CK_RWLOCK_INITIALIZER;
	SPB_LOOP(st) {
		ck_rwlock_read_lock(&l);
		spb_clobber_memory();
		ck_rwlock_read_unlock(&l);
	}
	spb_set_items_processed(st, spb_iterations(st));
}
SPB_REGISTER(mutex_unc_ckrw, .group = "mutex_uncontended", .impl = "ck_rwlock_read", .fn = bm_ckrw_uncontended,
	     .threads = { 1 });

/* ---------------------------------------------------------------- contended */

/* The protected data: a line of its own, next to no lock. */
static struct {
	alignas(128) long a;
	long b;
} shared;

#define CONTENDED_LOOP(st, LOCK, UNLOCK)                                      \
	do {                                                                  \
		int me_ = spb_thread_index(st);                               \
		fair_reset(st);                                               \
		for (int64_t n_ = spb_batch(st); n_ > 0; n_ = spb_batch(st)) { \
			for (int64_t i_ = 0; i_ < n_; i_++) {                 \
				LOCK;                                         \
				shared.a++;                                   \
				shared.b += shared.a;                         \
				UNLOCK;                                       \
				fair_tick(me_);                               \
			}                                                     \
			fair_finish(st);                                      \
		}                                                             \
		fair_report(st);                                              \
		spb_set_items_processed(st, spb_iterations(st));             \
	} while (0)

static sp_mutex sp_m = SP_MUTEX_INIT;
static void bm_sp_contended(spb_state *st)
{
	CONTENDED_LOOP(st, sp_mutex_lock(&sp_m), sp_mutex_unlock(&sp_m));
}
SPB_REGISTER(mutex_cont_sp, .group = "mutex_contended", .impl = "syncpool", .fn = bm_sp_contended,
	     .threads = { 2, 8, 32 });

static pthread_mutex_t pt_m = PTHREAD_MUTEX_INITIALIZER;
static void bm_pt_contended(spb_state *st)
{
	CONTENDED_LOOP(st, pthread_mutex_lock(&pt_m), pthread_mutex_unlock(&pt_m));
}
SPB_REGISTER(mutex_cont_pt, .group = "mutex_contended", .impl = "pthread", .fn = bm_pt_contended,
	     .threads = { 2, 8, 32 });

/* A pure spinlock: only where threads <= cores (a preempted holder stalls it). */
static ck_spinlock_fas_t ck_m = CK_SPINLOCK_FAS_INITIALIZER;
static void bm_ckspin_contended(spb_state *st)
{
	CONTENDED_LOOP(st, ck_spinlock_fas_lock(&ck_m), ck_spinlock_fas_unlock(&ck_m));
}
SPB_REGISTER(mutex_cont_ckspin, .group = "mutex_contended", .impl = "ck_spinlock", .fn = bm_ckspin_contended,
	     .threads = { 2 });
