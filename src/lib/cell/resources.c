#include "cell/resources.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

static void add(cgroup_setting *out, size_t *n, const char *controller, const char *file,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void add(cgroup_setting *out, size_t *n, const char *controller, const char *file,
                const char *fmt, ...) {
  cgroup_setting *s = &out[(*n)++];
  s->controller = controller;
  s->file = file;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->value, sizeof(s->value), fmt, ap);
  va_end(ap);
}

/* cpuset lists: "0-3,5"; the kernel parses them again, this only keeps
 * junk (and newlines, which would split a write) out. */
static int check_cpuset_list(const char *field, const char *v, au_error *err) {
  size_t len = strnlen(v, CELL_CPUSET_MAX);
  if (len >= CELL_CPUSET_MAX)
    return au_error_set(err, -EINVAL, "resources.%s: longer than %d characters", field,
                        CELL_CPUSET_MAX - 1);
  for (size_t i = 0; i < len; i++)
    if (!((v[i] >= '0' && v[i] <= '9') || v[i] == ',' || v[i] == '-'))
      return au_error_set(err, -EINVAL, "resources.%s: \"%s\" is not a list like \"0-3,5\"", field,
                          v);
  return 0;
}

static int check_weight(const char *field, uint64_t w, au_error *err) {
  if (w > 10000)
    return au_error_set(err, -EINVAL, "resources.%s: %" PRIu64 " is out of range 1..10000", field,
                        w);
  return 0;
}

static int check_bytes(const char *field, int64_t v, au_error *err) {
  if (v < 0) return au_error_set(err, -EINVAL, "resources.%s: %" PRId64 " is negative", field, v);
  return 0;
}

int cell_resources_to_settings(const cell_resources *res, cgroup_setting *out, size_t *ret_count,
                               au_error *err) {
  size_t n = 0;
  int r;
  *ret_count = 0;

  if ((r = check_weight("cpu.weight", res->cpu_weight, err)) < 0) return r;
  if (res->cpu_weight) add(out, &n, "cpu", "cpu.weight", "%" PRIu64, res->cpu_weight);

  if (res->cpu_max_quota_us < 0)
    return au_error_set(err, -EINVAL, "resources.cpu.max_quota_us: %" PRId64 " is negative",
                        res->cpu_max_quota_us);
  /* The kernel takes periods of 1 ms .. 1 s and quotas from 1 ms. */
  if (res->cpu_period_us && (res->cpu_period_us < 1000 || res->cpu_period_us > 1000000))
    return au_error_set(err, -EINVAL,
                        "resources.cpu.period_us: %" PRIu64 " is out of range 1000..1000000",
                        res->cpu_period_us);
  if (res->cpu_max_quota_us && res->cpu_max_quota_us < 1000)
    return au_error_set(err, -EINVAL,
                        "resources.cpu.max_quota_us: %" PRId64
                        " is below the kernel's minimum of 1000",
                        res->cpu_max_quota_us);
  if (res->cpu_max_quota_us)
    add(out, &n, "cpu", "cpu.max", "%" PRId64 " %" PRIu64, res->cpu_max_quota_us,
        res->cpu_period_us ? res->cpu_period_us : 100000);
  else if (res->cpu_period_us)
    add(out, &n, "cpu", "cpu.max", "max %" PRIu64, res->cpu_period_us);

  if ((r = check_cpuset_list("cpuset.cpus", res->cpuset_cpus, err)) < 0) return r;
  if ((r = check_cpuset_list("cpuset.mems", res->cpuset_mems, err)) < 0) return r;
  if (res->cpuset_cpus[0]) add(out, &n, "cpuset", "cpuset.cpus", "%s", res->cpuset_cpus);
  if (res->cpuset_mems[0]) add(out, &n, "cpuset", "cpuset.mems", "%s", res->cpuset_mems);

  static const struct {
    const char *field, *file;
    size_t off;
  } mem[] = {
      {"memory.min", "memory.min", offsetof(cell_resources, memory_min)},
      {"memory.low", "memory.low", offsetof(cell_resources, memory_low)},
      {"memory.high", "memory.high", offsetof(cell_resources, memory_high)},
      {"memory.max", "memory.max", offsetof(cell_resources, memory_max)},
  };
  for (size_t i = 0; i < sizeof(mem) / sizeof(mem[0]); i++) {
    int64_t v = *(const int64_t *)((const char *)res + mem[i].off);
    if ((r = check_bytes(mem[i].field, v, err)) < 0) return r;
    if (v) add(out, &n, "memory", mem[i].file, "%" PRId64, v);
  }
  if (res->memory_swap_max < -1)
    return au_error_set(err, -EINVAL,
                        "resources.memory.swap_max: %" PRId64 " is negative (-1 means no swap)",
                        res->memory_swap_max);
  if (res->memory_swap_max)
    add(out, &n, "memory", "memory.swap.max", "%" PRId64,
        res->memory_swap_max < 0 ? 0 : res->memory_swap_max);

  if ((r = check_bytes("pids.max", res->pids_max, err)) < 0) return r;
  if (res->pids_max) add(out, &n, "pids", "pids.max", "%" PRId64, res->pids_max);

  if ((r = check_weight("io.weight", res->io_weight, err)) < 0) return r;
  if (res->io_weight) add(out, &n, "io", "io.weight", "default %" PRIu64, res->io_weight);

  *ret_count = n;
  return 0;
}

size_t cell_settings_controllers(const cgroup_setting *settings, size_t count,
                                 const char **ret_controllers) {
  size_t n = 0;
  for (size_t i = 0; i < count; i++) {
    size_t j;
    for (j = 0; j < n; j++)
      if (strcmp(ret_controllers[j], settings[i].controller) == 0) break;
    if (j == n) ret_controllers[n++] = settings[i].controller;
  }
  return n;
}
