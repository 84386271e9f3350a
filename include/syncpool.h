/*
 * syncpool.h - everything syncpool offers, in one include.
 *
 * syncpool gives C programs what Go programs get from sync, golang.org/x/sync
 * and context.  Each module also has its own header under syncpool/.
 * Headers compile as C11 and as C++.  Link with
 *   cc app.c $(pkg-config --cflags --libs syncpool)
 */
#ifndef SYNCPOOL_H
#define SYNCPOOL_H

#include "syncpool/ctx.h"
#include "syncpool/once.h"
#include "syncpool/waitgroup.h"
#include "syncpool/errgroup.h"
#include "syncpool/cond.h"
#include "syncpool/mutex.h"
#include "syncpool/flight.h"
#include "syncpool/sema.h"
#include "syncpool/rwmutex.h"
#include "syncpool/pool.h"

#endif /* SYNCPOOL_H */
