/*
 * syncpool/errgroup.h - run tasks, wait for all, keep the first error
 * (golang.org/x/sync/errgroup).
 *
 *	sp_ctx *ctx;
 *	sp_errgroup *g = sp_errgroup_create(NULL, &ctx);   // WithContext
 *	for (int i = 0; i < n; i++)
 *		sp_errgroup_go(g, fetch, &jobs[i]);          // jobs watch ctx
 *	int err = sp_errgroup_wait(g);                    // first non-zero result
 *	sp_errgroup_destroy(g);
 *
 * Every task started by go/try_go runs at once, as a goroutine would (tasks
 * may wait for each other): on an idle thread of the group's own worker
 * threads, or on a new one when all are busy.  Those threads are reused from
 * task to task (not one pthread per task: a burst of tiny tasks is drained
 * by the threads already running), an idle one exits after a few seconds
 * without work, and sp_errgroup_destroy joins them all - after destroy the
 * group has no thread left.  The library's one timer thread ("sp-timer"),
 * which a group arms to start a thread for tasks queued behind a
 * long-running one, is started by the first group and joined by the
 * destroy of the last one - unless context deadlines used it meanwhile:
 * then it stays for the life of the process.  A group with no task running
 * at fork() can be used in the child.
 *
 * Memory ordering: everything a task did happens before sp_errgroup_wait
 * (and destroy) return; everything before go/try_go happens before the task
 * starts.
 */
#ifndef SYNCPOOL_ERRGROUP_H
#define SYNCPOOL_ERRGROUP_H

#include <stdbool.h>

#include "ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sp_errgroup sp_errgroup;

/*
 * Creates a group with no limit.  With ctx_out non-NULL (Go's WithContext)
 * *ctx_out receives a context derived from parent (NULL: background) that is
 * cancelled the first time a task returns non-zero, and by every
 * sp_errgroup_wait.  *ctx_out belongs to the group: it stays valid until
 * sp_errgroup_destroy (sp_ctx_retain it to keep it longer); do not release
 * it.  With ctx_out NULL the group has no context (Go's zero Group).
 * Returns NULL and sets errno on failure: ENOMEM, or EAGAIN when the
 * library's timer thread (which backs the group's thread creation) cannot
 * be started.
 */
sp_errgroup *sp_errgroup_create(sp_ctx *parent, sp_ctx **ctx_out);

/*
 * Limits the number of tasks running at once to n; n < 0 removes the limit.
 * Fatal ("syncpool: fatal: errgroup: modify limit while goroutines in the
 * group are still active") when n >= 0 and tasks started under a limit are
 * still running.  With a limit of 0, go returns EAGAIN (Go would block
 * forever) and try_go returns false.
 */
void sp_errgroup_set_limit(sp_errgroup *g, int n);

/*
 * Starts fn(arg) as a task of the group.  Blocks (parks) while the limit's
 * worth of tasks run.  fn's non-zero result is the group's error if it is
 * the first; it then cancels the group's context.  Returns 0 when the task
 * was started, or EAGAIN/ENOMEM when no thread could be found or created
 * for it (fn not called), EAGAIN for a limit of 0, EINVAL if g or fn is
 * NULL (nothing changes).
 */
int sp_errgroup_go(sp_errgroup *g, int (*fn)(void *arg), void *arg);

/*
 * Like sp_errgroup_go, but never blocks: returns false, without starting
 * fn, when the limit's worth of tasks run (or the task cannot be started,
 * or g or fn is NULL).
 */
bool sp_errgroup_try_go(sp_errgroup *g, int (*fn)(void *arg), void *arg);

/*
 * Blocks until every task started so far has returned, then cancels the
 * group's context and returns the first non-zero task result, or 0.  The
 * group may be used again afterwards; as in Go, the first error is kept:
 * later waits return it too.
 */
int sp_errgroup_wait(sp_errgroup *g);

/*
 * Waits for every task still running (as wait does), joins the group's
 * threads, releases the group's context and frees the group.  g may be NULL.
 * Not from one of the group's own tasks (it would wait for itself).
 */
void sp_errgroup_destroy(sp_errgroup *g);

#ifdef __cplusplus
}
#endif

#endif /* SYNCPOOL_ERRGROUP_H */
