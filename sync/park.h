/*
 * sync/park.h - the one parking layer every blocking primitive ends in.
 *
 * A thread parks on a 32-bit word with the Linux futex: it sleeps only while
 * the word still holds the value it last saw, so a waker that changes the
 * word before waking can never be missed.  Deadlines are absolute
 * CLOCK_MONOTONIC nanoseconds (sp_now_ns()); a negative deadline means none.
 * Waiting forever is the timed wait with no deadline (musl's habit): one code
 * path.
 *
 * Futexes are process-private (FUTEX_PRIVATE_FLAG): syncpool objects are for
 * threads of one process, as Go's are for goroutines.
 *
 * Ordering: sp_park_wait() re-reads the word with acquire semantics inside the
 * kernel's check; callers pair a release store (or stronger RMW) to the word
 * with sp_park_wake().  Spurious returns happen (signals, futex reuse):
 * callers always re-check their condition in a loop.
 */
#ifndef SP_SYNC_PARK_H
#define SP_SYNC_PARK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common.h"

/* Current CLOCK_MONOTONIC time in nanoseconds (public: declared in ctx.h). */
SP_API int64_t sp_now_ns(void);

/*
 * Sleeps while *word == expected, until woken, a signal, or deadline_ns
 * (absolute CLOCK_MONOTONIC; < 0: no deadline).  Returns ETIMEDOUT when the
 * deadline has passed (also when it had passed on entry), else 0 - which
 * means only "look again": the word may or may not have changed.
 */
int sp_park_wait(_Atomic uint32_t *word, uint32_t expected, int64_t deadline_ns);

/* Wakes at most n threads parked on word (n >= 1).  Returns how many woke. */
int sp_park_wake(_Atomic uint32_t *word, int n);

static inline int sp_park_wake_one(_Atomic uint32_t *word) { return sp_park_wake(word, 1); }
static inline int sp_park_wake_all(_Atomic uint32_t *word) { return sp_park_wake(word, 0x7fffffff); }

/*
 * Bounded adaptive spinning, before a park.  sp_spin_limit() is the number of
 * relax iterations worth spending on a word before parking: 0 on a single
 * CPU (spinning only delays the owner), a small bound otherwise, so that 64
 * threads on 2 cores park instead of burning the cores.
 */
int sp_spin_limit(void);

/*
 * Spins (relaxing, with exponential backoff) at most sp_spin_limit()
 * iterations while *word == expected.  Returns true as soon as the word
 * differs (the caller re-reads it), false when the budget ran out.
 */
bool sp_spin_while_eq(_Atomic uint32_t *word, uint32_t expected);

#endif /* SP_SYNC_PARK_H */
