/* Wall-clock time for progress lines and benchmarks. */
#ifndef DIFFUSE_TIMER_H
#define DIFFUSE_TIMER_H

/* Seconds on a monotonic clock, from an arbitrary origin. */
double time_now(void);

#endif
