/* Once: fn's effects happen before every return of sp_once_do - for the
 * callers that parked while fn ran, for later callers on the inlined fast
 * path and for callers of the exported function. */
#include "ut.h"

#define NT 8
static sp_once once = SP_ONCE_INIT;
static long table[64];
static long after_count; /* racy: written by every caller after once */
static int arrived;

static void build(void *arg)
{
	(void)arg;
	ut_wait_flag(&arrived, NT); /* everybody else is waiting on the once */
	ut_sleep_ms(20);            /* ... long enough to park */
	for (int i = 0; i < 64; i++)
		table[i] = i * i;
}

static void *caller(void *arg)
{
	long id = (long)arg;
	__atomic_add_fetch(&arrived, 1, __ATOMIC_RELAXED);
	if (id % 2)
		(sp_once_do)(&once, build, NULL);
	else
		sp_once_do(&once, build, NULL);
	for (int i = 0; i < 64; i++)
		UT_CHECK(table[i] == i * i);
	if (ut_racy)
		after_count++; /* callers are not ordered with each other */
	return NULL;
}

static void *late_caller(void *arg)
{
	long id = (long)arg;
	ut_wait_flag(&arrived, 2 * NT + 1);
	if (id % 2)
		(sp_once_do)(&once, build, NULL);
	else
		sp_once_do(&once, build, NULL); /* inlined acquire load */
	for (int i = 0; i < 64; i++)
		UT_CHECK(table[i] == i * i);
	return NULL;
}

int main(int argc, char **argv)
{
	ut_init(argc, argv);
	pthread_t t[NT], l[NT];
	ut_start(l, NT, late_caller); /* created before fn runs: no HB from create */
	ut_start(t, NT, caller);
	ut_wait_flag(&arrived, NT);
	/* wait until fn is done, without synchronizing: poll the table */
	while (__atomic_load_n(&once.state_, __ATOMIC_RELAXED) != SP_ONCE_DONE_)
		ut_sleep_ms(1);
	__atomic_add_fetch(&arrived, NT + 1, __ATOMIC_RELAXED);
	ut_join(t, NT);
	ut_join(l, NT);
	return ut_done("once");
}
