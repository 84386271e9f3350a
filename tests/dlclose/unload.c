/*
 * tests/dlclose/unload.c - dlopen libsyncpool.so itself (the program does not
 * link it), use it from a thread, dlclose it, then let the thread exit.  The
 * library registers thread-exit destructors (the rwmutex's reader slot) and
 * may have threads of its own running (timer, cleaner, workers), so it is
 * linked -z nodelete: dlclose leaves it mapped.  Without that, the thread's
 * exit called into unmapped code (SIGSEGV).
 *
 * Run with jemalloc preloaded: Debian's libjemalloc.so.2 uses initial-exec
 * TLS, which a dlopen after startup cannot place.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

#include <syncpool.h>

static void *h;
static _Atomic int stage;
static sp_rwmutex rw; /* only its storage: the calls go through dlsym */

static void *thread_main(void *arg)
{
	(void)arg;
	void (*rlock)(sp_rwmutex *) = (void (*)(sp_rwmutex *))dlsym(h, "sp_rwmutex_rlock");
	void (*runlock)(sp_rwmutex *) = (void (*)(sp_rwmutex *))dlsym(h, "sp_rwmutex_runlock");
	if (!rlock || !runlock) {
		atomic_store(&stage, -1);
		return NULL;
	}
	for (int i = 0; i < 4; i++) { /* the second lock on goes through the slot table */
		rlock(&rw);
		runlock(&rw);
	}
	atomic_store(&stage, 1);
	while (atomic_load(&stage) != 2)
		usleep(1000);
	return NULL; /* thread exit: the library's TLS destructors run here */
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s libsyncpool.so\n", argv[0]);
		return 2;
	}
	h = dlopen(argv[1], RTLD_NOW);
	if (!h) {
		fprintf(stderr, "unload-check: %s\n", dlerror());
		return 1;
	}
	pthread_t t;
	if (pthread_create(&t, NULL, thread_main, NULL) != 0)
		return 1;
	while (atomic_load(&stage) == 0)
		usleep(1000);
	if (atomic_load(&stage) < 0) {
		fprintf(stderr, "unload-check: dlsym failed\n");
		return 1;
	}
	if (dlclose(h) != 0) {
		fprintf(stderr, "unload-check: dlclose: %s\n", dlerror());
		return 1;
	}
	atomic_store(&stage, 2);
	pthread_join(t, NULL);
	printf("unload-check: ok\n");
	return 0;
}
