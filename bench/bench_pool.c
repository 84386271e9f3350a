/*
 * bench/bench_pool.c - sp_pool beside the allocators and the floor.
 *
 *   pool_get_put     Get+Put of a 64-byte object, 1, 2 and 8 threads (2
 *                    cores: 8 is oversubscribed), one pool shared by all:
 *                    syncpool; jemalloc mallocx+sdallocx; glibc malloc+free
 *                    (__libc_malloc: the binary links jemalloc, which would
 *                    otherwise answer malloc); a bare thread-local free list,
 *                    the floor: "tls_freelist" called as out-of-line
 *                    functions, as sp_pool_get/sp_pool_put are (the same two
 *                    calls, nothing shared), and "tls_freelist_inline", the
 *                    same code inlined into the loop (a few instructions the
 *                    compiler can overlap across iterations: no library
 *                    call can match it; shown for honesty)
 *   pool_overflow    Go's BenchmarkPoolOverflow: 100 Puts then 100 Gets per
 *                    iteration (ns/op is per iteration); the floor beside it
 *   pool_starvation  Go's BenchmarkPoolStarvation: 67 Puts then 100 Gets per
 *                    iteration, so a third of the Gets miss locally and steal
 *   pool_rss         RSS (MiB) of a pool holding 32 MiB of 4 KiB objects,
 *                    before and after two cleanups (the pool's jemalloc arena
 *                    is purged): counters rss_full_mib, rss_after_mib
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jemalloc/jemalloc.h>

#include "spbench.h"
#include "syncpool/pool.h"

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);

#define OBJ 64

/* ---------------------------------------------------------------- pools */

static sp_pool *jem_pool; /* size 64, jemalloc */
static sp_pool *tok_pool; /* token objects, Go's Put(1) */
static pthread_once_t pools_once = PTHREAD_ONCE_INIT;

static void tok_free(void *obj, void *arg)
{
	(void)obj;
	(void)arg;
}

static void pools_init(void)
{
	sp_pool_opts o = { .size = OBJ };
	jem_pool = sp_pool_create(&o);
	sp_pool_opts t = { .free_fn = tok_free };
	tok_pool = sp_pool_create(&t);
	if (!jem_pool || !tok_pool)
		abort();
}

/* ---------------------------------------------------------------- get+put */

static void bm_get_put_syncpool(spb_state *st)
{
	pthread_once(&pools_once, pools_init);
	sp_pool *p = jem_pool;
	SPB_LOOP(st)
	{
		void *o = sp_pool_get(p);
		spb_do_not_optimize(o);
		sp_pool_put(p, o);
	}
	spb_set_items_processed(st, spb_iterations(st));
}
SPB_REGISTER(pool_gp_syncpool, .group = "pool_get_put", .impl = "syncpool", .fn = bm_get_put_syncpool,
	     .threads = { 1, 2, 8 });

static void bm_get_put_jemalloc(spb_state *st)
{
	SPB_LOOP(st)
	{
		void *o = mallocx(OBJ, 0);
		spb_do_not_optimize(o);
		sdallocx(o, OBJ, 0);
	}
	spb_set_items_processed(st, spb_iterations(st));
}
SPB_REGISTER(pool_gp_jemalloc, .group = "pool_get_put", .impl = "jemalloc", .fn = bm_get_put_jemalloc,
	     .threads = { 1, 2, 8 });

static void bm_get_put_glibc(spb_state *st)
{
	SPB_LOOP(st)
	{
		void *o = __libc_malloc(OBJ);
		spb_do_not_optimize(o);
		__libc_free(o);
	}
	spb_set_items_processed(st, spb_iterations(st));
}
SPB_REGISTER(pool_gp_glibc, .group = "pool_get_put", .impl = "glibc", .fn = bm_get_put_glibc,
	     .threads = { 1, 2, 8 });

/* The floor: a free list no other thread can see (no atomics, no CPU id). */
struct node {
	struct node *next;
	char pad[OBJ - sizeof(struct node *)];
};
static __thread struct node *tl_head;

static inline __attribute__((always_inline)) void *tl_pop_in(void)
{
	struct node *n = tl_head;
	if (__builtin_expect(n == NULL, 0))
		return malloc(OBJ);
	tl_head = n->next;
	return n;
}

static inline __attribute__((always_inline)) void tl_push_in(void *o)
{
	struct node *n = o;
	n->next = tl_head;
	tl_head = n;
}

/* The library-call shape: one call to get, one to put. */
__attribute__((noinline)) static void *tl_pop(void)
{
	return tl_pop_in();
}

__attribute__((noinline)) static void tl_push(void *o)
{
	tl_push_in(o);
}

static void tl_drain(void)
{
	while (tl_head) {
		struct node *n = tl_head;
		tl_head = n->next;
		free(n);
	}
}

static void bm_get_put_tls(spb_state *st)
{
	SPB_LOOP(st)
	{
		void *o = tl_pop();
		spb_do_not_optimize(o);
		tl_push(o);
	}
	tl_drain();
	spb_set_items_processed(st, spb_iterations(st));
}
SPB_REGISTER(pool_gp_tls, .group = "pool_get_put", .impl = "tls_freelist", .fn = bm_get_put_tls,
	     .threads = { 1, 2, 8 });

static void bm_get_put_tls_inline(spb_state *st)
{
	SPB_LOOP(st)
	{
		void *o = tl_pop_in();
		spb_do_not_optimize(o);
		tl_push_in(o);
	}
	tl_drain();
	spb_set_items_processed(st, spb_iterations(st));
}
SPB_REGISTER(pool_gp_tls_inline, .group = "pool_get_put", .impl = "tls_freelist_inline",
	     .fn = bm_get_put_tls_inline, .threads = { 1, 2, 8 });

/* ---------------------------------------------------------------- Go's patterns */

static void bm_overflow_syncpool(spb_state *st)
{
	pthread_once(&pools_once, pools_init);
	sp_pool *p = tok_pool;
	SPB_LOOP(st)
	{
		for (int b = 0; b < 100; b++)
			sp_pool_put(p, (void *)(uintptr_t)1);
		for (int b = 0; b < 100; b++)
			spb_do_not_optimize(sp_pool_get(p));
	}
}
SPB_REGISTER(pool_of_syncpool, .group = "pool_overflow", .impl = "syncpool", .fn = bm_overflow_syncpool,
	     .threads = { 1, 2 });

static void bm_overflow_tls(spb_state *st)
{
	void *held[100];
	for (int b = 0; b < 100; b++)
		held[b] = malloc(OBJ);
	SPB_LOOP(st)
	{
		for (int b = 0; b < 100; b++)
			tl_push(held[b]);
		for (int b = 0; b < 100; b++) {
			held[b] = tl_pop();
			spb_do_not_optimize(held[b]);
		}
	}
	for (int b = 0; b < 100; b++)
		free(held[b]);
	tl_drain();
}
SPB_REGISTER(pool_of_tls, .group = "pool_overflow", .impl = "tls_freelist", .fn = bm_overflow_tls,
	     .threads = { 1, 2 });

static void bm_starvation_syncpool(spb_state *st)
{
	pthread_once(&pools_once, pools_init);
	sp_pool *p = tok_pool;
	const int count = 100, starved = 100 - (int)(100 * 0.33f);
	SPB_LOOP(st)
	{
		for (int b = 0; b < starved; b++)
			sp_pool_put(p, (void *)(uintptr_t)1);
		for (int b = 0; b < count; b++)
			spb_do_not_optimize(sp_pool_get(p));
	}
}
SPB_REGISTER(pool_st_syncpool, .group = "pool_starvation", .impl = "syncpool",
	     .fn = bm_starvation_syncpool, .threads = { 1, 2 });

/* ---------------------------------------------------------------- memory back to the OS */

static double rss_mib(void)
{
	long pages = 0, res = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (!f)
		return -1;
	if (fscanf(f, "%ld %ld", &pages, &res) != 2)
		res = -1;
	fclose(f);
	return (double)res * (double)sysconf(_SC_PAGESIZE) / (1 << 20);
}

static void bm_rss(spb_state *st)
{
	enum { N = 8192, SZ = 4096 };
	static void *objs[N];
	double before = 0, full = 0, after = 0;
	SPB_LOOP(st)
	{
		sp_pool_opts o = { .size = SZ, .per_cpu_cap = N };
		sp_pool *p = sp_pool_create(&o);
		before = rss_mib();
		for (int i = 0; i < N; i++) {
			objs[i] = sp_pool_get(p);
			memset(objs[i], 1, SZ);
		}
		for (int i = 0; i < N; i++)
			sp_pool_put(p, objs[i]);
		full = rss_mib();
		sp_pool_cleanup(p);
		sp_pool_cleanup(p);
		after = rss_mib();
		sp_pool_destroy(p);
	}
	spb_counter(st, "rss_before_mib", before, SPB_COUNTER_DEFAULT);
	spb_counter(st, "rss_full_mib", full, SPB_COUNTER_DEFAULT);
	spb_counter(st, "rss_after_mib", after, SPB_COUNTER_DEFAULT);
}
SPB_REGISTER(pool_rss_syncpool, .group = "pool_rss", .impl = "syncpool", .fn = bm_rss, .iterations = 1);
