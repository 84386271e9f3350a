/*
 * syncpool/ctx.h - cancellation contexts (Go's context package).
 *
 * (Declarations per the API contract; the ctx module documents each call.)
 */
#ifndef SYNCPOOL_CTX_H
#define SYNCPOOL_CTX_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Current CLOCK_MONOTONIC time in nanoseconds; every syncpool deadline uses it. */
int64_t sp_now_ns(void);

typedef struct sp_ctx sp_ctx;

sp_ctx *sp_ctx_background(void);
int   sp_ctx_with_cancel(sp_ctx *parent, sp_ctx **out);
int   sp_ctx_with_deadline(sp_ctx *parent, int64_t deadline_ns, sp_ctx **out);
int   sp_ctx_with_timeout(sp_ctx *parent, int64_t timeout_ns, sp_ctx **out);
int   sp_ctx_with_value(sp_ctx *parent, const void *key, void *val, sp_ctx **out);
void  sp_ctx_cancel(sp_ctx *c);
int   sp_ctx_err(sp_ctx *c);
bool  sp_ctx_deadline(sp_ctx *c, int64_t *deadline_ns);
void *sp_ctx_value(sp_ctx *c, const void *key);
bool  sp_ctx_wait(sp_ctx *c, int64_t timeout_ns);
sp_ctx *sp_ctx_retain(sp_ctx *c);
void  sp_ctx_release(sp_ctx *c);

typedef struct sp_ctx_hook sp_ctx_hook;
sp_ctx_hook *sp_ctx_after_func(sp_ctx *c, void (*fn)(void *arg), void *arg);
bool  sp_ctx_hook_stop(sp_ctx_hook *h);

#ifdef __cplusplus
}
#endif

#endif /* SYNCPOOL_CTX_H */
