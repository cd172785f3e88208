/* Milliseconds of CLOCK_MONOTONIC: for deadlines and intervals, which
 * must not jump with the wall clock. */
#pragma once

#include <stdint.h>
#include <time.h>

static inline int64_t monotonic_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
