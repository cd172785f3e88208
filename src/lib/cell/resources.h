/* Cell resources and their mapping onto cgroup v2 interface files. Pure:
 * no file system access, so it is unit-tested on any host. Every field is
 * optional; 0 means "not set, leave the kernel's default". */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define CELL_CPUSET_MAX 128

typedef struct cell_resources {
  uint64_t cpu_weight;      /* cpu.weight 1..10000 */
  int64_t cpu_max_quota_us; /* cpu.max "$QUOTA $PERIOD" */
  uint64_t cpu_period_us;   /* default 100000 */
  char cpuset_cpus[CELL_CPUSET_MAX];
  char cpuset_mems[CELL_CPUSET_MAX];
  int64_t memory_min, memory_low, memory_high, memory_max;
  int64_t memory_swap_max; /* -1 writes 0 (no swap) */
  int64_t pids_max;
  uint64_t io_weight; /* io.weight "default N" 1..10000 */
} cell_resources;

/* One write into the cell's cgroup: FILE gets VALUE; CONTROLLER must be
 * enabled in the parent's cgroup.subtree_control for FILE to exist. */
typedef struct cgroup_setting {
  const char *controller;
  const char *file;
  char value[CELL_CPUSET_MAX + 32];
} cgroup_setting;

#define CELL_RESOURCES_MAX_SETTINGS 12

/* Validates res and fills out[] (capacity CELL_RESOURCES_MAX_SETTINGS) in a
 * fixed order; *ret_count is 0 when nothing is set. -EINVAL names the
 * field. */
int cell_resources_to_settings(const cell_resources *res, cgroup_setting *out, size_t *ret_count,
                               au_error *err);

/* The distinct controllers out[] needs, in order, at most 6; returns the
 * count. */
size_t cell_settings_controllers(const cgroup_setting *settings, size_t count,
                                 const char **ret_controllers);
