/*
 * examples/cacheload.c - a read-mostly cache whose misses load through
 * singleflight, so that a hot key that expires costs one backend call, not
 * one per waiting request.
 *
 *   cache     a fixed-size, direct-mapped hash table in 16 shards, each
 *             guarded by an sp_rwmutex (hits take only the read lock);
 *             entries expire after a TTL, so misses keep happening
 *   misses    go through sp_flight_do keyed by the cache key: the first
 *             request for a key runs the load, concurrent ones wait for it
 *             and share the value (or give up when their context ends)
 *   backend   a slow function (sleeps ~1 ms per call and counts its calls);
 *             an sp_sema caps the loads running at once
 *   timeouts  every request runs under sp_ctx_with_timeout; waiting for the
 *             semaphore or for a shared load ends when it expires
 *
 * N threads request keys drawn from a Zipf distribution (a few keys are
 * very hot).  The same request sequence runs twice: with singleflight, and
 * with every miss calling the backend itself; the table printed compares
 * them.  --test runs a small configuration and checks the invariants.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "syncpool/ctx.h"
#include "syncpool/flight.h"
#include "syncpool/rwmutex.h"
#include "syncpool/sema.h"

/* ------------------------------------------------------------- options */

typedef struct config {
	int threads;
	int requests;       /* per thread                                   */
	int keys;           /* key space: 1..keys                          */
	double zipf_s;      /* Zipf exponent                               */
	int cache_slots;    /* cache capacity (entries)                    */
	int ttl_ms;         /* entry lifetime                              */
	int backend_us;     /* time one backend call takes                 */
	int max_loads;      /* sp_sema size: backend calls at once         */
	int timeout_ms;     /* per-request context timeout                 */
	bool test;
} config;

static config CFG = {
	.threads = 64, .requests = 2000, .keys = 1000, .zipf_s = 1.1, .cache_slots = 4096,
	.ttl_ms = 100, .backend_us = 1000, .max_loads = 8, .timeout_ms = 10,
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: cacheload [options]\n"
		"\n"
		"A read-mostly cache (sp_rwmutex shards) whose misses load through sp_flight\n"
		"from a slow backend, with sp_sema capping concurrent loads and an sp_ctx\n"
		"timeout per request; runs the same requests with and without singleflight.\n"
		"\n"
		"  --threads N      requesting threads (default %d)\n"
		"  --requests N     requests per thread (default %d)\n"
		"  --keys N         distinct keys (default %d)\n"
		"  --zipf S         Zipf exponent of the key popularity, 0-3 (default %.2f)\n"
		"  --cache N        cache capacity in entries (default %d)\n"
		"  --ttl-ms N       entry lifetime (default %d)\n"
		"  --backend-us N   duration of one backend load (default %d)\n"
		"  --max-loads N    backend loads allowed at once (default %d)\n"
		"  --timeout-ms N   per-request timeout (default %d)\n"
		"  --test           small run that checks its own invariants\n"
		"  --help           this text\n",
		CFG.threads, CFG.requests, CFG.keys, CFG.zipf_s, CFG.cache_slots, CFG.ttl_ms,
		CFG.backend_us, CFG.max_loads, CFG.timeout_ms);
}

static void __attribute__((noreturn, format(printf, 1, 2))) bad(const char *fmt, ...)
{
	va_list ap;
	fputs("cacheload: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'cacheload --help'.\n", stderr);
	exit(2);
}

static int int_arg(const char *opt, const char *s, long lo, long hi)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (end == s || *end || errno || v < lo || v > hi)
		bad("%s: expected an integer %ld..%ld, got '%s'", opt, lo, hi, s);
	return (int)v;
}

/* ------------------------------------------------------------- helpers */

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

/* The one right value for a key: what the backend returns. */
static uint64_t value_of(uint64_t key) { return mix64(key ^ 0x5eed5eed5eedULL) | 1; }

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* Zipf over 1..n: the cumulative distribution, sampled by binary search. */
static double *ZIPF_CDF;

static void zipf_init(int n, double s)
{
	ZIPF_CDF = malloc(sizeof(double) * (size_t)n);
	if (!ZIPF_CDF)
		bad("out of memory");
	double sum = 0;
	for (int i = 0; i < n; i++)
		sum += 1.0 / pow(i + 1, s);
	double acc = 0;
	for (int i = 0; i < n; i++) {
		acc += 1.0 / pow(i + 1, s) / sum;
		ZIPF_CDF[i] = acc;
	}
	ZIPF_CDF[n - 1] = 1.0;
}

static uint64_t zipf_key(uint64_t *rng)
{
	double u = (double)(xorshift(rng) >> 11) * 0x1.0p-53;
	int lo = 0, hi = CFG.keys - 1;
	while (lo < hi) {
		int mid = lo + (hi - lo) / 2;
		if (ZIPF_CDF[mid] < u)
			lo = mid + 1;
		else
			hi = mid;
	}
	return (uint64_t)lo + 1; /* key 0 marks an empty cache slot */
}

/* ------------------------------------------------------------- the cache */

#define NSHARDS 16

typedef struct entry {
	uint64_t key; /* 0: empty */
	uint64_t val;
	int64_t expires_ns;
} entry;

/* A shard: its lock and slot array; alone on its cache lines. */
typedef struct shard {
	alignas(128) sp_rwmutex mu;
	entry *slots;
} shard;

static shard CACHE[NSHARDS];
static int SLOTS_PER_SHARD;

static entry *cache_slot(uint64_t key, shard **sh)
{
	uint64_t h = mix64(key);
	*sh = &CACHE[h % NSHARDS];
	return &(*sh)->slots[(h / NSHARDS) % (uint64_t)SLOTS_PER_SHARD];
}

/* A hit copies the value out under the read lock. */
static bool cache_get(uint64_t key, uint64_t *val)
{
	shard *sh;
	entry *e = cache_slot(key, &sh);
	bool hit = false;
	int64_t now = sp_now_ns();
	sp_rwmutex_rlock(&sh->mu);
	if (e->key == key && e->expires_ns > now) {
		*val = e->val;
		hit = true;
	}
	sp_rwmutex_runlock(&sh->mu);
	return hit;
}

static void cache_put(uint64_t key, uint64_t val)
{
	shard *sh;
	entry *e = cache_slot(key, &sh);
	int64_t expires = sp_now_ns() + (int64_t)CFG.ttl_ms * 1000000;
	sp_rwmutex_lock(&sh->mu);
	*e = (entry){ key, val, expires };
	sp_rwmutex_unlock(&sh->mu);
}

static void cache_reset(void)
{
	for (int i = 0; i < NSHARDS; i++) {
		sp_rwmutex_lock(&CACHE[i].mu);
		memset(CACHE[i].slots, 0, sizeof(entry) * (size_t)SLOTS_PER_SHARD);
		sp_rwmutex_unlock(&CACHE[i].mu);
	}
}

/* ------------------------------------------------------------- the backend */

static sp_sema LOADS; /* caps concurrent backend calls */
static struct {
	alignas(128) _Atomic int64_t calls;
	alignas(128) _Atomic int inflight;
	_Atomic int max_inflight;
} BACKEND;

/*
 * A slow load: waits for a backend slot (until ctx ends), then "queries"
 * for backend_us.  Once it holds a slot it finishes even if ctx ends - the
 * answer is still worth caching for the next request.
 */
static int backend_load(uint64_t key, uint64_t *val, sp_ctx *ctx)
{
	int err = sp_sema_acquire(&LOADS, 1, ctx);
	if (err)
		return err;
	int now = atomic_fetch_add(&BACKEND.inflight, 1) + 1;
	int max = atomic_load(&BACKEND.max_inflight);
	while (now > max && !atomic_compare_exchange_weak(&BACKEND.max_inflight, &max, now))
		;
	atomic_fetch_add(&BACKEND.calls, 1);
	struct timespec ts = { 0, (long)CFG.backend_us * 1000 };
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
	*val = value_of(key);
	atomic_fetch_sub(&BACKEND.inflight, 1);
	sp_sema_release(&LOADS, 1);
	return 0;
}

/* ------------------------------------------------------------- requests */

/* What a load shares with the requests that joined it. */
typedef struct loaded {
	uint64_t key, val;
} loaded;

typedef struct load_req {
	uint64_t key;
	sp_ctx *ctx;
	bool ran;       /* this request's thread ran the load (the leader) */
	bool recheck;   /* the leader found the key cached after all        */
} load_req;

/*
 * Runs once per key at a time, on the leader's thread.  A call for the
 * key may have finished between our miss and our flight_do, so look again
 * before going to the backend (groupcache does the same).
 */
static int flight_load(void *arg, void **val)
{
	load_req *r = arg;
	r->ran = true;
	uint64_t v;
	if (cache_get(r->key, &v)) {
		r->recheck = true;
	} else {
		int err = backend_load(r->key, &v, r->ctx);
		if (err)
			return err;
		cache_put(r->key, v);
	}
	loaded *l = malloc(sizeof *l);
	if (!l)
		return ENOMEM;
	*l = (loaded){ r->key, v };
	*val = l;
	return 0;
}

typedef struct tstats {
	int64_t requests, hits, misses;
	int64_t led, joined, rechecked;      /* misses that got a value, by how          */
	int64_t to_sema, to_wait, to_shared; /* timeouts: backend slot, shared wait, shared failure */
	int64_t other_errors;                /* must stay 0                                */
	int64_t wrong;                       /* values for another key: must stay 0        */
	int64_t *lat_ns;                     /* each request's latency                     */
} tstats;

static sp_flight *FLIGHT;
static bool USE_FLIGHT;
static pthread_barrier_t START;

typedef struct worker {
	pthread_t tid;
	int idx;
	tstats st;
} worker;

static void one_request(uint64_t key, tstats *st)
{
	st->requests++;
	uint64_t v;
	if (cache_get(key, &v)) {
		st->hits++;
		if (v != value_of(key))
			st->wrong++;
		return;
	}
	st->misses++;
	sp_ctx *ctx;
	if (sp_ctx_with_timeout(NULL, (int64_t)CFG.timeout_ms * 1000000, &ctx)) {
		st->other_errors++;
		return;
	}
	if (!USE_FLIGHT) {
		int err = backend_load(key, &v, ctx);
		if (err == ETIMEDOUT) {
			st->to_sema++;
		} else if (err) {
			st->other_errors++;
		} else {
			cache_put(key, v);
			st->led++;
			if (v != value_of(key))
				st->wrong++;
		}
		sp_ctx_release(ctx);
		return;
	}
	load_req req = { .key = key, .ctx = ctx };
	sp_flight_result res;
	int err = sp_flight_do(FLIGHT, &key, sizeof key, flight_load, &req, ctx, &res);
	if (err == ETIMEDOUT) {            /* gave up waiting for another's load */
		st->to_wait++;
	} else if (err) {
		st->other_errors++;
	} else {
		if (res.err == ETIMEDOUT) {
			if (req.ran)
				st->to_sema++;     /* our own load found no backend slot */
			else
				st->to_shared++;   /* the load we joined found none      */
		} else if (res.err) {
			st->other_errors++;
		} else {
			const loaded *l = res.val;
			if (l->key != key || l->val != value_of(key))
				st->wrong++;
			if (!req.ran)
				st->joined++;
			else if (req.recheck)
				st->rechecked++;
			else
				st->led++;
		}
		sp_flight_result_release(FLIGHT, &res);
	}
	sp_ctx_release(ctx);
}

static void *worker_main(void *arg)
{
	worker *w = arg;
	uint64_t rng = mix64((uint64_t)w->idx + 1) | 1; /* same sequence in both runs */
	pthread_barrier_wait(&START);
	for (int i = 0; i < CFG.requests; i++) {
		uint64_t key = zipf_key(&rng);
		int64_t t0 = sp_now_ns();
		one_request(key, &w->st);
		w->st.lat_ns[i] = sp_now_ns() - t0;
	}
	return NULL;
}

typedef struct run_result {
	tstats sum;
	int64_t backend_calls;
	int max_inflight;
	double seconds;
	int64_t p50, p99, pmax; /* request latency, ns */
	int64_t cache_bad;      /* cached entries with a wrong value after the run */
} run_result;

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static void run(bool use_flight, run_result *out)
{
	USE_FLIGHT = use_flight;
	cache_reset();
	atomic_store(&BACKEND.calls, 0);
	atomic_store(&BACKEND.max_inflight, 0);
	if (sp_sema_init(&LOADS, CFG.max_loads))
		bad("sp_sema_init failed");

	size_t nlat = (size_t)CFG.threads * (size_t)CFG.requests;
	int64_t *lat = malloc(sizeof(int64_t) * nlat);
	worker *ws = calloc((size_t)CFG.threads, sizeof *ws);
	if (!lat || !ws)
		bad("out of memory");
	pthread_barrier_init(&START, NULL, (unsigned)CFG.threads + 1);
	for (int i = 0; i < CFG.threads; i++) {
		ws[i].idx = i;
		ws[i].st.lat_ns = lat + (size_t)i * (size_t)CFG.requests;
		if (pthread_create(&ws[i].tid, NULL, worker_main, &ws[i]))
			bad("cannot create thread %d", i);
	}
	pthread_barrier_wait(&START);
	int64_t t0 = sp_now_ns();
	for (int i = 0; i < CFG.threads; i++)
		pthread_join(ws[i].tid, NULL);
	int64_t t1 = sp_now_ns();
	pthread_barrier_destroy(&START);

	memset(out, 0, sizeof *out);
	for (int i = 0; i < CFG.threads; i++) {
		tstats *s = &ws[i].st, *t = &out->sum;
		t->requests += s->requests, t->hits += s->hits, t->misses += s->misses;
		t->led += s->led, t->joined += s->joined, t->rechecked += s->rechecked;
		t->to_sema += s->to_sema, t->to_wait += s->to_wait, t->to_shared += s->to_shared;
		t->other_errors += s->other_errors, t->wrong += s->wrong;
	}
	out->backend_calls = atomic_load(&BACKEND.calls);
	out->max_inflight = atomic_load(&BACKEND.max_inflight);
	out->seconds = (double)(t1 - t0) / 1e9;
	qsort(lat, nlat, sizeof *lat, cmp_i64);
	out->p50 = lat[nlat / 2];
	out->p99 = lat[nlat * 99 / 100];
	out->pmax = lat[nlat - 1];
	for (int i = 0; i < NSHARDS; i++)
		for (int j = 0; j < SLOTS_PER_SHARD; j++) {
			entry *e = &CACHE[i].slots[j];
			if (e->key && e->val != value_of(e->key))
				out->cache_bad++;
		}
	sp_sema_destroy(&LOADS);
	free(ws);
	free(lat);
}

/* ------------------------------------------------------------- report */

static void row(const char *what, int64_t a, int64_t b)
{
	printf("  %-40s %14" PRId64 " %16" PRId64 "\n", what, a, b);
}

static void report(const run_result *f, const run_result *n)
{
	const tstats *a = &f->sum, *b = &n->sum;
	printf("\n  %-40s %14s %16s\n", "", "singleflight", "no singleflight");
	row("requests", a->requests, b->requests);
	row("cache hits", a->hits, b->hits);
	row("cache misses", a->misses, b->misses);
	row("  loaded by this request", a->led, b->led);
	row("  shared another request's load", a->joined, b->joined);
	row("  found cached by the load's recheck", a->rechecked, b->rechecked);
	row("  timed out waiting for a backend slot", a->to_sema, b->to_sema);
	row("  timed out waiting for a shared load", a->to_wait, b->to_wait);
	row("  shared a load that timed out", a->to_shared, b->to_shared);
	row("timeouts (all kinds)", a->to_sema + a->to_wait + a->to_shared,
	    b->to_sema + b->to_wait + b->to_shared);
	row("backend calls", f->backend_calls, n->backend_calls);
	row("most backend calls at once", f->max_inflight, n->max_inflight);
	printf("  %-40s %14.3f %16.3f\n", "elapsed (s)", f->seconds, n->seconds);
	printf("  %-40s %14.0f %16.0f\n", "requests per second", (double)a->requests / f->seconds,
	       (double)b->requests / n->seconds);
	printf("  %-40s %14.1f %16.1f\n", "latency p50 (us)", (double)f->p50 / 1e3, (double)n->p50 / 1e3);
	printf("  %-40s %14.1f %16.1f\n", "latency p99 (us)", (double)f->p99 / 1e3, (double)n->p99 / 1e3);
	printf("  %-40s %14.1f %16.1f\n", "latency max (us)", (double)f->pmax / 1e3, (double)n->pmax / 1e3);
	if (n->backend_calls > 0)
		printf("\nsingleflight made %.1f%% of the backend calls (%" PRId64 " instead of %" PRId64
		       "); %" PRId64 " requests shared a load.\n",
		       100.0 * (double)f->backend_calls / (double)n->backend_calls, f->backend_calls,
		       n->backend_calls, a->joined);
}

static int check(const char *name, const run_result *r, bool flight)
{
	int failures = 0;
	const tstats *s = &r->sum;
#define EXPECT(cond, ...)                                               \
	do {                                                            \
		if (!(cond)) {                                          \
			printf("FAIL (%s): ", name);                    \
			printf(__VA_ARGS__);                            \
			printf("   [%s]\n", #cond);                     \
			failures++;                                     \
		}                                                       \
	} while (0)
	int64_t values = s->hits + s->led + s->joined + s->rechecked;
	int64_t timeouts = s->to_sema + s->to_wait + s->to_shared;
	EXPECT(s->requests == (int64_t)CFG.threads * CFG.requests, "requests %" PRId64, s->requests);
	EXPECT(values + timeouts == s->requests,
	       "%" PRId64 " values + %" PRId64 " timeouts != %" PRId64 " requests", values, timeouts,
	       s->requests);
	EXPECT(s->hits + s->misses == s->requests, "hits + misses != requests");
	EXPECT(s->other_errors == 0, "%" PRId64 " unexpected errors", s->other_errors);
	EXPECT(s->wrong == 0, "%" PRId64 " values for the wrong key", s->wrong);
	EXPECT(r->cache_bad == 0, "%" PRId64 " cache entries hold a wrong value", r->cache_bad);
	EXPECT(r->max_inflight <= CFG.max_loads, "%d backend calls at once, cap %d",
	       r->max_inflight, CFG.max_loads);
	/* Every backend call is a load that got its slot: exact accounting. */
	EXPECT(r->backend_calls == s->led, "backend calls %" PRId64 " != loads that ran %" PRId64,
	       r->backend_calls, s->led);
	EXPECT(s->hits > 0 && s->misses > 0, "the workload must both hit and miss");
	if (!flight)
		EXPECT(s->joined + s->rechecked + s->to_wait + s->to_shared == 0,
		       "sharing without singleflight");
#undef EXPECT
	return failures;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "threads", required_argument, NULL, 't' },
		{ "requests", required_argument, NULL, 'r' },
		{ "keys", required_argument, NULL, 'k' },
		{ "zipf", required_argument, NULL, 'z' },
		{ "cache", required_argument, NULL, 'c' },
		{ "ttl-ms", required_argument, NULL, 'T' },
		{ "backend-us", required_argument, NULL, 'b' },
		{ "max-loads", required_argument, NULL, 'm' },
		{ "timeout-ms", required_argument, NULL, 'o' },
		{ "test", no_argument, NULL, 'X' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	opterr = 0;
	int opt;
	bool test = false;
	config given = CFG;
	bool set[128] = { false };
	while ((opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		if (opt > 0 && opt < 128)
			set[opt] = true;
		switch (opt) {
		case 't': given.threads = int_arg("--threads", optarg, 1, 4096); break;
		case 'r': given.requests = int_arg("--requests", optarg, 1, 100000000); break;
		case 'k': given.keys = int_arg("--keys", optarg, 1, 100000000); break;
		case 'z': {
			char *end;
			errno = 0;
			given.zipf_s = strtod(optarg, &end);
			if (end == optarg || *end || errno || !(given.zipf_s >= 0 && given.zipf_s <= 3))
				bad("--zipf: expected a number 0..3, got '%s'", optarg);
			break;
		}
		case 'c': given.cache_slots = int_arg("--cache", optarg, NSHARDS, 1 << 26); break;
		case 'T': given.ttl_ms = int_arg("--ttl-ms", optarg, 1, 3600000); break;
		case 'b': given.backend_us = int_arg("--backend-us", optarg, 0, 10000000); break;
		case 'm': given.max_loads = int_arg("--max-loads", optarg, 1, 1 << 20); break;
		case 'o': given.timeout_ms = int_arg("--timeout-ms", optarg, 1, 3600000); break;
		case 'X': test = true; break;
		case 'h': usage(stdout); return 0;
		case ':': bad("option '%s' needs a value", argv[optind - 1]);
		default:
			if (optopt)
				bad("unknown option '-%c'", optopt);
			bad("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		bad("unexpected argument '%s'", argv[optind]);
	if (test) {
		/* Small and quick; options given explicitly still win. */
		config t = { .threads = 24, .requests = 150, .keys = 300, .zipf_s = 1.1,
			     .cache_slots = 1024, .ttl_ms = 10, .backend_us = 1000, .max_loads = 4,
			     .timeout_ms = 4 };
#define PICK(c, f) t.f = set[c] ? given.f : t.f
		PICK('t', threads); PICK('r', requests); PICK('k', keys); PICK('z', zipf_s);
		PICK('c', cache_slots); PICK('T', ttl_ms); PICK('b', backend_us);
		PICK('m', max_loads); PICK('o', timeout_ms);
#undef PICK
		given = t;
	}
	CFG = given;
	CFG.test = test;

	zipf_init(CFG.keys, CFG.zipf_s);
	SLOTS_PER_SHARD = CFG.cache_slots / NSHARDS;
	for (int i = 0; i < NSHARDS; i++) {
		CACHE[i].slots = calloc((size_t)SLOTS_PER_SHARD, sizeof(entry));
		if (!CACHE[i].slots)
			bad("out of memory");
	}
	FLIGHT = sp_flight_create(free);
	if (!FLIGHT)
		bad("sp_flight_create failed");

	printf("cacheload: %d threads x %d requests, %d keys (Zipf s=%.2f), cache %d entries,"
	       " TTL %d ms\n"
	       "backend %d us per load, at most %d loads at once (sp_sema), request timeout %d ms"
	       " (sp_ctx)\n",
	       CFG.threads, CFG.requests, CFG.keys, CFG.zipf_s, SLOTS_PER_SHARD * NSHARDS, CFG.ttl_ms,
	       CFG.backend_us, CFG.max_loads, CFG.timeout_ms);
	fflush(stdout);

	run_result with, without;
	run(true, &with);
	run(false, &without);
	report(&with, &without);

	sp_flight_destroy(FLIGHT);
	for (int i = 0; i < NSHARDS; i++)
		free(CACHE[i].slots);
	free(ZIPF_CDF);

	if (test) {
		int failures = check("singleflight", &with, true) + check("no singleflight", &without, false);
		/* Hot keys expire under many concurrent requests: deduplication must
		 * save backend calls (by a wide margin in practice). */
		if (with.backend_calls > without.backend_calls) {
			printf("FAIL: singleflight made more backend calls (%" PRId64 ") than without (%" PRId64
			       ")\n", with.backend_calls, without.backend_calls);
			failures++;
		}
		if (failures) {
			printf("cacheload --test: %d check(s) FAILED\n", failures);
			return 1;
		}
		printf("cacheload --test: ok\n");
	}
	return 0;
}
