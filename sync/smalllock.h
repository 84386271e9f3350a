/*
 * sync/smalllock.h - a 4-byte internal lock for short critical sections.
 *
 * Used by the cond notify list and the worker pool, whose critical sections
 * are a handful of pointer moves (never a syscall, never user code).  It is
 * Drepper's three-state futex mutex ("Futexes Are Tricky", mutex3): 0 free,
 * 1 locked, 2 locked with (possible) waiters; unlock wakes one only from 2.
 * A bounded spin precedes the park, so oversubscribed threads sleep.
 * Not fair, not recursive; zero value is unlocked.
 */
#ifndef SP_SYNC_SMALLLOCK_H
#define SP_SYNC_SMALLLOCK_H

#include <stdatomic.h>
#include <stdint.h>

#include "park.h"

typedef struct sp_smalllock {
	_Atomic uint32_t word; /* 0 free, 1 locked, 2 locked + waiters */
} sp_smalllock;

static inline void sp_smalllock_lock_slow(sp_smalllock *l)
{
	uint32_t c = 1;
	/* Spin while held without waiters: the owner is likely on a CPU. */
	for (int i = 0; i < 4; i++) {
		sp_spin_while_eq(&l->word, 1);
		c = 0;
		if (atomic_compare_exchange_strong_explicit(&l->word, &c, 1, memory_order_acquire,
							    memory_order_relaxed))
			return;
		if (c == 2)
			break;
	}
	/* Mark contended and park until we take it in state 2. */
	if (c != 2)
		c = atomic_exchange_explicit(&l->word, 2, memory_order_acquire);
	while (c != 0) {
		sp_park_wait(&l->word, 2, -1);
		c = atomic_exchange_explicit(&l->word, 2, memory_order_acquire);
	}
}

static inline void sp_smalllock_lock(sp_smalllock *l)
{
	uint32_t c = 0;
	if (SP_LIKELY(atomic_compare_exchange_strong_explicit(&l->word, &c, 1, memory_order_acquire,
							      memory_order_relaxed)))
		return;
	sp_smalllock_lock_slow(l);
}

static inline void sp_smalllock_unlock(sp_smalllock *l)
{
	if (SP_UNLIKELY(atomic_exchange_explicit(&l->word, 0, memory_order_release) == 2))
		sp_park_wake_one(&l->word);
}

#endif /* SP_SYNC_SMALLLOCK_H */
