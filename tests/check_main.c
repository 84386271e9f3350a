/*
 * tests/check_main.c - the one test runner: every suite registered with
 * SPTEST_SUITE runs here; ends with Check's summary line.
 */
#include "sptest.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_SUITES 64
static sptest_suite_fn suites[MAX_SUITES];
static int nsuites;

void sptest_register(sptest_suite_fn fn)
{
	if (nsuites == MAX_SUITES) {
		fprintf(stderr, "sptest: too many suites\n");
		abort();
	}
	suites[nsuites++] = fn;
}

int64_t sptest_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void sptest_sleep_ns(int64_t ns)
{
	struct timespec ts = { .tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000 };
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

int sptest_slowdown(void)
{
	const char *m = getenv("CK_TIMEOUT_MULTIPLIER");
	int v = m ? atoi(m) : 1;
	return v >= 1 ? v : 1;
}

bool sptest_wait_child(int pid, int *status, int64_t timeout_ns)
{
	int64_t end = sptest_now_ns() + timeout_ns;
	pid_t w;
	while ((w = waitpid(pid, status, WNOHANG)) == 0 && sptest_now_ns() < end)
		sptest_sleep_ns(1000000);
	if (w == pid)
		return true;
	kill(pid, SIGKILL);
	waitpid(pid, status, 0);
	return false;
}

bool sptest_join_within(pthread_t t, int64_t timeout_ns, void **ret)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t end = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + timeout_ns;
	ts.tv_sec = end / 1000000000;
	ts.tv_nsec = end % 1000000000;
	return pthread_timedjoin_np(t, ret, &ts) == 0;
}

void sptest_run_threads(int n, void *(*fn)(void *), void *args, size_t stride, int64_t timeout_ns)
{
	pthread_t *t = calloc((size_t)n, sizeof *t);
	ck_assert_ptr_nonnull(t);
	for (int i = 0; i < n; i++) {
		void *a = args ? (char *)args + (size_t)i * stride : NULL;
		ck_assert_int_eq(pthread_create(&t[i], NULL, fn, a), 0);
	}
	int64_t deadline = sptest_now_ns() + timeout_ns;
	for (int i = 0; i < n; i++) {
		int64_t left = deadline - sptest_now_ns();
		if (left < 1)
			left = 1;
		if (!sptest_join_within(t[i], left, NULL))
			ck_abort_msg("thread %d of %d did not finish in time (deadlock?)", i, n);
	}
	free(t);
}

int sptest_ncpu(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof set, &set) == 0)
		return CPU_COUNT(&set);
	return (int)sysconf(_SC_NPROCESSORS_ONLN);
}

int main(void)
{
	if (nsuites == 0) {
		fprintf(stderr, "sptest: no suites registered\n");
		return 1;
	}
	SRunner *sr = srunner_create(suites[0]());
	for (int i = 1; i < nsuites; i++)
		srunner_add_suite(sr, suites[i]());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
