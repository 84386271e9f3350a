/*
 * sync/timer.h - the one shared deadline thread behind context deadlines.
 *
 * A single thread, started lazily by the first sp_timer_add or
 * sp_timer_reserve, keeps a
 * binary min-heap of armed timers ordered by `when` (absolute
 * CLOCK_MONOTONIC ns).  It parks in sp_park_wait() on a sequence word with the
 * earliest deadline as the futex timeout; adding a timer earlier than the one
 * it sleeps for bumps the word and wakes it.  Each timer records its heap
 * index, so removing it (a context cancelled before its deadline) is
 * O(log n) and keeps the heap from filling with dead entries.
 *
 * fire(t) runs on the timer thread with no lock held, after t was taken off
 * the heap; whoever takes a timer off the heap (the timer thread, or a
 * successful sp_timer_remove) owns what it stands for.  After fork() the
 * child has no timer thread; its first sp_timer_add, or its first wait on
 * a context (sp_timer_resume, from sp_ctx_watch_add), starts one, which
 * then serves the timers armed before the fork too.
 */
#ifndef SP_SYNC_TIMER_H
#define SP_SYNC_TIMER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct sp_timer sp_timer;
struct sp_timer {
	int64_t when;               /* absolute deadline; set before add          */
	void (*fire)(sp_timer *t);  /* called once on the timer thread            */
	int32_t idx;                /* heap index, -1 off the heap (timer lock)   */
	bool reserved;              /* backed by an sp_timer_reserve (set once)   */
};

/*
 * Arms t.  0, or ENOMEM (heap growth) / EAGAIN (thread could not start).
 * Never fails for a timer with `reserved` set.
 */
int sp_timer_add(sp_timer *t);

/*
 * Reserves room for one timer that must never fail to arm: starts the
 * thread if needed and grows the heap so that every reserved timer fits
 * beside all the others.  0, or EAGAIN / ENOMEM (nothing reserved).  The
 * timer it backs sets `reserved`; sp_timer_unreserve gives the room back
 * once that timer is off the heap for good.  A thread started by a
 * reservation and never used by an unreserved timer (a context deadline)
 * leaves with the last reservation: that unreserve joins it.  Never call
 * sp_timer_unreserve from a fire function.
 */
int sp_timer_reserve(void);
void sp_timer_unreserve(void);

/*
 * Disarms t.  True if t was on the heap and is now off it (fire will not
 * run); false if it was not armed or the timer thread already took it (fire
 * runs or has run).  Never blocks beyond the heap lock.
 */
bool sp_timer_remove(sp_timer *t);

/*
 * Registers the timer's fork handlers if not yet done.  A module whose fork
 * prepare handler must run before the timer's (prepare handlers run in the
 * reverse order of registration) calls this before registering its own:
 * the pool's, because a pool holds its locks across free_fn calls, which
 * may take the timer lock (releasing a context with a deadline).
 */
void sp_timer_atfork_init(void);

/*
 * In a fork child whose heap holds timers armed before the fork (and so no
 * thread to fire them): starts the thread.  A relaxed load otherwise.
 */
extern _Atomic bool sp_timer_orphans_;
void sp_timer_resume_slow(void);
static inline void sp_timer_resume(void)
{
	if (__builtin_expect(atomic_load_explicit(&sp_timer_orphans_, memory_order_relaxed), 0))
		sp_timer_resume_slow();
}

#endif /* SP_SYNC_TIMER_H */
