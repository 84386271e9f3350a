/* Errgroup: go happens before the task starts; the task's end happens
 * before wait returns and before a go() that reuses its limit slot; a
 * failing task's effects happen before its group context is seen done. */
#include "ut.h"

#include <errno.h>

#define NTASK 32
static long in[NTASK], out[NTASK];
static long fail_detail;
static long shared_racy;
static int racers_in;
static long chain[NTASK]; /* limit 1: each task reads its predecessor's */

static int task(void *arg)
{
	long i = (long)arg;
	out[i] = in[i] * 2;
	return 0;
}

/* racy: two tasks of one group, running at once, write the same variable */
static int racer(void *arg)
{
	(void)arg;
	__atomic_add_fetch(&racers_in, 1, __ATOMIC_RELAXED);
	ut_wait_flag(&racers_in, 2);
	shared_racy++;
	__atomic_add_fetch(&racers_in, 1, __ATOMIC_RELAXED);
	ut_wait_flag(&racers_in, 4); /* both wrote before either ends */
	return 0;
}

static int chained(void *arg)
{
	long i = (long)arg;
	chain[i] = i == 0 ? 1 : chain[i - 1] + 1; /* limit 1: the previous ended first */
	return 0;
}

static int failing(void *arg)
{
	(void)arg;
	fail_detail = 99;
	return EIO;
}

static int watcher(void *arg)
{
	sp_ctx *c = arg;
	UT_CHECK(sp_ctx_wait(c, -1));
	UT_CHECK(fail_detail == 99); /* the failing task cancelled c */
	return 0;
}

int main(int argc, char **argv)
{
	ut_init(argc, argv);
	for (int round = 0; round < 3; round++) {
		sp_errgroup *g = sp_errgroup_create(NULL, NULL);
		UT_CHECK(g != NULL);
		for (long i = 0; i < NTASK; i++) {
			in[i] = i + round; /* after the previous round's tasks: HB via wait */
			UT_CHECK(sp_errgroup_go(g, task, (void *)i) == 0);
		}
		UT_CHECK(sp_errgroup_wait(g) == 0);
		for (int i = 0; i < NTASK; i++)
			UT_CHECK(out[i] == (i + round) * 2);
		sp_errgroup_destroy(g);
	}
	/* limit 1: a go() that waited for the slot follows the previous task */
	sp_errgroup *g = sp_errgroup_create(NULL, NULL);
	sp_errgroup_set_limit(g, 1);
	for (long i = 0; i < NTASK; i++)
		UT_CHECK(sp_errgroup_go(g, chained, (void *)i) == 0);
	UT_CHECK(sp_errgroup_wait(g) == 0);
	UT_CHECK(chain[NTASK - 1] == NTASK);
	sp_errgroup_destroy(g);
	/* a failing task cancels the group context */
	sp_ctx *gc;
	g = sp_errgroup_create(NULL, &gc);
	UT_CHECK(g != NULL);
	sp_errgroup *g2 = sp_errgroup_create(NULL, NULL);
	UT_CHECK(sp_errgroup_go(g2, watcher, gc) == 0);
	ut_sleep_ms(5);
	UT_CHECK(sp_errgroup_go(g, failing, NULL) == 0);
	UT_CHECK(sp_errgroup_wait(g2) == 0);
	UT_CHECK(sp_errgroup_wait(g) == EIO);
	sp_errgroup_destroy(g2);
	sp_errgroup_destroy(g);
	if (ut_racy) {
		g = sp_errgroup_create(NULL, NULL);
		UT_CHECK(sp_errgroup_go(g, racer, NULL) == 0);
		UT_CHECK(sp_errgroup_go(g, racer, NULL) == 0);
		UT_CHECK(sp_errgroup_wait(g) == 0);
		sp_errgroup_destroy(g);
	}
	return ut_done("errgroup");
}
