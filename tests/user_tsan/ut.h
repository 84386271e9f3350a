/*
 * tests/user_tsan/ut.h - helpers for the user-side ThreadSanitizer programs.
 *
 * Each program is a USER of the installed library: it includes only
 * <syncpool.h>, is built with -fsanitize=thread against the normally built
 * (uninstrumented) libsyncpool through pkg-config, and hands plain,
 * non-atomic data between threads through one primitive.  Run with no
 * argument it must produce no ThreadSanitizer report; run with "racy" it
 * makes one deliberate, real race next to the same synchronization, which
 * must still be reported (the annotations must not hide races).
 *
 * ut_wait_flag/ut_set_flag are relaxed atomics: ThreadSanitizer derives no
 * happens-before from them, so they order steps in time without adding a
 * synchronization the primitive under test should provide.
 */
#ifndef UT_H
#define UT_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* nanosleep, sched_yield under -std=c11 */
#endif

#include <syncpool.h>

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int ut_racy;

static inline void ut_init(int argc, char **argv)
{
	ut_racy = argc > 1 && strcmp(argv[1], "racy") == 0;
}

#define UT_CHECK(cond)                                                              \
	do {                                                                        \
		if (!(cond)) {                                                      \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
				#cond);                                             \
			exit(1);                                                    \
		}                                                                   \
	} while (0)

static inline void ut_set_flag(int *f, int v)
{
	__atomic_store_n(f, v, __ATOMIC_RELAXED);
}

static inline int ut_get_flag(int *f)
{
	return __atomic_load_n(f, __ATOMIC_RELAXED);
}

/* Waits (bounded: 20 s) until *f >= v. */
static inline void ut_wait_flag(int *f, int v)
{
	int64_t end = sp_now_ns() + (int64_t)20 * 1000 * 1000 * 1000;
	while (ut_get_flag(f) < v) {
		UT_CHECK(sp_now_ns() < end);
		sched_yield();
	}
}

static inline void ut_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static inline void ut_start(pthread_t *t, int n, void *(*fn)(void *))
{
	for (long i = 0; i < n; i++)
		UT_CHECK(pthread_create(&t[i], NULL, fn, (void *)i) == 0);
}

static inline void ut_join(pthread_t *t, int n)
{
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
}

static inline int ut_done(const char *name)
{
	printf("%s: ok%s\n", name, ut_racy ? " (racy variant ran)" : "");
	return 0;
}

#endif
