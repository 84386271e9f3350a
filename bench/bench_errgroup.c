/*
 * bench/bench_errgroup.c - starting and waiting for 1000 tiny tasks: an
 * errgroup (tasks handed to reused worker threads) beside a thread per task
 * (pthread_create + pthread_join).  One op = 1000 tasks; items = tasks.
 * And a short-lived group (create, 10 tasks, wait, destroy) beside 10
 * threads; one op = one group.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "spbench.h"
#include "syncpool/errgroup.h"

enum { TASKS = 1000 };
static _Atomic long task_sum;

static int tiny(void *arg)
{
	atomic_fetch_add_explicit(&task_sum, (long)(intptr_t)arg, memory_order_relaxed);
	return 0;
}

static void bm_errgroup(spb_state *st)
{
	sp_errgroup *g = sp_errgroup_create(NULL, NULL);
	if (!g) {
		spb_skip_with_error(st, "sp_errgroup_create failed");
		return;
	}
	while (spb_keep_running(st)) {
		for (int i = 0; i < TASKS; i++)
			if (sp_errgroup_go(g, tiny, (void *)(intptr_t)1) != 0) {
				spb_skip_with_error(st, "sp_errgroup_go failed");
				break;
			}
		sp_errgroup_wait(g);
	}
	sp_errgroup_destroy(g);
	spb_set_items_processed(st, spb_iterations(st) * TASKS);
}
SPB_REGISTER(errgroup_1000, .group = "errgroup_1000_tasks", .impl = "syncpool",
	     .fn = bm_errgroup);

static void *tiny_thread(void *arg)
{
	tiny(arg);
	return NULL;
}

static void bm_pthread(spb_state *st)
{
	static pthread_t t[TASKS];
	while (spb_keep_running(st)) {
		int n = 0;
		for (; n < TASKS; n++)
			if (pthread_create(&t[n], NULL, tiny_thread, (void *)(intptr_t)1) != 0)
				break;
		for (int i = 0; i < n; i++)
			pthread_join(t[i], NULL);
		if (n < TASKS) {
			spb_skip_with_error(st, "pthread_create failed");
			break;
		}
	}
	spb_set_items_processed(st, spb_iterations(st) * TASKS);
}
SPB_REGISTER(errgroup_pthread, .group = "errgroup_1000_tasks", .impl = "pthread_create_join",
	     .fn = bm_pthread);

/*
 * A group's whole life: create, 10 tiny tasks, wait, destroy.  Each group
 * owns its threads and destroy joins them, so this pays for creating the
 * group's threads every time - beside a thread per task.
 */
enum { LIFE_TASKS = 10 };

static void bm_errgroup_life(spb_state *st)
{
	while (spb_keep_running(st)) {
		sp_errgroup *g = sp_errgroup_create(NULL, NULL);
		if (!g) {
			spb_skip_with_error(st, "sp_errgroup_create failed");
			break;
		}
		for (int i = 0; i < LIFE_TASKS; i++)
			if (sp_errgroup_go(g, tiny, (void *)(intptr_t)1) != 0) {
				spb_skip_with_error(st, "sp_errgroup_go failed");
				break;
			}
		sp_errgroup_wait(g);
		sp_errgroup_destroy(g);
	}
	spb_set_items_processed(st, spb_iterations(st) * LIFE_TASKS);
}
SPB_REGISTER(errgroup_life, .group = "errgroup_group_of_10", .impl = "syncpool",
	     .fn = bm_errgroup_life);

static void bm_pthread_life(spb_state *st)
{
	pthread_t t[LIFE_TASKS];
	while (spb_keep_running(st)) {
		int n = 0;
		for (; n < LIFE_TASKS; n++)
			if (pthread_create(&t[n], NULL, tiny_thread, (void *)(intptr_t)1) != 0)
				break;
		for (int i = 0; i < n; i++)
			pthread_join(t[i], NULL);
		if (n < LIFE_TASKS) {
			spb_skip_with_error(st, "pthread_create failed");
			break;
		}
	}
	spb_set_items_processed(st, spb_iterations(st) * LIFE_TASKS);
}
SPB_REGISTER(errgroup_pthread_life, .group = "errgroup_group_of_10",
	     .impl = "pthread_create_join", .fn = bm_pthread_life);
