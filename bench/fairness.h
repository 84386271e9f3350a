/*
 * bench/fairness.h - per-thread acquisition spread for the lock benchmarks,
 * lockhammer's fairness figure: each thread counts its acquisitions; when
 * the first thread is done with its iterations it snapshots all counts, and
 * "spread" is max/min of that snapshot (1.0: perfectly even).  (At the end
 * of the run every thread has the same count: google-benchmark gives each
 * the same iteration count, so only the snapshot shows unfairness.)
 *
 * Included by one benchmark file each: the state is static, per file.
 */
#ifndef SP_BENCH_FAIRNESS_H
#define SP_BENCH_FAIRNESS_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>

#include "spbench.h"

#define FAIR_MAX 64
static struct {
	alignas(128) _Atomic int64_t n; /* written by its thread only */
} fair_cnt[FAIR_MAX];
static _Atomic int fair_done;
static double fair_spread;

static void fair_reset(spb_state *st)
{
	if (spb_thread_index(st) != 0)
		return;
	for (int i = 0; i < FAIR_MAX; i++)
		atomic_store_explicit(&fair_cnt[i].n, 0, memory_order_relaxed);
	atomic_store(&fair_done, 0);
	fair_spread = 0;
}

static inline void fair_tick(int me)
{
	_Atomic int64_t *c = &fair_cnt[me].n;
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1, memory_order_relaxed);
}

/* The first thread done with its iterations takes the snapshot. */
static void fair_finish(spb_state *st)
{
	int exp = 0;
	if (!atomic_compare_exchange_strong(&fair_done, &exp, 1))
		return;
	int n = spb_threads(st);
	int64_t mx = 0, mn = INT64_MAX;
	for (int i = 0; i < n && i < FAIR_MAX; i++) {
		int64_t v = atomic_load_explicit(&fair_cnt[i].n, memory_order_relaxed);
		mx = v > mx ? v : mx;
		mn = v < mn ? v : mn;
	}
	fair_spread = (double)mx / (double)(mn > 0 ? mn : 1);
}

static void fair_report(spb_state *st)
{
	/* After the stop barrier: the snapshot is written. */
	if (spb_thread_index(st) == 0 && spb_threads(st) > 1)
		spb_counter(st, "spread", fair_spread, SPB_COUNTER_DEFAULT);
}

#endif /* SP_BENCH_FAIRNESS_H */
