/*
 * syncpool/cond.h - condition variables (Go's sync.Cond), with a
 * context-aware wait.
 *
 *	sp_mutex_lock(&m);
 *	while (!ready)
 *		if (sp_cond_wait_ctx(&c, &m, ctx) != 0)
 *			break;                  // cancelled or timed out; m is held
 *	sp_mutex_unlock(&m);
 *
 * The zero value is ready (static, {0}, calloc or SP_COND_INIT).  An sp_cond
 * must not be copied after first use.  Unlike Go's Cond it is not bound to a
 * mutex: each wait names the sp_mutex it releases; all waiters at one time
 * must use the same one.
 *
 * No spurious wakeups: a wait returns 0 only after a Signal or Broadcast
 * meant for it.  Waiters are queued in arrival order (Go's notify list): a
 * Signal wakes the longest-waiting thread, a Broadcast every thread waiting
 * when it was called; a Signal or Broadcast with nobody waiting does nothing
 * (it is not remembered).  A waiter counts as waiting from the moment its
 * wait call, holding the mutex, enqueues it - before the mutex is released -
 * so a Signal made under the mutex after a waiter's check is never lost.
 *
 * Memory ordering: a Signal/Broadcast happens before the return of every
 * wait it wakes.  Signal and Broadcast may be called with or without the
 * mutex held; they never block (beyond a short internal lock).
 *
 * Layout (fixed ABI, 24 bytes on LP64): `lock_` is an internal futex lock
 * over the queue, `nwait_` the number of queued waiters (read without the
 * lock by Signal's fast path), `head_`/`tail_` the FIFO of per-waiter nodes
 * that live on the waiting threads' stacks.
 */
#ifndef SYNCPOOL_COND_H
#define SYNCPOOL_COND_H

#include <stdint.h>

#include "ctx.h"
#include "mutex.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sp_cond {
	uint32_t lock_;  /* private: queue lock, 0 free / 1 held / 2 contended */
	uint32_t nwait_; /* private: queued waiters */
	void *head_;     /* private: oldest waiter */
	void *tail_;     /* private: newest waiter */
} sp_cond;

/* The zero value: no waiters. */
#define SP_COND_INIT { 0, 0, 0, 0 }

/*
 * Atomically unlocks m (which the caller must hold) and waits until a Signal
 * or Broadcast wakes this thread; locks m again before returning.  Blocks
 * (parks).  Equivalent to sp_cond_wait_ctx(c, m, NULL).
 */
void sp_cond_wait(sp_cond *c, sp_mutex *m);

/*
 * sp_cond_wait that also returns when ctx is done.  Returns 0 when woken by
 * a Signal/Broadcast, or ctx's error (ECANCELED or ETIMEDOUT) - at once,
 * without unlocking m, when ctx is already done.  m is held again on every
 * return.  A waiter that returns an error never consumed a Signal: a Signal
 * racing with the cancellation either reaches this waiter (which then
 * returns 0, even though ctx is done) or goes to the next waiter.
 * ctx may be NULL (never done).
 */
int sp_cond_wait_ctx(sp_cond *c, sp_mutex *m, sp_ctx *ctx);

/* Wakes the longest-waiting thread, if any.  Never blocks. */
void sp_cond_signal(sp_cond *c);

/* Wakes every thread waiting now.  Never blocks. */
void sp_cond_broadcast(sp_cond *c);

#ifdef __cplusplus
}
#endif

#endif /* SYNCPOOL_COND_H */
