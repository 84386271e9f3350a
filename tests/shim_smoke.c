/*
 * tests/shim_smoke.c - the benchmark shim's own check (make shim-check):
 * benchmarks with thread counts, arguments and counters run for a moment and
 * bench/report.py --verify checks the JSON holds every run and counter.
 */
#include "spbench.h"

#include <stdatomic.h>

static _Atomic long shared_ops;

static void bm_spin(spb_state *st)
{
	long mine = 0;
	SPB_LOOP(st) {
		mine++;
		spb_clobber_memory();
	}
	atomic_fetch_add(&shared_ops, mine);
	if (mine != spb_iterations(st))
		spb_skip_with_error(st, "iteration count mismatch");
	spb_set_items_processed(st, spb_iterations(st));
	spb_counter(st, "per_thread_ops", (double)mine, SPB_COUNTER_AVG_THREADS);
	spb_counter(st, "threads_seen", (double)spb_threads(st), SPB_COUNTER_AVG_THREADS);
}
SPB_REGISTER(spin, .group = "smoke", .impl = "spin", .fn = bm_spin, .threads = { 1, 2 })

static void bm_arg(spb_state *st)
{
	char buf[64] = { 0 };
	int64_t n = spb_arg(st);
	if (n < 1 || n > 64) {
		spb_skip_with_error(st, "bad argument");
		while (spb_keep_running(st))
			;
		return;
	}
	while (spb_keep_running(st)) {
		spb_pause(st);
		buf[0]++;
		spb_resume(st);
		for (int64_t i = 0; i < n; i++)
			buf[i]++;
		spb_do_not_optimize(buf);
	}
	spb_set_bytes_processed(st, spb_iterations(st) * n);
	spb_counter(st, "bytes_rate", (double)(spb_iterations(st) * n), SPB_COUNTER_RATE);
}
SPB_REGISTER(arg, .group = "smoke", .impl = "arg", .fn = bm_arg, .args = { 16, 64 }, .nargs = 2)

int main(int argc, char **argv)
{
	return spb_main(argc, argv);
}
