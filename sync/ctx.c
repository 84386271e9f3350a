/*
 * sync/ctx.c - cancellation contexts (Go's context) and the watch mechanism
 * every context-aware wait in the library uses.
 *
 * A context is a reference-counted node.  Handles are small tagged structs:
 * the node embeds its creator's handle (`owner`: release cancels, then drops
 * a reference - Go's `defer cancel()`) and one shared plain handle (`ref`:
 * what sp_ctx_retain returns; release only drops a reference).  Background is
 * a static handle with no node.  References: the owner handle, every
 * retain, every child (a child pins its parent, so value lookup and
 * deadline inheritance never dangle), every after_func hook, and the timer
 * heap while a deadline is armed.
 *
 * Done-ness: `err` goes from 0 to ECANCELED/ETIMEDOUT once, under the node's
 * lock, in the same critical section that detaches the node's watch list.
 * So a watch either sees err at add time, or is on the list and gets its fn
 * called - never both, never neither.  Children are watches too: a child
 * registers a link watch (fn == child_link) on its parent.  The canceller
 * walks the subtree iteratively (no recursion, so a deep chain cannot
 * overflow the stack): for each node it sets err, detaches the list, calls
 * the user watches' fns with no lock held, and pushes the children (taking
 * a reference on each under the parent's lock) on a local work list.
 * Like Go's cancelCtx.cancel, a context cancelled directly also unlinks
 * itself from its parent, so a long-lived parent does not accumulate dead
 * children.
 *
 * Every with_* context is cancellable, value contexts included (Go's
 * WithValue has none; here one ownership rule holds for all with_* results).
 * Only NULL/background can never be done, and watches on it register nothing.
 */
#include <errno.h>
#include <stdlib.h>

#include "common.h"
#include "ctx_internal.h"
#include "park.h"
#include "sanitizer.h"
#include "sanitizer_ignore.h"
#include "syncpool/ctx.h"
#include "timer.h"

/* Handle kinds; a magic value also catches a stray pointer early. */
enum {
	H_BACKGROUND = 0x7370bb01u,
	H_OWNER = 0x7370bb02u,
	H_REF = 0x7370bb03u,
};

struct sp_ctx {
	uint32_t kind;
};

typedef struct ctx_node ctx_node;
struct ctx_node {
	sp_ilock lock;              /* guards watches and the err transition  */
	_Atomic int err;            /* 0 until done; never changes after      */
	_Atomic int64_t refs;
	sp_ctx owner, ref;          /* the two handle kinds                    */
	ctx_node *parent;           /* NULL under background; holds a ref     */
	sp_ctx_watch link;          /* this node's entry on parent's list     */
	sp_ctx_watch *watches;      /* registered watches and child links     */
	ctx_node *work_next;        /* cancellation work list                 */
	bool exiting;               /* on the work list for its exit visit    */
	_Atomic uint32_t settled;   /* 1: n and its whole subtree are done;
	                               2: not yet, and someone waits for it   */
	int64_t deadline;           /* effective; INT64_MAX: none             */
	sp_timer timer;             /* armed iff own deadline < parent's      */
	bool has_timer;
	bool has_value;
	const void *key;
	void *val;
};

static sp_ctx background = { H_BACKGROUND };

/* ------------------------------------------------------------ ilock */

void sp_ilock_lock_slow(sp_ilock *l)
{
	/*
	 * A few rounds of bounded spinning, then park.  The number of rounds is
	 * bounded too: under churn the word keeps changing, and a spin that
	 * restarted on every change would never reach the futex.
	 */
	for (int round = 0; round < 4; round++) {
		uint32_t v = atomic_load_explicit(&l->v, memory_order_relaxed);
		if (v == 0) {
			if (atomic_compare_exchange_weak_explicit(&l->v, &v, 1, memory_order_acquire,
								  memory_order_relaxed))
				return;
			continue;
		}
		if (!sp_spin_while_eq(&l->v, v))
			break;
	}
	while (atomic_exchange_explicit(&l->v, 2, memory_order_acquire) != 0)
		sp_park_wait(&l->v, 2, -1);
}

void sp_ilock_wake(sp_ilock *l)
{
	sp_park_wake_one(&l->v);
}

/* ------------------------------------------------------------ handles */

static ctx_node *node_of(sp_ctx *c)
{
	if (c == NULL)
		return NULL;
	switch (c->kind) {
	case H_BACKGROUND:
		return NULL;
	case H_OWNER:
		return sp_container_of(c, ctx_node, owner);
	case H_REF:
		return sp_container_of(c, ctx_node, ref);
	default:
		sp_fatal("ctx", "not a context handle");
	}
}

SP_API sp_ctx *sp_ctx_background(void)
{
	return &background;
}

/* ------------------------------------------------------------ watch lists */

static void list_push(ctx_node *n, sp_ctx_watch *w)
{
	w->prev = NULL;
	w->next = n->watches;
	if (n->watches)
		n->watches->prev = w;
	n->watches = w;
}

static void list_unlink(ctx_node *n, sp_ctx_watch *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		n->watches = w->next;
	if (w->next)
		w->next->prev = w->prev;
	w->next = w->prev = NULL;
}

/* Marker fn of a child's link watch; never called. */
static void child_link(sp_ctx_watch *w)
{
	(void)w;
}

static int watch_add_node(ctx_node *n, sp_ctx_watch *w, void (*fn)(sp_ctx_watch *w))
{
	w->fn = fn;
	sp_ilock_lock(&n->lock);
	int err = atomic_load_explicit(&n->err, memory_order_relaxed);
	if (err == 0) {
		list_push(n, w);
		atomic_store_explicit(&w->state, SP_WATCH_REGISTERED, memory_order_relaxed);
	} else {
		atomic_store_explicit(&w->state, SP_WATCH_IDLE, memory_order_relaxed);
	}
	sp_ilock_unlock(&n->lock);
	if (err)
		sp_tsan_acquire(&n->err); /* observed done: the canceller's effects */
	return err;
}

static void node_retain(ctx_node *n);
static void node_release(ctx_node *n);

int sp_ctx_watch_add(sp_ctx *c, sp_ctx_watch *w, void (*fn)(sp_ctx_watch *w))
{
	ctx_node *n = node_of(c);
	w->node = NULL;
	w->err = 0;
	if (n == NULL) {
		w->fn = fn;
		atomic_store_explicit(&w->state, SP_WATCH_IDLE, memory_order_relaxed);
		return 0;
	}
	int err = atomic_load_explicit(&n->err, memory_order_acquire);
	if (err) {
		sp_tsan_acquire(&n->err);
		atomic_store_explicit(&w->state, SP_WATCH_IDLE, memory_order_relaxed);
		w->err = err;
		return err;
	}
	sp_timer_resume(); /* a fork child: the deadlines armed before fork need a thread */
	/* The waiter's own reference: its handle may be released while it sleeps. */
	node_retain(n);
	err = watch_add_node(n, w, fn);
	if (err) {
		node_release(n);
		w->err = err;
		return err;
	}
	w->node = n;
	return 0;
}

static bool watch_remove_node(ctx_node *n, sp_ctx_watch *w)
{
	uint32_t s = atomic_load_explicit(&w->state, memory_order_acquire);
	if (s == SP_WATCH_IDLE)
		return true;
	if (s == SP_WATCH_REGISTERED || s == SP_WATCH_PENDING) {
		sp_ilock_lock(&n->lock);
		s = atomic_load_explicit(&w->state, memory_order_acquire);
		if (s == SP_WATCH_REGISTERED || s == SP_WATCH_PENDING) {
			list_unlink(n, w);
			atomic_store_explicit(&w->state, SP_WATCH_IDLE, memory_order_relaxed);
			sp_ilock_unlock(&n->lock);
			return true;
		}
		sp_ilock_unlock(&n->lock);
	}
	/* Detached by a canceller: wait for fn to return. */
	for (;;) {
		if (s == SP_WATCH_DONE) {
			sp_tsan_acquire(&w->state); /* fn's effects (watch_fired) */
			return false;
		}
		if (s == SP_WATCH_FIRING &&
		    !atomic_compare_exchange_strong_explicit(&w->state, &s, SP_WATCH_WAITED,
							     memory_order_acquire, memory_order_acquire))
			continue;
		if (!sp_spin_while_eq(&w->state, SP_WATCH_WAITED))
			sp_park_wait(&w->state, SP_WATCH_WAITED, -1);
		s = atomic_load_explicit(&w->state, memory_order_acquire);
	}
}

bool sp_ctx_watch_remove(sp_ctx *c, sp_ctx_watch *w)
{
	(void)c; /* the watch's own reference is used: c may be released already */
	ctx_node *n = w->node;
	if (n == NULL) { /* never registered, or removed before */
		uint32_t s = atomic_load_explicit(&w->state, memory_order_acquire);
		if (s == SP_WATCH_DONE)
			sp_tsan_acquire(&w->state);
		return s != SP_WATCH_DONE;
	}
	bool removed = watch_remove_node(n, w);
	w->err = atomic_load_explicit(&n->err, memory_order_acquire);
	if (w->err)
		sp_tsan_acquire(&n->err);
	w->node = NULL;
	node_release(n);
	return removed;
}

/* Called by the canceller after fn returned: lets a remover go. */
static void watch_fired(sp_ctx_watch *w)
{
	sp_tsan_release(&w->state);
	uint32_t old = atomic_exchange_explicit(&w->state, SP_WATCH_DONE, memory_order_release);
	if (old == SP_WATCH_WAITED)
		sp_park_wake_all(&w->state); /* w may be gone: the kernel only hashes the address */
}

/* ------------------------------------------------------------ lifetime */

static void node_retain(ctx_node *n)
{
	atomic_fetch_add_explicit(&n->refs, 1, memory_order_relaxed);
}

/* Increments refs unless it already reached 0 (a free is under way). */
static bool node_retain_live(ctx_node *n)
{
	int64_t r = atomic_load_explicit(&n->refs, memory_order_relaxed);
	while (r > 0)
		if (atomic_compare_exchange_weak_explicit(&n->refs, &r, r + 1, memory_order_relaxed,
							  memory_order_relaxed))
			return true;
	return false;
}

/*
 * Drops a reference; the last one frees the node, then drops the node's
 * reference on its parent (a loop, not recursion).  A node reaching zero is
 * always done: its owner handle was released (which cancels), so its watch
 * list is empty and its timer disarmed.
 */
static void node_release(ctx_node *n)
{
	while (n && atomic_fetch_sub_explicit(&n->refs, 1, memory_order_acq_rel) == 1) {
		ctx_node *p = n->parent;
		if (p)
			watch_remove_node(p, &n->link);
		sp_tsan_ignore_begin(); /* internal memory: see sanitizer_ignore.h */
		free(n);
		sp_tsan_ignore_end();
		n = p;
	}
}

/* ------------------------------------------------------------ cancel */

/*
 * Marks n done with err (if it is not yet) and fires what was registered:
 * user watches are called here, child links are pushed on *work with a
 * reference taken (under n's lock, where the child cannot be freed: its free
 * must first unlink the link from this list).  Returns whether n changed.
 *
 * The user watches stay on n's list, PENDING, in registration order, and
 * are taken off one at a time under the lock just before their fn runs: so
 * a fn that stops a sibling hook not yet run (on this very thread) takes it
 * off the list and returns at once - it never runs - instead of waiting for
 * a fn that would run only after its own.
 */
static bool cancel_one(ctx_node *n, int err, ctx_node **work)
{
	sp_ilock_lock(&n->lock);
	if (atomic_load_explicit(&n->err, memory_order_relaxed) != 0) {
		sp_ilock_unlock(&n->lock);
		return false;
	}
	/* The canceller's effects, for whoever observes n done (sp_ctx_err...). */
	sp_tsan_release(&n->err);
	atomic_store_explicit(&n->err, err, memory_order_release);
	sp_ctx_watch *list = NULL;
	for (sp_ctx_watch *w = n->watches, *next; w; w = next) {
		next = w->next;
		if (w->fn == child_link) {
			ctx_node *ch = sp_container_of(w, ctx_node, link);
			/*
			 * Take the reference before marking the link DONE: a
			 * child whose last release sees DONE frees itself
			 * without this lock, so after the store ch may only be
			 * touched through a reference already held.
			 */
			bool live = node_retain_live(ch);
			atomic_store_explicit(&w->state, SP_WATCH_DONE, memory_order_release);
			if (live) {
				ch->work_next = *work;
				*work = ch;
			}
		} else {
			atomic_store_explicit(&w->state, SP_WATCH_PENDING, memory_order_relaxed);
			w->next = list; /* reversed: the list was newest first */
			list = w;
		}
	}
	n->watches = NULL;
	for (sp_ctx_watch *w = list, *prev = NULL; w; prev = w, w = w->next) {
		w->prev = prev;
		if (prev == NULL)
			n->watches = w;
	}
	sp_ilock_unlock(&n->lock);

	for (;;) {
		sp_ilock_lock(&n->lock);
		sp_ctx_watch *w = n->watches;
		if (w) {
			list_unlink(n, w);
			atomic_store_explicit(&w->state, SP_WATCH_FIRING, memory_order_relaxed);
		}
		sp_ilock_unlock(&n->lock);
		if (!w)
			break;
		w->fn(w);
		watch_fired(w);
	}
	return true;
}

/*
 * Settling.  A node's err is set before its children's (the work list), so
 * "n is done" does not yet mean "n's descendants are done".  A cancel or
 * release that finds n already done while another thread is still
 * propagating through n's subtree waits until that thread settles n, so that
 * when sp_ctx_cancel()/sp_ctx_release() returns, every descendant is done -
 * as in Go, where the canceller holds the parent's lock while it cancels the
 * children.  The work list visits a node twice (enter: set err and push the
 * children; exit: settle), so a node settles only after its subtree did.
 *
 * Waits only ever go from a canceller to a node below the one it started
 * from, so they cannot form a cycle - except when a watch fn or AfterFunc
 * hook, running inside a cancellation, cancels an ancestor that another
 * thread is propagating through: such nested calls (and the timer thread)
 * never wait.
 */
static _Thread_local int cancel_depth;

static void settle(ctx_node *n)
{
	if (atomic_exchange_explicit(&n->settled, 1, memory_order_release) == 2)
		sp_park_wake_all(&n->settled);
}

static void wait_settled(ctx_node *n)
{
	for (;;) {
		uint32_t v = atomic_load_explicit(&n->settled, memory_order_acquire);
		if (v == 1)
			return;
		if (v == 0 && !atomic_compare_exchange_weak_explicit(&n->settled, &v, 2, memory_order_acquire,
								     memory_order_acquire))
			continue;
		sp_park_wait(&n->settled, 2, -1);
	}
}

static void ctx_cancel(ctx_node *root, int err, bool may_wait)
{
	ctx_node *work = NULL;
	bool disarm_root = false;
	/*
	 * Only the outermost cancellation on this thread ever waits: the root's
	 * own hooks run inside cancel_one(root), so the depth is raised first.
	 */
	bool outer = cancel_depth++ == 0;

	if (!cancel_one(root, err, &work)) {
		cancel_depth--;
		if (may_wait && outer)
			wait_settled(root);
		return;
	}
	if (root->has_timer && sp_timer_remove(&root->timer))
		disarm_root = true;
	while (work) {
		ctx_node *n = work;
		work = n->work_next;
		if (!n->exiting) {
			/* Enter: below its children-to-be, n waits for its exit visit. */
			n->exiting = true;
			n->work_next = work;
			work = n;
			if (cancel_one(n, err, &work))
				continue;
			/* Another canceller has n: it settles n (we are below it). */
			work = n->work_next;
			if (outer)
				wait_settled(n);
		} else {
			settle(n);
		}
		if (n->has_timer && sp_timer_remove(&n->timer))
			node_release(n); /* the heap's reference */
		node_release(n);         /* the work list's */
	}
	settle(root);
	cancel_depth--;
	/* Cancelled directly: leave the parent's list (Go's removeChild). */
	if (root->parent)
		watch_remove_node(root->parent, &root->link);
	if (disarm_root)
		node_release(root);
}

static void timer_fired(sp_timer *t)
{
	ctx_node *n = sp_container_of(t, ctx_node, timer);
	ctx_cancel(n, ETIMEDOUT, false);
	node_release(n); /* the heap's reference */
}

SP_API void sp_ctx_cancel(sp_ctx *c)
{
	ctx_node *n = node_of(c);
	if (n)
		ctx_cancel(n, ECANCELED, true);
}

/* ------------------------------------------------------------ creation */

static int64_t sat_add(int64_t a, int64_t b)
{
	int64_t r;
	if (__builtin_add_overflow(a, b, &r))
		return b > 0 ? INT64_MAX : INT64_MIN;
	return r;
}

/*
 * Makes a child of parent with its own deadline (INT64_MAX: none) and
 * optional value.  The order follows Go: link to the parent (a done parent
 * makes the child done at once with the parent's error), then the deadline
 * (already past: ETIMEDOUT at once).
 */
static int ctx_new(sp_ctx *parent, int64_t deadline, bool has_value, const void *key, void *val,
		   sp_ctx **out)
{
	if (out == NULL)
		return EINVAL;
	ctx_node *p = node_of(parent);
	sp_tsan_ignore_begin();
	ctx_node *n = calloc(1, sizeof *n);
	sp_tsan_ignore_end();
	if (n == NULL)
		return ENOMEM;
	atomic_init(&n->refs, 1);
	n->owner.kind = H_OWNER;
	n->ref.kind = H_REF;
	n->timer.idx = -1;
	n->timer.fire = timer_fired;
	n->has_value = has_value;
	n->key = key;
	n->val = val;
	n->deadline = p ? p->deadline : INT64_MAX;
	bool own_deadline = deadline < n->deadline;
	if (own_deadline)
		n->deadline = deadline;

	/*
	 * Everything a parent's canceller reads is set before the link publishes n.
	 * with_deadline / with_timeout (a deadline argument: they read the clock
	 * anyway): a deadline already past makes n done at once (ctx.h), not at
	 * the timer's next turn - also one n inherits whose timer has not fired
	 * yet: then the ancestor it belongs to is fired here, so that the child
	 * is never done before the ancestor whose deadline it has.  with_cancel
	 * and with_value children read no clock; the timer reaches them.
	 */
	bool past = deadline != INT64_MAX && n->deadline <= sp_now_ns();
	bool arm = own_deadline && !past;
	if (arm) {
		n->has_timer = true;
		n->timer.when = deadline;
	}
	if (p) {
		node_retain(p);
		n->parent = p;
		int err = watch_add_node(p, &n->link, child_link);
		if (err) {
			/* Never linked: the link stays IDLE, free skips it. */
			sp_tsan_release(&n->err); /* passes on the parent's canceller */
			atomic_store_explicit(&n->err, err, memory_order_release);
			atomic_store_explicit(&n->settled, 1, memory_order_relaxed);
			*out = &n->owner;
			return 0;
		}
	}
	if (past && own_deadline) {
		ctx_cancel(n, ETIMEDOUT, false);
	} else if (past) {
		/* The chain is pinned: n holds p, each node its parent. */
		ctx_node *a = p;
		while (a && !(a->has_timer && a->timer.when == n->deadline))
			a = a->parent;
		/* Waits if the timer thread is firing it: n is done on return. */
		ctx_cancel(a ? a : n, ETIMEDOUT, true);
	} else if (arm) {
		node_retain(n); /* the heap's reference */
		int err = sp_timer_add(&n->timer);
		if (err) {
			node_release(n);
			sp_ctx_release(&n->owner);
			return err;
		}
		/* Cancelled through the parent before it was armed: disarm now. */
		if (atomic_load_explicit(&n->err, memory_order_acquire) && sp_timer_remove(&n->timer))
			node_release(n);
	}
	*out = &n->owner;
	return 0;
}

SP_API int sp_ctx_with_cancel(sp_ctx *parent, sp_ctx **out)
{
	return ctx_new(parent, INT64_MAX, false, NULL, NULL, out);
}

SP_API int sp_ctx_with_deadline(sp_ctx *parent, int64_t deadline_ns, sp_ctx **out)
{
	return ctx_new(parent, deadline_ns, false, NULL, NULL, out);
}

SP_API int sp_ctx_with_timeout(sp_ctx *parent, int64_t timeout_ns, sp_ctx **out)
{
	return ctx_new(parent, sat_add(sp_now_ns(), timeout_ns), false, NULL, NULL, out);
}

SP_API int sp_ctx_with_value(sp_ctx *parent, const void *key, void *val, sp_ctx **out)
{
	return ctx_new(parent, INT64_MAX, true, key, val, out);
}

/* ------------------------------------------------------------ queries */

SP_API int sp_ctx_err(sp_ctx *c)
{
	ctx_node *n = node_of(c);
	if (n == NULL)
		return 0;
	int err = atomic_load_explicit(&n->err, memory_order_acquire);
	if (err)
		sp_tsan_acquire(&n->err); /* done observed: the canceller's effects */
	return err;
}

SP_API bool sp_ctx_deadline(sp_ctx *c, int64_t *deadline_ns)
{
	ctx_node *n = node_of(c);
	if (n == NULL || n->deadline == INT64_MAX)
		return false;
	if (deadline_ns)
		*deadline_ns = n->deadline;
	return true;
}

SP_API void *sp_ctx_value(sp_ctx *c, const void *key)
{
	for (ctx_node *n = node_of(c); n; n = n->parent)
		if (n->has_value && n->key == key)
			return n->val;
	return NULL;
}

struct waiter {
	_Atomic uint32_t word;
	sp_ctx_watch watch;
};

static void waiter_done(sp_ctx_watch *w)
{
	struct waiter *wt = sp_container_of(w, struct waiter, watch);
	atomic_store_explicit(&wt->word, 1, memory_order_release);
	sp_park_wake_all(&wt->word);
}

SP_API bool sp_ctx_wait(sp_ctx *c, int64_t timeout_ns)
{
	sp_timer_resume(); /* a fork child: pre-fork deadlines need a thread */
	if (sp_ctx_err(c))
		return true;
	if (timeout_ns == 0)
		return false;
	int64_t deadline = timeout_ns < 0 ? -1 : sat_add(sp_now_ns(), timeout_ns);
	struct waiter w = { .word = 0 };
	if (sp_ctx_watch_add(c, &w.watch, waiter_done))
		return true;
	while (atomic_load_explicit(&w.word, memory_order_acquire) == 0)
		if (sp_park_wait(&w.word, 0, deadline) == ETIMEDOUT)
			break;
	sp_ctx_watch_remove(c, &w.watch);
	return w.watch.err != 0;
}

/* ------------------------------------------------------------ references */

SP_API sp_ctx *sp_ctx_retain(sp_ctx *c)
{
	ctx_node *n = node_of(c);
	if (n == NULL)
		return &background;
	node_retain(n);
	return &n->ref;
}

SP_API void sp_ctx_release(sp_ctx *c)
{
	ctx_node *n = node_of(c);
	if (n == NULL)
		return;
	if (c->kind == H_OWNER)
		ctx_cancel(n, ECANCELED, true);
	node_release(n);
}

/* ------------------------------------------------------------ AfterFunc */

struct sp_ctx_hook {
	sp_ctx_watch watch;
	ctx_node *node;             /* holds a reference until stop; NULL: background */
	void (*fn)(void *arg);
	void *arg;
};

static void hook_fire(sp_ctx_watch *w)
{
	sp_ctx_hook *h = sp_container_of(w, sp_ctx_hook, watch);
	/* fn runs after the registration and after the cancel (maybe another thread's). */
	sp_tsan_acquire(h);
	sp_tsan_acquire(&h->node->err);
	h->fn(h->arg);
}

SP_API sp_ctx_hook *sp_ctx_after_func(sp_ctx *c, void (*fn)(void *arg), void *arg)
{
	if (fn == NULL)
		return NULL;
	sp_tsan_ignore_begin();
	sp_ctx_hook *h = calloc(1, sizeof *h);
	sp_tsan_ignore_end();
	if (h == NULL)
		return NULL;
	h->fn = fn;
	h->arg = arg;
	h->node = node_of(c);
	sp_timer_resume(); /* a fork child: pre-fork deadlines need a thread */
	if (h->node == NULL) {
		atomic_init(&h->watch.state, SP_WATCH_IDLE);
		return h;
	}
	node_retain(h->node);
	sp_tsan_release(h); /* for hook_fire, on the cancelling thread */
	if (watch_add_node(h->node, &h->watch, hook_fire) != 0) {
		/* Already done: run it now, in the caller. */
		fn(arg);
		atomic_store_explicit(&h->watch.state, SP_WATCH_DONE, memory_order_relaxed);
	}
	return h;
}

SP_API bool sp_ctx_hook_stop(sp_ctx_hook *h)
{
	if (h == NULL)
		return false;
	bool stopped = true;
	if (h->node) {
		stopped = watch_remove_node(h->node, &h->watch);
		node_release(h->node);
	}
	sp_tsan_ignore_begin();
	free(h);
	sp_tsan_ignore_end();
	return stopped;
}
