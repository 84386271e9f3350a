/*
 * sync/once.c - Go's sync.Once, slow path.
 *
 * The state word (syncpool/once.h): 0 new -> 1 running -> 3 done, with 2
 * meaning "running, and someone parked".  The first caller wins the CAS
 * 0 -> 1 and runs fn; later callers mark the word 2 and park on it until it
 * reads 3.  The runner publishes 3 with a release exchange (fn's effects
 * happen before every acquire load that sees 3) and wakes only if the old
 * value was 2.  A caller never returns before fn has returned: the "done"
 * value is written after fn, never by the CAS that elects the runner (the
 * bug Go's comment on Once.Do warns about).
 */
#include "syncpool/once.h"

#include <pthread.h>
#include <stdatomic.h>

#include "common.h"
#include "park.h"
#include "sanitizer.h"

enum { ONCE_NEW = 0, ONCE_RUNNING = 1, ONCE_WAITERS = 2, ONCE_DONE = SP_ONCE_DONE_ };

static inline _Atomic uint32_t *once_word(sp_once *o)
{
	return (_Atomic uint32_t *)&o->state_;
}

static inline _Atomic uintptr_t *once_owner(sp_once *o)
{
	return (_Atomic uintptr_t *)&o->owner_;
}

__attribute__((noinline)) static void once_wait(sp_once *o, uint32_t s)
{
	_Atomic uint32_t *w = once_word(o);
	if (atomic_load_explicit(once_owner(o), memory_order_relaxed) == (uintptr_t)pthread_self())
		sp_fatal("once", "recursive call");
	while (s != ONCE_DONE) {
		if (s == ONCE_RUNNING) {
			/* Spin a little: fn is often short. */
			if (sp_spin_while_eq(w, ONCE_RUNNING)) {
				s = atomic_load_explicit(w, memory_order_acquire);
				continue;
			}
			if (!atomic_compare_exchange_weak_explicit(w, &s, ONCE_WAITERS,
								   memory_order_acquire,
								   memory_order_acquire))
				continue;
			s = ONCE_WAITERS;
		}
		sp_park_wait(w, ONCE_WAITERS, -1);
		s = atomic_load_explicit(w, memory_order_acquire);
	}
	sp_tsan_acquire(&o->state_);
}

SP_API void(sp_once_do)(sp_once *o, void (*fn)(void *arg), void *arg)
{
	_Atomic uint32_t *w = once_word(o);
	uint32_t s = atomic_load_explicit(w, memory_order_acquire);
	if (SP_LIKELY(s == ONCE_DONE)) {
		sp_tsan_acquire(&o->state_);
		return;
	}
	if (s == ONCE_NEW &&
	    atomic_compare_exchange_strong_explicit(w, &s, ONCE_RUNNING, memory_order_acquire,
						    memory_order_acquire)) {
		atomic_store_explicit(once_owner(o), (uintptr_t)pthread_self(), memory_order_relaxed);
		fn(arg);
		atomic_store_explicit(once_owner(o), 0, memory_order_relaxed);
		/*
		 * fn's effects, announced on state_ itself: the header's inline
		 * fast path, compiled in the user's (maybe TSan) program, is an
		 * acquire load of this very word.
		 */
		sp_tsan_release(&o->state_);
		if (atomic_exchange_explicit(w, ONCE_DONE, memory_order_release) == ONCE_WAITERS)
			sp_park_wake_all(w);
		return;
	}
	once_wait(o, s);
}
