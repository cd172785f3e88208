/* The lower bound for "start a cell and run /bin/true in it": mkdir a
 * cgroup, clone3 with the cell's namespaces straight into it, exec
 * /bin/true, wait, rmdir. Prints one line per iteration in milliseconds.
 * Usage: lower_bound CGROUP_PARENT_DIR ITERATIONS */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
  if (argc != 3) return 2;
  int n = atoi(argv[2]);
  char *const args[] = {"/bin/true", NULL};
  char *const env[] = {NULL};
  for (int i = 0; i < n; i++) {
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/lb-%d", argv[1], i);
    double t0 = now_ms();
    if (mkdir(dir, 0755) < 0) return perror("mkdir"), 1;
    int cg = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct clone_args ca = {.flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS |
                                     CLONE_NEWNET | CLONE_NEWCGROUP | CLONE_INTO_CGROUP,
                            .exit_signal = SIGCHLD,
                            .cgroup = (unsigned)cg};
    long pid = syscall(SYS_clone3, &ca, sizeof(ca));
    if (pid == 0) {
      execve(args[0], args, env);
      _exit(127);
    }
    if (pid < 0) return perror("clone3"), 1;
    int st;
    waitpid((pid_t)pid, &st, 0);
    close(cg);
    rmdir(dir);
    printf("%.3f\n", now_ms() - t0);
  }
  return 0;
}
