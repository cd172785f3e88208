/* The id-range pool for per-cell user namespaces and the check of
 * /etc/subuid-style files against it. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "cell/idpool.h"

#define START CELL_IDPOOL_DEFAULT_START
#define R CELL_IDS_PER_CELL

static cell_idpool *pool_new(uint32_t start, uint32_t cells) {
  cell_idpool *p = NULL;
  au_error err = {0};
  assert_int_equal(cell_idpool_new(start, cells, &p, &err), 0);
  assert_non_null(p);
  return p;
}

static void alloc_until_full(void **state) {
  (void)state;
  /* 130 ranges: more than two bitmap words, the last one partial. */
  cell_idpool *p = pool_new(START, 130);
  for (uint32_t i = 0; i < 130; i++) {
    uint32_t base = 0;
    assert_int_equal(cell_idpool_alloc(p, &base), 0);
    assert_int_equal(base, START + i * R);
    assert_true(cell_idpool_contains(p, base));
  }
  uint32_t base = 0;
  assert_int_equal(cell_idpool_alloc(p, &base), -ENOSPC);
  /* A freed range is the only free one: it comes back. */
  cell_idpool_release(p, START + 70 * R);
  assert_int_equal(cell_idpool_alloc(p, &base), 0);
  assert_int_equal(base, START + 70 * R);
  assert_int_equal(cell_idpool_alloc(p, &base), -ENOSPC);
  cell_idpool_free(p);
}

static void next_fit(void **state) {
  (void)state;
  cell_idpool *p = pool_new(START, 4);
  uint32_t a, b, c;
  assert_int_equal(cell_idpool_alloc(p, &a), 0);
  assert_int_equal(cell_idpool_alloc(p, &b), 0);
  assert_int_equal(b, START + R);
  /* The range just released is not handed out again while others are
   * free. */
  cell_idpool_release(p, b);
  assert_int_equal(cell_idpool_alloc(p, &c), 0);
  assert_int_equal(c, START + 2 * R);
  cell_idpool_release(p, c);
  assert_int_equal(cell_idpool_alloc(p, &c), 0);
  assert_int_equal(c, START + 3 * R);
  /* Past the end the search wraps around and finds the first free range,
   * the one released earliest. */
  assert_int_equal(cell_idpool_alloc(p, &c), 0);
  assert_int_equal(c, START + R);
  assert_int_equal(cell_idpool_alloc(p, &c), 0);
  assert_int_equal(c, START + 2 * R);
  assert_int_equal(cell_idpool_alloc(p, &c), -ENOSPC);
  cell_idpool_free(p);
}

static void release_and_contains(void **state) {
  (void)state;
  cell_idpool *p = pool_new(START, 2);
  uint32_t a;
  assert_int_equal(cell_idpool_alloc(p, &a), 0);
  /* Free, foreign and misaligned bases are no-ops. */
  cell_idpool_release(p, START + R);
  cell_idpool_release(p, START - R);
  cell_idpool_release(p, START + 2 * R);
  cell_idpool_release(p, START + 1);
  cell_idpool_release(p, 0);
  assert_int_equal(cell_idpool_reserve(p, a), -EEXIST);
  cell_idpool_release(p, a);
  cell_idpool_release(p, a);
  assert_int_equal(cell_idpool_reserve(p, a), 0);

  assert_true(cell_idpool_contains(p, START));
  assert_true(cell_idpool_contains(p, START + R));
  assert_false(cell_idpool_contains(p, START + 2 * R));
  assert_false(cell_idpool_contains(p, START - R));
  assert_false(cell_idpool_contains(p, START + 1));
  assert_false(cell_idpool_contains(p, 0));
  assert_false(cell_idpool_contains(p, UINT32_MAX));
  cell_idpool_free(p);
  cell_idpool_free(NULL);
}

static void reserve(void **state) {
  (void)state;
  cell_idpool *p = pool_new(START, 8);
  assert_int_equal(cell_idpool_reserve(p, START + 3 * R), 0);
  assert_int_equal(cell_idpool_reserve(p, START + 3 * R), -EEXIST);
  assert_int_equal(cell_idpool_reserve(p, START + 3 * R + 1), -EINVAL);
  assert_int_equal(cell_idpool_reserve(p, START + 8 * R), -EINVAL);
  assert_int_equal(cell_idpool_reserve(p, START - R), -EINVAL);
  assert_int_equal(cell_idpool_reserve(p, 0), -EINVAL);
  /* Allocation skips a reserved range. */
  uint32_t base;
  for (uint32_t i = 0; i < 3; i++)
    assert_int_equal(cell_idpool_alloc(p, &base), 0);
  assert_int_equal(cell_idpool_alloc(p, &base), 0);
  assert_int_equal(base, START + 4 * R);
  assert_int_equal(cell_idpool_reserve(p, START), -EEXIST);
  cell_idpool_free(p);
}

/* A range from before the pool moved: every range it touches is taken. */
static void reserve_span(void **state) {
  (void)state;
  cell_idpool *p = pool_new(START, 4);
  assert_int_equal(cell_idpool_reserve_span(p, START + R + R / 2), 0); /* ranges 1 and 2 */
  assert_int_equal(cell_idpool_reserve(p, START + R), -EEXIST);
  assert_int_equal(cell_idpool_reserve(p, START + 2 * R), -EEXIST);
  assert_int_equal(cell_idpool_reserve_span(p, START + 2 * R), -EEXIST);
  /* Half below the pool: only range 0; wholly outside: nothing. */
  assert_int_equal(cell_idpool_reserve_span(p, START - R / 2), 0);
  assert_int_equal(cell_idpool_reserve(p, START), -EEXIST);
  assert_int_equal(cell_idpool_reserve_span(p, START + 4 * R), 0);
  assert_int_equal(cell_idpool_reserve_span(p, 0), 0);
  uint32_t base;
  assert_int_equal(cell_idpool_alloc(p, &base), 0);
  assert_int_equal(base, START + 3 * R);
  assert_int_equal(cell_idpool_alloc(p, &base), -ENOSPC);
  cell_idpool_release_span(p, START + R + R / 2);
  assert_int_equal(cell_idpool_reserve(p, START + R), 0);
  assert_int_equal(cell_idpool_reserve(p, START + 2 * R), 0);
  cell_idpool_free(p);
}

static void expect_new_error(uint32_t start, uint32_t cells, const char *needle) {
  cell_idpool *p = NULL;
  au_error err = {0};
  assert_int_equal(cell_idpool_new(start, cells, &p, &err), -EINVAL);
  assert_null(p);
  if (!strstr(err.msg, needle)) fail_msg("\"%s\" not in \"%s\"", needle, err.msg);
}

static void new_bounds(void **state) {
  (void)state;
  expect_new_error(0, 1, "cell_id_pool.start: 0 ");
  expect_new_error(START + 1, 1, "cell_id_pool.start: 1879048193 is not a multiple of 65536");
  expect_new_error(32768, 1, "cell_id_pool.start");
  expect_new_error(START, 0, "cell_id_pool.cells: 0 is not in [1, 65536]");
  expect_new_error(START, 65537, "cell_id_pool.cells: 65537");
  /* The last range would hold 4294967295, the kernel's "no id". */
  expect_new_error(0xFFFF0000u, 1, "ends at id 4294967295, past 4294967294");
  expect_new_error(START, 65536, "cell_id_pool: start 1879048192 + cells 65536");
  expect_new_error(R, 65535, "past 4294967294");

  /* The extremes that do fit. */
  cell_idpool_free(pool_new(R, 1));
  cell_idpool_free(pool_new(0xFFFE0000u, 1));
  cell_idpool *p = pool_new(R, 65534);
  uint32_t base;
  for (uint32_t i = 0; i < 65534; i++)
    assert_int_equal(cell_idpool_alloc(p, &base), 0);
  assert_int_equal(base, 0xFFFE0000u);
  assert_int_equal(cell_idpool_alloc(p, &base), -ENOSPC);
  cell_idpool_free(p);
  cell_idpool_free(pool_new(START, CELL_IDPOOL_DEFAULT_CELLS));
}

/* ------------------------------------------------------------ subid files */

static char subid_path[] = "/tmp/test_cell_idpool.XXXXXX";

static int make_file(void **state) {
  (void)state;
  int fd = mkstemp(subid_path);
  if (fd < 0) return -1;
  close(fd);
  return 0;
}

static int remove_file(void **state) {
  (void)state;
  unlink(subid_path);
  return 0;
}

static void write_text(const char *text, size_t len) {
  FILE *f = fopen(subid_path, "w");
  assert_non_null(f);
  assert_int_equal(fwrite(text, 1, len, f), len);
  assert_int_equal(fclose(f), 0);
}

/* The default pool, 1879048192-2147483647. */
static int check(const char *text, char *msg, size_t size) {
  write_text(text, strlen(text));
  return cell_idpool_check_subids(subid_path, START, (uint64_t)4096 * R, msg, size);
}

static void expect_overlap(const char *text, const char *needle) {
  char msg[256];
  assert_int_equal(check(text, msg, sizeof(msg)), -EEXIST);
  if (!strstr(msg, needle)) fail_msg("\"%s\" not in \"%s\"", needle, msg);
}

static void expect_clean(const char *text) {
  char msg[256] = "";
  int r = check(text, msg, sizeof(msg));
  if (r != 0) fail_msg("%d for \"%s\": %s", r, text, msg);
}

static void subids_overlap(void **state) {
  (void)state;
  expect_overlap("root:100000:65536\nbob:200000:65536\n# c\nalice:1879048191:2\n",
                 "line 4 (alice:1879048191:2) overlaps the cell id pool 1879048192-2147483647");
  /* The first and the last id of the pool, and a range around it all. */
  expect_overlap("alice:1879048192:1\n", "line 1 (alice:1879048192:1)");
  expect_overlap("alice:2147483647:65536\n", "line 1 (alice:2147483647:65536)");
  expect_overlap("alice:0:4294967295\n", "(alice:0:4294967295)");
  expect_overlap("alice:0:18446744073709551615\n", "alice");
  /* The whole message, as auraed logs it. */
  char msg[256];
  assert_int_equal(check("a:1:1\n\nb:2:1\nalice:2000000000:65536\n", msg, sizeof(msg)), -EEXIST);
  char want[256];
  snprintf(want, sizeof(want),
           "%s line 4 (alice:2000000000:65536) overlaps the cell id pool 1879048192-2147483647",
           subid_path);
  assert_string_equal(msg, want);
  /* Blanks and a '\r' around an entry do not hide it. */
  expect_overlap("  alice:1879048192:1 \r\n", "line 1 (alice:1879048192:1)");
  /* Without a message buffer the result is the same. */
  assert_int_equal(check("alice:1879048192:1\n", NULL, 0), -EEXIST);
  /* Control characters in a name do not reach the message. */
  expect_overlap("a\tb:1879048192:1", "(a?b:1879048192:1)");
}

static void subids_clean(void **state) {
  (void)state;
  /* Adjacent at both ends. */
  expect_clean("below:1879048128:64\nabove:2147483648:65536\n");
  expect_clean("below:0:1879048192\n");
  expect_clean("");
  expect_clean("\n\n   \n\t\n");
  expect_clean("# alice:1879048192:65536\n  # bob:1879048192:1\n");
  /* An empty range overlaps nothing. */
  expect_clean("alice:1879048192:0\n");
  /* Malformed lines are skipped, whatever they hold. */
  expect_clean("alice\n"
               "alice:1879048192\n"
               ":1879048192:1\n"
               "alice::1\n"
               "alice:1879048192:\n"
               "alice:1879048192:1:extra\n"
               "alice:-1879048192:1\n"
               "alice: 1879048192:1\n"
               "alice:+1879048192:1\n"
               "alice:0x70000000:1\n"
               "alice:1879048192x:1\n"
               "alice:1879048192:1x\n"
               "alice:99999999999999999999:1\n"
               "alice:1:99999999999999999999\n"
               "alice:1879048192:-1\n");
  /* A line too long for the reader is skipped as a whole: its tail is not
   * read as a line of its own. */
  size_t n = 5000;
  char *text = malloc(n + 64);
  assert_non_null(text);
  memset(text, 'x', n);
  strcpy(text + n, ":alice:1879048192:1\nok:1:1\n");
  expect_clean(text);
  /* The line after it is line 2. */
  strcpy(text + n, "\nalice:1879048192:1\n");
  expect_overlap(text, "line 2 (alice:1879048192:1)");
  free(text);
  /* A NUL byte makes a line malformed rather than cutting it short. */
  static const char nul[] = "alice:1879048192\0:1\nalice:1879048192:1\0\n";
  char msg[256];
  write_text(nul, sizeof(nul) - 1);
  assert_int_equal(
      cell_idpool_check_subids(subid_path, START, (uint64_t)4096 * R, msg, sizeof(msg)), 0);
  /* The last line may lack its newline. */
  expect_overlap("ok:1:1\nalice:1879048192:1", "line 2");
  /* A pool of length 0 overlaps nothing. */
  write_text("alice:0:4294967295\n", 19);
  assert_int_equal(cell_idpool_check_subids(subid_path, START, 0, msg, sizeof(msg)), 0);
}

static void subids_missing_or_unreadable(void **state) {
  (void)state;
  char msg[256] = "x";
  assert_int_equal(cell_idpool_check_subids("/nonexistent/subuid", START, R, msg, sizeof(msg)), 0);
  assert_string_equal(msg, "");
  /* A directory opens but cannot be read. */
  int r = cell_idpool_check_subids("/", START, R, msg, sizeof(msg));
  assert_true(r < 0 && r != -EEXIST);
  assert_non_null(strstr(msg, "/"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(alloc_until_full),
      cmocka_unit_test(next_fit),
      cmocka_unit_test(release_and_contains),
      cmocka_unit_test(reserve),
      cmocka_unit_test(reserve_span),
      cmocka_unit_test(new_bounds),
      cmocka_unit_test(subids_overlap),
      cmocka_unit_test(subids_clean),
      cmocka_unit_test(subids_missing_or_unreadable),
  };
  return cmocka_run_group_tests(tests, make_file, remove_file);
}
