/*
 * tests/dlclose/main.c - dlopen a module that ran the inline pool Get/Put
 * (restartable sequences whose descriptors live in that module), dlclose
 * it, and let the kernel look at this thread's rseq area again: it reads
 * rseq->rseq_cs at every preemption, so a descriptor pointer left behind
 * into the unmapped module would kill the thread (SIGSEGV).
 */
#define _GNU_SOURCE /* usleep; built like a user program, without the Makefile flags */
#include <dlfcn.h>
#include <stdio.h>
#include <unistd.h>

#include <syncpool.h>

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s plugin.so\n", argv[0]);
		return 2;
	}
	sp_pool_opts o = { .size = 64 };
	sp_pool *p = sp_pool_create(&o);
	static sp_mutex m;
	static sp_rwmutex rw;
	for (int round = 0; round < 3; round++) {
		void *h = dlopen(argv[1], RTLD_NOW);
		if (!h) {
			fprintf(stderr, "dlclose-check: %s\n", dlerror());
			return 1;
		}
		void (*work)(sp_pool *, sp_mutex *, sp_rwmutex *) =
			(void (*)(sp_pool *, sp_mutex *, sp_rwmutex *))dlsym(h, "plugin_work");
		if (!work) {
			fprintf(stderr, "dlclose-check: %s\n", dlerror());
			return 1;
		}
		work(p, &m, &rw);
		dlclose(h);
		usleep(2000); /* a context switch: the kernel reads rseq_cs on the way back */
	}
	sp_pool_destroy(p);
	puts("dlclose-check: ok");
	return 0;
}
