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
 * Starts n threads running fn(arg_i) where arg_i = (char *)args + i * stride
 * (args may be NULL: each gets NULL), and joins them all within timeout_ns;
 * fails the test (ck_abort) if any is not done by then.
 */
void sptest_run_threads(int n, void *(*fn)(void *), void *args, size_t stride, int64_t timeout_ns);

/* Joins t within timeout_ns; false if it did not finish (it is left running). */
bool sptest_join_within(pthread_t t, int64_t timeout_ns, void **ret);

/*
 * Waits for the forked child pid within timeout_ns and returns true with its
 * wait status in *status; on timeout kills it (SIGKILL), reaps it and
 * returns false.
 */
bool sptest_wait_child(int pid, int *status, int64_t timeout_ns);

/*
 * How much slower than native this run is expected to be: Check's
 * CK_TIMEOUT_MULTIPLIER (the sanitizer and valgrind targets set it), else
 * 1.  Bounded waits for progress ("every accepted task starts within 3 s")
 * multiply their bound by it, so that a slow build fails only on a hang.
 */
int sptest_slowdown(void);

/* Thread-count helper: how many CPUs this process may run on. */
int sptest_ncpu(void);

#define SPTEST_MS(x) ((int64_t)(x) * 1000000)
#define SPTEST_S(x)  ((int64_t)(x) * 1000000000)

#endif
