/* sync/common.c - the fatal-misuse reporter shared by every module. */
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void sp_fatal(const char *module, const char *what)
{
	/*
	 * Build the line in one buffer and write(2) it once, so that it is not
	 * interleaved with other threads' output and needs no stdio lock (the
	 * caller may hold anything).
	 */
	char buf[256];
	int n = snprintf(buf, sizeof buf, "syncpool: fatal: %s: %s\n", module, what);
	if (n > 0) {
		size_t len = (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1;
		ssize_t r = write(STDERR_FILENO, buf, len);
		(void)r;
	}
	abort();
}
