/* Pool: a put happens before the get that returns the same object to
 * another thread.  Expected to fail until pool/ is annotated (run.sh). */
#include "ut.h"

#define NT 4
static sp_pool *pl;
static long racy_x;

static void *worker(void *arg)
{
	(void)arg;
	for (int i = 0; i < 500; i++) {
		unsigned char *o = sp_pool_get(pl);
		UT_CHECK(o != NULL);
		memset(o, i, 64);
		sp_pool_put(pl, o);
	}
	if (ut_racy)
		racy_x++;
	return NULL;
}

int main(int argc, char **argv)
{
	ut_init(argc, argv);
	sp_pool_opts o = { .size = 64 };
	pl = sp_pool_create(&o);
	UT_CHECK(pl != NULL);
	pthread_t t[NT];
	ut_start(t, NT, worker);
	ut_join(t, NT);
	sp_pool_destroy(pl);
	return ut_done("pool");
}
