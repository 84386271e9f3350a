/* RWMutex: an unlock happens before later rlocks and locks; runlocks happen
 * before the next lock.  Expected to fail until sync/rwmutex.c is annotated. */
#include "ut.h"

#define NT 8
#define ITER 2000
static sp_rwmutex rw = SP_RWMUTEX_INIT;
static long value, racy_v;
static int racers_in;

static void *worker(void *arg)
{
	long id = (long)arg;
	for (int i = 0; i < ITER; i++) {
		if (i % 10 == (int)id % 10) {
			sp_rwmutex_lock(&rw);
			value++;
			sp_rwmutex_unlock(&rw);
		} else {
			sp_rwmutex_rlock(&rw);
			volatile long x = value;
			(void)x;
			sp_rwmutex_runlock(&rw);
		}
	}
	return NULL;
}

/* racy: two readers holding the read lock at once both write */
static void *racer(void *arg)
{
	(void)arg;
	sp_rwmutex_rlock(&rw);
	__atomic_add_fetch(&racers_in, 1, __ATOMIC_RELAXED);
	ut_wait_flag(&racers_in, 2);
	racy_v++; /* written under a read lock */
	__atomic_add_fetch(&racers_in, 1, __ATOMIC_RELAXED);
	ut_wait_flag(&racers_in, 4);
	sp_rwmutex_runlock(&rw);
	return NULL;
}

int main(int argc, char **argv)
{
	ut_init(argc, argv);
	pthread_t t[NT];
	ut_start(t, NT, worker);
	ut_join(t, NT);
	UT_CHECK(value == NT * (ITER / 10));
	if (ut_racy) {
		ut_start(t, 2, racer);
		ut_join(t, 2);
	}
	return ut_done("rwmutex");
}
