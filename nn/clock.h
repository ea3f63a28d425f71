/*
 * clock.h - the one clock the project measures with: monotonic seconds.
 */
#ifndef DD_NN_CLOCK_H
#define DD_NN_CLOCK_H

#include <time.h>

static inline double dd_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#endif
