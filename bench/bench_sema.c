/*
 * bench/bench_sema.c - the weighted semaphore beside POSIX sem_t.
 *
 * sema_uncontended: acquire(1)+release(1) on a size-1000 semaphore (Go's
 * BenchmarkWeighted shape), at 1 and 2 threads sharing it; anchor: sem_wait
 * + sem_post on a sem_t of 1000.  sema_size1: a size-1 semaphore used as a
 * lock by 8 and 32 threads (Go's 4 x GOMAXPROCS goroutines pattern).  Note
 * that sem_t lets a running thread barge past sleeping ones, while
 * sp_sema is strictly FIFO (x/sync's contract), so every contended
 * hand-off costs a wake-up.  The fifo_condvar anchor is the strict FIFO
 * semaphore a C programmer would write (a pthread mutex, a queue of waiters,
 * one condition variable each, weight handed to the head on release): the
 * same semantics as ours, so the same wake-up per hand-off.  sema_acquire_seq_*: x/sync's
 * BenchmarkAcquireSeq cases (capacity c, weight s, N acquires then N
 * releases), one thread.
 */
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "spbench.h"
#include "syncpool/sema.h"

static sp_sema sem_big, sem_one;
static sem_t psem_big, psem_one;

static void bm_uncontended(spb_state *st)
{
	if (spb_thread_index(st) == 0)
		sp_sema_init(&sem_big, 1000);
	SPB_LOOP(st) {
		sp_sema_acquire(&sem_big, 1, NULL);
		sp_sema_release(&sem_big, 1);
	}
	spb_set_items_processed(st, spb_iterations(st));
}
SPB_REGISTER(sema_unc, .group = "sema_uncontended", .impl = "syncpool",
	     .fn = bm_uncontended, .threads = { 1, 2 });

static void bm_uncontended_posix(spb_state *st)
{
	if (spb_thread_index(st) == 0)
		sem_init(&psem_big, 0, 1000);
	SPB_LOOP(st) {
		sem_wait(&psem_big);
		sem_post(&psem_big);
	}
	spb_set_items_processed(st, spb_iterations(st));
}
SPB_REGISTER(sema_unc_posix, .group = "sema_uncontended", .impl = "posix",
	     .fn = bm_uncontended_posix, .threads = { 1, 2 });

/*
 * The size-1 runs use a time window instead of an iteration count: every
 * thread loops until WINDOW_NS after the first one started.  With a count,
 * the figure was bimodal: google-benchmark's start barrier lets threads out
 * one by one, and when each thread's count fit in its time slice the
 * threads never overlapped, nobody queued, and an operation cost 10-60 ns
 * instead of a hand-off; a window spans many time slices, so the threads
 * contend as they would in a program.
 */
#define WINDOW_NS INT64_C(200000000)
#define WINDOW_CHUNK 16
static _Atomic int64_t window_end;

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void size1_window(spb_state *st, void (*acquire)(void), void (*release)(void))
{
	if (spb_thread_index(st) == 0)
		atomic_store(&window_end, 0);
	SPB_LOOP(st) {
		int64_t end = atomic_load(&window_end), zero = 0;
		if (end == 0) {
			end = now_ns() + WINDOW_NS;
			if (!atomic_compare_exchange_strong(&window_end, &zero, end))
				end = zero;
		}
		int64_t ops = 0;
		do {
			for (int k = 0; k < WINDOW_CHUNK; k++) {
				acquire();
				release();
			}
			ops += WINDOW_CHUNK;
		} while (now_ns() < end);
		spb_set_ops(st, ops);
		spb_set_items_processed(st, ops);
	}
}

static void one_acquire(void) { sp_sema_acquire(&sem_one, 1, NULL); }
static void one_release(void) { sp_sema_release(&sem_one, 1); }

static void bm_size1(spb_state *st)
{
	if (spb_thread_index(st) == 0)
		sp_sema_init(&sem_one, 1);
	size1_window(st, one_acquire, one_release);
}
SPB_REGISTER(sema_size1, .group = "sema_size1", .impl = "syncpool",
	     .fn = bm_size1, .threads = { 8, 32 }, .iterations = 1);

static void posix_acquire(void) { sem_wait(&psem_one); }
static void posix_release(void) { sem_post(&psem_one); }

static void bm_size1_posix(spb_state *st)
{
	if (spb_thread_index(st) == 0)
		sem_init(&psem_one, 0, 1);
	size1_window(st, posix_acquire, posix_release);
}
SPB_REGISTER(sema_size1_posix, .group = "sema_size1", .impl = "posix",
	     .fn = bm_size1_posix, .threads = { 8, 32 }, .iterations = 1);

/* Strict FIFO with weight handed to the queue's head: x/sync's semantics, in pthreads. */
struct fifo_waiter {
	pthread_cond_t cv;
	bool granted;
	struct fifo_waiter *next;
};
static struct {
	pthread_mutex_t mu;
	int64_t avail;
	struct fifo_waiter *head, *tail;
} fifo = { PTHREAD_MUTEX_INITIALIZER, 1, NULL, NULL };

static void fifo_acquire(void)
{
	pthread_mutex_lock(&fifo.mu);
	if (fifo.head == NULL && fifo.avail >= 1) {
		fifo.avail--;
	} else {
		struct fifo_waiter w = { PTHREAD_COND_INITIALIZER, false, NULL };
		if (fifo.tail)
			fifo.tail->next = &w;
		else
			fifo.head = &w;
		fifo.tail = &w;
		while (!w.granted)
			pthread_cond_wait(&w.cv, &fifo.mu);
		pthread_cond_destroy(&w.cv);
	}
	pthread_mutex_unlock(&fifo.mu);
}

static void fifo_release(void)
{
	pthread_mutex_lock(&fifo.mu);
	fifo.avail++;
	while (fifo.head && fifo.avail >= 1) {
		struct fifo_waiter *h = fifo.head;
		fifo.head = h->next;
		if (fifo.head == NULL)
			fifo.tail = NULL;
		fifo.avail--;
		h->granted = true;
		pthread_cond_signal(&h->cv);
	}
	pthread_mutex_unlock(&fifo.mu);
}

static void bm_size1_fifo(spb_state *st)
{
	size1_window(st, fifo_acquire, fifo_release);
}
SPB_REGISTER(sema_size1_fifo, .group = "sema_size1", .impl = "fifo_condvar",
	     .fn = bm_size1_fifo, .threads = { 8, 32 }, .iterations = 1);

/* x/sync BenchmarkAcquireSeq: {capacity, weight, N}. */
static const struct {
	int64_t cap, size;
	int n;
} seq_cases[] = {
	{ 1, 1, 1 }, { 2, 1, 1 }, { 16, 1, 1 }, { 128, 1, 1 }, { 2, 2, 1 },
	{ 16, 2, 8 }, { 128, 2, 64 }, { 2, 1, 2 }, { 16, 8, 2 }, { 128, 64, 2 },
};
#define NSEQ (sizeof seq_cases / sizeof seq_cases[0])

static void bm_acquire_seq(spb_state *st)
{
	const int64_t i = spb_arg(st);
	sp_sema s;
	sp_sema_init(&s, seq_cases[i].cap);
	const int64_t size = seq_cases[i].size;
	const int n = seq_cases[i].n;
	SPB_LOOP(st) {
		for (int j = 0; j < n; j++)
			sp_sema_acquire(&s, size, NULL);
		for (int j = 0; j < n; j++)
			sp_sema_release(&s, size);
	}
	sp_sema_destroy(&s);
	spb_set_items_processed(st, spb_iterations(st));
}

static void __attribute__((constructor)) register_acquire_seq(void)
{
	static char names[NSEQ][48];
	for (size_t i = 0; i < NSEQ; i++) {
		snprintf(names[i], sizeof names[i], "sema_acquire_seq_c%lld_s%lld_n%d",
			 (long long)seq_cases[i].cap, (long long)seq_cases[i].size, seq_cases[i].n);
		spb_bench b = { .group = names[i], .impl = "syncpool", .fn = bm_acquire_seq,
				.args = { (int64_t)i }, .nargs = 1 };
		spb_register(&b);
	}
}
