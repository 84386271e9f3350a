/*
 * syncpool/once.h - run a function exactly once (Go's sync.Once).
 *
 *	static sp_once once = SP_ONCE_INIT;
 *	static void init_tables(void *arg) { ... }
 *	...
 *	sp_once_do(&once, init_tables, NULL);   // every caller sees the tables built
 *
 * The zero value is ready (static, {0}, calloc or SP_ONCE_INIT).  An sp_once
 * must not be copied after first use.
 *
 * Memory ordering: fn's return happens before the return of every
 * sp_once_do on the same once - the callers that arrive while fn runs park
 * (futex) until it has finished; none returns early.
 *
 * Once fn has run, sp_once_do is one acquire load and a compare, inlined
 * into the caller (the static inline below; `(sp_once_do)(o, fn, arg)` or
 * `&sp_once_do` reach the exported function, which behaves the same).
 *
 * fn must not call sp_once_do on the same once: that would deadlock in Go;
 * here it is detected and fatal ("syncpool: fatal: once: recursive call").
 * C has no panics: if fn never returns (longjmp out of it, thread exit or
 * cancellation), the once stays "running" and later callers block forever.
 *
 * Layout (fixed ABI, 16 bytes): `state_` is the futex word - 0 not started,
 * 1 running, 2 running with parked callers, 3 done; `owner_` identifies the
 * thread running fn (pthread_self), only while it runs, for the recursion
 * check.
 */
#ifndef SYNCPOOL_ONCE_H
#define SYNCPOOL_ONCE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sp_once {
	uint32_t state_;   /* private: 0 new, 1 running, 2 running + waiters, 3 done */
	uint32_t reserved_;
	uintptr_t owner_;  /* private: pthread_self() of the runner while fn runs */
} sp_once;

/* The zero value: fn has not run. */
#define SP_ONCE_INIT { 0, 0, 0 }

#define SP_ONCE_DONE_ 3u

/*
 * Calls fn(arg) if and only if no sp_once_do on this once has called its fn
 * before; returns after that fn has returned.  Blocks (parks) while another
 * thread runs fn.  Fatal if fn itself calls sp_once_do on the same once.
 */
void sp_once_do(sp_once *o, void (*fn)(void *arg), void *arg);

/*
 * The completed fast path, inlined: one acquire load.  `(sp_once_do)(...)`
 * and `&sp_once_do` reach the exported function, which behaves the same;
 * SP_ONCE_NO_INLINE turns the macro off.  Under ThreadSanitizer the load is
 * instrumented in the user's program and pairs with the library's release
 * annotation on state_ made just before "done" - provided the translation
 * unit is instrumented: in a TSan program, build a file that is not with
 * SP_ONCE_NO_INLINE, or TSan will report races on what fn initialized.
 */
static inline void sp_once_do_inline_(sp_once *o, void (*fn)(void *arg), void *arg)
{
	if (__builtin_expect(__atomic_load_n(&o->state_, __ATOMIC_ACQUIRE) == SP_ONCE_DONE_, 1))
		return;
	(sp_once_do)(o, fn, arg);
}
#if !defined(SP_BUILDING_LIBRARY_) && !defined(SP_ONCE_NO_INLINE)
#define sp_once_do(o, fn, arg) sp_once_do_inline_((o), (fn), (arg))
#endif

#ifdef __cplusplus
}
#endif

#endif /* SYNCPOOL_ONCE_H */
