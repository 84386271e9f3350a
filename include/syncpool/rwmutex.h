/*
 * syncpool/rwmutex.h - reader/writer lock (Go's sync.RWMutex) whose read
 * side scales with cores.
 *
 * An sp_rwmutex is 32 bytes (8-byte aligned), small enough to embed one per
 * hash bucket; its zero value (SP_RWMUTEX_INIT, {0}, static or calloc'd
 * storage) is an unlocked lock, ready with no init call and needing no
 * destroy.  It must not be copied or moved after first use, and must not be
 * freed while locked or while any call on it is still running.  Unlike
 * sp_mutex (and glibc's pthread_rwlock), both unlocks may still touch the
 * rwmutex after they released it: a writer's unlock after it has let
 * readers in, and a read unlock after a waiting writer could see it gone
 * (it then wakes that writer, or cleans up a read lock released by another
 * thread).  So free an rwmutex only once every thread that used it has
 * returned from its last call on it (joined it, or heard from it after
 * that call) - not merely after taking the lock yourself.  Any number of
 * distinct rwmutexes may be in use at once.
 *
 * Semantics are Go's: the lock is held by any number of readers or by one
 * writer.  A locked rwmutex is not tied to a thread: one thread may lock
 * (read or write) and another unlock.  Once a writer is waiting (blocked in
 * sp_rwmutex_lock()), new readers block and sp_rwmutex_tryrlock() fails until
 * that writer has locked and unlocked, so writers never starve; readers that
 * were blocked by a writer all get in before the next writer.  Hence no
 * recursive read locking: a thread that read-locks twice can deadlock with a
 * writer that arrived in between.  The n-th sp_rwmutex_unlock() happens
 * before the (n+1)-th sp_rwmutex_lock() returns and before every read lock
 * taken after it; every sp_rwmutex_runlock() happens before the next write
 * lock returns.
 *
 * Read scaling (BRAVO, Dice & Kogan, USENIX ATC 2019): while the lock is
 * "read-biased", a reader publishes itself in a slot of a process-wide table
 * (hashed by thread and lock; 32 KiB for the whole process) instead of
 * writing the lock's shared counter, so concurrent readers on different
 * cores write different cache lines; its unlock is a plain store.  A writer
 * revokes the bias and waits for the published readers to leave; the bias
 * then stays off for 9x the time the revocation took, so write-heavy locks
 * behave like an ordinary counter-based rwlock (one atomic add per read
 * lock and per read unlock).  A zero lock starts unbiased; its first read
 * lock turns the bias on.  Up to 256 threads at a time use the table (the
 * library numbers them, reusing numbers of exited threads through one
 * pthread key); threads beyond that read through the counter.
 *
 * Blocking waits end in a futex sleep (no unbounded spinning).
 */
#ifndef SYNCPOOL_RWMUTEX_H
#define SYNCPOOL_RWMUTEX_H

#include <stdbool.h>
#include <stdint.h>

#include "syncpool/mutex.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__cplusplus) && defined(__GNUC__)
/* The inline code below is C; C++ users' style warnings about it are not theirs. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wold-style-cast"
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuseless-cast"
#endif
#endif

/*
 * 32 bytes.  The fields are private: plain integers here (so that C++ and C
 * translation units share the layout); the library accesses them atomically.
 */
typedef struct sp_rwmutex {
	sp_mutex w_;                               /* private: serializes writers            */
	uint64_t state_ __attribute__((aligned(8))); /* private: writer, bias, reader counts */
	uint32_t rsem_;                            /* private: readers blocked by a writer   */
	uint32_t drain_;                           /* private: a writer waits for readers    */
	int64_t inhibit_;                          /* private: read bias off until this time */
} sp_rwmutex;

/* The zero value: an unlocked rwmutex. */
#define SP_RWMUTEX_INIT { SP_MUTEX_INIT, 0, 0, 0, 0 }

/*
 * Read-locks rw, blocking while a writer holds it or waits for it.
 * Acquire: sees every write made before the last sp_rwmutex_unlock().
 * Blocks (futex sleep); never fails.  One wait does not park: while
 * another thread runs the library's internal table scan (after a read
 * lock was released by a thread other than the one that took it; a few
 * loads per thread, never blocking), readers spin briefly, then yield the
 * CPU (sched_yield) until it ends - a scanner preempted mid-scan gets the
 * CPU back that way.
 */
void sp_rwmutex_rlock(sp_rwmutex *rw);

/*
 * Read-locks rw if no writer holds it or waits for it, returning true;
 * returns false at once otherwise.  Never blocks: at most it waits out the
 * library's internal table scan after a cross-thread unlock (a few hundred
 * nanoseconds of work, no lock holder waited for); that scan never makes it
 * fail.
 */
bool sp_rwmutex_tryrlock(sp_rwmutex *rw);

/*
 * Releases one read lock; any thread may release a read lock that another
 * thread took.  Release: reads and writes before it happen before the next
 * writer's lock.  Wakes a waiting writer when the last reader leaves; never
 * blocks.  Fatal ("syncpool: fatal: rwmutex: runlock of unlocked rwmutex",
 * abort) if rw is not read-locked.
 */
void sp_rwmutex_runlock(sp_rwmutex *rw);

/*
 * Write-locks rw, blocking until no reader or writer holds it.  From the
 * moment a writer waits here, new readers wait too.  Blocks (futex sleep);
 * never fails.  Not recursive.
 */
void sp_rwmutex_lock(sp_rwmutex *rw);

/*
 * Write-locks rw if nobody holds it, returning true; returns false at once
 * otherwise.  Never blocks (at most it waits out an internal table scan, as
 * sp_rwmutex_tryrlock() does).  A failing call does not make concurrent
 * sp_rwmutex_tryrlock() calls fail.
 */
bool sp_rwmutex_trylock(sp_rwmutex *rw);

/*
 * Releases the write lock; any thread may.  Lets in the readers that were
 * blocked by this writer, then the next writer.  Never blocks.  Fatal
 * ("syncpool: fatal: rwmutex: unlock of unlocked rwmutex", abort) if rw is
 * not write-locked.
 */
void sp_rwmutex_unlock(sp_rwmutex *rw);

/*
 * The read lock's fast path (BRAVO: publish the lock in this thread's slot
 * of the visible-readers table, check the read bias) and the matching
 * unlock, inlined: one CAS and two loads to lock, a load, a plain store and
 * a load to unlock, without the calls.  Everything else goes to the
 * exported functions or the private sp_rwmutex_*_ ones below.
 * `(sp_rwmutex_rlock)(rw)` and `&sp_rwmutex_rlock` reach the exported
 * functions, which behave the same.  Not under ThreadSanitizer (its
 * threads read through the counter, which tells it what happened); off
 * with SP_RWMUTEX_NO_INLINE.  Private: the names ending in '_' and the
 * table may change with the library's SONAME.
 */
#define SP_RWMUTEX_RBIAS_ ((uint64_t)1 << 30)
#define SP_RWMUTEX_WRITER_ ((uint64_t)1 << 31)

static inline uint32_t sp_rwmutex_hash_(const sp_rwmutex *rw)
{
	return (uint32_t)(((uint64_t)(uintptr_t)rw * UINT64_C(0x9E3779B97F4A7C15)) >> 52);
}

#if !defined(SP_BUILDING_LIBRARY_) && !defined(SP_RWMUTEX_NO_INLINE) && !defined(__SANITIZE_THREAD__)
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SP_RWMUTEX_NO_INLINE_TSAN_ 1
#endif
#endif
#ifndef SP_RWMUTEX_NO_INLINE_TSAN_
extern uintptr_t sp_rwmutex_vr_table_[4096];
extern __thread uint32_t sp_rwmutex_vr_self_ __attribute__((tls_model("initial-exec")));
void sp_rwmutex_rlock_backout_(sp_rwmutex *rw, uintptr_t *slot, uint64_t s);
void sp_rwmutex_runlock_slow_(sp_rwmutex *rw, uint64_t s);

static inline void sp_rwmutex_rlock_inline_(sp_rwmutex *rw)
{
	uint32_t base = sp_rwmutex_vr_self_; /* 4096 + 16 * line; less: none (yet) */
	if (__builtin_expect(base >= 4096, 1) &&
	    __builtin_expect((__atomic_load_n(&rw->state_, __ATOMIC_RELAXED) & SP_RWMUTEX_RBIAS_) != 0, 1)) {
		uintptr_t *slot = &sp_rwmutex_vr_table_[(base + sp_rwmutex_hash_(rw)) % 4096];
		uintptr_t expect = 0;
		if (__builtin_expect(__atomic_compare_exchange_n(slot, &expect, (uintptr_t)rw, 0,
								 __ATOMIC_SEQ_CST, __ATOMIC_RELAXED),
				     1)) {
			uint64_t s = __atomic_load_n(&rw->state_, __ATOMIC_SEQ_CST);
			if (__builtin_expect((s & SP_RWMUTEX_RBIAS_) != 0, 1))
				return;
			sp_rwmutex_rlock_backout_(rw, slot, s); /* the bias went: the counter */
			return;
		}
	}
	(sp_rwmutex_rlock)(rw);
}

static inline void sp_rwmutex_runlock_inline_(sp_rwmutex *rw)
{
	uint32_t base = sp_rwmutex_vr_self_;
	if (__builtin_expect(base >= 4096, 1)) {
		uintptr_t *slot = &sp_rwmutex_vr_table_[(base + sp_rwmutex_hash_(rw)) % 4096];
		if (__builtin_expect(__atomic_load_n(slot, __ATOMIC_RELAXED) == (uintptr_t)rw, 1)) {
			/* Only this thread empties its slot while a read lock is held. */
			__atomic_store_n(slot, 0, __ATOMIC_RELEASE);
			uint64_t s = __atomic_load_n(&rw->state_, __ATOMIC_RELAXED);
			/* A writer revoking the bias, or phantoms to clear (the sign bit). */
			if (__builtin_expect((s & SP_RWMUTEX_WRITER_) || (int64_t)s < 0, 0))
				sp_rwmutex_runlock_slow_(rw, s);
			return;
		}
	}
	(sp_rwmutex_runlock)(rw);
}

#define sp_rwmutex_rlock(rw) sp_rwmutex_rlock_inline_(rw)
#define sp_rwmutex_runlock(rw) sp_rwmutex_runlock_inline_(rw)
#endif
#endif

#if defined(__cplusplus) && defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* SYNCPOOL_RWMUTEX_H */
