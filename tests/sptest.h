/*
 * tests/sptest.h - glue for the Check suites.
 *
 * Every tests/test_<module>.c defines a `Suite *<module>_suite(void)` and
 * registers it with SPTEST_SUITE(<module>_suite); tests/check_main.c runs
 * every registered suite in one SRunner.  Run one suite with
 * CK_RUN_SUITE=<name>, one case with CK_RUN_CASE=<name> (Check's own
 * variables).
 *
 * Every test is bounded in time: Check's per-case timeout (tcase_set_timeout;
 * the sanitizer targets scale it with CK_TIMEOUT_MULTIPLIER) kills a hung
 * test, and the helpers below bound joins so that a deadlock fails with a
 * message instead of hanging.
 */
#ifndef SP_TESTS_SPTEST_H
#define SP_TESTS_SPTEST_H

#include <check.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

typedef Suite *(*sptest_suite_fn)(void);
void sptest_register(sptest_suite_fn fn);

#define SPTEST_SUITE(fn)                                                   \
	static void __attribute__((constructor)) sptest_register_##fn(void) \
	{                                                                  \
		sptest_register(fn);                                       \
	}

/* Monotonic nanoseconds (independent of the library's own clock). */
int64_t sptest_now_ns(void);

/* Sleeps for ns nanoseconds. */
void sptest_sleep_ns(int64_t ns);

/*
 * The three helpers below bound a wait for progress: their timeout_ns is
 * multiplied by sptest_slowdown(), like Check's own per-case timeouts, so that
 * a slow run (valgrind, a sanitizer, a loaded machine) fails only on a hang.
 * (A negative check - "still running after 50 ms" - then waits longer there.)
 *
 * Starts n threads running fn(arg_i) where arg_i = (char *)args + i * stride
 * (args may be NULL: each gets NULL), and joins them all within timeout_ns;
 * fails the test (ck_abort) if any is not done by then.
 */
void sptest_run_threads(int n, void *(*fn)(void *), void *args, size_t stride, int64_t timeout_ns);

/* Joins t within timeout_ns (scaled); false if it did not finish (it is left running). */
bool sptest_join_within(pthread_t t, int64_t timeout_ns, void **ret);

/*
 * Waits for the forked child pid within timeout_ns (scaled) and returns true
 * with its wait status in *status; on timeout kills it (SIGKILL), reaps it
 * and returns false.
 */
bool sptest_wait_child(int pid, int *status, int64_t timeout_ns);

/*
 * How much slower than native this run is expected to be: Check's
 * CK_TIMEOUT_MULTIPLIER (the sanitizer and valgrind targets set it), else
 * 1.  Bounded waits for progress ("every accepted task starts within 3 s")
 * multiply their bound by it (sptest_scaled), so that a slow build fails
 * only on a hang; so do upper bounds on latency.
 */
int sptest_slowdown(void);

/* ns * sptest_slowdown(): a bound on a wait for progress or on a latency. */
int64_t sptest_scaled(int64_t ns);

/*
 * "Let the thread reach its wait" without sleeping and hoping: a thread
 * records its kernel id (sptest_gettid) before it calls the blocking
 * function; the test then waits until the kernel shows that thread asleep
 * in a futex wait (read from /proc/self/task/<tid>/syscall).  A futex wait
 * that follows the call's start is the primitive's park - or a short wait
 * for one of its internal locks, which a test excludes by starting waiters
 * one at a time or by naming the word (expected_word) they park on.
 */
int sptest_gettid(void);

/*
 * The address of the futex word thread tid (of this process) sleeps on in
 * a futex wait right now; NULL if it is not in one (running, runnable,
 * blocked elsewhere, exited).
 */
const void *sptest_futex_word(int tid);

/*
 * Waits (bounded: timeout_ns, scaled) until each of the n threads tids[i]
 * sleeps in a futex wait - on word if it is not NULL - and stays on the
 * same word in two looks 1 ms apart.  Returns false on timeout.  Where
 * /proc cannot show it (no such file), sleeps 50 ms (scaled) and returns
 * true.
 */
bool sptest_await_parked(const int *tids, int n, const void *word, int64_t timeout_ns);

/* Thread-count helper: how many CPUs this process may run on. */
int sptest_ncpu(void);

#define SPTEST_MS(x) ((int64_t)(x) * 1000000)
#define SPTEST_S(x)  ((int64_t)(x) * 1000000000)

#endif
