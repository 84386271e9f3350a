/*
 * sync/common.h - internal helpers shared by every syncpool module.
 *
 * Never installed. Holds the export macro, the fatal-misuse reporter, cache
 * line padding and the CPU relax hint. Everything here is hidden from the
 * shared library (the build uses -fvisibility=hidden; only SP_API symbols are
 * exported).
 */
#ifndef SP_SYNC_COMMON_H
#define SP_SYNC_COMMON_H

#include <stdalign.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Marks a definition as part of the public ABI (exported from the .so). */
#define SP_API __attribute__((visibility("default")))

#define SP_LIKELY(x)   __builtin_expect(!!(x), 1)
#define SP_UNLIKELY(x) __builtin_expect(!!(x), 0)

/*
 * Hot atomics and per-CPU areas are padded to 128 bytes: two 64-byte lines,
 * because x86's adjacent-line prefetcher pulls lines in pairs, so 64-byte
 * padding still lets two writers false-share.
 */
#define SP_CACHELINE 128
#define SP_CACHE_ALIGNED alignas(SP_CACHELINE)

/*
 * Sanitizer detection: gcc defines __SANITIZE_*__, clang uses __has_feature.
 * Under ThreadSanitizer the per-CPU code must take its fallback path (TSan
 * cannot follow restartable sequences).
 */
#if defined(__SANITIZE_THREAD__)
#define SP_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SP_TSAN 1
#endif
#endif
#ifndef SP_TSAN
#define SP_TSAN 0
#endif

#if defined(__SANITIZE_ADDRESS__)
#define SP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SP_ASAN 1
#endif
#endif
#ifndef SP_ASAN
#define SP_ASAN 0
#endif

/* One pause hint for spin loops. */
static inline void sp_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#else
	__asm__ __volatile__("" ::: "memory");
#endif
}

/*
 * Reports misuse that would corrupt state and aborts, as Go panics:
 * prints "syncpool: fatal: <module>: <what>" to stderr, then abort().
 */
__attribute__((noreturn, cold)) void sp_fatal(const char *module, const char *what);

#endif /* SP_SYNC_COMMON_H */
