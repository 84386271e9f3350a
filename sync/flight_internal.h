/*
 * sync/flight_internal.h - what the flight module shows its tests and
 * benchmarks beyond the public contract.  Never installed.
 */
#ifndef SP_SYNC_FLIGHT_INTERNAL_H
#define SP_SYNC_FLIGHT_INTERNAL_H

#include <stdint.h>

#include "syncpool/flight.h"

/*
 * Heap allocations the group has made so far (call records, long-key
 * buffers, table arrays).  A steady stream of calls leaves it unchanged.
 * Relaxed: exact only once the group is quiescent.
 */
uint64_t sp_flight_stat_allocs(sp_flight *g);

/* Table slots over all shards (the tables grow and shrink). */
uint64_t sp_flight_stat_slots(sp_flight *g);

#endif /* SP_SYNC_FLIGHT_INTERNAL_H */
