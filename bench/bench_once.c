/*
 * bench/bench_once.c - the Once fast path (fn already ran) beside
 * pthread_once's.
 */
#include <pthread.h>

#include "spbench.h"
#include "syncpool/once.h"

static int once_runs;
static void once_fn(void *arg)
{
	(void)arg;
	once_runs++;
}

static sp_once once = SP_ONCE_INIT;

static void bm_once(spb_state *st)
{
	sp_once_do(&once, once_fn, NULL);
	SPB_LOOP(st) {
		sp_once_do(&once, once_fn, NULL);
		spb_clobber_memory();
	}
	spb_set_items_processed(st, spb_iterations(st));
}
SPB_REGISTER(once_fast, .group = "once_fast_path", .impl = "syncpool", .fn = bm_once,
	     .threads = { 1, 2 });

static pthread_once_t ponce = PTHREAD_ONCE_INIT;
static void ponce_fn(void)
{
	once_runs++;
}

static void bm_pthread_once(spb_state *st)
{
	pthread_once(&ponce, ponce_fn);
	SPB_LOOP(st) {
		pthread_once(&ponce, ponce_fn);
		spb_clobber_memory();
	}
	spb_set_items_processed(st, spb_iterations(st));
}
SPB_REGISTER(once_pthread, .group = "once_fast_path", .impl = "pthread_once",
	     .fn = bm_pthread_once, .threads = { 1, 2 });
