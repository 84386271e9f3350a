/*
 * sync/flight.c - duplicate call suppression (golang.org/x/sync/singleflight).
 *
 * The shape is Go's: a map from key to the call in flight; the first caller
 * inserts a call record and runs fn, later callers find the record and wait
 * on it; when fn returns, the leader removes the record from the map - only
 * if the map still points at it (Forget may have replaced it) - and wakes
 * the waiters.  What differs:
 *
 * - The map is 64 shards, each a small open-addressing table (linear
 *   probing, backward-shift deletion; grows at 1/2 full, shrinks after a
 *   long stretch under 1/8) under its own short futex lock (sp_ilock).  No
 *   lock is held while fn runs.
 * - Keys are byte strings hashed with a per-process random seed (a folded
 *   128-bit multiply hash in the wyhash family, as Go's runtime uses for
 *   maps), so chosen keys cannot force collisions.  The top 6 bits of the
 *   hash pick the shard, the low bits the slot.
 * - A call somebody joined is reference counted: the leader's result and
 *   every joiner's result hold one reference to its record; the last
 *   release runs val_free and returns the record to its shard's pool.  A
 *   call nobody joined (the common case) needs none of that: its record goes
 *   back to the pool as the call ends, under the lock the leader takes
 *   anyway, and its result, the value's only owner, refers to the group.
 *   Records and their key buffers are reused, so a steady stream of calls
 *   allocates nothing.
 * - A waiter parks on the record's futex word and also watches its context
 *   (sp_ctx_watch): a done context bumps the word's generation and wakes
 *   the waiters, and the one whose context it is leaves with the context's
 *   error, dropping its reference; the call goes on for the others.
 *
 * Record state word (rec->state), the one futex word of a call:
 *
 *	bit 0  DONE     val/err are published; set once by the leader (release)
 *	bit 1  WAITERS  somebody parked or is about to; the leader must wake
 *	bits 2-31 GEN   bumped by a waiter's context watch, so that a waiter
 *	                about to park sees the word change and re-checks
 *
 * Lifetime of a record: free (in its shard's pool) -> in flight (in the
 * table; refs = 1 + joiners) -> ended (out of the table) -> free.  Joins
 * happen only under the shard lock through the table, so once the leader
 * has removed the record (under the same lock) the set of joiners is final:
 * if none joined, the record is free at once and DONE is never published;
 * otherwise DONE is published and the last release frees the record.
 */
#include "syncpool/flight.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "ctx_internal.h"
#include "flight_internal.h"
#include "park.h"
#include "sanitizer.h"
#include "sanitizer_ignore.h"

#define SHARD_BITS 6
#define NSHARDS (1u << SHARD_BITS)
#define MIN_CAP 8u            /* slots of the table inlined in each shard   */
#define INLINE_KEY 40u        /* keys up to this many bytes live in the record */
#define HEAP_KEY_KEEP 4096u   /* larger key buffers are not kept for reuse  */
#define FREE_MAX 64u          /* recycled records kept per shard            */

#define ST_DONE 1u
#define ST_WAITERS 2u
#define ST_GEN 4u

struct shard;

struct rec {
	_Atomic uint32_t state; /* see the top comment                        */
	_Atomic uint32_t refs;  /* results holding the record (leader + joiners) */
	uint32_t dups;          /* joiners so far; under the shard lock         */
	bool in_table;          /* under the shard lock                         */
	int err;                /* written by the leader before DONE / unlock   */
	void *val;
	uint64_t hash;
	struct shard *shard;    /* the shard whose pool it belongs to           */
	struct rec *next;       /* pool links                                   */
	size_t keylen;
	unsigned char *key;     /* inl, or heap                                 */
	unsigned char *heap;    /* a kept buffer for long keys, heapcap bytes   */
	size_t heapcap;
	unsigned char inl[INLINE_KEY];
};

struct slot {
	uint64_t hash;
	struct rec *rec; /* NULL: empty */
};

/*
 * One shard.  Written by every thread whose key hashes here: the lock word,
 * the table and the pool are all touched in one critical section, so they
 * share the shard's lines; shards are padded apart.
 */
struct shard {
	SP_CACHE_ALIGNED sp_ilock lock;         /* guards everything below but returned */
	uint32_t count;                         /* records in the table           */
	uint32_t mask;                          /* table capacity - 1             */
	uint32_t nfree;                         /* records in free                */
	uint32_t lowrun;                        /* removals in a row leaving it < 1/8 full */
	struct slot *slots;                     /* inl_slots or a heap array      */
	struct rec *free;                       /* the pool; under the lock       */
	_Atomic(struct rec *) returned;         /* released records, pushed lock-free */
	uint64_t nrec;                          /* records owned (pool + live); under the lock */
	_Atomic uint64_t allocs;                /* heap allocations made (stat)   */
	struct slot inl_slots[MIN_CAP];
};

struct sp_flight {
	struct shard shards[NSHARDS]; /* zeroed: unlocked, empty */
	void (*val_free)(void *val);
};

/* ------------------------------------------------------------------ lock */

static inline void shard_lock(struct shard *s) { sp_ilock_lock(&s->lock); }
static inline void shard_unlock(struct shard *s) { sp_ilock_unlock(&s->lock); }

/* ------------------------------------------------------------------ hash */

/*
 * A seeded hash in the wyhash family, written for this file: input words are
 * combined by 64x64->128-bit multiplies folded back to 64 bits.  The seed is
 * random per process (getrandom), so the hash of a key cannot be predicted
 * from outside and keys cannot be chosen to collide.
 */
#define HK0 0xa0761d6478bd642full
#define HK1 0xe7037ed1a0b428dbull
#define HK2 0x8ebc6af09c88c6e3ull
#define HK3 0x589965cc75374cc3ull

static uint64_t hash_seed;
static pthread_once_t hash_seed_once = PTHREAD_ONCE_INIT;

static inline uint64_t fold_mul(uint64_t a, uint64_t b)
{
	__uint128_t r = (__uint128_t)a * b;
	return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static inline uint64_t rd8(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static inline uint64_t rd4(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static void hash_seed_init(void)
{
	uint64_t v = 0;
	if (getrandom(&v, sizeof v, GRND_NONBLOCK) != (ssize_t)sizeof v) {
		/* No entropy yet (early boot): time and addresses, still per process. */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		v = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)&v ^
		    ((uint64_t)getpid() << 48);
	}
	hash_seed = fold_mul(v ^ HK0, HK1) ^ v;
}

static inline uint64_t flight_hash(const unsigned char *p, size_t n)
{
	uint64_t s = hash_seed, a, b;

	if (SP_LIKELY(n <= 16)) {
		if (n >= 4) {
			/* Two pairs of overlapping 4-byte reads cover all n bytes. */
			size_t q = (n >> 3) << 2;
			a = (rd4(p) << 32) | rd4(p + q);
			b = (rd4(p + n - 4) << 32) | rd4(p + n - 4 - q);
		} else if (n > 0) {
			a = ((uint64_t)p[0] << 16) | ((uint64_t)p[n >> 1] << 8) | p[n - 1];
			b = 0;
		} else {
			a = b = 0;
		}
	} else {
		size_t i = n;
		if (i > 48) {
			uint64_t s1 = s, s2 = s;
			do {
				s = fold_mul(rd8(p) ^ HK1, rd8(p + 8) ^ s);
				s1 = fold_mul(rd8(p + 16) ^ HK2, rd8(p + 24) ^ s1);
				s2 = fold_mul(rd8(p + 32) ^ HK3, rd8(p + 40) ^ s2);
				p += 48;
				i -= 48;
			} while (i > 48);
			s ^= s1 ^ s2;
		}
		while (i > 16) {
			s = fold_mul(rd8(p) ^ HK1, rd8(p + 8) ^ s);
			p += 16;
			i -= 16;
		}
		/* The last 16 bytes, overlapping what came before if needed. */
		a = rd8(p + i - 16);
		b = rd8(p + i - 8);
	}
	a ^= HK1;
	b ^= s;
	__uint128_t r = (__uint128_t)a * b;
	return fold_mul((uint64_t)r ^ HK0 ^ (uint64_t)n, (uint64_t)(r >> 64) ^ HK1);
}

/* ----------------------------------------------------------------- table */

static inline bool key_eq(const struct rec *r, const void *key, size_t n)
{
	if (r->keylen != n)
		return false;
	if (n == 0)
		return true;
	sp_tsan_ignore_begin(); /* r->key: internal memory, see sanitizer_ignore.h */
	bool eq = memcmp(r->key, key, n) == 0;
	sp_tsan_ignore_end();
	return eq;
}

static struct rec *table_find(struct shard *s, uint64_t h, const void *key, size_t n)
{
	for (uint32_t i = (uint32_t)h & s->mask;; i = (i + 1) & s->mask) {
		struct slot *sl = &s->slots[i];
		if (!sl->rec)
			return NULL;
		if (sl->hash == h && key_eq(sl->rec, key, n))
			return sl->rec;
	}
}

/* Rebuilds the table with cap slots (a power of two >= MIN_CAP). */
static bool table_resize(struct shard *s, uint32_t cap)
{
	struct slot *ns;
	if (cap == MIN_CAP) {
		ns = s->inl_slots;
		if (ns == s->slots)
			return true;
	} else {
		sp_tsan_ignore_begin();
		ns = calloc(cap, sizeof *ns);
		sp_tsan_ignore_end();
		if (!ns)
			return false;
		atomic_fetch_add_explicit(&s->allocs, 1, memory_order_relaxed);
	}
	struct slot *old = s->slots;
	uint32_t oldcap = s->mask + 1;
	sp_tsan_ignore_begin();
	if (ns == s->inl_slots)
		memset(ns, 0, sizeof s->inl_slots);
	sp_tsan_ignore_end();
	for (uint32_t i = 0; i < oldcap; i++) {
		if (!old[i].rec)
			continue;
		uint32_t j = (uint32_t)old[i].hash & (cap - 1);
		while (ns[j].rec)
			j = (j + 1) & (cap - 1);
		ns[j] = old[i];
	}
	if (old != s->inl_slots) {
		sp_tsan_ignore_begin();
		free(old);
		sp_tsan_ignore_end();
	}
	s->slots = ns;
	s->mask = cap - 1;
	return true;
}

static bool table_insert(struct shard *s, struct rec *r)
{
	uint32_t cap = s->mask + 1;
	if ((s->count + 1) * 2 > cap) {
		/* Past half full: grow.  Failing that, a table not yet full still works. */
		if (!table_resize(s, cap * 2) && s->count + 1 >= cap)
			return false;
	}
	uint32_t i = (uint32_t)r->hash & s->mask;
	while (s->slots[i].rec)
		i = (i + 1) & s->mask;
	s->slots[i].hash = r->hash;
	s->slots[i].rec = r;
	s->count++;
	r->in_table = true;
	return true;
}

/* Removes r, which is in the table, with backward-shift deletion (no tombstones). */
static void table_remove(struct shard *s, struct rec *r)
{
	uint32_t mask = s->mask;
	uint32_t i = (uint32_t)r->hash & mask;
	while (s->slots[i].rec != r)
		i = (i + 1) & mask;
	for (uint32_t j = i;;) {
		j = (j + 1) & mask;
		struct slot *sj = &s->slots[j];
		if (!sj->rec)
			break;
		/* sj stays unless its home slot lies cyclically outside (i, j]. */
		uint32_t home = (uint32_t)sj->hash & mask;
		if (((j - home) & mask) >= ((j - i) & mask)) {
			s->slots[i] = *sj;
			i = j;
		}
	}
	s->slots[i].rec = NULL;
	s->count--;
	r->in_table = false;
	/*
	 * Shrink once the table has stayed under 1/8 full for 4 x capacity
	 * removals in a row, so that a load swinging around one size never
	 * reallocates on every call: resizes stay amortized over many calls.
	 */
	if (mask + 1 > MIN_CAP && s->count * 8 < mask + 1) {
		if (++s->lowrun >= 4 * (mask + 1)) {
			s->lowrun = 0;
			(void)table_resize(s, (mask + 1) / 2); /* failure leaves the larger table */
		}
	} else {
		s->lowrun = 0;
	}
}

/* ------------------------------------------------------------------ pool */

static void rec_free(struct rec *r)
{
	sp_tsan_ignore_begin();
	free(r->heap);
	free(r);
	sp_tsan_ignore_end();
}

/*
 * Takes a record from s's pool (s locked), refilling the pool from the
 * records released since, else allocating one.  Excess recycled records
 * beyond FREE_MAX are unlinked into *excess, for the caller to free after
 * unlocking.
 */
static struct rec *rec_get(struct shard *s, struct rec **excess)
{
	struct rec *r = s->free;
	if (SP_LIKELY(r)) {
		s->free = r->next;
		s->nfree--;
		return r;
	}
	if (atomic_load_explicit(&s->returned, memory_order_relaxed)) {
		r = atomic_exchange_explicit(&s->returned, NULL, memory_order_acquire);
		struct rec *rest = r->next;
		while (rest) {
			struct rec *n = rest->next;
			if (s->nfree < FREE_MAX) {
				rest->next = s->free;
				s->free = rest;
				s->nfree++;
			} else {
				rest->next = *excess;
				*excess = rest;
				s->nrec--;
			}
			rest = n;
		}
		return r;
	}
	sp_tsan_ignore_begin();
	r = aligned_alloc(64, (sizeof(struct rec) + 63) & ~(size_t)63);
	sp_tsan_ignore_end();
	if (!r)
		return NULL;
	atomic_fetch_add_explicit(&s->allocs, 1, memory_order_relaxed);
	r->shard = s;
	r->heap = NULL;
	r->heapcap = 0;
	r->val = NULL;
	s->nrec++;
	return r;
}

/* Puts r, just taken by rec_get and never published, back into s's pool (s locked). */
static void rec_unget(struct shard *s, struct rec *r)
{
	r->next = s->free;
	s->free = r;
	s->nfree++;
}

/* The last reference went: run val_free and hand the record back to its shard. */
static void rec_recycle(sp_flight *g, struct rec *r)
{
	if (r->val && g->val_free)
		g->val_free(r->val);
	r->val = NULL;
	if (r->heapcap > HEAP_KEY_KEEP) {
		sp_tsan_ignore_begin();
		free(r->heap);
		sp_tsan_ignore_end();
		r->heap = NULL;
		r->heapcap = 0;
	}
	struct shard *s = r->shard;
	struct rec *head = atomic_load_explicit(&s->returned, memory_order_relaxed);
	do
		r->next = head;
	while (!atomic_compare_exchange_weak_explicit(&s->returned, &head, r, memory_order_release,
						      memory_order_relaxed));
}

static inline void rec_put_ref(sp_flight *g, struct rec *r)
{
	/*
	 * We hold a reference.  A count of 1 is ours alone, and none can be
	 * added any more: joins need the call in the table, and the leader's
	 * reference, which outlives its stay there, is gone.  So seeing 1
	 * (acquire, pairing with the other holders' release) skips the RMW.
	 */
	if (atomic_load_explicit(&r->refs, memory_order_acquire) == 1) {
		sp_tsan_acquire(&r->refs);
		rec_recycle(g, r);
		return;
	}
	/* What this holder did with the value happens before val_free. */
	sp_tsan_release(&r->refs);
	if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1) {
		sp_tsan_acquire(&r->refs);
		rec_recycle(g, r);
	}
}

/* ----------------------------------------------------------------- group */

SP_API sp_flight *sp_flight_create(void (*val_free)(void *val))
{
	pthread_once(&hash_seed_once, hash_seed_init);
	/* The group's memory is ours: see sanitizer_ignore.h. */
	sp_tsan_ignore_begin();
	sp_flight *g = aligned_alloc(SP_CACHELINE, sizeof *g);
	if (g)
		memset(g, 0, sizeof *g);
	sp_tsan_ignore_end();
	if (!g) {
		errno = ENOMEM;
		return NULL;
	}
	for (unsigned i = 0; i < NSHARDS; i++) {
		struct shard *s = &g->shards[i];
		s->slots = s->inl_slots;
		s->mask = MIN_CAP - 1;
	}
	g->val_free = val_free;
	return g;
}

SP_API void sp_flight_destroy(sp_flight *g)
{
	if (!g)
		return;
	for (unsigned i = 0; i < NSHARDS; i++) {
		struct shard *s = &g->shards[i];
		struct rec *r = atomic_exchange_explicit(&s->returned, NULL, memory_order_acquire);
		while (r) {
			struct rec *n = r->next;
			rec_unget(s, r);
			r = n;
		}
		if (s->count != 0 || s->nfree != s->nrec)
			sp_fatal("flight", "destroy with calls in flight or results held");
	}
	for (unsigned i = 0; i < NSHARDS; i++) {
		struct shard *s = &g->shards[i];
		for (struct rec *r = s->free, *n; r; r = n) {
			n = r->next;
			rec_free(r);
		}
		if (s->slots != s->inl_slots) {
			sp_tsan_ignore_begin();
			free(s->slots);
			sp_tsan_ignore_end();
		}
	}
	sp_tsan_ignore_begin();
	free(g);
	sp_tsan_ignore_end();
}

uint64_t sp_flight_stat_slots(sp_flight *g)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < NSHARDS; i++) {
		struct shard *s = &g->shards[i];
		shard_lock(s);
		n += s->mask + 1;
		shard_unlock(s);
	}
	return n;
}

uint64_t sp_flight_stat_allocs(sp_flight *g)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < NSHARDS; i++)
		n += atomic_load_explicit(&g->shards[i].allocs, memory_order_relaxed);
	return n;
}

/* ------------------------------------------------------------------ wait */

struct waiter {
	sp_ctx_watch watch;
	struct rec *rec;
	_Atomic uint32_t stop; /* set by the context watch */
};

/* Runs on the thread that made the waiter's context done; must not block. */
static void waiter_ctx_done(sp_ctx_watch *cw)
{
	struct waiter *w = sp_container_of(cw, struct waiter, watch);
	atomic_store_explicit(&w->stop, 1, memory_order_release);
	/* Change the word so a waiter between its check and its park cannot sleep. */
	atomic_fetch_add_explicit(&w->rec->state, ST_GEN, memory_order_release);
	sp_park_wake_all(&w->rec->state);
}

static inline void fill(sp_flight_result *res, struct rec *r, bool shared)
{
	res->val = r->val;
	res->err = r->err;
	res->shared = shared;
	res->ref = r;
}

/* A joiner (holding a reference to r) waits for r's call to end or ctx to be done. */
static int wait_call(sp_flight *g, struct rec *r, sp_ctx *ctx, sp_flight_result *res)
{
	uint32_t s = atomic_load_explicit(&r->state, memory_order_acquire);
	if (!(s & ST_DONE)) {
		struct waiter w;
		w.rec = r;
		atomic_init(&w.stop, 0);
		if (ctx) {
			int err = sp_ctx_watch_add(ctx, &w.watch, waiter_ctx_done);
			if (err) {
				rec_put_ref(g, r);
				return err;
			}
		}
		/*
		 * No spinning: what a joiner waits for is the rest of fn, typically
		 * a load far longer than a spin, and spinning would take the CPU
		 * the leader needs when threads outnumber cores (measured: the
		 * hot-key and cache-load benchmarks are faster without it).
		 */
		for (;;) {
			s = atomic_load_explicit(&r->state, memory_order_acquire);
			if ((s & ST_DONE) || atomic_load_explicit(&w.stop, memory_order_acquire))
				break;
			if (!(s & ST_WAITERS)) {
				if (!atomic_compare_exchange_weak_explicit(&r->state, &s, s | ST_WAITERS,
									   memory_order_relaxed,
									   memory_order_relaxed))
					continue;
				s |= ST_WAITERS;
			}
			sp_park_wait(&r->state, s, -1);
		}
		if (ctx)
			sp_ctx_watch_remove(ctx, &w.watch);
		/* Done wins over a context done at the same moment: the result is here. */
		s = atomic_load_explicit(&r->state, memory_order_acquire);
		if (!(s & ST_DONE)) {
			int err = ctx ? w.watch.err : 0; /* ctx's handle may be gone now */
			rec_put_ref(g, r);
			return err ? err : ECANCELED;
		}
	}
	sp_tsan_acquire(&r->state); /* the leader's fn and result */
	fill(res, r, true);
	return 0;
}

/* -------------------------------------------------------------------- do */

SP_API int sp_flight_do(sp_flight *g, const void *key, size_t keylen, sp_flight_fn fn, void *arg,
			sp_ctx *ctx, sp_flight_result *res)
{
	if (SP_UNLIKELY(!g || !fn || !res || (!key && keylen)))
		return EINVAL;
	if (ctx) {
		int err = sp_ctx_err(ctx);
		if (err)
			return err;
	}
	uint64_t h = flight_hash(key, keylen);
	struct shard *s = &g->shards[h >> (64 - SHARD_BITS)];
	struct rec *excess = NULL;
	unsigned char *bigkey = NULL;

	shard_lock(s);
	struct rec *r = table_find(s, h, key, keylen);
	if (r) {
		/* Join the call in flight. */
		r->dups++;
		atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
		shard_unlock(s);
		return wait_call(g, r, ctx, res);
	}

	/* Lead a new call. */
	r = rec_get(s, &excess);
	if (SP_UNLIKELY(!r))
		goto nomem;
	if (keylen <= INLINE_KEY) {
		r->key = r->inl;
	} else {
		if (r->heapcap < keylen) {
			sp_tsan_ignore_begin();
			unsigned char *nb = malloc(keylen);
			if (nb)
				free(r->heap);
			sp_tsan_ignore_end();
			if (!nb) {
				rec_unget(s, r);
				goto nomem;
			}
			atomic_fetch_add_explicit(&s->allocs, 1, memory_order_relaxed);
			r->heap = nb;
			r->heapcap = keylen;
		}
		r->key = r->heap;
	}
	if (keylen) {
		sp_tsan_ignore_begin();
		memcpy(r->key, key, keylen);
		sp_tsan_ignore_end();
	}
	r->keylen = keylen;
	r->hash = h;
	r->dups = 0;
	r->val = NULL;
	r->err = 0;
	atomic_store_explicit(&r->state, 0, memory_order_relaxed);
	atomic_store_explicit(&r->refs, 1, memory_order_relaxed);
	if (SP_UNLIKELY(!table_insert(s, r))) {
		rec_unget(s, r);
		goto nomem;
	}
	shard_unlock(s);
	while (SP_UNLIKELY(excess)) {
		struct rec *n = excess->next;
		rec_free(excess);
		excess = n;
	}

	void *val = NULL;
	int err = fn(arg, &val);
	r->val = val;
	r->err = err;

	shard_lock(s);
	if (r->in_table) /* not forgotten: it is still the key's call (Go's m[key] == c) */
		table_remove(s, r);
	/* The joiners are final now (joins happen only through the table). */
	bool shared = r->dups > 0;
	if (!shared) {
		/*
		 * Nobody joined: the leader's result is the value's only owner,
		 * so the record goes straight back to the pool, under the lock
		 * already held (no reference count, no lock-free push), and the
		 * result refers to the group instead (see release).
		 */
		r->val = NULL;
		if (SP_UNLIKELY(r->heapcap > HEAP_KEY_KEEP)) {
			bigkey = r->heap; /* freed after unlocking */
			r->heap = NULL;
			r->heapcap = 0;
		}
		if (SP_LIKELY(s->nfree < FREE_MAX)) {
			rec_unget(s, r);
		} else {
			s->nrec--;
			r->next = NULL;
			excess = r;
		}
	}
	shard_unlock(s);
	res->val = val;
	res->err = err;
	res->shared = shared;
	if (!shared) {
		res->ref = g;
		if (SP_UNLIKELY(excess))
			rec_free(excess);
		if (SP_UNLIKELY(bigkey)) {
			sp_tsan_ignore_begin();
			free(bigkey);
			sp_tsan_ignore_end();
		}
		return 0;
	}
	sp_tsan_release(&r->state); /* fn's effects, for every joiner */
	uint32_t old = atomic_fetch_or_explicit(&r->state, ST_DONE, memory_order_release);
	if (old & ST_WAITERS)
		sp_park_wake_all(&r->state);
	res->ref = r;
	return 0;

nomem:
	shard_unlock(s);
	while (excess) {
		struct rec *n = excess->next;
		rec_free(excess);
		excess = n;
	}
	return ENOMEM;
}

SP_API void sp_flight_result_release(sp_flight *g, sp_flight_result *res)
{
	if (!g || !res || !res->ref)
		return;
	if (res->ref == (void *)g) {
		/* An unshared call's result: the sole owner of its value. */
		void *val = res->val;
		res->ref = NULL;
		res->val = NULL;
		if (val && g->val_free)
			g->val_free(val);
		return;
	}
	struct rec *r = res->ref;
	uintptr_t sh = (uintptr_t)r->shard;
	if (SP_UNLIKELY(sh < (uintptr_t)&g->shards[0] || sh >= (uintptr_t)&g->shards[NSHARDS]))
		sp_fatal("flight", "result released to a group it does not come from");
	res->ref = NULL;
	res->val = NULL;
	rec_put_ref(g, r);
}

SP_API void sp_flight_forget(sp_flight *g, const void *key, size_t keylen)
{
	if (!g || (!key && keylen))
		return;
	uint64_t h = flight_hash(key, keylen);
	struct shard *s = &g->shards[h >> (64 - SHARD_BITS)];
	shard_lock(s);
	struct rec *r = table_find(s, h, key, keylen);
	if (r)
		table_remove(s, r);
	shard_unlock(s);
}
