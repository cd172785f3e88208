/* Starting the VMM process. The daemon is multi-threaded, so between
 * clone3 and execve the child only makes async-signal-safe calls on data
 * prepared before the clone. clone3 puts the child straight into the VM's
 * cgroup (CLONE_INTO_CGROUP, Linux 5.7) and returns a pidfd
 * (CLONE_PIDFD), so the process is never outside its cgroup and never
 * confused with a recycled pid. */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "vm/vm_internal.h"

int vm_spawn(char *const argv[], const int *keep, size_t n_keep, int log_fd, int cgroup_fd,
             int *ret_pid, int *ret_pidfd, au_error *err) {
  static char *const envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
  for (size_t i = 0; i < n_keep; i++)
    if (keep[i] <= 2)
      return au_error_set(err, -EINVAL, "spawn: fd %d would be replaced by stdio", keep[i]);
  _cleanup_close_ int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd < 0) return au_error_errno(err, -errno, "spawn: open /dev/null");
  /* The child reports a failed execve through this pipe; EOF means the
   * exec happened (the write end is close-on-exec). */
  int errpipe[2];
  if (pipe2(errpipe, O_CLOEXEC) < 0) return au_error_errno(err, -errno, "spawn: pipe");
  sigset_t empty;
  sigemptyset(&empty);
  struct sigaction dfl = {.sa_handler = SIG_DFL};
  sigemptyset(&dfl.sa_mask);

  int pidfd = -1;
  struct clone_args ca;
  memset(&ca, 0, sizeof(ca));
  ca.flags = CLONE_PIDFD | (cgroup_fd >= 0 ? CLONE_INTO_CGROUP : 0);
  ca.pidfd = (uint64_t)(uintptr_t)&pidfd;
  ca.exit_signal = SIGCHLD;
  if (cgroup_fd >= 0) ca.cgroup = (uint64_t)cgroup_fd;
  long pid = syscall(SYS_clone3, &ca, sizeof(ca));
  if (pid < 0) {
    int e = -errno;
    close(errpipe[0]);
    close(errpipe[1]);
    return au_error_errno(err, e, "spawn: clone3");
  }
  if (pid == 0) {
    /* Child: async-signal-safe calls only. */
    for (int sig = 1; sig < _NSIG; sig++)
      if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, NULL);
    sigprocmask(SIG_SETMASK, &empty, NULL);
    /* Its own session: signals aimed at the daemon's process group (a
     * terminal's ^C) do not reach the VMs. */
    setsid();
    if (dup2(null_fd, 0) < 0 || dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0) goto fail;
    for (size_t i = 0; i < n_keep; i++)
      if (fcntl(keep[i], F_SETFD, 0) < 0) goto fail;
    execve(argv[0], argv, envp);
  fail:;
    int e = errno;
    ssize_t w = write(errpipe[1], &e, sizeof(e));
    (void)w;
    _exit(127);
  }
  close(errpipe[1]);
  int child_errno = 0;
  ssize_t n;
  do {
    n = read(errpipe[0], &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  close(errpipe[0]);
  if (n == (ssize_t)sizeof(child_errno)) {
    /* Reap it; it exits at once. */
    siginfo_t si;
    waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED);
    close(pidfd);
    return au_error_errno(err, -child_errno, "spawn: execve %s", argv[0]);
  }
  *ret_pid = (int)pid;
  *ret_pidfd = pidfd;
  return 0;
}
