/*
 * syncpool/ctx.h - cancellation contexts (Go's context package).
 *
 * A context carries a cancellation signal, an optional deadline and values
 * across API boundaries and threads.  Contexts form a tree: a child made
 * from a parent is done when the parent is done (with the parent's error),
 * or earlier - by its own cancel or deadline; a child never cancels its
 * parent.  Every blocking call of syncpool that takes a context returns
 * promptly once it is done.
 *
 *	sp_ctx *ctx;
 *	if (sp_ctx_with_timeout(parent, 50 * 1000000, &ctx))  // 50 ms
 *		return ENOMEM;
 *	int err = sp_sema_acquire(&sem, 1, ctx);     // ETIMEDOUT after 50 ms
 *	...
 *	sp_ctx_release(ctx);                          // Go's defer cancel()
 *
 * Handles and lifetime.  An sp_ctx pointer is a handle.  The pointer a
 * with_* call returns is the creator's handle: releasing it cancels the
 * context (so its descendants too) and drops its reference - Go's
 * `defer cancel()` in one call.  sp_ctx_retain returns another handle to the
 * same context (possibly a different pointer) whose release only drops a
 * reference.  Every function accepts any handle.  A context lives until its
 * last handle and its last child are released; a child stays valid after
 * its parent's handles are gone.  NULL and sp_ctx_background() stand for
 * the root that is never done.  Using a handle after its release is
 * undefined (a stray pointer is caught as fatal when recognisable).
 *
 * Errors.  sp_ctx_err is 0 until the context is done, then ECANCELED
 * (cancelled) or ETIMEDOUT (its deadline, or an ancestor's, passed), and it
 * never changes again.  Every context made by a with_* call can be
 * cancelled - value contexts too (Go's WithValue has no cancel; here one
 * ownership rule holds for all with_* results).
 *
 * Deadlines are served by one shared, lazily started timer thread (a binary
 * heap; not a thread per context).  Time is CLOCK_MONOTONIC nanoseconds
 * (sp_now_ns()).
 *
 * Thread safety: every function may be called from any thread at any time
 * on any live handle.  Making a context done happens before every call that
 * observes it done (sp_ctx_err != 0, sp_ctx_wait returning true, an
 * after_func fn running, a context-aware wait failing).  Functions here
 * never block, except sp_ctx_wait.  Memory is the only resource: with_* and
 * after_func allocate (ENOMEM / NULL when short).
 */
#ifndef SYNCPOOL_CTX_H
#define SYNCPOOL_CTX_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * fork(): the child may use the contexts it inherits.  It has no timer
 * thread at first: deadlines armed before the fork fire once the child
 * waits on a context (sp_ctx_wait, or any blocking call that takes one),
 * registers an after_func hook or creates a context with a deadline, which
 * start it; polling sp_ctx_err alone does not.
 */

/* Current CLOCK_MONOTONIC time in nanoseconds; every syncpool deadline uses it. */
int64_t sp_now_ns(void);

typedef struct sp_ctx sp_ctx; /* opaque, reference counted */

/*
 * The root context: never done, no deadline, no values.  A static object:
 * retain returns it, release and cancel do nothing.  Never blocks.
 */
sp_ctx *sp_ctx_background(void);

/*
 * Makes a cancellable child of parent (NULL: background) in *out - the
 * creator's handle.  If parent is already done, the child is done at once
 * with parent's error.  Returns 0, EINVAL (out is NULL) or ENOMEM (then
 * *out is untouched).  Never blocks.
 */
int sp_ctx_with_cancel(sp_ctx *parent, sp_ctx **out);

/*
 * Like with_cancel, and the child becomes done with ETIMEDOUT at deadline_ns
 * (absolute CLOCK_MONOTONIC).  Its deadline is the earlier of deadline_ns
 * and the parent's; a deadline already past makes it done at once with
 * ETIMEDOUT (unless the parent already was done, whose error it then has) -
 * also an inherited one whose timer has not fired yet: the ancestor whose
 * deadline it is then becomes done too, on this thread, as if its timer had
 * fired (so a child is never done before that ancestor).  (with_cancel and
 * with_value read no clock: their children of such an ancestor become done
 * when its timer fires, microseconds later.)  deadline_ns = INT64_MAX means no deadline of
 * its own.  Returns 0, EINVAL, ENOMEM, or EAGAIN if the timer thread could
 * not be started.
 */
int sp_ctx_with_deadline(sp_ctx *parent, int64_t deadline_ns, sp_ctx **out);

/* with_deadline(parent, sp_now_ns() + timeout_ns, out); timeout_ns <= 0: done at once. */
int sp_ctx_with_timeout(sp_ctx *parent, int64_t timeout_ns, sp_ctx **out);

/*
 * Makes a child of parent carrying val under key (compared by pointer
 * value: use the address of a static object of your own as the key; NULL
 * is a key like any other, unlike Go, which panics on a nil key).  It is
 * cancellable like a with_cancel child.  Returns 0, EINVAL (out is NULL)
 * or ENOMEM.
 */
int sp_ctx_with_value(sp_ctx *parent, const void *key, void *val, sp_ctx **out);

/*
 * Cancels c: c and all its descendants become done with ECANCELED (those
 * already done keep their error); never touches the parent.  Runs, on the
 * calling thread, every after_func fn registered on them and wakes every
 * syncpool wait on them.  Idempotent; NULL/background: no-op.  When it
 * returns, c and every descendant are done - also when another thread (an
 * ancestor's canceller, the timer) was already cancelling them: then it
 * waits, briefly, for that thread to finish the subtree.  Otherwise it does
 * not block (the fns it runs must not either).  Called from inside an
 * after_func fn it does not wait for another thread's cancellation.
 */
void sp_ctx_cancel(sp_ctx *c);

/* 0 while c is not done, then ECANCELED or ETIMEDOUT forever.  One atomic load. */
int sp_ctx_err(sp_ctx *c);

/*
 * True if c has a deadline (its own or an ancestor's, whichever is
 * earlier), stored in *deadline_ns (may be NULL); false otherwise, leaving
 * *deadline_ns unchanged.  Never blocks.
 */
bool sp_ctx_deadline(sp_ctx *c, int64_t *deadline_ns);

/*
 * The value stored under key by the nearest with_value context on the path
 * from c to the root, or NULL.  Never blocks.
 */
void *sp_ctx_value(sp_ctx *c, const void *key);

/*
 * Waits until c is done or timeout_ns passed (< 0: no limit; 0: just
 * look).  Returns true if c is done.  Blocks (parked, not spinning);
 * waiting on background with no limit never returns.
 */
bool sp_ctx_wait(sp_ctx *c, int64_t timeout_ns);

/*
 * Returns another handle to c's context whose release only drops a
 * reference (it may be a different pointer from c).  Background/NULL:
 * returns background.  Never blocks.
 */
sp_ctx *sp_ctx_retain(sp_ctx *c);

/*
 * Drops c's reference.  If c is the creator's handle (from a with_* call),
 * first cancels the context, as sp_ctx_cancel.  The memory goes when the
 * last handle and the last child are gone.  Releasing a handle twice is
 * undefined.  A syncpool call blocked on c in another thread holds a
 * reference of its own while it waits: releasing the last handle wakes it
 * (ECANCELED) safely - but a thread must hold a handle whenever it passes
 * c to a call or uses it otherwise (sp_ctx_retain one for each thread that
 * outlives your release, as a Go goroutine keeps its ctx).  NULL/background: no-op.  Does not block (it may wait for a
 * canceller on another thread to finish with the context's memory).
 */
void sp_ctx_release(sp_ctx *c);

typedef struct sp_ctx_hook sp_ctx_hook;

/*
 * Go's AfterFunc: arranges for fn(arg) to run once, when c becomes done,
 * on the thread that makes it done (the canceller, an ancestor's canceller,
 * or the timer thread), with no lock of the context held.  If c is already
 * done, fn runs at once, synchronously in the caller, before after_func
 * returns (Go would start a goroutine) - possibly while the canceller is
 * still running earlier hooks.  The hooks registered before c became done
 * run one after the other, in registration order.  fn must not block and must not stop
 * its own hook (that stop would wait for fn to return); it may stop other
 * hooks (one of the same context not yet run then never runs: the stop
 * returns true at once), and cancel or release other contexts, ancestors
 * included.  On
 * background/NULL fn never runs.  Returns the hook, which must be passed to
 * sp_ctx_hook_stop exactly once (it holds a reference on the context until
 * then), or NULL if fn is NULL or memory is short.
 */
sp_ctx_hook *sp_ctx_after_func(sp_ctx *c, void (*fn)(void *arg), void *arg);

/*
 * Stops and frees h.  Returns true if that kept fn from running (it never
 * will); false if fn has run - and then only after fn has returned, so
 * whatever fn uses may be freed once this returns.  May wait (parked) for a
 * running fn on another thread.  NULL: returns false.
 */
bool sp_ctx_hook_stop(sp_ctx_hook *h);

#ifdef __cplusplus
}
#endif

#endif /* SYNCPOOL_CTX_H */
