/* Pool: a Put happens before whatever takes the object out again - a Get on
 * another thread (from any source: the private slot, the stack, a steal, the
 * victim cache) or a drop (cleanup, a full cache) that hands it to free_fn or
 * frees it - for the built-in allocator and for new_fn/free_fn/reset_fn.
 * Racy variant: the producer writes its objects after putting them. */
#include "ut.h"

#define NT 4  /* stress workers */
#define K 64  /* objects handed from the producer to the consumer */
#define OBJ 8 /* longs per object */

static int phase_flag;
static int racy_now; /* the racy variant, on the pool whose cache keeps all K */

static void *u_new(void *arg)
{
	(void)arg;
	return calloc(OBJ, sizeof(long));
}

static void u_free(void *o, void *arg)
{
	(void)arg;
	UT_CHECK(((long *)o)[OBJ - 1] >= 0); /* reads the last putter's write */
	free(o);
}

static void u_reset(void *o, void *arg)
{
	(void)arg;
	((long *)o)[0] = 0;
}

/* The producer fills K objects and puts them; the consumer takes K objects
 * (its CPU's slot/stack, steals from the producer's CPU, new ones) and reads
 * them.  Ordered in time by a relaxed flag only: the pool must carry the
 * happens-before. */
static void *producer(void *arg)
{
	sp_pool *pl = arg;
	long *o[K];
	for (int i = 0; i < K; i++) {
		o[i] = sp_pool_get(pl);
		UT_CHECK(o[i] != NULL);
		for (int j = 0; j < OBJ; j++)
			o[i][j] = i + j + 1;
	}
	for (int i = 0; i < K; i++)
		sp_pool_put(pl, o[i]);
	if (racy_now)
		for (int i = 0; i < K; i++)
			o[i][OBJ - 1] = 7; /* use after Put: must be reported */
	ut_set_flag(&phase_flag, 1);
	return NULL;
}

static void *consumer(void *arg)
{
	sp_pool *pl = arg;
	long *o[K], sum = 0;
	ut_wait_flag(&phase_flag, 1);
	for (int i = 0; i < K; i++) {
		o[i] = sp_pool_get(pl);
		UT_CHECK(o[i] != NULL);
		for (int j = 0; j < OBJ; j++)
			sum += o[i][j];
		o[i][1] = sum;
	}
	for (int i = 0; i < K; i++)
		sp_pool_put(pl, o[i]);
	UT_CHECK(sum >= 0);
	return NULL;
}

/* Workers hold a few objects at a time, write them, and put them back,
 * while the main thread runs cleanup cycles (victim Gets, drops on the
 * cleaning thread) on a pool whose small cap also drops on Put. */
static void *worker(void *arg)
{
	sp_pool *pl = arg;
	long *o[6];
	for (int r = 0; r < 300; r++) {
		for (int i = 0; i < 6; i++) {
			o[i] = sp_pool_get(pl);
			UT_CHECK(o[i] != NULL);
			for (int j = 0; j < OBJ; j++)
				o[i][j] += r;
		}
		for (int i = 0; i < 6; i++)
			sp_pool_put(pl, o[i]);
	}
	return NULL;
}

static void run(sp_pool *pl)
{
	pthread_t t[NT];
	ut_set_flag(&phase_flag, 0);
	UT_CHECK(pthread_create(&t[0], NULL, producer, pl) == 0);
	UT_CHECK(pthread_create(&t[1], NULL, consumer, pl) == 0);
	ut_join(t, 2);

	for (int i = 0; i < NT; i++)
		UT_CHECK(pthread_create(&t[i], NULL, worker, pl) == 0);
	for (int c = 0; c < 20; c++) {
		sp_pool_cleanup(pl);
		ut_sleep_ms(1);
	}
	ut_join(t, NT);
	sp_pool_cleanup(pl); /* drops on this thread what the workers put */
	sp_pool_cleanup(pl);
}

int main(int argc, char **argv)
{
	ut_init(argc, argv);

	sp_pool_opts b = { .size = OBJ * sizeof(long), .per_cpu_cap = 4 };
	sp_pool *pl = sp_pool_create(&b);
	UT_CHECK(pl != NULL);
	run(pl);
	sp_pool_destroy(pl);

	b.per_cpu_cap = 0; /* default cap: the handoff goes through stacks and steals */
	pl = sp_pool_create(&b);
	UT_CHECK(pl != NULL);
	racy_now = ut_racy;
	run(pl);
	racy_now = 0;
	sp_pool_destroy(pl);

	sp_pool_opts u = { .size = OBJ * sizeof(long), .new_fn = u_new, .free_fn = u_free,
			   .reset_fn = u_reset, .per_cpu_cap = 4 };
	pl = sp_pool_create(&u);
	UT_CHECK(pl != NULL);
	run(pl);
	sp_pool_destroy(pl);
	return ut_done("pool");
}
