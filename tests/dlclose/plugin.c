/*
 * tests/dlclose/plugin.c - a module that uses the inline fast paths and is
 * then unloaded (see main.c).
 */
#include <syncpool.h>

void plugin_work(sp_pool *p, sp_mutex *m, sp_rwmutex *rw);
void plugin_work(sp_pool *p, sp_mutex *m, sp_rwmutex *rw)
{
	for (int i = 0; i < 1000; i++) {
		void *o = sp_pool_get(p);
		sp_pool_put(p, o);
		sp_mutex_lock(m);
		sp_mutex_unlock(m);
		sp_rwmutex_rlock(rw);
		sp_rwmutex_runlock(rw);
	}
}
