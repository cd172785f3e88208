/* Cell names and resources -> cgroup v2 files, the ring of captured output
 * and the cgroup2 mount lookup: the pure parts of src/lib/cell. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "cell/cgroup.h"
#include "ring.h"
#include "cell/resources.h"
#include "names.h"

static const cgroup_setting *find(const cgroup_setting *s, size_t n, const char *file) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(s[i].file, file) == 0) return &s[i];
  return NULL;
}

static void empty_resources_write_nothing(void **state) {
  (void)state;
  cell_resources r = {0};
  cgroup_setting s[CELL_RESOURCES_MAX_SETTINGS];
  size_t n = 99;
  assert_int_equal(cell_resources_to_settings(&r, s, &n, NULL), 0);
  assert_int_equal(n, 0);
}

static void every_field_maps_to_its_file(void **state) {
  (void)state;
  cell_resources r = {.cpu_weight = 200,
                      .cpu_max_quota_us = 50000,
                      .cpu_period_us = 100000,
                      .memory_min = 1,
                      .memory_low = 2,
                      .memory_high = 3,
                      .memory_max = 64 << 20,
                      .memory_swap_max = -1,
                      .pids_max = 10,
                      .io_weight = 300};
  strcpy(r.cpuset_cpus, "0-1");
  strcpy(r.cpuset_mems, "0");
  cgroup_setting s[CELL_RESOURCES_MAX_SETTINGS];
  size_t n = 0;
  au_error err = {0};
  assert_int_equal(cell_resources_to_settings(&r, s, &n, &err), 0);
  assert_int_equal(n, 11);
  assert_string_equal(find(s, n, "cpu.weight")->value, "200");
  assert_string_equal(find(s, n, "cpu.max")->value, "50000 100000");
  assert_string_equal(find(s, n, "cpu.max")->controller, "cpu");
  assert_string_equal(find(s, n, "cpuset.cpus")->value, "0-1");
  assert_string_equal(find(s, n, "cpuset.mems")->controller, "cpuset");
  assert_string_equal(find(s, n, "memory.min")->value, "1");
  assert_string_equal(find(s, n, "memory.low")->value, "2");
  assert_string_equal(find(s, n, "memory.high")->value, "3");
  assert_string_equal(find(s, n, "memory.max")->value, "67108864");
  assert_string_equal(find(s, n, "memory.swap.max")->value, "0");
  assert_string_equal(find(s, n, "pids.max")->value, "10");
  assert_string_equal(find(s, n, "pids.max")->controller, "pids");
  assert_string_equal(find(s, n, "io.weight")->value, "default 300");
  const char *ctrls[8];
  size_t nc = cell_settings_controllers(s, n, ctrls);
  assert_int_equal(nc, 5);
  assert_string_equal(ctrls[0], "cpu");
  assert_string_equal(ctrls[1], "cpuset");
  assert_string_equal(ctrls[2], "memory");
  assert_string_equal(ctrls[3], "pids");
  assert_string_equal(ctrls[4], "io");
}

static void cpu_defaults(void **state) {
  (void)state;
  cgroup_setting s[CELL_RESOURCES_MAX_SETTINGS];
  size_t n;
  cell_resources quota_only = {.cpu_max_quota_us = 20000};
  assert_int_equal(cell_resources_to_settings(&quota_only, s, &n, NULL), 0);
  assert_string_equal(find(s, n, "cpu.max")->value, "20000 100000");
  cell_resources period_only = {.cpu_period_us = 50000};
  assert_int_equal(cell_resources_to_settings(&period_only, s, &n, NULL), 0);
  assert_string_equal(find(s, n, "cpu.max")->value, "max 50000");
}

static void bad_values_name_the_field(void **state) {
  (void)state;
  cgroup_setting s[CELL_RESOURCES_MAX_SETTINGS];
  size_t n;
  au_error err = {0};
  cell_resources r = {.cpu_weight = 10001};
  assert_int_equal(cell_resources_to_settings(&r, s, &n, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "cpu.weight"));
  r = (cell_resources){.io_weight = 20000};
  assert_int_equal(cell_resources_to_settings(&r, s, &n, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "io.weight"));
  r = (cell_resources){.memory_max = -5};
  assert_int_equal(cell_resources_to_settings(&r, s, &n, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "memory.max"));
  r = (cell_resources){.memory_swap_max = -2};
  assert_int_equal(cell_resources_to_settings(&r, s, &n, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "swap_max"));
  r = (cell_resources){.pids_max = -1};
  assert_int_equal(cell_resources_to_settings(&r, s, &n, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "pids.max"));
  r = (cell_resources){.cpu_max_quota_us = 10};
  assert_int_equal(cell_resources_to_settings(&r, s, &n, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "max_quota_us"));
  r = (cell_resources){.cpu_period_us = 2000000};
  assert_int_equal(cell_resources_to_settings(&r, s, &n, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "period_us"));
  r = (cell_resources){0};
  strcpy(r.cpuset_cpus, "0\n+memory");
  assert_int_equal(cell_resources_to_settings(&r, s, &n, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "cpuset.cpus"));
}

static void cell_names(void **state) {
  (void)state;
  au_error err = {0};
  assert_int_equal(name_validate_path("cell name", "a/b/c", &err), 0);
  assert_int_equal(name_validate_path("cell name", "a/B", &err), -EINVAL);
  assert_non_null(strstr(err.msg, "\"B\""));
  assert_int_equal(name_validate_path("cell name", "a/_init", &err), -EINVAL);
  assert_int_equal(name_validate_path("cell name", "a/exe.x", &err), -EINVAL);
  char buf[64];
  assert_true(name_parent("a/b/c", buf, sizeof(buf)));
  assert_string_equal(buf, "a/b");
  assert_false(name_parent("a", buf, sizeof(buf)));
  assert_string_equal(name_leaf("a/b/c"), "c");
}

static void ring_keeps_newest_and_counts_dropped(void **state) {
  (void)state;
  byte_ring r;
  assert_int_equal(byte_ring_init(&r, 8), 0);
  byte_ring_append(&r, "abcdef", 6);
  char buf[32];
  uint64_t cur = 0, dropped;
  size_t n = byte_ring_read(&r, &cur, buf, sizeof(buf), &dropped);
  assert_int_equal(n, 6);
  assert_int_equal(dropped, 0);
  assert_memory_equal(buf, "abcdef", 6);
  byte_ring_append(&r, "ghijk", 5); /* wraps: "abc" dropped */
  assert_int_equal(byte_ring_dropped(&r), 3);
  n = byte_ring_read(&r, &cur, buf, sizeof(buf), &dropped);
  assert_int_equal(n, 5);
  assert_int_equal(dropped, 0);
  assert_memory_equal(buf, "ghijk", 5);
  uint64_t fresh = 0;
  n = byte_ring_read(&r, &fresh, buf, sizeof(buf), &dropped);
  assert_int_equal(dropped, 3);
  assert_int_equal(n, 8);
  assert_memory_equal(buf, "defghijk", 8);
  byte_ring_append(&r, "0123456789ABCDEF", 16); /* larger than the ring */
  fresh = 0;
  n = byte_ring_read(&r, &fresh, buf, 4, &dropped);
  assert_int_equal(dropped, 19);
  assert_int_equal(n, 4);
  assert_memory_equal(buf, "89AB", 4);
  n = byte_ring_read(&r, &fresh, buf, sizeof(buf), &dropped);
  assert_int_equal(n, 4);
  assert_memory_equal(buf, "CDEF", 4);
  byte_ring_free(&r);
}

static void mountinfo_finds_cgroup2(void **state) {
  (void)state;
  const char *hybrid =
      "25 30 0:23 / /sys rw,nosuid - sysfs sysfs rw\n"
      "35 25 0:30 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755\n"
      "36 35 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
      "40 35 0:37 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw\n";
  char buf[256];
  au_error err = {0};
  assert_int_equal(cgroup_parse_mountinfo(hybrid, buf, sizeof(buf), &err), 0);
  assert_string_equal(buf, "/sys/fs/cgroup/unified");
  const char *escaped = "40 35 0:37 / /mnt/cg\\040two rw - cgroup2 none rw\n";
  assert_int_equal(cgroup_parse_mountinfo(escaped, buf, sizeof(buf), &err), 0);
  assert_string_equal(buf, "/mnt/cg two");
  const char *v1only = "36 35 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
  assert_int_equal(cgroup_parse_mountinfo(v1only, buf, sizeof(buf), &err), -ENOENT);
  assert_non_null(strstr(err.msg, "cgroup2"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(empty_resources_write_nothing),
      cmocka_unit_test(every_field_maps_to_its_file),
      cmocka_unit_test(cpu_defaults),
      cmocka_unit_test(bad_values_name_the_field),
      cmocka_unit_test(cell_names),
      cmocka_unit_test(ring_keeps_newest_and_counts_dropped),
      cmocka_unit_test(mountinfo_finds_cgroup2),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
