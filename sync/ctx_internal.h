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
	_Atomic uint32_t state;
};

/*
 * Registers w on c.  Returns 0 when registered (or when c can never be done:
 * NULL, background, or a chain with no cancel/deadline - then nothing is
 * registered and remove is a cheap no-op); returns c's error (ECANCELED or
 * ETIMEDOUT) when c is already done - w is then not registered and fn is
 * never called.  Never blocks (it may take the context's internal lock).
 */
int sp_ctx_watch_add(sp_ctx *c, sp_ctx_watch *w, void (*fn)(sp_ctx_watch *w));

/*
 * Unregisters w.  Returns true if w was removed before fn was called (fn will
 * never run), false if fn has been called - and then only after fn has
 * returned, so the caller may free w as soon as this returns.
 */
bool sp_ctx_watch_remove(sp_ctx *c, sp_ctx_watch *w);

#endif /* SP_SYNC_CTX_INTERNAL_H */
