/*
 * bench/spbench.h - google-benchmark from C.
 *
 * google-benchmark is a C++ library; this header is a small C API over it
 * (implemented in bench/spbench.cc) so that benchmarks - ours and our users' -
 * are written in C.  A benchmark is a function taking an spb_state; it runs
 * its timed loop, and google-benchmark decides the iteration count, runs it
 * on each requested thread count, and reports ns per operation.
 *
 *	#include "spbench.h"
 *
 *	static void bm_lock(spb_state *st)
 *	{
 *		static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
 *		SPB_LOOP(st) {                 // the timed loop
 *			pthread_mutex_lock(&m);
 *			pthread_mutex_unlock(&m);
 *		}
 *		spb_set_items_processed(st, spb_iterations(st));
 *	}
 *	SPB_REGISTER(lock_pthread, .group = "mutex_uncontended", .impl = "pthread",
 *		     .fn = bm_lock, .threads = {1, 2, 8});
 *
 *	int main(int argc, char **argv) { return spb_main(argc, argv); }
 *
 * Build: cc -c bench.c; c++ -c spbench.cc; c++ bench.o spbench.o -lbenchmark -pthread.
 *
 * Names.  A run is named "<group>/<impl>[/<arg>]/threads:<n>" (google-
 * benchmark may append "/real_time").  `group` is what is compared; `impl` is
 * who does it: "syncpool" marks our implementation, every other impl in the
 * same group is an anchor, and bench/report.py prints each syncpool figure
 * beside its anchors from the same run with the ratio.
 *
 * Threads.  With n threads the function runs on n threads at once, each with
 * its own spb_state; all start the timed loop together (a barrier) and all
 * leave it together.  Shared setup goes before the loop under
 * `if (spb_thread_index(st) == 0)` and is visible to every thread once the
 * loop starts; shared teardown goes after the loop, also on thread 0.  Time
 * is wall-clock (UseRealTime).  With SPB_LOOP the shim also records the span
 * from the first thread's loop start to the last thread's loop end and
 * reports span / (operations of all threads) as the counter wall_ns_per_op:
 * aggregate throughput, so perfect scaling halves the one-thread figure, and
 * a thread that finishes early cannot flatter the figure (google-benchmark's
 * own Time column is the mean of the threads' loop times).  bench/report.py
 * uses wall_ns_per_op where it exists.
 *
 * Loop overhead.  SPB_LOOP runs the whole iteration count as one batch, so
 * the per-iteration cost is a counted loop in the benchmark's own code (no
 * call into C++), which matters for operations of a few nanoseconds.
 * spb_keep_running() is the one-call-per-iteration form, for slower bodies.
 */
#ifndef SP_BENCH_SPBENCH_H
#define SP_BENCH_SPBENCH_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct spb_state spb_state;
typedef void (*spb_fn)(spb_state *st);

#define SPB_MAX_THREADS_LIST 16
#define SPB_MAX_ARGS 16

typedef struct spb_bench {
	const char *group;  /* what is compared, e.g. "pool_get_put"                  */
	const char *impl;   /* "syncpool" for ours; any other name is an anchor         */
	spb_fn fn;          /* the benchmark                                            */
	int threads[SPB_MAX_THREADS_LIST]; /* thread counts, 0-terminated; {0}: just 1 */
	int64_t args[SPB_MAX_ARGS];        /* argument values, nargs of them            */
	int nargs;          /* 0: no argument (spb_arg returns 0)                       */
	double min_time;    /* seconds per run; 0: google-benchmark's default / flag    */
	int64_t iterations; /* fixed iteration count; 0: let google-benchmark choose    */
	bool cpu_time;      /* report CPU time instead of wall time (default: wall)    */
} spb_bench;

/* Registers a benchmark (copying *b).  Call before spb_main. */
void spb_register(const spb_bench *b);

/* Registers at load time: SPB_REGISTER(unique_id, .group = ..., .impl = ..., .fn = ...). */
#define SPB_REGISTER(id, ...)                                              \
	static void __attribute__((constructor)) spb_register_##id(void) \
	{                                                                  \
		static const spb_bench spb_def_##id = { __VA_ARGS__ };     \
		spb_register(&spb_def_##id);                               \
	}

/*
 * Runs the registered benchmarks: parses google-benchmark's flags
 * (--benchmark_filter=regex, --benchmark_min_time=s, --benchmark_out=file,
 * --benchmark_out_format=json, --benchmark_list_tests, ...).  Returns 0, or
 * 1 on a bad flag.
 */
int spb_main(int argc, char **argv);

/*
 * The timed loop.  spb_batch() returns the number of iterations still to run
 * (all of them at the first call, 0 once done; the timer stops then).  Use it
 * through SPB_LOOP, which declares nothing visible to the body.
 */
int64_t spb_batch(spb_state *st);
#define SPB_LOOP(st)                                                      \
	for (int64_t spb_n_ = spb_batch(st); spb_n_ > 0; spb_n_ = spb_batch(st)) \
		for (int64_t spb_i_ = 0; spb_i_ < spb_n_; spb_i_++)

/* One call per iteration: while (spb_keep_running(st)) { ... }. */
bool spb_keep_running(spb_state *st);

int64_t spb_iterations(const spb_state *st);   /* this thread's iterations so far */
int     spb_thread_index(const spb_state *st); /* 0 .. spb_threads()-1            */
int     spb_threads(const spb_state *st);      /* threads running this benchmark  */
int64_t spb_arg(const spb_state *st);          /* the argument of this run, or 0  */

/* Stop / restart the clock inside the loop (costly: use for setup steps). */
void spb_pause(spb_state *st);
void spb_resume(spb_state *st);

/*
 * Inside SPB_LOOP: this thread did `ops` operations in all, not one per
 * iteration, so wall_ns_per_op becomes the span over every thread's ops.
 * For a body that runs its own loop (e.g. for a fixed time window with
 * .iterations = 1); call it once, before the loop ends.
 */
void spb_set_ops(spb_state *st, int64_t ops);

/* Items or bytes this thread processed: reported as a rate (items_per_second). */
void spb_set_items_processed(spb_state *st, int64_t items);
void spb_set_bytes_processed(spb_state *st, int64_t bytes);

/* Custom counters.  Flags combine; a counter is summed over threads unless AVG_THREADS. */
enum {
	SPB_COUNTER_DEFAULT = 0,
	SPB_COUNTER_RATE = 1,           /* divide by the run's time: per second        */
	SPB_COUNTER_AVG_THREADS = 2,    /* average over threads instead of the sum     */
	SPB_COUNTER_PER_ITERATION = 4,  /* divide by the iteration count               */
};
void spb_counter(spb_state *st, const char *name, double value, int flags);

/* A label shown beside the run, and a way to fail it with a message. */
void spb_set_label(spb_state *st, const char *label);
void spb_skip_with_error(spb_state *st, const char *msg);

/* Keeps the compiler from optimising a value or memory away. */
static inline void spb_do_not_optimize(const void *p)
{
	__asm__ __volatile__("" : : "r"(p) : "memory");
}
static inline void spb_clobber_memory(void)
{
	__asm__ __volatile__("" : : : "memory");
}

#ifdef __cplusplus
}
#endif

#endif /* SP_BENCH_SPBENCH_H */
