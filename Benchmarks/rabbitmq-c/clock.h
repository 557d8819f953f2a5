/* Shared by the rabbitmq-c baselines: a monotonic clock in seconds and a qsort comparator
 * for latencies. */
#ifndef RACKBUS_BASELINE_CLOCK_H
#define RACKBUS_BASELINE_CLOCK_H
#include <time.h>

static inline double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static inline int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
#endif
