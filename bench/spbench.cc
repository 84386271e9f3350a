// bench/spbench.cc - the C++ side of the C benchmark shim (see spbench.h).
//
// Each spb_state wraps one google-benchmark State for the duration of one
// thread's run of one benchmark; the C function receives a pointer to it.

#include "spbench.h"

#include <benchmark/benchmark.h>

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
	if (!s->batch_given) {
		s->batch_given = true;
		int64_t n = (int64_t)s->st->max_iterations;
		// KeepRunningBatch starts the clock (after the start barrier).
		if (n > 0 && s->st->KeepRunningBatch(n)) {
			s->done = n;
			return n;
		}
		return 0;
	}
	// The batch is used up: this call stops the clock (stop barrier).
	while (s->st->KeepRunning())
		s->done++;
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
