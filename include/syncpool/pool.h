/*
 * syncpool/pool.h - a per-CPU object pool with Go's sync.Pool semantics.
 *
 * A pool caches objects between uses so that hot paths stop allocating.
 * Get returns some previously Put object or a new one; the caller may not
 * assume which.  Each CPU has a private slot and a bounded stack (per_cpu_cap
 * entries) in its own 128-byte-padded area; Get looks at this CPU's private
 * slot, then its stack, then steals from the other CPUs' stacks, then the
 * victim cache, then allocates (new_fn, or jemalloc when the pool allocates).
 * Put fills this CPU's private slot, then its stack; an object put while this
 * CPU's cache is full is dropped (handed to free_fn), never leaked.
 *
 * On x86_64 Linux the per-CPU operations are restartable sequences running on
 * the rseq area glibc registered for each thread (a thread that migrates in
 * the middle of an operation restarts it): Get and Put take no lock and
 * execute no atomic read-modify-write.  Where rseq is not registered
 * (GLIBC_TUNABLES=glibc.pthread.rseq=0, valgrind, other architectures, and
 * in a process with a ThreadSanitizer runtime, or an AddressSanitizer one
 * for a pool with size > 0) the same areas are used under a per-CPU lock.
 *
 * Cleanup (Go's GC hook): one cycle drops (free_fn) the victim cache and
 * moves the primary cache into the victim, so an object survives exactly one
 * cycle and two cycles with no Get free everything.  Cycles run concurrently
 * with Get and Put from any thread.
 *
 * Synchronization: a Put of an object happens before the Get that returns
 * it (and before free_fn when the pool drops it), so the getter sees
 * everything the putter wrote to the object.
 *
 * Sanitizers in the user's program (the installed library is not built with
 * them): ThreadSanitizer is told of that happens-before, so plain data handed
 * through a pool object is not reported; with a TSan runtime in the process
 * the built-in allocator uses malloc/free instead of jemalloc (TSan cannot
 * follow jemalloc's reuse of memory).  AddressSanitizer: the first size
 * bytes of a cached object are poisoned, so a use after Put is reported.
 */
#ifndef SYNCPOOL_POOL_H
#define SYNCPOOL_POOL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sp_pool sp_pool; /* opaque */

/* The default per_cpu_cap: 256 objects in each CPU's stack, plus the private slot. */
#define SP_POOL_DEFAULT_PER_CPU_CAP 256
/* The largest per_cpu_cap accepted; larger is EINVAL. */
#define SP_POOL_MAX_PER_CPU_CAP 65535

typedef struct sp_pool_opts {
	size_t size;          /* object size for the built-in allocator (jemalloc); 0: none */
	void *(*new_fn)(void *arg);              /* Go's Pool.New; optional; may return NULL */
	void  (*free_fn)(void *obj, void *arg);  /* called for every object the pool drops  */
	void  (*reset_fn)(void *obj, void *arg); /* optional, run by put before caching     */
	void  *arg;
	size_t per_cpu_cap;   /* bound on objects cached per CPU; 0: library default        */
} sp_pool_opts;

/*
 * Creates a pool.  Either the pool allocates - size > 0, new_fn and free_fn
 * both NULL: objects come from jemalloc (mallocx, malloc alignment; the pool
 * uses an arena of its own so that cleanup gives memory back to the OS) and
 * go back to it (sdallocx) - or the user does: free_fn set, new_fn optional
 * (NULL: Get returns NULL on a miss), size then only tells AddressSanitizer
 * how many bytes of a cached object to poison (0: none).  reset_fn is optional in both.
 * per_cpu_cap: 0 means SP_POOL_DEFAULT_PER_CPU_CAP; at most
 * SP_POOL_MAX_PER_CPU_CAP.  Returns NULL with errno EINVAL for anything else
 * (NULL opts included), ENOMEM when out of memory.  Does not block.
 *
 * new_fn, free_fn and reset_fn may call sp_pool_get/sp_pool_put (on any
 * pool) but not sp_pool_create, sp_pool_destroy or the cleanup functions:
 * free_fn runs inside cleanup.
 */
sp_pool *sp_pool_create(const sp_pool_opts *opts);

/*
 * Drops (free_fn / sdallocx) every cached object and frees the pool.  No
 * other call on p may be running or follow.  Objects still out (got, not put
 * back) are no longer the pool's: with free_fn the caller frees them
 * free_fn's way.  With the built-in allocator, put every object back before
 * destroy: one still out stays valid memory (the pool's jemalloc arena is
 * then only purged, not destroyed) but nothing can free it any more - it is
 * leaked, with the arena.  Never pass such an object to free(): it is not
 * malloc's (glibc's free aborts or corrupts the heap).
 * Waits for a cleanup of this pool in progress on the cleaner thread.
 */
void sp_pool_destroy(sp_pool *p);

/*
 * Returns a cached object (this CPU's private slot, its stack, another CPU's
 * stack, the victim cache - in that order), else a new one (new_fn, or
 * mallocx for a jemalloc pool), else NULL.  Safe from any thread at any time,
 * concurrently with everything but destroy.  Blocks only for the few
 * instructions another thread holds a CPU's area (stealing, cleanup).
 */
void *sp_pool_get(sp_pool *p);

/*
 * Caches obj (after reset_fn, if set) in this CPU's private slot or stack;
 * when both are full, drops it (free_fn / sdallocx).  NULL is ignored and not
 * counted.  The caller must not touch obj afterwards (AddressSanitizer
 * reports it: cached objects are poisoned).  Safe like sp_pool_get.
 */
void sp_pool_put(sp_pool *p, void *obj);

/*
 * One cleanup cycle on p: drops the victim cache, moves the primary cache
 * into the victim.  Runs concurrently with Get and Put; cycles on one pool
 * are serialized.  Drops happen on the calling thread (free_fn).
 */
void sp_pool_cleanup(sp_pool *p);

/* One cleanup cycle on every live pool (serialized with create/destroy). */
void sp_pool_cleanup_all(void);

/*
 * Runs sp_pool_cleanup_all every interval_ns on one background thread.
 * interval_ns <= 0: EINVAL.  A second start changes the interval (the next
 * cycle is due interval_ns after the last one) and returns 0.  EAGAIN if the
 * thread cannot be created.
 */
int sp_pool_cleaner_start(int64_t interval_ns);

/* Stops and joins the cleaner thread (promptly: it parks with a deadline).
 * Without a running cleaner it does nothing. */
void sp_pool_cleaner_stop(void);

typedef struct sp_pool_stats {
	uint64_t gets, puts;            /* calls                                          */
	uint64_t hits_local;            /* served by this CPU's private slot or stack     */
	uint64_t hits_stolen;           /* served by getSlow from another CPU             */
	uint64_t hits_victim;           /* served from the victim cache                   */
	uint64_t news;                  /* misses that called new_fn / allocated          */
	uint64_t drops;                 /* objects handed to free_fn (cleanup, overflow)  */
	uint64_t cached;                /* objects held right now (approximate)           */
} sp_pool_stats;

/*
 * Reads p's counters.  They are kept per CPU and summed here, so while other
 * threads operate the figures are a moment's approximation; when no operation
 * is in progress every figure (cached included) is exact.  A steal moves up to
 * half of the victim CPU's stack: the first object counts in hits_stolen, the
 * rest are served later from this CPU's stack (hits_local).  A Get that
 * returns NULL (no new_fn) counts only in gets.  Does not block.
 */
void sp_pool_stats_get(sp_pool *p, sp_pool_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* SYNCPOOL_POOL_H */
