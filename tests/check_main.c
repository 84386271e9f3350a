/*
 * tests/check_main.c - the one test runner: every suite registered with
 * SPTEST_SUITE runs here; ends with Check's summary line.
 */
#include "sptest.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <sys/syscall.h>
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

int64_t sptest_scaled(int64_t ns)
{
	return ns * sptest_slowdown();
}

bool sptest_wait_child(int pid, int *status, int64_t timeout_ns)
{
	int64_t end = sptest_now_ns() + sptest_scaled(timeout_ns);
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
	int64_t end = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + sptest_scaled(timeout_ns);
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
	int64_t deadline = sptest_now_ns() + sptest_scaled(timeout_ns);
	for (int i = 0; i < n; i++) {
		int64_t left = deadline - sptest_now_ns();
		if (left < 1)
			left = 1;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		int64_t end = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + left;
		ts.tv_sec = end / 1000000000;
		ts.tv_nsec = end % 1000000000;
		if (pthread_timedjoin_np(t[i], NULL, &ts) != 0)
			ck_abort_msg("thread %d of %d did not finish in time (deadlock?)", i, n);
	}
	free(t);
}

int sptest_gettid(void)
{
	return (int)syscall(SYS_gettid);
}

/* Whether /proc shows a thread's system call (a kernel with the syscall file). */
static bool proc_shows_syscalls(void)
{
	static int ok = -1;
	if (ok < 0) {
		char path[64];
		snprintf(path, sizeof path, "/proc/self/task/%d/syscall", sptest_gettid());
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		char c;
		ok = fd >= 0 && read(fd, &c, 1) == 1;
		if (fd >= 0)
			close(fd);
	}
	return ok;
}

/* Whether thread tid sleeps in a futex wait; if so, *word is its word. */
static bool futex_word_of(int tid, const void **word)
{
	char path[64], buf[256];
	snprintf(path, sizeof path, "/proc/self/task/%d/syscall", tid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false; /* exited */
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = 0;
	/* "<nr> <arg1> ..." while blocked in a system call; "running" otherwise. */
	char *end;
	long nr = strtol(buf, &end, 10);
	if (end == buf || nr != SYS_futex)
		return false;
	*word = (const void *)(uintptr_t)strtoull(end, NULL, 16);
	return true;
}

const void *sptest_futex_word(int tid)
{
	const void *w = NULL;
	return futex_word_of(tid, &w) ? w : NULL;
}

bool sptest_await_parked(const int *tids, int n, const void *word, int64_t timeout_ns)
{
	if (!proc_shows_syscalls()) { /* the old way */
		sptest_sleep_ns(sptest_scaled(SPTEST_MS(50)));
		return true;
	}
	int64_t end = sptest_now_ns() + sptest_scaled(timeout_ns);
	const void *seen[64];
	ck_assert_int_le(n, 64);
	for (int looks = 0;;) {
		bool all = true;
		for (int i = 0; i < n && all; i++) {
			const void *w = NULL;
			if (!futex_word_of(tids[i], &w) || (word && w != word) || (looks && w != seen[i]))
				all = false;
			else
				seen[i] = w;
		}
		looks = all ? looks + 1 : 0;
		if (looks == 2)
			return true;
		if (sptest_now_ns() > end)
			return false;
		sptest_sleep_ns(all ? SPTEST_MS(1) : SPTEST_MS(1) / 5);
	}
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
