/*
 * sync/sanitizer.h - telling a user's sanitizer what the library does.
 *
 * The installed library is not built with a sanitizer, but users build their
 * programs with -fsanitize=thread or -fsanitize=address and link it.  Then:
 *
 *  - ThreadSanitizer sees the user's accesses but not our atomics, so data
 *    handed from one thread to another through an sp_mutex, a WaitGroup, a
 *    pool object... would be reported as a race.  Every acquire and release
 *    point of the library therefore announces itself with
 *    sp_tsan_acquire(addr) / sp_tsan_release(addr): a release on addr
 *    happens-before a later acquire on the same addr.  Use the address of the
 *    word the real synchronization goes through, so that a user-side atomic
 *    on that word (an inlined fast path) pairs with it too.
 *  - AddressSanitizer cannot know that an object sitting in a pool cache is
 *    dead; sp_asan_poison / sp_asan_unpoison mark it.
 *  - LeakSanitizer scans the heap, globals and stacks, not anonymous mmap:
 *    objects cached only in such memory (the pool's per-CPU areas) would be
 *    reported as leaked at exit while their pool is alive.  sp_lsan_root_add
 *    / sp_lsan_root_del declare such memory a root region.
 *
 * Both resolve to the sanitizer runtime's own entry points, declared weak:
 * in a program without the sanitizer they are NULL and each hook costs a
 * load and a not-taken branch.  When the library itself is built with the
 * sanitizer (make test-tsan / test-asan) the runtime is always there.
 */
#ifndef SP_SYNC_SANITIZER_H
#define SP_SYNC_SANITIZER_H

#include <stddef.h>

#include "common.h"

void __tsan_acquire(void *addr) __attribute__((weak));
void __tsan_release(void *addr) __attribute__((weak));
void __asan_poison_memory_region(void const volatile *addr, size_t size) __attribute__((weak));
void __asan_unpoison_memory_region(void const volatile *addr, size_t size) __attribute__((weak));
void __lsan_register_root_region(const void *p, size_t size) __attribute__((weak));
void __lsan_unregister_root_region(const void *p, size_t size) __attribute__((weak));

/* True when a ThreadSanitizer runtime is in the process. */
static inline bool sp_tsan_active(void)
{
	return SP_TSAN || __tsan_acquire != NULL;
}

static inline void sp_tsan_acquire(const volatile void *addr)
{
	if (SP_UNLIKELY(__tsan_acquire != NULL))
		__tsan_acquire((void *)(uintptr_t)addr);
}

static inline void sp_tsan_release(const volatile void *addr)
{
	if (SP_UNLIKELY(__tsan_release != NULL))
		__tsan_release((void *)(uintptr_t)addr);
}

/* True when an AddressSanitizer runtime is in the process. */
static inline bool sp_asan_active(void)
{
	return SP_ASAN || __asan_poison_memory_region != NULL;
}

static inline void sp_asan_poison(const volatile void *addr, size_t size)
{
	if (SP_UNLIKELY(__asan_poison_memory_region != NULL) && size)
		__asan_poison_memory_region(addr, size);
}

static inline void sp_asan_unpoison(const volatile void *addr, size_t size)
{
	if (SP_UNLIKELY(__asan_unpoison_memory_region != NULL) && size)
		__asan_unpoison_memory_region(addr, size);
}

/* Pairs: a region added is deleted with the same address and size. */
static inline void sp_lsan_root_add(const void *addr, size_t size)
{
	if (SP_UNLIKELY(__lsan_register_root_region != NULL))
		__lsan_register_root_region(addr, size);
}

static inline void sp_lsan_root_del(const void *addr, size_t size)
{
	if (SP_UNLIKELY(__lsan_unregister_root_region != NULL))
		__lsan_unregister_root_region(addr, size);
}

#endif /* SP_SYNC_SANITIZER_H */
