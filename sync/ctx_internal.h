/*
 * sync/ctx_internal.h - how a blocking primitive waits on a context.
 *
 * This is the one mechanism every context-aware wait in the library uses
 * (sema, cond, flight, errgroup, sp_ctx_wait itself).  A waiter embeds an
 * sp_ctx_watch in its own (usually stack) frame and registers it on the
 * context before parking.  The thread that makes the context done - the
 * canceller, a cancelled ancestor's canceller, or the deadline timer thread -
 * calls every registered watch's fn exactly once.  fn must not block: it
 * typically flips a bit in the waiter's futex word and wakes it
 * (sp_park_wake), so the waiter, parked in sp_park_wait() on that word, sees
 * the change and returns the context's error.  No allocation, no lock held
 * while the waiter sleeps.
 *
 * Typical use:
 *
 *	struct waiter { _Atomic uint32_t word; sp_ctx_watch watch; ... } w;
 *	static void on_done(sp_ctx_watch *cw) {
 *		struct waiter *w = container_of(cw, struct waiter, watch);
 *		atomic_fetch_or(&w->word, CANCELLED);
 *		sp_park_wake_all(&w->word);
 *	}
 *	int err = sp_ctx_watch_add(ctx, &w.watch, on_done);
 *	if (err) return err;                  // already done: not registered
 *	while (!granted && !(word & CANCELLED)) sp_park_wait(&w.word, seen, -1);
 *	sp_ctx_watch_remove(ctx, &w.watch);   // after it returns, w may die
 *	return w.watch.err;                   // ctx itself may be gone
 *
 * fn runs with no lock of the context held (the canceller detaches the whole
 * watch list under the context's lock, then calls each fn), so fn may take
 * the waiter's own locks; it must not call sp_ctx_watch_remove on its own
 * watch (that waits for fn to return).
 */
#ifndef SP_SYNC_CTX_INTERNAL_H
#define SP_SYNC_CTX_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "syncpool/ctx.h"

#define sp_container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

typedef struct sp_ctx_watch sp_ctx_watch;
struct sp_ctx_watch {
	/* All fields are owned by the ctx module between add and remove. */
	sp_ctx_watch *next, *prev;
	void (*fn)(sp_ctx_watch *w);
	_Atomic uint32_t state; /* SP_WATCH_* below */
	void *node;             /* the context, referenced from add to remove */
	int err;                /* the context's error as add / remove saw it */
};

/*
 * Watch states.  IDLE: not registered (never, removed, or add failed).
 * REGISTERED: on the context's list (set and cleared under its lock).
 * PENDING: the context is done and the canceller will call fn, but has not
 * started it: still on the context's list, so a remover (another watch's
 * fn on the canceller's thread included) can take it off and fn never runs.
 * FIRING: taken off by the canceller, fn running or about to; WAITED: the
 * same, with a remover parked on `state` for the end of fn.  DONE: fn has
 * returned (or, for the ctx module's own child links, the link was taken
 * over by the canceller).
 */
enum {
	SP_WATCH_IDLE = 0,
	SP_WATCH_REGISTERED = 1,
	SP_WATCH_FIRING = 2,
	SP_WATCH_WAITED = 3,
	SP_WATCH_DONE = 4,
	SP_WATCH_PENDING = 5,
};

/*
 * Registers w on c.  Returns 0 when registered (or when c can never be done:
 * NULL or background - then nothing is registered and remove is a cheap
 * no-op); returns c's error (ECANCELED or ETIMEDOUT) when c is already done -
 * w is then not registered and fn is never called.  Never blocks (it may take
 * the context's internal lock).  Every context made by a with_* call can be
 * done (value contexts are cancellable too), so only NULL/background skip
 * registration.  A registered watch holds its own reference on the
 * context until remove: another thread may release the last handle (the
 * creator's release cancels, Go's `defer cancel()`) while the waiter sleeps.
 * c must be a valid handle when add is called.  w->err is set to the
 * return value.
 */
int sp_ctx_watch_add(sp_ctx *c, sp_ctx_watch *w, void (*fn)(sp_ctx_watch *w));

/*
 * Unregisters w.  Returns true if w was removed before fn was called (fn will
 * never run) - also when w was never registered - false if fn has been
 * called - and then only after fn has returned, so the caller may free w as
 * soon as this returns.  May wait (parked) for a running fn; never otherwise
 * blocks.  Calling it again after it returned is harmless.  Sets w->err to
 * the context's error at this point (0: not done) and drops the watch's
 * reference: after remove, use w->err, not c (whose handle may be gone).
 */
bool sp_ctx_watch_remove(sp_ctx *c, sp_ctx_watch *w);

/*
 * sp_ilock - a tiny internal lock on the parking layer (Drepper's three-state
 * futex mutex, "Futexes are tricky", mutex2): 0 free, 1 locked, 2 locked with
 * possible sleepers.  A bounded spin precedes the park.  Used for the short
 * critical sections of contexts, the timer heap and the semaphore queue; it
 * is independent of sp_mutex so those modules do not depend on its tuning.
 * Zero value: unlocked.  Not recursive; any thread may unlock.
 */
typedef struct sp_ilock {
	_Atomic uint32_t v;
} sp_ilock;

void sp_ilock_lock_slow(sp_ilock *l);

static inline void sp_ilock_lock(sp_ilock *l)
{
	uint32_t z = 0;
	if (!atomic_compare_exchange_strong_explicit(&l->v, &z, 1, memory_order_acquire,
						     memory_order_relaxed))
		sp_ilock_lock_slow(l);
}

void sp_ilock_wake(sp_ilock *l);

static inline void sp_ilock_unlock(sp_ilock *l)
{
	if (atomic_exchange_explicit(&l->v, 0, memory_order_release) == 2)
		sp_ilock_wake(l);
}

#endif /* SP_SYNC_CTX_INTERNAL_H */
