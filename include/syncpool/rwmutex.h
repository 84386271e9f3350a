/*
 * syncpool/rwmutex.h - reader/writer lock (Go's sync.RWMutex) whose read
 * side scales with cores.
 *
 * An sp_rwmutex is 32 bytes (8-byte aligned), small enough to embed one per
 * hash bucket; its zero value (SP_RWMUTEX_INIT, {0}, static or calloc'd
 * storage) is an unlocked lock, ready with no init call and needing no
 * destroy.  It must not be copied or moved after first use, and must not be
 * freed while locked.  Any number of distinct rwmutexes may be in use at once.
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
 * Blocks (futex sleep); never fails.
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

#ifdef __cplusplus
}
#endif

#endif /* SYNCPOOL_RWMUTEX_H */
