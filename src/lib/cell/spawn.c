#include "cell/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cell/ctl.h"
#include "cleanup.h"

pid_t cell_clone3(uint64_t flags, int exit_signal, int cgroup_fd, int *ret_pidfd) {
  struct clone_args args = {
      .flags = flags | CLONE_PIDFD,
      .pidfd = (uint64_t)(uintptr_t)ret_pidfd,
      .exit_signal = (uint64_t)exit_signal,
  };
  if (cgroup_fd >= 0) {
    args.flags |= CLONE_INTO_CGROUP;
    args.cgroup = (uint64_t)cgroup_fd;
  }
  long r = syscall(SYS_clone3, &args, sizeof(args));
  if (r < 0) return -errno;
  return (pid_t)r;
}

#if defined(__x86_64__)
/* clone3 whose child calls fn(arg) on its own stack and exits with its
 * return value; it never returns into C code (with CLONE_VM the child's
 * stack is not the one the compiler's frame describes). The syscall
 * instruction clobbers rcx and r11; the child starts with our registers,
 * so fn and arg travel in r12 and r13. The kernel aligns nothing: stack
 * + stack_size must be 16-byte aligned, so fn starts with the ABI's
 * rsp % 16 == 8 after the call. */
static long clone3_run(struct clone_args *args, int (*fn)(void *), void *arg) {
  register long rax __asm__("rax") = SYS_clone3;
  register struct clone_args *rdi __asm__("rdi") = args;
  register long rsi __asm__("rsi") = (long)sizeof(*args);
  register int (*r12)(void *) __asm__("r12") = fn;
  register void *r13 __asm__("r13") = arg;
  __asm__ volatile("syscall\n\t"
                   "test %%rax, %%rax\n\t"
                   "jnz 1f\n\t"
                   "xor %%ebp, %%ebp\n\t"
                   "mov %%r13, %%rdi\n\t"
                   "call *%%r12\n\t"
                   "mov %%eax, %%edi\n\t"
                   "mov $60, %%eax\n\t" /* SYS_exit */
                   "syscall\n\t"
                   "hlt\n\t"
                   "1:\n\t"
                   : "+r"(rax)
                   : "r"(rdi), "r"(rsi), "r"(r12), "r"(r13)
                   : "rcx", "r11", "memory");
  return rax;
}

pid_t cell_clone3_vfork(int cgroup_fd, int *ret_pidfd, int (*fn)(void *), void *arg, void *stack,
                        size_t stack_size) {
  struct clone_args args = {
      .flags = CLONE_VM | CLONE_VFORK | CLONE_PIDFD,
      .pidfd = (uint64_t)(uintptr_t)ret_pidfd,
      .exit_signal = SIGCHLD,
      .stack = (uint64_t)(uintptr_t)stack,
      .stack_size = stack_size & ~(size_t)15,
  };
  if (cgroup_fd >= 0) {
    args.flags |= CLONE_INTO_CGROUP;
    args.cgroup = (uint64_t)cgroup_fd;
  }
  long r = clone3_run(&args, fn, arg);
  return (pid_t)r; /* -errno from the raw syscall */
}
#else
pid_t cell_clone3_vfork(int cgroup_fd, int *ret_pidfd, int (*fn)(void *), void *arg, void *stack,
                        size_t stack_size) {
  (void)cgroup_fd, (void)ret_pidfd, (void)fn, (void)arg, (void)stack, (void)stack_size;
  return -ENOSYS;
}
#endif

/* Async-signal-safe: move fd to target without keeping O_CLOEXEC. */
static int place_fd(int fd, int target) {
  if (fd == target) return fcntl(fd, F_SETFD, 0);
  return dup2(fd, target) < 0 ? -1 : 0;
}

/* clone3 (with clone_flags, into cgroup_fd unless -1) and execve exe in the
 * child with fds[i] placed at 3 + i. The callers hold the fds at 10 or
 * above so placing one cannot clobber another. Signals stay blocked across
 * the clone so no handler of ours runs in the child before execve. */
static int clone_exec(const char *exe, char *const *argv, char *const *envp, uint64_t clone_flags,
                      int cgroup_fd, const int *fds, int nfds, pid_t *ret_pid, int *ret_pidfd) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int pidfd = -1;
  pid_t pid = cell_clone3(clone_flags, SIGCHLD, cgroup_fd, &pidfd);
  if (pid == 0) {
    for (int i = 0; i < nfds; i++)
      if (place_fd(fds[i], 3 + i) < 0) _exit(126);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve(exe, argv, envp);
    _exit(127);
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (pid < 0) return pid;
  *ret_pid = pid;
  *ret_pidfd = pidfd;
  return 0;
}

int cell_spawn_init(const char *exe, const char *name, const char *state_dir, unsigned flags,
                    char *const *masks, int cgroup_fd, int sync_w, int leaf_procs, int state_fd,
                    pid_t *ret_pid, int *ret_pidfd) {
  char flags_str[16];
  snprintf(flags_str, sizeof(flags_str), "%u",
           flags & (unsigned)(CELL_NS_ALL | CELL_INIT_PRIVILEGED));
  size_t nmask = 0;
  while (masks && masks[nmask])
    nmask++;
  _cleanup_free_ char **argv = calloc(nmask + 6, sizeof(char *));
  if (!argv) return -ENOMEM;
  argv[0] = (char *)exe;
  argv[1] = CELL_INIT_ARG;
  argv[2] = (char *)name;
  argv[3] = (char *)state_dir;
  argv[4] = flags_str;
  for (size_t i = 0; i < nmask; i++)
    argv[5 + i] = masks[i];
  char *const envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
  uint64_t clone_flags = 0;
  if (flags & CELL_NS_PID) clone_flags |= CLONE_NEWPID;
  if (flags & CELL_NS_MNT) clone_flags |= CLONE_NEWNS;
  if (flags & CELL_NS_IPC) clone_flags |= CLONE_NEWIPC;
  if (flags & CELL_NS_UTS) clone_flags |= CLONE_NEWUTS;
  if (flags & CELL_NS_NET) clone_flags |= CLONE_NEWNET;
  /* Move the fds out of the way of 3, 4 and 5 first, so placing one cannot
   * clobber another. */
  _cleanup_close_ int s = fcntl(sync_w, F_DUPFD_CLOEXEC, 10);
  _cleanup_close_ int p = fcntl(leaf_procs, F_DUPFD_CLOEXEC, 10);
  _cleanup_close_ int d = fcntl(state_fd, F_DUPFD_CLOEXEC, 10);
  if (s < 0 || p < 0 || d < 0) return -errno;
  const int fds[] = {s, p, d};
  return clone_exec(exe, argv, envp, clone_flags, cgroup_fd, fds, 3, ret_pid, ret_pidfd);
}

int cell_spawn_zygote(const char *exe, int sock, int notices, pid_t *ret_pid, int *ret_pidfd) {
  char *const argv[] = {(char *)exe, CELL_INIT_ARG, CELL_ZYGOTE_ARG, NULL};
  char *const envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
  _cleanup_close_ int s = fcntl(sock, F_DUPFD_CLOEXEC, 10);
  _cleanup_close_ int n = fcntl(notices, F_DUPFD_CLOEXEC, 10);
  if (s < 0 || n < 0) return -errno;
  const int fds[] = {s, n};
  return clone_exec(exe, argv, envp, 0, -1, fds, 2, ret_pid, ret_pidfd);
}

pid_t cell_pidfd_pid(int pidfd) {
  char path[64], buf[1024];
  snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", pidfd);
  _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  if (n < 0) return -errno;
  buf[n] = '\0';
  const char *p = strstr(buf, "\nPid:");
  if (!p) return -ENOSYS;
  int pid = -1;
  if (sscanf(p + 5, "%d", &pid) != 1) return -EBADMSG;
  return pid > 0 ? pid : -ESRCH;
}

int cell_pidfd_send_signal(int pidfd, int sig) {
  if (syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) < 0) return -errno;
  return 0;
}
