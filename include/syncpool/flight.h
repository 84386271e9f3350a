/*
 * syncpool/flight.h - duplicate call suppression (golang.org/x/sync/singleflight).
 *
 * A group deduplicates concurrent calls by key: while a call for a key is in
 * flight, further callers for the same key do not run their own fn; they wait
 * for the running one and all receive its result.  The usual use is the cache
 * fill - a thousand requests for one missing entry cause one load:
 *
 *	sp_flight_result r;
 *	int err = sp_flight_do(g, key, keylen, load, &req, ctx, &r);
 *	if (err)                         // ctx done before the result came
 *		return err;
 *	if (r.err == 0)
 *		use(r.val);              // the value is ours until the release
 *	sp_flight_result_release(g, &r);
 *
 * Unlike Go's Do, a waiter watches its context: it stops waiting as soon as
 * the context is done (Go needs DoChan and a select for that), while the call
 * goes on for everyone else.
 *
 * Keys are arbitrary byte strings (NULs included), compared by length and
 * bytes.  They are hashed with a per-process random seed, so that keys chosen
 * by an adversary cannot force collisions.  The table is sharded; no lock of
 * the group is held while fn runs, so calls for different keys run in
 * parallel.  Call records are recycled, so a steady stream of calls allocates
 * nothing.
 *
 * Ordering: everything fn did before returning happens before every
 * sp_flight_do that returns its result.  val_free runs on the thread that
 * drops the last reference to the value.
 */
#ifndef SYNCPOOL_FLIGHT_H
#define SYNCPOOL_FLIGHT_H

#include <stdbool.h>
#include <stddef.h>

#include "syncpool/ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sp_flight sp_flight; /* opaque group */

/*
 * Creates a group.  val_free (may be NULL) is run on a call's value once the
 * last result referring to it is released (never for a NULL value).  Returns
 * NULL with errno = ENOMEM when memory is short.  Does not block.
 */
sp_flight *sp_flight_create(void (*val_free)(void *val));

/*
 * Destroys a group and frees everything it holds.  Every call must have
 * finished and every filled result been released first.  Destroying a group
 * with a call in flight (forgotten ones included), or while a result shared
 * by several callers is held, is misuse and fatal ("syncpool: fatal: flight:
 * destroy with calls in flight or results held").  A held result of a call
 * nobody joined is not detected (it refers to no call record, which keeps
 * the common path free of reference counting): releasing it after destroy
 * is a use after free, as with any destroyed object.  NULL is ignored.
 */
void sp_flight_destroy(sp_flight *g);

/* Runs the call: stores what it produced in *val (NULL on entry); returns 0 or an error code. */
typedef int (*sp_flight_fn)(void *arg, void **val);

typedef struct sp_flight_result {
	void *val;   /* the leader's *val                                   */
	int err;     /* the leader's return value                           */
	bool shared; /* true if more than one caller joined this call       */
	void *ref;   /* private                                             */
} sp_flight_result;

/*
 * Runs fn(arg, &val) for key unless a call for key is already in flight, in
 * which case it waits for that call and takes its result.
 *
 * - ctx (NULL: background) already done: returns its error (ECANCELED or
 *   ETIMEDOUT) at once, neither starting nor joining a call.
 * - No call for key in flight: this caller is the leader; it runs fn itself,
 *   on its own thread, to the end - its ctx does not interrupt fn - and
 *   returns 0 with *res filled.
 * - A call in flight: blocks (parks) until that call ends, then returns 0
 *   with *res filled from it (res->shared true), or until ctx is done, then
 *   returns ctx's error with *res untouched (the call goes on for the
 *   others).
 *
 * res->err is fn's return value, res->val what fn stored (also alongside an
 * error); res->shared is true when more than one caller joined the call.  An
 * error is not remembered: once a call has ended, the next Do runs fn again.
 * Every filled result holds a reference to the value: release it with
 * sp_flight_result_release exactly once.
 *
 * Returns EINVAL when g, res or fn is NULL or key is NULL with keylen > 0,
 * ENOMEM when no call record could be allocated.  fn must not call
 * sp_flight_do for the same key of the same group (it would wait for
 * itself, as in Go).
 */
int sp_flight_do(sp_flight *g, const void *key, size_t keylen, sp_flight_fn fn, void *arg,
		 sp_ctx *ctx, sp_flight_result *res);

/*
 * Drops the reference res holds; the last one runs val_free(val) (unless val
 * is NULL).  res is cleared.  Releasing a result that was not filled, or
 * twice, is misuse (the second release of a cleared result is a no-op).
 * Does not block.
 */
void sp_flight_result_release(sp_flight *g, sp_flight_result *res);

/*
 * Forgets key: the next sp_flight_do for key starts a new call even if the
 * current one is still running.  Callers already waiting for the current
 * call still get its result, and its completion leaves a newer call for the
 * key in place.  Does not block on fn (only on the table's short internal
 * lock).
 */
void sp_flight_forget(sp_flight *g, const void *key, size_t keylen);

#ifdef __cplusplus
}
#endif

#endif /* SYNCPOOL_FLIGHT_H */
