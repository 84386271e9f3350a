/*
 * examples/bufpool.c - hot-path buffers from an sp_pool instead of malloc.
 *
 * A small request-processing pipeline: worker threads parse a synthetic
 * HTTP-like request, build the response into a buffer of a few KB and hand
 * the buffer to one writer thread through a queue (sp_mutex + sp_cond); the
 * writer "writes" it (validates and checksums it) and gives the buffer back.
 * The buffer crosses threads - taken on a worker, returned on the writer -
 * which is the case a per-thread cache handles worst and a per-CPU pool
 * with stealing is built for.
 *
 * The pipeline runs twice, once with malloc/free and once with sp_pool_get/
 * sp_pool_put, each in its own forked child process so that each variant's
 * peak RSS (getrusage ru_maxrss of that child) is its own.  Printed per
 * variant: throughput, allocation calls per request (counted by this
 * program: malloc calls, or the pool's misses - stats.news), bytes
 * allocated per request as jemalloc counts them (the "thread.allocated"
 * counter of every thread in the pipeline - every allocation, ours, the
 * library's and libc's), RSS, and the pool's statistics.
 *
 * --test runs a small configuration and checks: every request written once
 * and valid, both variants wrote byte-identical output (same checksum), the
 * malloc variant made one allocation per request, the pool's counters add
 * up (gets = hits + news; puts = requests; news = drops + cached) and the
 * pool reused buffers (news far below requests).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jemalloc/jemalloc.h>

#include "syncpool/cond.h"
#include "syncpool/mutex.h"
#include "syncpool/pool.h"

/* ------------------------------------------------------------- options */

static struct {
	long requests;
	int threads;  /* worker threads (plus one writer)  */
	size_t size;  /* bytes per response buffer          */
	int queue;    /* queue capacity (buffers in flight) */
	long cap;     /* the pool's per_cpu_cap (0: default) */
	bool test;
} CFG = { .requests = 500000, .threads = 4, .size = 4096, .queue = 256 };

static void usage(FILE *f)
{
	fprintf(f,
		"usage: bufpool [options]\n"
		"\n"
		"Worker threads parse synthetic requests, build each response in a buffer and\n"
		"hand it to a writer thread, which checksums it and gives the buffer back.\n"
		"Runs once with malloc/free and once with an sp_pool of buffers (each in its\n"
		"own child process) and compares throughput, allocations and memory.\n"
		"\n"
		"  --requests N   requests per variant (default %ld)\n"
		"  --threads N    worker threads, plus one writer (default %d)\n"
		"  --size B       response buffer size in bytes, 512..1048576 (default %zu)\n"
		"  --queue N      writer queue capacity (default %d)\n"
		"  --cap N        the pool's per_cpu_cap (default %d)\n"
		"  --test         small run that checks its own results\n"
		"  --help         this text\n",
		CFG.requests, CFG.threads, CFG.size, CFG.queue, SP_POOL_DEFAULT_PER_CPU_CAP);
}

static void __attribute__((noreturn, format(printf, 1, 2))) bad(const char *fmt, ...)
{
	va_list ap;
	fputs("bufpool: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'bufpool --help'.\n", stderr);
	exit(2);
}

static long long_arg(const char *opt, const char *s, long lo, long hi)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (end == s || *end || errno || v < lo || v > hi)
		bad("%s: expected an integer %ld..%ld, got '%s'", opt, lo, hi, s);
	return v;
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

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * Under a sanitizer, malloc is the sanitizer's (jemalloc sees only the pool's
 * own allocations), and ThreadSanitizer mistakes jemalloc's mutexes, re-made
 * in a forked child, for locked ones: no jemalloc figures there.
 */
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define JE_STATS 0
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define JE_STATS 0
#endif
#endif
#ifndef JE_STATS
#define JE_STATS 1
#endif

/* jemalloc's count of bytes this thread has allocated so far (0 if unavailable). */
static uint64_t je_thread_allocated(void)
{
	if (!JE_STATS)
		return 0;
	uint64_t v = 0;
	size_t sz = sizeof v;
	if (mallctl("thread.allocated", &v, &sz, NULL, 0) != 0)
		return 0;
	return v;
}

/* Resident set size now, from /proc/self/statm, in KiB. */
static long rss_now_kib(void)
{
	long size = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (!f)
		return -1;
	if (fscanf(f, "%ld %ld", &size, &resident) != 2)
		resident = -1;
	fclose(f);
	return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* ------------------------------------------------------------- requests */

/* A response buffer: this header, then the bytes to write. */
typedef struct msg {
	uint64_t req;   /* request number, for the writer's validation */
	uint32_t len;   /* bytes used in data                          */
	uint32_t cap;   /* bytes available in data                     */
	char data[];
} msg;

#define LINE_LEN 43 /* "item 012345 line 07 value 0123456789abcdef\n" */

/* The request that request number r sends (deterministic, so runs compare). */
static int make_request(uint64_t r, char *buf, size_t cap)
{
	uint64_t h = mix64(r);
	return snprintf(buf, cap,
			"GET /item/%06" PRIu64 "?lines=%" PRIu64 " HTTP/1.1\r\n"
			"Host: example.test\r\n"
			"X-Request: %" PRIu64 "\r\n"
			"Accept: text/plain\r\n\r\n",
			h % 1000000, 8 + (h >> 32) % 56, r);
}

typedef struct request {
	uint64_t id, lines, req;
} request;

static bool parse_u64(const char **p, uint64_t *out)
{
	const char *s = *p;
	uint64_t v = 0;
	if (*s < '0' || *s > '9')
		return false;
	while (*s >= '0' && *s <= '9')
		v = v * 10 + (uint64_t)(*s++ - '0');
	*p = s;
	*out = v;
	return true;
}

/* Parses the request line and the headers we need; false if malformed. */
static bool parse_request(const char *s, request *rq)
{
	if (strncmp(s, "GET /item/", 10) != 0)
		return false;
	s += 10;
	if (!parse_u64(&s, &rq->id) || strncmp(s, "?lines=", 7) != 0)
		return false;
	s += 7;
	if (!parse_u64(&s, &rq->lines) || strncmp(s, " HTTP/1.1\r\n", 11) != 0)
		return false;
	if (rq->id >= 1000000 || rq->lines > 99) /* the response's fixed-width lines */
		return false;
	s += 11;
	bool have_req = false;
	while (strncmp(s, "\r\n", 2) != 0) {             /* headers until the blank line */
		const char *eol = strstr(s, "\r\n");
		if (!eol)
			return false;
		if (strncmp(s, "X-Request: ", 11) == 0) {
			const char *v = s + 11;
			if (!parse_u64(&v, &rq->req) || v != eol)
				return false;
			have_req = true;
		}
		s = eol + 2;
	}
	return have_req;
}

/* Writes the response for rq into m; the lines are cut to what fits. */
static void build_response(const request *rq, msg *m)
{
	char hdr[160];
	uint64_t lines = rq->lines;
	int hl = 0;
	for (;;) {
		hl = snprintf(hdr, sizeof hdr,
			      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Request: %" PRIu64
			      "\r\nContent-Length: %" PRIu64 "\r\n\r\n",
			      rq->req, lines * LINE_LEN);
		if ((size_t)hl + lines * LINE_LEN <= m->cap || lines == 0)
			break;
		lines = (m->cap - (size_t)hl) / LINE_LEN;
	}
	memcpy(m->data, hdr, (size_t)hl);
	char *p = m->data + hl;
	/* Fixed-width lines, formatted by hand: a printf per line would cost more
	 * than everything else here together and hide what is being compared. */
	static const char hex[] = "0123456789abcdef";
	for (uint64_t i = 0; i < lines; i++) {
		memcpy(p, "item 000000 line 00 value ", 26);
		for (int d = 0, id = (int)rq->id; d < 6; d++, id /= 10) /* id < 10^6 */
			p[10 - d] = (char)('0' + id % 10);
		p[17] = (char)('0' + i / 10); /* i < 100 (parse_request) */
		p[18] = (char)('0' + i % 10);
		uint64_t v = mix64(rq->id * 64 + i);
		for (int d = 15; d >= 0; d--, v >>= 4)
			p[26 + d] = hex[v & 15];
		p[42] = '\n';
		p += LINE_LEN;
	}
	m->req = rq->req;
	m->len = (uint32_t)(p - m->data);
}

/* The writer's check: the headers agree with the buffer; returns a checksum, or 0 if bad. */
static uint64_t write_response(const msg *m)
{
	/* The buffer is not NUL-terminated (and reused): search only its len bytes. */
	const char *body = memmem(m->data, m->len, "\r\n\r\n", 4);
	if (!body)
		return 0;
	size_t hlen = (size_t)(body - m->data);
	const char *x = memmem(m->data, hlen, "X-Request: ", 11);
	const char *c = memmem(m->data, hlen, "Content-Length: ", 16);
	uint64_t req, clen;
	if (!x || !c)
		return 0;
	x += 11, c += 16, body += 4;
	if (!parse_u64(&x, &req) || !parse_u64(&c, &clen) || req != m->req ||
	    (size_t)(body - m->data) + clen != m->len)
		return 0;
	/* Checksum 8 bytes at a time (the "write"). */
	uint64_t h = 0x9E3779B97F4A7C15ULL ^ m->len;
	uint32_t i = 0;
	for (; i + 8 <= m->len; i += 8) {
		uint64_t w;
		memcpy(&w, m->data + i, 8);
		h = (h ^ w) * 0xff51afd7ed558ccdULL;
		h ^= h >> 29;
	}
	for (; i < m->len; i++)
		h = (h ^ (unsigned char)m->data[i]) * 0x100000001b3ULL;
	return h | 1;
}

/* ------------------------------------------------------------- the queue */

/* A bounded FIFO of buffers from the workers to the writer. */
typedef struct queue {
	sp_mutex mu;
	sp_cond not_empty, not_full;
	msg **ring;
	size_t cap, head, count;
} queue;

static void queue_push(queue *q, msg *m)
{
	sp_mutex_lock(&q->mu);
	while (q->count == q->cap)
		sp_cond_wait(&q->not_full, &q->mu);
	q->ring[(q->head + q->count) % q->cap] = m;
	q->count++;
	sp_cond_signal(&q->not_empty);
	sp_mutex_unlock(&q->mu);
}

/* Takes up to max buffers at once (the writer drains in batches). */
static size_t queue_pop(queue *q, msg **out, size_t max)
{
	sp_mutex_lock(&q->mu);
	while (q->count == 0)
		sp_cond_wait(&q->not_empty, &q->mu);
	size_t n = 0;
	while (n < max && q->count > 0) {
		out[n++] = q->ring[q->head];
		q->head = (q->head + 1) % q->cap;
		q->count--;
	}
	sp_cond_broadcast(&q->not_full);
	sp_mutex_unlock(&q->mu);
	return n;
}

/* ------------------------------------------------------------- the pipeline */

typedef enum { USE_MALLOC, USE_POOL } variant;

static variant VARIANT;
static sp_pool *POOL;
static queue Q;
static pthread_barrier_t START;

typedef struct wstats {
	uint64_t done, bad_requests, alloc_calls, je_bytes;
} wstats;

typedef struct worker {
	pthread_t tid;
	int idx;
	wstats st;
} worker;

/* The allocation wrapper: every buffer the request path takes goes through here. */
static msg *buf_get(wstats *st)
{
	msg *m;
	if (VARIANT == USE_MALLOC) {
		m = malloc(CFG.size);
		st->alloc_calls++;
	} else {
		m = sp_pool_get(POOL); /* its misses are counted by the pool (news) */
	}
	if (m)
		m->cap = (uint32_t)(CFG.size - sizeof(msg));
	return m;
}

static void buf_put(msg *m)
{
	if (VARIANT == USE_MALLOC)
		free(m);
	else
		sp_pool_put(POOL, m);
}

static void *worker_main(void *arg)
{
	worker *w = arg;
	pthread_barrier_wait(&START);
	uint64_t je0 = je_thread_allocated();
	for (long r = w->idx; r < CFG.requests; r += CFG.threads) {
		char text[256];
		request rq;
		make_request((uint64_t)r, text, sizeof text);
		if (!parse_request(text, &rq) || rq.req != (uint64_t)r) {
			w->st.bad_requests++;
			continue;
		}
		msg *m = buf_get(&w->st);
		if (!m) {
			w->st.bad_requests++;
			continue;
		}
		build_response(&rq, m);
		queue_push(&Q, m);
		w->st.done++;
	}
	w->st.je_bytes = je_thread_allocated() - je0;
	return NULL;
}

typedef struct writer_out {
	uint64_t written, bad, checksum, je_bytes;
	uint64_t max_req_seen; /* a request written twice would show as written > requests */
} writer_out;

static void *writer_main(void *arg)
{
	writer_out *o = arg;
	uint64_t je0 = je_thread_allocated();
	msg *batch[64];
	for (;;) {
		size_t n = queue_pop(&Q, batch, 64);
		bool done = false;
		for (size_t i = 0; i < n; i++) {
			msg *m = batch[i];
			if (!m) { /* the end marker */
				done = true;
				continue;
			}
			uint64_t h = write_response(m);
			if (h == 0)
				o->bad++;
			o->checksum += h; /* order-independent: the workers interleave */
			o->written++;
			buf_put(m);
		}
		if (done)
			break;
	}
	o->je_bytes = je_thread_allocated() - je0;
	return NULL;
}

/* What a child reports to the parent through a pipe. */
typedef struct result {
	int ok;
	char err[120];
	double seconds;
	uint64_t requests, written, bad, checksum;
	uint64_t alloc_calls;    /* our count: malloc calls, or the pool's news */
	uint64_t je_bytes;       /* jemalloc thread.allocated, all pipeline threads */
	long rss_start_kib, rss_end_kib;
	long maxrss_kib;         /* filled in by the parent (wait4)             */
	double cpu_seconds;      /* the child's user + system time (wait4)      */
	sp_pool_stats ps;
} result;

static void run_variant(variant v, result *res)
{
	memset(res, 0, sizeof *res);
	res->rss_start_kib = rss_now_kib();
	VARIANT = v;
	if (v == USE_POOL) {
		sp_pool_opts o = { .size = CFG.size, .per_cpu_cap = (size_t)CFG.cap };
		POOL = sp_pool_create(&o);
		if (!POOL) {
			snprintf(res->err, sizeof res->err, "sp_pool_create: %s", strerror(errno));
			return;
		}
	}
	Q = (queue){ .ring = calloc((size_t)CFG.queue, sizeof(msg *)), .cap = (size_t)CFG.queue };
	worker *ws = calloc((size_t)CFG.threads, sizeof *ws);
	writer_out wo = { 0 };
	if (!Q.ring || !ws) {
		snprintf(res->err, sizeof res->err, "out of memory");
		return;
	}
	pthread_t wtid;
	pthread_barrier_init(&START, NULL, (unsigned)CFG.threads + 1);
	if (pthread_create(&wtid, NULL, writer_main, &wo)) {
		snprintf(res->err, sizeof res->err, "cannot create the writer thread");
		return;
	}
	for (int i = 0; i < CFG.threads; i++) {
		ws[i].idx = i;
		if (pthread_create(&ws[i].tid, NULL, worker_main, &ws[i])) {
			snprintf(res->err, sizeof res->err, "cannot create worker %d", i);
			return;
		}
	}
	pthread_barrier_wait(&START);
	int64_t t0 = now_ns();
	for (int i = 0; i < CFG.threads; i++)
		pthread_join(ws[i].tid, NULL);
	queue_push(&Q, NULL);
	pthread_join(wtid, NULL);
	int64_t t1 = now_ns();
	pthread_barrier_destroy(&START);

	res->seconds = (double)(t1 - t0) / 1e9;
	res->requests = (uint64_t)CFG.requests;
	for (int i = 0; i < CFG.threads; i++) {
		res->bad += ws[i].st.bad_requests;
		res->alloc_calls += ws[i].st.alloc_calls;
		res->je_bytes += ws[i].st.je_bytes;
	}
	res->written = wo.written;
	res->bad += wo.bad;
	res->checksum = wo.checksum;
	res->je_bytes += wo.je_bytes;
	res->rss_end_kib = rss_now_kib();
	if (v == USE_POOL) {
		sp_pool_stats_get(POOL, &res->ps); /* quiescent: exact */
		res->alloc_calls = res->ps.news;
		sp_pool_destroy(POOL);
		POOL = NULL;
	}
	free(ws);
	free(Q.ring);
	res->ok = 1;
}

/* Runs a variant in a child process; the child's ru_maxrss is its own peak. */
static void run_in_child(variant v, result *res)
{
	int fd[2];
	fflush(stdout);
	if (pipe(fd) != 0)
		bad("pipe: %s", strerror(errno));
	pid_t pid = fork();
	if (pid < 0)
		bad("fork: %s", strerror(errno));
	if (pid == 0) {
		close(fd[0]);
		result r;
		run_variant(v, &r);
		ssize_t n = write(fd[1], &r, sizeof r);
		_exit(n == (ssize_t)sizeof r ? 0 : 1);
	}
	close(fd[1]);
	memset(res, 0, sizeof *res);
	size_t got = 0;
	while (got < sizeof *res) {
		ssize_t n = read(fd[0], (char *)res + got, sizeof *res - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd[0]);
	int status;
	struct rusage ru;
	if (wait4(pid, &status, 0, &ru) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
	    got != sizeof *res) {
		res->ok = 0;
		snprintf(res->err, sizeof res->err, "the child process failed (status 0x%x)", status);
		return;
	}
	res->maxrss_kib = ru.ru_maxrss;
	res->cpu_seconds = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
			   (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* ------------------------------------------------------------- report */

static void report(const result *a, const result *b)
{
	double n = (double)CFG.requests;
	printf("\n  %-44s %14s %14s\n", "", "malloc/free", "sp_pool");
	printf("  %-44s %14.0f %14.0f\n", "requests per second", n / a->seconds, n / b->seconds);
	printf("  %-44s %14.3f %14.3f\n", "elapsed (s)", a->seconds, b->seconds);
	printf("  %-44s %14.2f %14.2f\n", "CPU time per request, us (child's user+sys)",
	       a->cpu_seconds * 1e6 / n, b->cpu_seconds * 1e6 / n);
	printf("  %-44s %14.4f %14.4f\n", "buffer allocations per request (counted)",
	       (double)a->alloc_calls / n, (double)b->alloc_calls / n);
	if (JE_STATS)
		printf("  %-44s %14.1f %14.1f\n", "bytes allocated per request (jemalloc)",
		       (double)a->je_bytes / n, (double)b->je_bytes / n);
	else
		printf("  %-44s %14s %14s\n", "bytes allocated per request (jemalloc)",
		       "n/a (sanitizer)", "n/a");
	printf("  %-44s %14.1f %14.1f\n", "peak RSS, MiB (child's ru_maxrss)",
	       (double)a->maxrss_kib / 1024, (double)b->maxrss_kib / 1024);
	printf("  %-44s %14.1f %14.1f\n", "RSS at start, MiB (/proc/self/statm)",
	       (double)a->rss_start_kib / 1024, (double)b->rss_start_kib / 1024);
	printf("  %-44s %14.1f %14.1f\n", "RSS at end, MiB (/proc/self/statm)",
	       (double)a->rss_end_kib / 1024, (double)b->rss_end_kib / 1024);
	printf("  %-44s %14" PRIx64 " %14" PRIx64 "\n", "checksum of all output (must match)",
	       a->checksum >> 8, b->checksum >> 8);
	const sp_pool_stats *s = &b->ps;
	printf("\npool stats: gets %" PRIu64 ", puts %" PRIu64 ", hits_local %" PRIu64
	       ", hits_stolen %" PRIu64 ", hits_victim %" PRIu64 ", news %" PRIu64 ", drops %" PRIu64
	       ", cached %" PRIu64 "\n",
	       s->gets, s->puts, s->hits_local, s->hits_stolen, s->hits_victim, s->news, s->drops,
	       s->cached);
	printf("\ncounted: malloc calls in the request path, or the pool's misses (news), per\n"
	       "request.  jemalloc: the sum of thread.allocated over the workers and the\n"
	       "writer during the run (every allocation they made, the library's included).\n");
	if (b->seconds > a->seconds)
		printf("note: the pool variant was slower here (%.2fx the malloc time).\n",
		       b->seconds / a->seconds);
}

static int check(const result *a, const result *b)
{
	int failures = 0;
#define EXPECT(cond, ...)                                       \
	do {                                                    \
		if (!(cond)) {                                  \
			printf("FAIL: ");                       \
			printf(__VA_ARGS__);                    \
			printf("   [%s]\n", #cond);             \
			failures++;                             \
		}                                               \
	} while (0)
	const result *both[2] = { a, b };
	const char *names[2] = { "malloc", "pool" };
	for (int i = 0; i < 2; i++) {
		const result *r = both[i];
		EXPECT(r->ok, "%s variant: %s", names[i], r->err);
		if (!r->ok)
			continue;
		EXPECT(r->written == r->requests, "%s variant wrote %" PRIu64 " of %" PRIu64 " responses",
		       names[i], r->written, r->requests);
		EXPECT(r->bad == 0, "%s variant: %" PRIu64 " invalid requests or responses", names[i],
		       r->bad);
		EXPECT(r->maxrss_kib > 0, "%s variant: no peak RSS", names[i]);
	}
	if (!a->ok || !b->ok)
		return failures;
	EXPECT(a->checksum == b->checksum, "the variants wrote different bytes");
	EXPECT(a->alloc_calls == a->requests, "malloc variant: %" PRIu64 " allocations for %" PRIu64
	       " requests", a->alloc_calls, a->requests);
	const sp_pool_stats *s = &b->ps;
	EXPECT(s->gets == b->requests, "pool gets %" PRIu64 " != requests", s->gets);
	EXPECT(s->puts == b->requests, "pool puts %" PRIu64 " != requests", s->puts);
	EXPECT(s->hits_local + s->hits_stolen + s->hits_victim + s->news == s->gets,
	       "pool hits + news != gets");
	EXPECT(s->news == s->drops + s->cached, "pool: %" PRIu64 " objects made, %" PRIu64
	       " dropped + %" PRIu64 " cached", s->news, s->drops, s->cached);
	EXPECT(s->news * 2 < s->gets, "pool reused too little: %" PRIu64 " news for %" PRIu64
	       " gets", s->news, s->gets);
#undef EXPECT
	return failures;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "requests", required_argument, NULL, 'r' },
		{ "threads", required_argument, NULL, 't' },
		{ "size", required_argument, NULL, 's' },
		{ "queue", required_argument, NULL, 'q' },
		{ "cap", required_argument, NULL, 'c' },
		{ "test", no_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	opterr = 0;
	int opt;
	bool set_r = false;
	while ((opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'r': CFG.requests = long_arg("--requests", optarg, 1, 1000000000); set_r = true; break;
		case 't': CFG.threads = (int)long_arg("--threads", optarg, 1, 1024); break;
		case 's': CFG.size = (size_t)long_arg("--size", optarg, 512, 1 << 20); break;
		case 'q': CFG.queue = (int)long_arg("--queue", optarg, 1, 1 << 20); break;
		case 'c': CFG.cap = long_arg("--cap", optarg, 1, SP_POOL_MAX_PER_CPU_CAP); break;
		case 'T': CFG.test = true; break;
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
	if (CFG.test && !set_r)
		CFG.requests = 20000;

	printf("bufpool: %ld requests, %d worker threads + 1 writer, %zu-byte response buffers, "
	       "queue of %d\n(each variant runs in its own child process)\n",
	       CFG.requests, CFG.threads, CFG.size, CFG.queue);
	result a, b;
	run_in_child(USE_MALLOC, &a);
	run_in_child(USE_POOL, &b);
	if (a.ok && b.ok)
		report(&a, &b);
	int failures = 0;
	if (CFG.test) {
		failures = check(&a, &b);
		if (failures) {
			printf("bufpool --test: %d check(s) FAILED\n", failures);
			return 1;
		}
		printf("bufpool --test: ok\n");
	} else if (!a.ok || !b.ok) {
		fprintf(stderr, "bufpool: %s\n", a.ok ? b.err : a.err);
		return 1;
	}
	return 0;
}
