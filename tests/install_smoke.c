/*
 * tests/install_smoke.c - a user program built against a staged install
 * through pkg-config (shared and --static) by `make install-check`.  It also
 * compiles as C++ to prove the headers' extern "C" works.
 */
#include <syncpool.h>

#include <stdio.h>

int main(void)
{
	int64_t a = sp_now_ns();
	int64_t b = sp_now_ns();
	if (a <= 0 || b < a) {
		fprintf(stderr, "install_smoke: clock went backwards\n");
		return 1;
	}
	printf("install_smoke: ok\n");
	return 0;
}
