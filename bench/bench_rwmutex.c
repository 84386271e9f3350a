/*
 * bench/bench_rwmutex.c - sp_rwmutex beside pthread_rwlock and Concurrency
 * Kit's ck_rwlock (one shared counter) and ck_brlock (per-reader counters,
 * the "big reader" lock).
 *
 *   rwmutex_read        read lock+unlock only, 1 and 2 threads: does the
 *                       read side scale (t2 ns/op should halve)?
 *   rwmutex_write1pct   1 write lock in 100 acquisitions, 1, 2 and 8 threads
 *   rwmutex_write10pct  1 write lock in 10
 *
 * The write groups report "spread": max/min per-thread acquisitions at the
 * moment the first thread finishes (1 is perfectly fair; as lockhammer).
 */
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>

#include <ck_brlock.h>
#include <ck_rwlock.h>

#include "spbench.h"
#include "syncpool/rwmutex.h"

#include "fairness.h"

/* The protected data, on its own line. */
static struct {
	alignas(128) long v;
} data;

static inline void read_cs(void)
{
	long x = *(volatile long *)&data.v;
	spb_do_not_optimize(&x);
}

static inline void write_cs(void)
{
	data.v++;
}

/* ck_brlock readers: one per thread, each on its own line. */
static struct {
	alignas(128) ck_brlock_reader_t r;
} br_readers[FAIR_MAX];

/* ---------------------------------------------------------------- read only */

#define READ_LOOP(st, RLOCK, RUNLOCK)              \
	do {                                       \
		SPB_LOOP(st) {                     \
			RLOCK;                     \
			read_cs();                 \
			RUNLOCK;                   \
		}                                  \
		spb_set_items_processed(st, spb_iterations(st)); \
	} while (0)

static sp_rwmutex sp_rd = SP_RWMUTEX_INIT;
static void bm_sp_read(spb_state *st)
{
	READ_LOOP(st, sp_rwmutex_rlock(&sp_rd), sp_rwmutex_runlock(&sp_rd));
}
SPB_REGISTER(rw_read_sp, .group = "rwmutex_read", .impl = "syncpool", .fn = bm_sp_read, .threads = { 1, 2 });

static pthread_rwlock_t pt_rd = PTHREAD_RWLOCK_INITIALIZER;
static void bm_pt_read(spb_state *st)
{
	READ_LOOP(st, pthread_rwlock_rdlock(&pt_rd), pthread_rwlock_unlock(&pt_rd));
}
SPB_REGISTER(rw_read_pt, .group = "rwmutex_read", .impl = "pthread", .fn = bm_pt_read, .threads = { 1, 2 });

static ck_rwlock_t ck_rd = CK_RWLOCK_INITIALIZER;
static void bm_ck_read(spb_state *st)
{
	READ_LOOP(st, ck_rwlock_read_lock(&ck_rd), ck_rwlock_read_unlock(&ck_rd));
}
SPB_REGISTER(rw_read_ck, .group = "rwmutex_read", .impl = "ck_rwlock", .fn = bm_ck_read, .threads = { 1, 2 });

static ck_brlock_t br_rd = CK_BRLOCK_INITIALIZER;
static void bm_br_read(spb_state *st)
{
	ck_brlock_reader_t *r = &br_readers[spb_thread_index(st)].r;
	ck_brlock_read_register(&br_rd, r);
	READ_LOOP(st, ck_brlock_read_lock(&br_rd, r), ck_brlock_read_unlock(r));
	ck_brlock_read_unregister(&br_rd, r);
}
SPB_REGISTER(rw_read_br, .group = "rwmutex_read", .impl = "ck_brlock", .fn = bm_br_read, .threads = { 1, 2 });

/* ---------------------------------------------------------------- mixed */

/* One write in `every` acquisitions, the writes spread over the threads. */
#define MIXED_LOOP(st, every, RLOCK, RUNLOCK, WLOCK, WUNLOCK)                 \
	do {                                                                  \
		int me_ = spb_thread_index(st);                               \
		int64_t k_ = me_ * 7;                                         \
		fair_reset(st);                                               \
		for (int64_t n_ = spb_batch(st); n_ > 0; n_ = spb_batch(st)) { \
			for (int64_t i_ = 0; i_ < n_; i_++) {                 \
				if (++k_ == (every)) {                        \
					k_ = 0;                               \
					WLOCK;                                \
					write_cs();                           \
					WUNLOCK;                              \
				} else {                                      \
					RLOCK;                                \
					read_cs();                            \
					RUNLOCK;                              \
				}                                             \
				fair_tick(me_);                               \
			}                                                     \
			fair_finish(st);                                      \
		}                                                             \
		fair_report(st);                                              \
		spb_set_items_processed(st, spb_iterations(st));             \
	} while (0)

#define MIXED_SP(st, every) \
	MIXED_LOOP(st, every, sp_rwmutex_rlock(&sp_mx), sp_rwmutex_runlock(&sp_mx), sp_rwmutex_lock(&sp_mx), \
		   sp_rwmutex_unlock(&sp_mx))
#define MIXED_PT(st, every) \
	MIXED_LOOP(st, every, pthread_rwlock_rdlock(&pt_mx), pthread_rwlock_unlock(&pt_mx), \
		   pthread_rwlock_wrlock(&pt_mx), pthread_rwlock_unlock(&pt_mx))
#define MIXED_CK(st, every) \
	MIXED_LOOP(st, every, ck_rwlock_read_lock(&ck_mx), ck_rwlock_read_unlock(&ck_mx), \
		   ck_rwlock_write_lock(&ck_mx), ck_rwlock_write_unlock(&ck_mx))

static sp_rwmutex sp_mx = SP_RWMUTEX_INIT;
static pthread_rwlock_t pt_mx = PTHREAD_RWLOCK_INITIALIZER;
static ck_rwlock_t ck_mx = CK_RWLOCK_INITIALIZER;

static void bm_sp_w1(spb_state *st) { MIXED_SP(st, 100); }
static void bm_pt_w1(spb_state *st) { MIXED_PT(st, 100); }
static void bm_ck_w1(spb_state *st) { MIXED_CK(st, 100); }
static void bm_sp_w10(spb_state *st) { MIXED_SP(st, 10); }
static void bm_pt_w10(spb_state *st) { MIXED_PT(st, 10); }
static void bm_ck_w10(spb_state *st) { MIXED_CK(st, 10); }

SPB_REGISTER(rw_w1_sp, .group = "rwmutex_write1pct", .impl = "syncpool", .fn = bm_sp_w1, .threads = { 1, 2, 8 });
SPB_REGISTER(rw_w1_pt, .group = "rwmutex_write1pct", .impl = "pthread", .fn = bm_pt_w1, .threads = { 1, 2, 8 });
/* ck_rwlock spins: only where threads <= cores. */
SPB_REGISTER(rw_w1_ck, .group = "rwmutex_write1pct", .impl = "ck_rwlock", .fn = bm_ck_w1, .threads = { 1, 2 });
SPB_REGISTER(rw_w10_sp, .group = "rwmutex_write10pct", .impl = "syncpool", .fn = bm_sp_w10, .threads = { 1, 2, 8 });
SPB_REGISTER(rw_w10_pt, .group = "rwmutex_write10pct", .impl = "pthread", .fn = bm_pt_w10, .threads = { 1, 2, 8 });
SPB_REGISTER(rw_w10_ck, .group = "rwmutex_write10pct", .impl = "ck_rwlock", .fn = bm_ck_w10, .threads = { 1, 2 });
