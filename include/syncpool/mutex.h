/*
 * syncpool/mutex.h - mutual exclusion lock (Go's sync.Mutex).
 *
 * An sp_mutex is 8 bytes (two 32-bit words, 4-byte aligned); its zero value
 * (SP_MUTEX_INIT, {0}, static or calloc'd storage) is an unlocked mutex, ready
 * with no init call and needing no destroy.  It must not be copied or moved
 * after first use.  Its memory may be freed once it is unlocked and no
 * thread waits for it - also by a thread that locked it after another's
 * unlock, while that unlock is still returning (as POSIX allows for
 * pthread mutexes): unlock does not touch the mutex after releasing it,
 * except to wake a waiter, which keeps it alive.
 *
 * Semantics are Go's: a locked mutex is not tied to a thread - one thread may
 * lock it and arrange for another to unlock it.  It is not recursive: locking
 * a mutex the caller already holds deadlocks.  The n-th call to
 * sp_mutex_unlock() synchronizes with (happens before) the m-th
 * sp_mutex_lock() return for every n < m; a successful sp_mutex_trylock()
 * counts as a lock.
 *
 * Fairness, as in Go: in normal mode a thread arriving at a locked mutex may
 * spin briefly and take the lock ahead of sleeping waiters (throughput); a
 * waiter that has been blocked for more than 1 ms switches the mutex to
 * starvation mode, in which every unlock hands the lock directly to a waiter
 * and newcomers queue behind - so no thread starves.  The mutex returns to
 * normal mode once the waiters are served promptly again.
 *
 * Blocking waits end in a futex sleep (no unbounded spinning), so hundreds of
 * threads on a few cores make progress.
 */
#ifndef SYNCPOOL_MUTEX_H
#define SYNCPOOL_MUTEX_H

#include <stdbool.h>
#include <stdint.h>

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
 * 8 bytes.  The fields are private: plain integers here (so that C++ and C
 * translation units share the layout); the library accesses them atomically.
 */
typedef struct sp_mutex {
	uint32_t state_; /* private: lock bit, woken bit, starving bit, waiter count */
	uint32_t sema_;  /* private: wake-up tokens; waiters sleep on this word     */
} sp_mutex;

/* The zero value: an unlocked mutex. */
#define SP_MUTEX_INIT { 0, 0 }

/*
 * Locks m, blocking until it is available.  On return the caller holds m and
 * every write made before the previous sp_mutex_unlock(m) is visible.
 * Blocks (spins briefly, then sleeps); never fails.  Not recursive.
 */
void sp_mutex_lock(sp_mutex *m);

/*
 * Takes m if it is free right now and returns true; returns false at once if
 * it is locked (or being handed to a waiter in starvation mode).  Never
 * blocks.  A true return synchronizes like sp_mutex_lock().
 */
bool sp_mutex_trylock(sp_mutex *m);

/*
 * Unlocks m; any thread may unlock, not only the one that locked it.
 * Release: writes before it are visible to the next thread that locks m.
 * Wakes a waiter if one must be woken; never blocks.
 * Fatal ("syncpool: fatal: mutex: unlock of unlocked mutex", abort) if m is
 * not locked.
 */
void sp_mutex_unlock(sp_mutex *m);

/*
 * The uncontended lock and unlock, inlined: a CAS each, without the two
 * calls.  Everything else (a locked or contended mutex, waiters to wake,
 * misuse) goes to the private sp_mutex_lock_slow_/sp_mutex_unlock_contended_.
 * `(sp_mutex_lock)(m)` and `&sp_mutex_lock` reach the exported functions,
 * which behave the same; SP_MUTEX_NO_INLINE turns the macros off.  Under
 * ThreadSanitizer these atomics are compiled into the user's program and so
 * seen by it - provided the translation unit that locks is instrumented: in
 * a TSan program, build a file that is not with SP_MUTEX_NO_INLINE (the
 * exported functions announce themselves to TSan), or TSan will report
 * races on what that file's locks protect.
 */
void sp_mutex_lock_slow_(sp_mutex *m);
void sp_mutex_unlock_contended_(sp_mutex *m, uint32_t seen);

static inline void sp_mutex_lock_inline_(sp_mutex *m)
{
	uint32_t unlocked = 0;
	if (__builtin_expect(!__atomic_compare_exchange_n(&m->state_, &unlocked, 1u, 0,
							  __ATOMIC_ACQUIRE, __ATOMIC_RELAXED),
			     0))
		sp_mutex_lock_slow_(m);
}

static inline void sp_mutex_unlock_inline_(sp_mutex *m)
{
	uint32_t locked = 1u;
	if (__builtin_expect(!__atomic_compare_exchange_n(&m->state_, &locked, 0u, 0, __ATOMIC_RELEASE,
							  __ATOMIC_RELAXED),
			     0))
		sp_mutex_unlock_contended_(m, locked); /* waiters, starvation, or misuse: still held */
}

#if !defined(SP_BUILDING_LIBRARY_) && !defined(SP_MUTEX_NO_INLINE)
#define sp_mutex_lock(m) sp_mutex_lock_inline_(m)
#define sp_mutex_unlock(m) sp_mutex_unlock_inline_(m)
#endif

#if defined(__cplusplus) && defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* SYNCPOOL_MUTEX_H */
