/* Flight: the leader's fn (its effects and the value it returns) happens
 * before the return of every joiner's sp_flight_do; every holder's use of a
 * shared value happens before val_free (free), whoever releases last.
 * Several rounds, so call records are reused. */
#include "ut.h"

#define NT 8
#define ROUNDS 3
struct val {
	long n;
	long table[32];
	long scratch; /* racy variant only */
};

static sp_flight *fl;
static long side[ROUNDS]; /* written by the round's fn, read by every caller */
static int arrived, back, shared_seen;

static int load(void *arg, void **out)
{
	long round = (long)arg;
	ut_wait_flag(&arrived, NT * (int)(round + 1)); /* all called: most join */
	ut_sleep_ms(20);
	struct val *v = malloc(sizeof *v);
	v->n = 32;
	for (int i = 0; i < 32; i++)
		v->table[i] = i + 1;
	side[round] = 5 + round;
	*out = v;
	return 0;
}

static void *caller(void *arg)
{
	(void)arg;
	for (long round = 0; round < ROUNDS; round++) {
		sp_flight_result r;
		__atomic_add_fetch(&arrived, 1, __ATOMIC_RELAXED);
		UT_CHECK(sp_flight_do(fl, "key", 3, load, (void *)round, NULL, &r) == 0);
		struct val *v = r.val;
		long s = 0;
		for (int i = 0; i < v->n; i++)
			s += v->table[i];
		UT_CHECK(s == 32 * 33 / 2 && side[round] == 5 + round);
		if (r.shared)
			__atomic_add_fetch(&shared_seen, 1, __ATOMIC_RELAXED);
		if (ut_racy && r.shared)
			v->scratch++; /* joiners are not ordered with each other */
		ut_sleep_ms(1 + (int)round);
		sp_flight_result_release(fl, &r); /* the last holder frees v */
		__atomic_add_fetch(&back, 1, __ATOMIC_RELAXED);
		ut_wait_flag(&back, NT * (int)(round + 1));
	}
	return NULL;
}

int main(int argc, char **argv)
{
	ut_init(argc, argv);
	fl = sp_flight_create(free);
	UT_CHECK(fl != NULL);
	pthread_t t[NT];
	ut_start(t, NT, caller);
	ut_join(t, NT);
	UT_CHECK(shared_seen > 0);
	sp_flight_destroy(fl);
	return ut_done("flight");
}
