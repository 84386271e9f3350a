/* Sema: a release happens before the acquire that gets its weight - on the
 * lock-free fast path, on the handed-off (queued, parked) path, with
 * try_acquire and with a context.  Weight 1 of 1 used as a lock around a
 * plain counter; weight 3 of 3 around a plain array. */
#include "ut.h"

#define NT 8
#define ITER 400
static sp_sema one, three, two;
static long counter;
static long arr[16];
static long racy_x;
static int both_in;

static void *locker(void *arg)
{
	long id = (long)arg;
	sp_ctx *c = NULL;
	if (id % 3 == 0)
		UT_CHECK(sp_ctx_with_cancel(NULL, &c) == 0);
	for (int i = 0; i < ITER; i++) {
		if (id % 4 == 1) {
			while (!sp_sema_try_acquire(&one, 1))
				sched_yield();
		} else {
			UT_CHECK(sp_sema_acquire(&one, 1, c) == 0);
		}
		counter++;
		if (i % 64 == 0)
			ut_sleep_ms(1); /* queue the others: hand-off path */
		sp_sema_release(&one, 1);
	}
	if (c)
		sp_ctx_release(c);
	return NULL;
}

static void *weighted(void *arg)
{
	long id = (long)arg;
	for (int i = 0; i < ITER / 4; i++) {
		/* all 3 units: exclusive against everybody, including 1-unit holders */
		if (id % 2) {
			UT_CHECK(sp_sema_acquire(&three, 3, NULL) == 0);
			for (int k = 0; k < 16; k++)
				arr[k] += k;
			sp_sema_release(&three, 3);
		} else {
			/* 1 unit: only reads */
			UT_CHECK(sp_sema_acquire(&three, 1, NULL) == 0);
			long s = 0;
			for (int k = 0; k < 16; k++)
				s += arr[k];
			UT_CHECK(s >= 0);
			sp_sema_release(&three, 1);
		}
	}
	return NULL;
}

/* racy: two holders of a 2-unit semaphore at once write the same variable */
static void *racer(void *arg)
{
	(void)arg;
	UT_CHECK(sp_sema_acquire(&two, 1, NULL) == 0);
	__atomic_add_fetch(&both_in, 1, __ATOMIC_RELAXED);
	ut_wait_flag(&both_in, 2);
	racy_x++;
	__atomic_add_fetch(&both_in, 1, __ATOMIC_RELAXED);
	ut_wait_flag(&both_in, 4); /* both wrote before either releases */
	sp_sema_release(&two, 1);
	return NULL;
}

int main(int argc, char **argv)
{
	ut_init(argc, argv);
	UT_CHECK(sp_sema_init(&one, 1) == 0);
	UT_CHECK(sp_sema_init(&three, 3) == 0);
	UT_CHECK(sp_sema_init(&two, 2) == 0);
	pthread_t t[NT];
	ut_start(t, NT, locker);
	ut_join(t, NT);
	UT_CHECK(counter == NT * ITER);
	ut_start(t, NT, weighted);
	ut_join(t, NT);
	UT_CHECK(arr[15] == 15 * (NT / 2) * (ITER / 4));
	if (ut_racy) {
		ut_start(t, 2, racer);
		ut_join(t, 2);
	}
	sp_sema_destroy(&one);
	sp_sema_destroy(&three);
	sp_sema_destroy(&two);
	return ut_done("sema");
}
