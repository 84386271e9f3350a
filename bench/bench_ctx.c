/*
 * bench/bench_ctx.c - contexts: creating and cancelling one (with_cancel +
 * release of the creator's handle), under background and under a
 * cancellable parent (which links the child on the parent's list), beside
 * the malloc+free floor of a node; and cancelling a parent with 10 000
 * children (the whole subtree walk; creation and release untimed).
 */
#include <stdlib.h>

#include "spbench.h"
#include "syncpool/ctx.h"

static void bm_create_cancel(spb_state *st)
{
	SPB_LOOP(st) {
		sp_ctx *c;
		sp_ctx_with_cancel(NULL, &c);
		sp_ctx_release(c);
	}
	spb_set_items_processed(st, spb_iterations(st));
}
SPB_REGISTER(ctx_create_cancel, .group = "ctx_create_cancel", .impl = "syncpool",
	     .fn = bm_create_cancel, .threads = { 1, 2 });

static void bm_malloc_free(spb_state *st)
{
	SPB_LOOP(st) {
		void *p = malloc(160);
		spb_do_not_optimize(p);
		free(p);
	}
	spb_set_items_processed(st, spb_iterations(st));
}
SPB_REGISTER(ctx_create_cancel_malloc, .group = "ctx_create_cancel", .impl = "malloc_free",
	     .fn = bm_malloc_free, .threads = { 1, 2 });

static sp_ctx *shared_parent;

static void bm_create_cancel_child(spb_state *st)
{
	if (spb_thread_index(st) == 0)
		sp_ctx_with_cancel(NULL, &shared_parent);
	SPB_LOOP(st) {
		sp_ctx *c;
		sp_ctx_with_cancel(shared_parent, &c);
		sp_ctx_release(c);
	}
	spb_set_items_processed(st, spb_iterations(st));
	if (spb_thread_index(st) == 0)
		sp_ctx_release(shared_parent);
}
SPB_REGISTER(ctx_create_cancel_child, .group = "ctx_create_cancel_child", .impl = "syncpool",
	     .fn = bm_create_cancel_child, .threads = { 1, 2 });

enum { NCHILD = 10000 };

static void bm_cancel_children(spb_state *st)
{
	sp_ctx **ch = malloc(NCHILD * sizeof *ch);
	while (spb_keep_running(st)) {
		sp_ctx *p;
		spb_pause(st);
		sp_ctx_with_cancel(NULL, &p);
		for (int i = 0; i < NCHILD; i++)
			sp_ctx_with_cancel(p, &ch[i]);
		spb_resume(st);
		sp_ctx_cancel(p);
		spb_pause(st);
		sp_ctx_release(p);
		for (int i = 0; i < NCHILD; i++)
			sp_ctx_release(ch[i]);
		spb_resume(st);
	}
	free(ch);
	spb_set_items_processed(st, spb_iterations(st) * NCHILD);
}
SPB_REGISTER(ctx_cancel_children, .group = "ctx_cancel_10000_children", .impl = "syncpool",
	     .fn = bm_cancel_children);
