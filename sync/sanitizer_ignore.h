/*
 * sync/sanitizer_ignore.h - hiding the library's own bookkeeping memory from
 * a user's ThreadSanitizer.
 *
 * In a user's TSan program our (uninstrumented) code is invisible except
 * where it calls a libc function TSan intercepts: malloc/calloc/realloc
 * record a write of the whole new block by the calling thread, free checks
 * the block against every recorded access, memcpy/memcmp/memset record and
 * check their ranges.  Internal structures (context nodes, call records and
 * their keys, hash tables, the timer heap, the work ring) are handed between
 * threads by internal locks and counters TSan cannot see, so those calls
 * would be reported as races - on memory the user never touches.  Such calls
 * are bracketed with sp_tsan_ignore_begin/end: TSan neither records nor
 * checks the accesses (a block allocated while ignoring gets clean shadow).
 * Never around anything that reads or writes the user's data on the user's
 * behalf (val_free, user callbacks): those must stay checked.
 *
 * Weak references to TSan's annotation entry points, like sanitizer.h: in a
 * program without TSan each bracket is a load and a not-taken branch.  When
 * the library itself is built with -fsanitize=thread (SP_TSAN) everything it
 * does is instrumented and checked, so the brackets compile to nothing.
 */
#ifndef SP_SYNC_SANITIZER_IGNORE_H
#define SP_SYNC_SANITIZER_IGNORE_H

#include "common.h"

void AnnotateIgnoreReadsBegin(const char *file, int line) __attribute__((weak));
void AnnotateIgnoreReadsEnd(const char *file, int line) __attribute__((weak));
void AnnotateIgnoreWritesBegin(const char *file, int line) __attribute__((weak));
void AnnotateIgnoreWritesEnd(const char *file, int line) __attribute__((weak));

static inline void sp_tsan_ignore_begin(void)
{
	if (!SP_TSAN && SP_UNLIKELY(AnnotateIgnoreWritesBegin != NULL)) {
		AnnotateIgnoreReadsBegin(__FILE__, __LINE__);
		AnnotateIgnoreWritesBegin(__FILE__, __LINE__);
	}
}

static inline void sp_tsan_ignore_end(void)
{
	if (!SP_TSAN && SP_UNLIKELY(AnnotateIgnoreWritesEnd != NULL)) {
		AnnotateIgnoreWritesEnd(__FILE__, __LINE__);
		AnnotateIgnoreReadsEnd(__FILE__, __LINE__);
	}
}

#endif /* SP_SYNC_SANITIZER_IGNORE_H */
