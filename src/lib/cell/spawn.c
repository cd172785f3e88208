#include "cell/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <sys/prctl.h>
#include <signal.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
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

uint64_t cell_ns_clone_flags(unsigned flags) {
  uint64_t cf = 0;
  if (flags & CELL_NS_PID) cf |= CLONE_NEWPID;
  if (flags & CELL_NS_MNT) cf |= CLONE_NEWNS;
  if (flags & CELL_NS_IPC) cf |= CLONE_NEWIPC;
  if (flags & CELL_NS_UTS) cf |= CLONE_NEWUTS;
  if (flags & CELL_NS_NET) cf |= CLONE_NEWNET;
  return cf;
}

/* The parent's half of a new user namespace: ids 0..CELL_IDS_PER_CELL-1
 * inside are host ids base..base+CELL_IDS_PER_CELL-1, uids and gids
 * alike. Only a process with CAP_SETUID and CAP_SETGID over the parent
 * namespace may write a map this wide, which is why the child cannot do
 * it itself. */
static int write_id_maps(pid_t pid, uint32_t base) {
  static const char *const files[] = {"uid_map", "gid_map"};
  char path[64], map[64];
  int n = snprintf(map, sizeof(map), "0 %u %u\n", base, CELL_IDS_PER_CELL);
  for (size_t i = 0; i < 2; i++) {
    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, files[i]);
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    ssize_t w = write(fd, map, (size_t)n);
    if (w != n) return w < 0 ? -errno : -EIO;
  }
  return 0;
}

pid_t cell_clone_init(uint64_t flags, int exit_signal, int cgroup_fd, uint32_t id_base,
                      int *ret_pidfd) {
  int gate[2] = {-1, -1};
  if (id_base) {
    flags |= CLONE_NEWUSER;
    if (pipe2(gate, O_CLOEXEC) < 0) return -errno;
  }
  pid_t pid = cell_clone3(flags, exit_signal, cgroup_fd, ret_pidfd);
  if (pid == 0) {
    /* Raw system calls only: in a clone of the multi-threaded auraed,
     * glibc's setresuid would wait for threads that do not exist here. */
    syscall(SYS_prctl, PR_SET_DUMPABLE, 0, 0, 0, 0);
    if (id_base) {
      char go;
      close(gate[1]);
      /* Until the maps are written every id of ours is unmapped here; EOF
       * means the parent could not write them. */
      if (read(gate[0], &go, 1) != 1) _exit(125);
      close(gate[0]);
      /* We still carry the host's root uid, which the new namespace does
       * not map: as it stands, host files owned by root would still be
       * ours by owner. Become the namespace's root (host uid id_base). */
      if (syscall(SYS_setgroups, 0, NULL) < 0 || syscall(SYS_setresgid, 0, 0, 0) < 0 ||
          syscall(SYS_setresuid, 0, 0, 0) < 0)
        _exit(125);
    }
    return 0;
  }
  if (!id_base) return pid;
  close(gate[0]);
  int r = pid < 0 ? pid : write_id_maps(pid, id_base);
  if (r == 0 && write(gate[1], "g", 1) != 1) r = -EIO;
  close(gate[1]); /* on failure the child sees EOF and exits */
  if (r < 0 && pid > 0) {
    /* Reaped here when it is our child; a CLONE_PARENT one (the zygote's
     * clones) is auraed's, which gets the error and no pid to wait for. */
    siginfo_t si;
    waitid(P_PIDFD, (id_t)*ret_pidfd, &si, WEXITED | __WALL);
    close(*ret_pidfd);
    *ret_pidfd = -1;
  }
  return r < 0 ? r : pid;
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
                      uint32_t id_base, int cgroup_fd, const int *fds, int nfds, pid_t *ret_pid,
                      int *ret_pidfd) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int pidfd = -1;
  pid_t pid = cell_clone_init(clone_flags, SIGCHLD, cgroup_fd, id_base, &pidfd);
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

int cell_spawn_init(const char *exe, const char *name, const cell_init_opts *o,
                    const cell_mount *mounts, size_t nmounts, int cgroup_fd, int sync_w,
                    int leaf_procs, int listen_fd, pid_t *ret_pid, int *ret_pidfd) {
  char flags_str[16], scratch[32];
  snprintf(flags_str, sizeof(flags_str), "%u", o->flags & (unsigned)CELL_INIT_FLAGS);
  snprintf(scratch, sizeof(scratch), "%u:%u", o->scratch_mb, o->scratch_inodes);
  size_t nmask = 0;
  while (o->masks && o->masks[nmask])
    nmask++;
  if (nmounts > 8) return -E2BIG;
  _cleanup_free_ char **argv = calloc(nmask + nmounts + 6, sizeof(char *));
  char(*margs)[4096 + 16] = calloc(nmounts ? nmounts : 1, sizeof(*margs));
  _cleanup_free_ void *margs_owner = margs;
  if (!argv || !margs) return -ENOMEM;
  argv[0] = (char *)exe;
  argv[1] = CELL_INIT_ARG;
  argv[2] = (char *)name;
  argv[3] = scratch;
  argv[4] = flags_str;
  size_t k = 5;
  for (size_t i = 0; i < nmask; i++)
    argv[k++] = o->masks[i];
  for (size_t i = 0; i < nmounts; i++) {
    snprintf(margs[i], sizeof(margs[i]), "--mount=%s:%s", mounts[i].read_only ? "ro" : "rw",
             mounts[i].target);
    argv[k++] = margs[i];
  }
  char *const envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
  /* Every fd moves above the places they go to (3 ... 13) first, so
   * placing one cannot clobber another. */
  int fds[3 + 8];
  int nfds = 0, r = 0;
  const int src[3] = {sync_w, leaf_procs, listen_fd};
  for (int i = 0; i < 3 && r == 0; i++)
    if ((fds[nfds++] = fcntl(src[i], F_DUPFD_CLOEXEC, 32)) < 0) r = -errno;
  for (size_t i = 0; i < nmounts && r == 0; i++)
    if ((fds[nfds++] = fcntl(mounts[i].fd, F_DUPFD_CLOEXEC, 32)) < 0) r = -errno;
  if (r == 0)
    r = clone_exec(exe, argv, envp, cell_ns_clone_flags(o->flags), o->id_base, cgroup_fd, fds, nfds,
                   ret_pid, ret_pidfd);
  for (int i = 0; i < nfds; i++)
    if (fds[i] >= 0) close(fds[i]);
  return r;
}

int cell_spawn_zygote(const char *exe, int sock, int notices, pid_t *ret_pid, int *ret_pidfd) {
  char *const argv[] = {(char *)exe, CELL_INIT_ARG, CELL_ZYGOTE_ARG, NULL};
  char *const envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
  _cleanup_close_ int s = fcntl(sock, F_DUPFD_CLOEXEC, 10);
  _cleanup_close_ int n = fcntl(notices, F_DUPFD_CLOEXEC, 10);
  if (s < 0 || n < 0) return -errno;
  const int fds[] = {s, n};
  return clone_exec(exe, argv, envp, 0, 0, -1, fds, 2, ret_pid, ret_pidfd);
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
