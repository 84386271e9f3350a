/* Mutex: an unlock happens before the next lock (also the mutex a cond wait
 * re-takes).  Expected to fail until sync/mutex.c is annotated (run.sh). */
#include "ut.h"

#define NT 8
#define ITER 2000
static sp_mutex mu = SP_MUTEX_INIT;
static sp_cond cv = SP_COND_INIT;
static long counter, racy_counter;
static int ready, racers_in;
static long payload;

static void *worker(void *arg)
{
	(void)arg;
	for (int i = 0; i < ITER; i++) {
		sp_mutex_lock(&mu);
		counter++;
		sp_mutex_unlock(&mu);
	}
	return NULL;
}

/* racy: two threads that both used the lock write outside it at once */
static void *racer(void *arg)
{
	(void)arg;
	sp_mutex_lock(&mu);
	counter++;
	sp_mutex_unlock(&mu);
	__atomic_add_fetch(&racers_in, 1, __ATOMIC_RELAXED);
	ut_wait_flag(&racers_in, 2);
	racy_counter++; /* outside the lock */
	__atomic_add_fetch(&racers_in, 1, __ATOMIC_RELAXED);
	ut_wait_flag(&racers_in, 4);
	return NULL;
}

static void *producer(void *arg)
{
	(void)arg;
	sp_mutex_lock(&mu);
	payload = 7;
	ready = 1;
	sp_cond_signal(&cv);
	sp_mutex_unlock(&mu);
	return NULL;
}

int main(int argc, char **argv)
{
	ut_init(argc, argv);
	pthread_t t[NT];
	ut_start(t, NT, worker);
	ut_join(t, NT);
	UT_CHECK(counter == NT * ITER);
	/* the classic predicate loop under the mutex */
	sp_mutex_lock(&mu);
	ut_start(t, 1, producer);
	while (!ready)
		sp_cond_wait(&cv, &mu);
	UT_CHECK(payload == 7);
	sp_mutex_unlock(&mu);
	ut_join(t, 1);
	if (ut_racy) {
		ut_start(t, 2, racer);
		ut_join(t, 2);
	}
	return ut_done("mutex");
}
