/*
 * bench/bench_waitgroup.c - WaitGroup add+done, uncontended and at 2
 * threads, beside the floor it must match: two atomic adds on one word.
 */
#include <stdatomic.h>

#include "spbench.h"
#include "syncpool/waitgroup.h"

static sp_waitgroup wg;

static void bm_wg_add_done(spb_state *st)
{
	SPB_LOOP(st) {
		sp_waitgroup_add(&wg, 1);
		sp_waitgroup_done(&wg);
	}
	spb_set_items_processed(st, spb_iterations(st));
}
SPB_REGISTER(wg_add_done, .group = "waitgroup_add_done", .impl = "syncpool",
	     .fn = bm_wg_add_done, .threads = { 1, 2 });

static _Atomic int64_t pair_counter;

static void bm_atomic_pair(spb_state *st)
{
	SPB_LOOP(st) {
		atomic_fetch_add(&pair_counter, 1);
		atomic_fetch_add(&pair_counter, -1);
	}
	spb_set_items_processed(st, spb_iterations(st));
}
SPB_REGISTER(wg_atomic_pair, .group = "waitgroup_add_done", .impl = "atomic_pair",
	     .fn = bm_atomic_pair, .threads = { 1, 2 });
