/* Contexts: a cancel happens before every observation of the context being
 * done (sp_ctx_err, sp_ctx_wait, a child's, a wait on a sema/cond given
 * that context); sp_ctx_after_func's registration and the cancel happen
 * before its fn; fn's return happens before a hook_stop that returns false;
 * a deadline's timer thread fires hooks that see their registration. */
#include "ut.h"

#include <errno.h>

#define NT 6
static long before_cancel;
static long late;
static long hook_in, hook_out;
static sp_ctx *root, *child;
static sp_sema full;
static int started;

static void *observer(void *arg)
{
	long id = (long)arg;
	__atomic_add_fetch(&started, 1, __ATOMIC_RELAXED);
	switch (id % 3) {
	case 0:
		UT_CHECK(sp_ctx_wait(root, -1));
		break;
	case 1:
		while (sp_ctx_err(child) == 0)
			sched_yield();
		break;
	case 2:
		UT_CHECK(sp_sema_acquire(&full, 1, child) == ECANCELED);
		break;
	}
	UT_CHECK(before_cancel == 42);
	if (ut_racy && id == 0)
		printf("late=%ld\n", late);
	return NULL;
}

static void hook(void *arg)
{
	(void)arg;
	UT_CHECK(hook_in == 7 && before_cancel == 42);
	hook_out = 8;
}

static void tick(void *arg)
{
	long *p = arg;
	UT_CHECK(*p == 9);
	*p = 10;
}

int main(int argc, char **argv)
{
	ut_init(argc, argv);
	UT_CHECK(sp_sema_init(&full, 1) == 0);
	UT_CHECK(sp_sema_try_acquire(&full, 1)); /* never released: waits end by ctx */
	UT_CHECK(sp_ctx_with_cancel(NULL, &root) == 0);
	UT_CHECK(sp_ctx_with_cancel(root, &child) == 0);
	pthread_t t[NT], h;
	ut_start(t, NT, observer);
	/* a hook registered by another thread (HB to fn via the registration) */
	hook_in = 7;
	sp_ctx_hook *hk = sp_ctx_after_func(child, hook, NULL);
	UT_CHECK(hk != NULL);
	ut_wait_flag(&started, NT);
	ut_sleep_ms(10);
	(void)h;
	before_cancel = 42;
	sp_ctx_cancel(root);
	if (ut_racy)
		late = 1; /* after the cancel: races with the observer's read */
	UT_CHECK(!sp_ctx_hook_stop(hk)); /* fn ran: its effects are visible */
	UT_CHECK(hook_out == 8);
	/* already done: hook runs in the caller */
	sp_ctx_hook *hk2 = sp_ctx_after_func(child, hook, NULL);
	UT_CHECK(!sp_ctx_hook_stop(hk2));
	/* a deadline: the hook runs on the timer thread */
	static long tickv;
	tickv = 9;
	sp_ctx *dl;
	UT_CHECK(sp_ctx_with_timeout(NULL, 5 * 1000 * 1000, &dl) == 0);
	sp_ctx_hook *hk3 = sp_ctx_after_func(dl, tick, &tickv);
	UT_CHECK(sp_ctx_wait(dl, -1));
	UT_CHECK(sp_ctx_err(dl) == ETIMEDOUT);
	UT_CHECK(!sp_ctx_hook_stop(hk3));
	UT_CHECK(tickv == 10);
	sp_ctx_release(dl);
	ut_join(t, NT);
	sp_ctx_release(child);
	sp_ctx_release(root);
	sp_sema_release(&full, 1);
	sp_sema_destroy(&full);
	return ut_done("ctx");
}
