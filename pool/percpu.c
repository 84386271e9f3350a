/*
 * pool/percpu.c - deciding how per-CPU areas are indexed and protected, the
 * membarrier fence, and the area lock's slow path.  See percpu.h.
 */
#define SP_POOL_BUILDING_ 1
#include "percpu.h"
#include "park.h"

#include <dlfcn.h>
#include <errno.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <unistd.h>

#if SP_PC_HAVE_RSEQ
#include <sys/rseq.h>
#endif

#ifndef AT_RSEQ_FEATURE_SIZE
#define AT_RSEQ_FEATURE_SIZE 27
#endif

/* Offsets in struct rseq (the kernel ABI; mm_cid is newer than Debian 12's header). */
enum {
	RSEQ_OFF_CPU_ID = 4,
	RSEQ_OFF_RSEQ_CS = 8,
	RSEQ_OFF_MM_CID = 24,
	RSEQ_ORIG_FEATURE_SIZE = 20, /* up to flags                   */
	RSEQ_ORIG_ALLOC_SIZE = 32,   /* what glibc 2.35-2.39 allocate */
	RSEQ_MM_CID_END = 28,        /* offsetofend(struct rseq, mm_cid) */
};

struct sp_pc_config sp_pc_cfg;
static pthread_once_t cfg_once = PTHREAD_ONCE_INIT;

/* Possible CPUs: the highest number in /sys/devices/system/cpu/possible, plus one. */
static uint32_t possible_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_CONF);
	FILE *f = fopen("/sys/devices/system/cpu/possible", "re");
	if (f) {
		char buf[256];
		if (fgets(buf, sizeof buf, f)) {
			/* "0-3,8-11": the last number is the highest. */
			long hi = -1, cur = 0;
			bool in = false;
			for (char *s = buf; *s; s++) {
				if (*s >= '0' && *s <= '9') {
					cur = cur * 10 + (*s - '0');
					in = true;
				} else if (in) {
					hi = cur > hi ? cur : hi;
					cur = 0;
					in = false;
				}
			}
			if (in && cur > hi)
				hi = cur;
			if (hi + 1 > n)
				n = hi + 1;
		}
		fclose(f);
	}
	if (n < 1)
		n = 1;
	if (n > 65536)
		n = 65536;
	return (uint32_t)n;
}

#if SP_PC_HAVE_RSEQ
static long membarrier(int cmd, unsigned flags, int cpu)
{
	return syscall(__NR_membarrier, cmd, flags, cpu);
}

/*
 * librseq's rule for the usable part of glibc's area: glibc 2.35-2.39 report
 * 20 or 32 while allocating 32 bytes, so the kernel's feature size (capped
 * at 32) decides; later glibc report the real size.
 */
static unsigned rseq_usable_size(void)
{
	unsigned sz = __rseq_size;
	unsigned long feat = getauxval(AT_RSEQ_FEATURE_SIZE);
	if (feat == 0)
		feat = RSEQ_ORIG_FEATURE_SIZE;
	if (sz == RSEQ_ORIG_FEATURE_SIZE || sz == RSEQ_ORIG_ALLOC_SIZE)
		return feat < RSEQ_ORIG_ALLOC_SIZE ? (unsigned)feat : RSEQ_ORIG_ALLOC_SIZE;
	return sz < feat ? sz : (unsigned)feat;
}

static int rseq_mode(void)
{
	if (getenv("SYNCPOOL_NO_RSEQ"))
		return SP_PC_LOCKED;
	if (__rseq_size < RSEQ_ORIG_FEATURE_SIZE)
		return SP_PC_LOCKED; /* glibc did not register (tunable off, valgrind, old kernel) */
	long q = membarrier(MEMBARRIER_CMD_QUERY, 0, 0);
	if (q < 0 || !(q & MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ))
		return SP_PC_LOCKED;
	if (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0, 0) != 0)
		return SP_PC_LOCKED;
	/*
	 * A thread's rseq_cs keeps pointing at one of our descriptors after a
	 * sequence; if this library were unloaded, the kernel would fault
	 * reading it at that thread's next preemption.  Pin ourselves.
	 */
	Dl_info info;
	if (dladdr((void *)&sp_pc_init, &info) && info.dli_fname)
		(void)dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE);
	return rseq_usable_size() >= RSEQ_MM_CID_END ? SP_PC_RSEQ_CID : SP_PC_RSEQ_CPU;
}
#endif

static void cfg_init(void)
{
	struct sp_pc_config c = { .mode = SP_PC_LOCKED };
	c.ncpu = possible_cpus();
#if SP_PC_HAVE_RSEQ
	c.mode = rseq_mode();
	/*
	 * glibc sets __rseq_offset even when it did not register: the locked
	 * mode's sequences read cpu_id (-2 there) or meet rseq_ncpu == 0 and
	 * leave for the locked path before touching an area.
	 */
	c.rseq_off = (intptr_t)__rseq_offset;
	c.idx_off = c.rseq_off + (c.mode == SP_PC_RSEQ_CID ? RSEQ_OFF_MM_CID : RSEQ_OFF_CPU_ID);
#endif
	sp_pc_cfg = c;
}

const struct sp_pc_config *sp_pc_init(void)
{
	pthread_once(&cfg_once, cfg_init);
	return &sp_pc_cfg;
}

void sp_pc_fence(uint32_t idx)
{
#if SP_PC_HAVE_RSEQ
	long r;
	if (sp_pc_cfg.mode == SP_PC_RSEQ_CPU)
		r = membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, MEMBARRIER_CMD_FLAG_CPU, (int)idx);
	else
		r = membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, 0, 0);
	if (r != 0)
		sp_fatal("pool", "membarrier(PRIVATE_EXPEDITED_RSEQ) failed");
#else
	(void)idx;
#endif
}

void sp_pc_fence_all(void)
{
#if SP_PC_HAVE_RSEQ
	if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, 0, 0) != 0)
		sp_fatal("pool", "membarrier(PRIVATE_EXPEDITED_RSEQ) failed");
#endif
}

/*
 * Drepper's mutex ("Futexes are tricky", mutex3): 0 free, 1 held, 2 held
 * and someone may sleep.  Holders keep it for a few dozen instructions plus,
 * in rseq mode, one membarrier; waiters spin briefly, then park.
 */
void sp_pc_lock_slow(_Atomic uint32_t *l)
{
	uint32_t c;
	for (int i = sp_spin_limit(); i > 0; i--) {
		c = 0;
		if (atomic_load_explicit(l, memory_order_relaxed) == 0 && atomic_compare_exchange_weak(l, &c, 1))
			return;
		sp_cpu_relax();
	}
	c = atomic_exchange(l, 2);
	while (c != 0) {
		sp_park_wait(l, 2, -1);
		c = atomic_exchange(l, 2);
	}
}

void sp_pc_unlock_wake(_Atomic uint32_t *l)
{
	sp_park_wake_one(l);
}

uint32_t sp_pc_cur_cpu(const struct sp_pc *pc)
{
	int c = sched_getcpu();
	if (c < 0)
		c = 0;
	return (uint32_t)c % pc->ncpu;
}
