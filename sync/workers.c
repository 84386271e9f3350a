/*
 * sync/workers.c - the internal worker threads; see workers.h.
 *
 * Each worker keeps its descriptor on its own stack.  Its futex word says
 * whether a work item has been handed to it:
 *
 *	W_IDLE    no work; the worker is running (finishing, spinning)
 *	W_PARKED  no work; the worker is (about to be) asleep on the word
 *	W_WORK    an item is in w->work; set by the submitter with a release
 *	          exchange after writing the item, so the worker's acquire load
 *	          of W_WORK sees it
 *
 * The submitter pops an idle worker under the pool lock - once popped, the
 * worker belongs to that submitter - then, outside the lock, writes the item,
 * exchanges the word to W_WORK and wakes only if the worker had parked.
 * A worker whose idle wait times out takes the lock and leaves only if it is
 * still on the idle list; if it was popped, an item is on its way and it
 * waits for it.
 */
#include "workers.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "common.h"
#include "ctx_internal.h"
#include "park.h"

enum { W_IDLE = 0, W_PARKED = 1, W_WORK = 2 };

/* An idle worker beyond this many exits at once instead of waiting. */
#define MAX_IDLE 256

struct worker {
	struct worker *next, *prev; /* idle list links, under pool.lock */
	bool on_list;               /* under pool.lock */
	_Atomic uint32_t word;      /* W_* above */
	sp_work work;               /* written by the submitter that popped us */
};

/* The pool, one line of its own: written under `lock` by submitters and by
 * workers going idle or leaving. */
static struct {
	SP_CACHE_ALIGNED sp_ilock lock;
	struct worker *head; /* most recently idle first */
	struct worker *tail;
	int nidle;
} pool;

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* In a child of fork() none of the parent's workers exist. */
static void workers_atfork_child(void)
{
	atomic_store_explicit(&pool.lock.v, 0, memory_order_relaxed);
	pool.head = pool.tail = NULL;
	pool.nidle = 0;
}

static void workers_register_atfork(void)
{
	pthread_atfork(NULL, NULL, workers_atfork_child);
}

static void list_remove(struct worker *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		pool.head = w->next;
	if (w->next)
		w->next->prev = w->prev;
	else
		pool.tail = w->prev;
	w->next = w->prev = NULL;
	w->on_list = false;
	pool.nidle--;
}

/* Puts self on the idle list; false if enough workers idle already. */
static bool go_idle(struct worker *self)
{
	atomic_store_explicit(&self->word, W_IDLE, memory_order_relaxed);
	sp_ilock_lock(&pool.lock);
	if (pool.nidle >= MAX_IDLE) {
		sp_ilock_unlock(&pool.lock);
		return false;
	}
	self->prev = NULL;
	self->next = pool.head;
	if (pool.head)
		pool.head->prev = self;
	else
		pool.tail = self;
	pool.head = self;
	self->on_list = true;
	pool.nidle++;
	sp_ilock_unlock(&pool.lock);
	return true;
}

/* Waits for an item; false if the idle time ran out (self is off the list). */
static bool wait_work(struct worker *self)
{
	int64_t deadline = -1;
	bool timed = true;
	uint32_t s = atomic_load_explicit(&self->word, memory_order_acquire);
	if (s != W_WORK && sp_spin_while_eq(&self->word, W_IDLE))
		s = atomic_load_explicit(&self->word, memory_order_acquire);
	while (s != W_WORK) {
		if (s == W_IDLE) {
			if (!atomic_compare_exchange_weak_explicit(&self->word, &s, W_PARKED,
								   memory_order_acquire,
								   memory_order_acquire))
				continue;
			s = W_PARKED;
		}
		if (timed && deadline < 0)
			deadline = sp_now_ns() + SP_WORKER_IDLE_NS;
		if (sp_park_wait(&self->word, W_PARKED, deadline) == ETIMEDOUT) {
			sp_ilock_lock(&pool.lock);
			bool leave = self->on_list;
			if (leave)
				list_remove(self);
			sp_ilock_unlock(&pool.lock);
			if (leave)
				return false;
			timed = false; /* popped: the item is on its way */
			deadline = -1;
		}
		s = atomic_load_explicit(&self->word, memory_order_acquire);
	}
	return true;
}

static void *worker_main(void *arg)
{
	struct worker self = { 0 };
	self.work = *(sp_work *)arg;
	free(arg);
	for (;;) {
		sp_work w = self.work;
		w.run(&w);
		bool idle = go_idle(&self);
		if (w.after)
			w.after(&w);
		if (!idle || !wait_work(&self))
			return NULL;
	}
}

static int spawn(const sp_work *w)
{
	sp_work *copy = malloc(sizeof *copy);
	if (!copy)
		return ENOMEM;
	*copy = *w;
	pthread_once(&atfork_once, workers_register_atfork);

	pthread_attr_t attr;
	sigset_t all, old;
	pthread_t t;
	if (pthread_attr_init(&attr) != 0) {
		free(copy);
		return ENOMEM;
	}
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	/* Workers inherit a fully blocked mask: signals go to the application's threads. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int err = pthread_create(&t, &attr, worker_main, copy);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (err) {
		free(copy);
		return err == EAGAIN ? EAGAIN : ENOMEM;
	}
	return 0;
}

int sp_workers_submit(const sp_work *w)
{
	sp_ilock_lock(&pool.lock);
	struct worker *k = pool.head;
	if (k)
		list_remove(k);
	sp_ilock_unlock(&pool.lock);
	if (!k)
		return spawn(w);
	k->work = *w;
	if (atomic_exchange_explicit(&k->word, W_WORK, memory_order_release) == W_PARKED)
		sp_park_wake_one(&k->word);
	return 0;
}
