/* bench/bench_main.c - the benchmark program: every bench_*.c registers its
 * benchmarks with SPB_REGISTER; this runs them (google-benchmark flags). */
#include "spbench.h"

int main(int argc, char **argv)
{
	return spb_main(argc, argv);
}
