/* The default seccomp filter of cells (src/lib/cell/seccomp.c), loaded for
 * real in a forked child: denied calls (io_uring among them) get EPERM,
 * clone3 ENOSYS so libc falls back to clone, personality keeps its safe
 * values, and ordinary calls still work. Seccomp needs no privilege once
 * no_new_privs is set. */
#include <errno.h>
#include <linux/filter.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "cell/harden.h"

static long sys_errno(long nr, long a, long b, long c) {
  return syscall(nr, a, b, c) < 0 ? errno : 0;
}

/* Runs in the child; the exit code says which check failed (0: none). */
static int child_checks(const cell_seccomp *s) {
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return 100;
  if (cell_seccomp_load(s) < 0) return 101;
  if (sys_errno(SYS_keyctl, 0, -3, 0) != EPERM) return 1;
  if (sys_errno(SYS_bpf, 0, 0, 0) != EPERM) return 2;
  if (sys_errno(SYS_unshare, CLONE_NEWUSER, 0, 0) != EPERM) return 3;
  if (sys_errno(SYS_unshare, CLONE_NEWNET | CLONE_FILES, 0, 0) != EPERM) return 4;
  if (sys_errno(SYS_unshare, CLONE_FILES, 0, 0) != 0) return 5; /* not a namespace */
  if (sys_errno(SYS_clone3, 0, 0, 0) != ENOSYS) return 6;
  if (sys_errno(SYS_personality, 0x0040000 /* ADDR_NO_RANDOMIZE */, 0, 0) != EPERM) return 7;
  if (sys_errno(SYS_personality, 0xffffffff, 0, 0) != 0) return 8;
  if (sys_errno(SYS_personality, 0, 0, 0) != 0) return 9;
  if (sys_errno(SYS_open_by_handle_at, -1, 0, 0) != EPERM) return 10;
  if (sys_errno(SYS_getpid, 0, 0, 0) != 0) return 11;
  uint8_t params[120] = {0}; /* struct io_uring_params, zeroed */
  if (sys_errno(SYS_io_uring_setup, 8, (long)params, 0) != EPERM) return 14;
  if (sys_errno(SYS_io_uring_enter, -1, 0, 0) != EPERM) return 15;
  if (sys_errno(SYS_io_uring_register, -1, 0, 0) != EPERM) return 16;
  pid_t pid = fork(); /* clone without namespace flags */
  if (pid < 0) return 12;
  if (pid == 0) _exit(7);
  int st;
  if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 7) return 13;
  return 0;
}

static void the_filter_denies_what_it_should(void **state) {
  (void)state;
  cell_seccomp s;
  char why[256] = "";
  assert_int_equal(cell_seccomp_build(&s, why, sizeof(why)), 0);
  assert_non_null(s.main.filter);
  assert_true(s.main.len > 0 && s.main.len <= BPF_MAXINSNS);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) _exit(child_checks(&s));
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
  cell_seccomp_free(&s);
  assert_null(s.main.filter);
}

static void a_zeroed_filter_loads_nothing(void **state) {
  (void)state;
  cell_seccomp s = {0};
  assert_int_equal(cell_seccomp_load(&s), 0);
  cell_seccomp_free(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(the_filter_denies_what_it_should),
      cmocka_unit_test(a_zeroed_filter_loads_nothing),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
