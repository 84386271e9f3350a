/*
 * bench/bench_cond.c - Cond ping-pong: two threads hand a turn back and
 * forth through one mutex + condition variable (each op is one handoff:
 * lock, wait for the turn, pass it, signal), beside pthread_cond.
 */
#include <pthread.h>

#include "spbench.h"
#include "syncpool/cond.h"
#include "syncpool/mutex.h"

static struct {
	sp_mutex m;
	sp_cond c;
	int turn;
} sp_pp = { SP_MUTEX_INIT, SP_COND_INIT, 0 };

static void bm_cond_pingpong(spb_state *st)
{
	int me = spb_thread_index(st);
	if (me == 0)
		sp_pp.turn = 0;
	SPB_LOOP(st) {
		sp_mutex_lock(&sp_pp.m);
		while (sp_pp.turn != me)
			sp_cond_wait(&sp_pp.c, &sp_pp.m);
		sp_pp.turn = 1 - me;
		sp_cond_signal(&sp_pp.c);
		sp_mutex_unlock(&sp_pp.m);
	}
	spb_set_items_processed(st, spb_iterations(st));
}
SPB_REGISTER(cond_pingpong, .group = "cond_pingpong", .impl = "syncpool",
	     .fn = bm_cond_pingpong, .threads = { 2 });

static struct {
	pthread_mutex_t m;
	pthread_cond_t c;
	int turn;
} pt_pp = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };

static void bm_pthread_pingpong(spb_state *st)
{
	int me = spb_thread_index(st);
	if (me == 0)
		pt_pp.turn = 0;
	SPB_LOOP(st) {
		pthread_mutex_lock(&pt_pp.m);
		while (pt_pp.turn != me)
			pthread_cond_wait(&pt_pp.c, &pt_pp.m);
		pt_pp.turn = 1 - me;
		pthread_cond_signal(&pt_pp.c);
		pthread_mutex_unlock(&pt_pp.m);
	}
	spb_set_items_processed(st, spb_iterations(st));
}
SPB_REGISTER(cond_pingpong_pthread, .group = "cond_pingpong", .impl = "pthread_cond",
	     .fn = bm_pthread_pingpong, .threads = { 2 });
