// bench/spbench.cc - the C++ side of the C benchmark shim (see spbench.h).
//
// Each spb_state wraps one google-benchmark State for the duration of one
// thread's run of one benchmark; the C function receives a pointer to it.

#include "spbench.h"

#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

struct spb_state {
	benchmark::State *st;
	int64_t done;     // iterations handed out by spb_batch
	bool batch_given; // spb_batch already returned the whole count
	bool has_arg;     // the benchmark was registered with arguments
};

namespace {

std::vector<spb_bench> &registry()
{
	static std::vector<spb_bench> r;
	return r;
}

// The wall-clock span of the current multi-threaded run: from the earliest
// thread's loop start to the latest thread's loop end.  google-benchmark
// reports the mean of the threads' own loop times, which flatters a lock
// that lets one thread finish early while another starves; the span over
// all operations is the honest aggregate figure (ANCHORS.md's "wall time
// divided by all operations").  One benchmark runs at a time, so one
// global record serves: thread 0 resets it before the start barrier, every
// thread records after it, and thread 0 reads it after the stop barrier.
struct span_record {
	std::atomic<int64_t> start_min{INT64_MAX};
	std::atomic<int64_t> end_max{0};
	std::atomic<int64_t> iters{0};
};
span_record g_span;

int64_t now_ns()
{
	return std::chrono::duration_cast<std::chrono::nanoseconds>(
		       std::chrono::steady_clock::now().time_since_epoch())
		.count();
}

void atomic_min(std::atomic<int64_t> &a, int64_t v)
{
	int64_t cur = a.load(std::memory_order_relaxed);
	while (v < cur && !a.compare_exchange_weak(cur, v, std::memory_order_relaxed))
		;
}

void atomic_max(std::atomic<int64_t> &a, int64_t v)
{
	int64_t cur = a.load(std::memory_order_relaxed);
	while (v > cur && !a.compare_exchange_weak(cur, v, std::memory_order_relaxed))
		;
}

void run_one(benchmark::State &st, spb_fn fn, bool has_arg)
{
	spb_state s{&st, 0, false, has_arg};
	fn(&s);
	// A benchmark that returned without running its loop would make
	// google-benchmark abort; finish the loop for it.
	if (!s.batch_given && !st.error_occurred())
		while (st.KeepRunning())
			;
}

} // namespace

extern "C" {

void spb_register(const spb_bench *b)
{
	registry().push_back(*b);
}

int spb_main(int argc, char **argv)
{
	for (const spb_bench &b : registry()) {
		std::string name = std::string(b.group ? b.group : "bench") + "/" + (b.impl ? b.impl : "impl");
		spb_fn fn = b.fn;
		bool has_arg = b.nargs > 0;
		benchmark::internal::Benchmark *bm = benchmark::RegisterBenchmark(
			name.c_str(), [fn, has_arg](benchmark::State &st) { run_one(st, fn, has_arg); });
		for (int i = 0; i < b.nargs && i < SPB_MAX_ARGS; i++)
			bm->Arg(b.args[i]);
		bool any = false;
		for (int i = 0; i < SPB_MAX_THREADS_LIST && b.threads[i] > 0; i++) {
			bm->Threads(b.threads[i]);
			any = true;
		}
		if (!any)
			bm->Threads(1);
		if (b.min_time > 0)
			bm->MinTime(b.min_time);
		if (b.iterations > 0)
			bm->Iterations(b.iterations);
		if (!b.cpu_time)
			bm->UseRealTime();
	}
	benchmark::Initialize(&argc, argv);
	if (benchmark::ReportUnrecognizedArguments(argc, argv))
		return 1;
	benchmark::RunSpecifiedBenchmarks();
	benchmark::Shutdown();
	return 0;
}

int64_t spb_batch(spb_state *s)
{
	benchmark::State &st = *s->st;
	if (!s->batch_given) {
		s->batch_given = true;
		int64_t n = (int64_t)st.max_iterations;
		if (st.thread_index() == 0) {
			g_span.start_min.store(INT64_MAX, std::memory_order_relaxed);
			g_span.end_max.store(0, std::memory_order_relaxed);
			g_span.iters.store(0, std::memory_order_relaxed);
		}
		// KeepRunningBatch starts the clock (after the start barrier).
		if (n > 0 && st.KeepRunningBatch(n)) {
			atomic_min(g_span.start_min, now_ns());
			g_span.iters.fetch_add(n, std::memory_order_relaxed);
			s->done = n;
			return n;
		}
		return 0;
	}
	// The batch is used up: record the end, then this call stops the clock
	// (stop barrier: every thread's end is recorded once it returns).
	atomic_max(g_span.end_max, now_ns());
	while (st.KeepRunning())
		s->done++;
	if (st.thread_index() == 0 && !st.error_occurred()) {
		int64_t iters = g_span.iters.load(std::memory_order_relaxed);
		int64_t span = g_span.end_max.load(std::memory_order_relaxed) -
			       g_span.start_min.load(std::memory_order_relaxed);
		if (iters > 0 && span > 0)
			st.counters["wall_ns_per_op"] = benchmark::Counter((double)span / (double)iters);
	}
	return 0;
}

bool spb_keep_running(spb_state *s)
{
	s->batch_given = true;
	if (s->st->KeepRunning()) {
		s->done++;
		return true;
	}
	return false;
}

int64_t spb_iterations(const spb_state *s) { return s->done; }
int spb_thread_index(const spb_state *s) { return s->st->thread_index(); }
int spb_threads(const spb_state *s) { return s->st->threads(); }
int64_t spb_arg(const spb_state *s) { return s->has_arg ? s->st->range(0) : 0; }

void spb_pause(spb_state *s) { s->st->PauseTiming(); }
void spb_resume(spb_state *s) { s->st->ResumeTiming(); }

void spb_set_items_processed(spb_state *s, int64_t items) { s->st->SetItemsProcessed(items); }

void spb_set_ops(spb_state *s, int64_t ops)
{
	// Inside the batch: replaces this thread's iterations in the span's count
	// (read by thread 0 after the stop barrier).
	g_span.iters.fetch_add(ops - s->done, std::memory_order_relaxed);
	s->done = ops;
}
void spb_set_bytes_processed(spb_state *s, int64_t bytes) { s->st->SetBytesProcessed(bytes); }

void spb_counter(spb_state *s, const char *name, double value, int flags)
{
	int f = benchmark::Counter::kDefaults;
	if (flags & SPB_COUNTER_RATE)
		f |= benchmark::Counter::kIsRate;
	if (flags & SPB_COUNTER_AVG_THREADS)
		f |= benchmark::Counter::kAvgThreads;
	if (flags & SPB_COUNTER_PER_ITERATION)
		f |= benchmark::Counter::kAvgIterations;
	s->st->counters[name] = benchmark::Counter(value, static_cast<benchmark::Counter::Flags>(f));
}

void spb_set_label(spb_state *s, const char *label) { s->st->SetLabel(label); }
void spb_skip_with_error(spb_state *s, const char *msg) { s->st->SkipWithError(msg); }

} // extern "C"
