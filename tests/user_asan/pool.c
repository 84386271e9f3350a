/* Pool under a user's AddressSanitizer (the library itself uninstrumented):
 * an object in the pool's cache is poisoned, so a use after Put is reported.
 *
 *   pool            clean: threads get, write and put, cleanup cycles drop,
 *                   destroy - no report, exit 0
 *   pool uap        write to an object after putting it (built-in allocator)
 *   pool uap-user   the same with new_fn/free_fn (size says what to poison)
 * Each "uap" run must end in an AddressSanitizer use-after-poison report. */
#include <syncpool.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SZ 48

static void *u_new(void *arg)
{
	(void)arg;
	return calloc(1, SZ);
}

static void u_free(void *o, void *arg)
{
	(void)arg;
	((volatile char *)o)[SZ - 1] = 0; /* unpoisoned before free_fn runs */
	free(o);
}

static void u_reset(void *o, void *arg)
{
	(void)arg;
	memset(o, 0, SZ); /* runs before the object is poisoned */
}

static void *worker(void *arg)
{
	sp_pool *p = arg;
	for (int r = 0; r < 2000; r++) {
		char *o[4];
		for (int i = 0; i < 4; i++) {
			o[i] = sp_pool_get(p);
			if (!o[i])
				abort();
			memset(o[i], r, SZ); /* every byte of a got object is usable */
		}
		for (int i = 0; i < 4; i++)
			sp_pool_put(p, o[i]);
	}
	return NULL;
}

static void clean(const sp_pool_opts *opts)
{
	sp_pool *p = sp_pool_create(opts);
	if (!p)
		abort();
	pthread_t t[4];
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, worker, p);
	for (int c = 0; c < 10; c++)
		sp_pool_cleanup(p);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	sp_pool_cleanup(p);
	char *o = sp_pool_get(p); /* from the victim or new */
	memset(o, 1, SZ);
	sp_pool_put(p, o);
	sp_pool_destroy(p);
}

int main(int argc, char **argv)
{
	sp_pool_opts builtin = { .size = SZ, .per_cpu_cap = 8 };
	sp_pool_opts user = { .size = SZ, .new_fn = u_new, .free_fn = u_free, .reset_fn = u_reset,
			      .per_cpu_cap = 8 };
	if (argc < 2) {
		clean(&builtin);
		clean(&user);
		puts("pool: ok");
		return 0;
	}
	sp_pool *p = sp_pool_create(strcmp(argv[1], "uap-user") == 0 ? &user : &builtin);
	if (!p)
		return 2;
	char *o = sp_pool_get(p);
	o[0] = 1;
	sp_pool_put(p, o);
	((volatile char *)o)[SZ / 2] = 2; /* use after Put: reported here */
	puts("pool: use after put NOT reported");
	sp_pool_destroy(p);
	return 3;
}
