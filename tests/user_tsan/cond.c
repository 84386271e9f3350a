/* Cond: a signal/broadcast happens before the return of the wait it wakes.
 * The data is handed over by the cond alone (not under the mutex: sp_mutex
 * is checked by mutex.c).  The notifier repeats its signal/broadcast until
 * the waiters say (relaxed atomics, no happens-before) that they woke, so
 * no wake-up is lost. */
#include "ut.h"

#define NW 6
static sp_mutex mu = SP_MUTEX_INIT;
static sp_cond cv = SP_COND_INIT;
static long payload[NW];
static long bpayload;
static long late;
static int woke, phase, returned;

static void *waiter(void *arg)
{
	long id = (long)arg;
	sp_mutex_lock(&mu);
	sp_cond_wait(&cv, &mu);
	sp_mutex_unlock(&mu);
	UT_CHECK(payload[id] == 100 + id); /* written after create, before every signal */
	__atomic_add_fetch(&woke, 1, __ATOMIC_RELAXED);
	ut_wait_flag(&phase, 2);
	/* phase 2: broadcast, with a context that is never done */
	sp_ctx *c;
	UT_CHECK(sp_ctx_with_cancel(NULL, &c) == 0);
	sp_mutex_lock(&mu);
	UT_CHECK(sp_cond_wait_ctx(&cv, &mu, c) == 0);
	sp_mutex_unlock(&mu);
	UT_CHECK(bpayload == 77);
	if (ut_racy && id == 0)
		late = 1; /* the main thread reads it with no synchronization */
	sp_ctx_release(c);
	__atomic_add_fetch(&returned, 1, __ATOMIC_RELAXED);
	return NULL;
}

int main(int argc, char **argv)
{
	ut_init(argc, argv);
	pthread_t t[NW];
	ut_start(t, NW, waiter);
	for (int i = 0; i < NW; i++)
		payload[i] = 100 + i;
	/* phase 1: one signal at a time until all woke */
	while (ut_get_flag(&woke) < NW) {
		sp_cond_signal(&cv);
		sched_yield();
	}
	/* phase 2: data written before the broadcasts */
	bpayload = 77;
	ut_set_flag(&phase, 2);
	int64_t end = sp_now_ns() + (int64_t)20 * 1000 * 1000 * 1000;
	while (ut_get_flag(&returned) < NW) {
		UT_CHECK(sp_now_ns() < end);
		sp_cond_broadcast(&cv);
		ut_sleep_ms(1);
	}
	if (ut_racy)
		printf("late=%ld\n", late);
	ut_join(t, NW);
	return ut_done("cond");
}
