/* cell_clone3_vfork (src/lib/cell/spawn.c), for real: the child shares our
 * memory, runs on the stack we give it, and we resume only once it has
 * called execve or exited. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "cell/spawn.h"

#define STACK (64 * 1024)

struct arg {
  const char *path;
  volatile int err;
  volatile int touched;
};

static int run_exec(void *p) {
  struct arg *a = p;
  char *const argv[] = {(char *)a->path, NULL};
  char *const envp[] = {NULL};
  execve(a->path, argv, envp);
  a->err = errno; /* seen by the parent: shared memory */
  _exit(127);
}

static int run_exit(void *p) {
  struct arg *a = p;
  volatile char big[16384]; /* the stack we gave it is big enough */
  big[0] = 1;
  big[sizeof(big) - 1] = 2;
  a->touched = big[0] + big[sizeof(big) - 1];
  return 7; /* returning exits with this status */
}

static pid_t spawn(int (*fn)(void *), struct arg *a, int *pidfd) {
  static char *stack;
  if (!stack) {
    stack = mmap(NULL, STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(stack != MAP_FAILED);
  }
  return cell_clone3_vfork(-1, pidfd, fn, a, stack, STACK);
}

static int status_of(pid_t pid) {
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st));
  return WEXITSTATUS(st);
}

static void test_exec_confirmed(void **state) {
  (void)state;
  struct arg a = {.path = "/bin/true"};
  int pidfd = -1;
  pid_t pid = spawn(run_exec, &a, &pidfd);
  if (pid == -ENOSYS) skip();
  assert_true(pid > 0);
  assert_true(pidfd >= 0);
  assert_int_equal(a.err, 0); /* we resumed after a successful execve */
  assert_int_equal(status_of(pid), 0);
  close(pidfd);
}

static void test_exec_failure_reported(void **state) {
  (void)state;
  struct arg a = {.path = "/nonexistent/program"};
  int pidfd = -1;
  pid_t pid = spawn(run_exec, &a, &pidfd);
  if (pid == -ENOSYS) skip();
  assert_true(pid > 0);
  assert_int_equal(a.err, ENOENT);
  assert_int_equal(status_of(pid), 127);
  close(pidfd);
}

static void test_return_is_exit_status(void **state) {
  (void)state;
  struct arg a = {0};
  int pidfd = -1;
  pid_t pid = spawn(run_exit, &a, &pidfd);
  if (pid == -ENOSYS) skip();
  assert_true(pid > 0);
  assert_int_equal(a.touched, 3); /* written before we resumed */
  assert_int_equal(status_of(pid), 7);
  close(pidfd);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_exec_confirmed),
      cmocka_unit_test(test_exec_failure_reported),
      cmocka_unit_test(test_return_is_exit_status),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
