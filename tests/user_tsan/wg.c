/* WaitGroup: every done (inline header path and exported function) happens
 * before the wait it unblocks, for waiters that return at once and for
 * waiters that parked; a group reused for several rounds. */
#include "ut.h"

#define NT 8
static sp_waitgroup wg = SP_WAITGROUP_INIT;
static long data[NT];
static long late;
static int round_no, exported;

static void *worker(void *arg)
{
	long i = (long)arg;
	if (i % 2)
		ut_sleep_ms(5); /* some dones land while waiters are parked */
	data[i] = i * 3 + round_no;
	if (exported)
		(sp_waitgroup_done)(&wg);
	else
		sp_waitgroup_done(&wg);
	if (ut_racy && i == 0)
		late = 1; /* after done: races with the waiter's read */
	return NULL;
}

static void check(void)
{
	for (int i = 0; i < NT; i++)
		UT_CHECK(data[i] == i * 3 + round_no);
}

static void *waiter(void *arg)
{
	(void)arg;
	sp_waitgroup_wait(&wg);
	check();
	return NULL;
}

int main(int argc, char **argv)
{
	ut_init(argc, argv);
	for (round_no = 0; round_no < 4; round_no++) {
		pthread_t t[NT], w[3];
		exported = round_no & 1;
		if (exported)
			(sp_waitgroup_add)(&wg, NT);
		else
			sp_waitgroup_add(&wg, NT);
		ut_start(w, 3, waiter);
		ut_start(t, NT, worker);
		sp_waitgroup_wait(&wg);
		check(); /* before any join: only the WaitGroup orders it */
		if (ut_racy && round_no == 0)
			printf("late=%ld\n", late);
		ut_join(w, 3);
		ut_join(t, NT);
	}
	return ut_done("wg");
}
