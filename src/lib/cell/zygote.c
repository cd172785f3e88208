/* The zygote: auraed starts it once (--cell-init --zygote, fd 3 a
 * SEQPACKET socket) and asks it for every top-level cell init, so that
 * neither an exec nor a clone of the big multi-threaded daemon is on the
 * RunCell path. When auraed goes (EOF) it exits and the cells stay.
 *
 * It keeps one spare init ready for the default isolation
 * (CTL_SPARE_CONFIG): a clone made ahead of time whose namespaces, mounts,
 * /dev and lo are done, waiting in ROOT/_spare. A RunCell that fits it
 * only has the spare move itself into the cell's cgroup, unshare the
 * cgroup namespace there, take its hostname and bind its socket; the
 * zygote then makes the next spare off the request path. That took
 * RunCell from ~4.5 ms to ~1 ms (bench/cells/README.md).
 *
 * Who owns what:
 *  - Inits cloned on request are auraed's children (CLONE_PARENT), as
 *    when auraed cloned them itself.
 *  - The spare is the zygote's own child (so an unused one never becomes
 *    a zombie of auraed's) and stays that after it becomes a cell's init:
 *    the zygote reaps it when the cell is freed, and auraed, whose waitid
 *    on it answers ECHILD, treats it like an adopted init.
 *  - An unused spare never outlives the zygote: PR_SET_PDEATHSIG kills it,
 *    and it also exits on EOF of its socket (the zygote may die before the
 *    spare has set PDEATHSIG). On a clean exit the zygote kills and reaps
 *    it first, so auraed can remove ROOT/_spare once the zygote is gone.
 *  - A spare that fails to get ready is dropped and the request takes the
 *    cloning path, which reports the real error; after SPARE_MAX_FAILURES
 *    in a row no more spares are made. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cell/cell.h"
#include "cell/init_priv.h"
#include "cell/spawn.h"
#include "cleanup.h"

#define SPARE_MAX_FAILURES 3

static struct {
  /* From CTL_SPARE_CONFIG; masks points into cfg. */
  ctl_msg cfg;
  bool enabled;
  unsigned flags;
  char **masks; /* NULL-terminated */
  size_t nmasks;
  int cgroup_fd; /* ROOT/_spare */
  /* The spare, while unused (pid 0: none). */
  pid_t pid;
  int pidfd, sock;
  bool ready;
  int failures; /* in a row */
  int policy;   /* ours, which an init gets back when it is used */
  struct sched_param param;
} Z = {.cgroup_fd = -1, .pidfd = -1, .sock = -1};

/* The spare's life: prepared, "ready" to the zygote, then it waits for the
 * one SPAWN_CELL it will serve (fd 3: its socket to the zygote). */
static int spare_main(void) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  char why[512];
  if (init_prepare(Z.flags, Z.masks, why, sizeof(why)) < 0) return 1;
  /* Ready, so back to the normal policy: as SCHED_IDLE it would wake for
   * its cell only once a CPU is idle. */
  sched_setscheduler(0, Z.policy, &Z.param);
  if (ctl_send(3, CTL_REPLY, 0, 0, NULL, 0, NULL, 0, NULL, 0) < 0) return 1;
  ctl_msg m;
  if (ctl_recv(3, &m) < 0) return 0; /* the zygote is gone or dropped us */
  if (m.type != CTL_SPAWN_CELL || m.nstr < 3 || m.nfds != 4) return 1;
  /* A cell's init from here on: it outlives the zygote and auraed. */
  prctl(PR_SET_PDEATHSIG, 0);
  close(3);
  int sync = TAKE_FD(m.fds[1]);
  if (init_activate(m.str[0], Z.flags, m.fds[0], m.fds[2], m.fds[3], why, sizeof(why)) < 0) {
    if (write(sync, why, strlen(why)) < 0) return 1;
    return 1;
  }
  ctl_msg_clear(&m);
  return init_serve(sync);
}

static void spare_forget(void) {
  if (Z.sock >= 0) close(Z.sock);
  if (Z.pidfd >= 0) close(Z.pidfd);
  Z.sock = Z.pidfd = -1;
  Z.pid = 0;
  Z.ready = false;
}

/* Kills an unused spare; its SIGCHLD reaps it. */
static void spare_drop(void) {
  if (Z.pidfd >= 0) cell_pidfd_send_signal(Z.pidfd, SIGKILL);
  spare_forget();
}

static void spare_start(void) {
  if (!Z.enabled || Z.pid > 0 || Z.failures >= SPARE_MAX_FAILURES) return;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) return;
  int pidfd = -1;
  /* A spare is made while the cell that used the last one starts its
   * first executable: SCHED_IDLE (the clone inherits it until it becomes
   * an init) keeps it off the CPUs that work needs (on 2 CPUs it cost
   * RunExecutable ~0.5 ms). */
  struct sched_param idle = {0};
  sched_setscheduler(0, SCHED_IDLE, &idle);
  pid_t pid = cell_clone3(init_clone_ns_flags(Z.flags), SIGCHLD, Z.cgroup_fd, &pidfd);
  if (pid != 0) sched_setscheduler(0, Z.policy, &Z.param);
  if (pid == 0) {
    /* Nothing of ours but the socket: not auraed's socket, not the
     * signalfd, not the spare cgroup. */
    if (dup2(sv[1], 3) < 0) _exit(126);
    close_range(4, ~0U, 0);
    init_S.cloned = true;
    _exit(spare_main());
  }
  close(sv[1]);
  if (pid < 0) {
    close(sv[0]);
    Z.failures++;
    return;
  }
  Z.pid = pid;
  Z.pidfd = pidfd;
  Z.sock = sv[0];
  Z.ready = false;
}

/* CTL_SPARE_CONFIG: num[0] the CELL_NS_* flags of a default cell, str the
 * masked paths, fds[0] the spare cgroup. Replaces an earlier one. */
static void spare_configure(ctl_msg *m) {
  spare_drop();
  ctl_msg_clear(&Z.cfg);
  free(Z.masks);
  Z.enabled = false;
  Z.failures = 0;
  Z.masks = calloc(m->nstr + 1, sizeof(char *));
  unsigned flags = (unsigned)m->num[0];
  /* Only for the isolation every spare gets; a privileged or sharing cell
   * is cloned on request. */
  if (!Z.masks || m->nfds != 1 || flags != CELL_NS_ALL || !init_S.seccomp.main.filter) {
    ctl_msg_clear(m);
    return;
  }
  Z.cfg = *m;
  ctl_msg_init(m);
  Z.flags = flags;
  Z.nmasks = Z.cfg.nstr;
  for (size_t i = 0; i < Z.nmasks; i++)
    Z.masks[i] = Z.cfg.str[i];
  Z.cgroup_fd = Z.cfg.fds[0];
  Z.enabled = true;
  spare_start();
}

static bool spare_fits(const ctl_msg *m) {
  if (!Z.ready || (unsigned)m->num[0] != Z.flags || m->nstr - 3 != Z.nmasks) return false;
  for (size_t i = 0; i < Z.nmasks; i++)
    if (strcmp(m->str[3 + i], Z.masks[i]) != 0) return false;
  return true;
}

/* Hands the request to the spare; it answers "ok" (or its error) on the
 * request's sync pipe like any init. Returns its pid and pidfd. */
static int spare_take(ctl_msg *m, pid_t *ret_pid, int *ret_pidfd) {
  int r = ctl_send(Z.sock, CTL_SPAWN_CELL, m->seq, 0, m->num, 1, (const char *const *)m->str,
                   m->nstr, m->fds, 4);
  if (r < 0) {
    spare_drop();
    return r;
  }
  *ret_pid = Z.pid;
  *ret_pidfd = TAKE_FD(Z.pidfd);
  spare_forget(); /* a cell's init now: reaped when it exits */
  return 0;
}

static void spawn_cell(ctl_msg *m) {
  pid_t pid;
  int pidfd = -1, r;
  if (m->nstr < 3 || m->nfds != 4) {
    ctl_send_error(3, m->seq, -EBADMSG, "malformed cell request");
    return;
  }
  bool spare = spare_fits(m) && spare_take(m, &pid, &pidfd) == 0;
  if (!spare && (r = init_clone(m, CLONE_PARENT, &pid, &pidfd)) < 0) {
    ctl_send_error(3, m->seq, r, "clone3 the init");
    return;
  }
  int64_t num[2] = {pid, spare};
  ctl_send(3, CTL_REPLY, m->seq, 0, num, 2, NULL, 0, &pidfd, 1);
  close(pidfd);
  spare_start(); /* the next one, after the answer */
}

static void spare_message(void) {
  ctl_msg m;
  int r = ctl_recv(Z.sock, &m);
  if (r == -EAGAIN || r == -EBADMSG) return;
  if (r < 0) { /* it exited; SIGCHLD reaps it */
    close(Z.sock);
    Z.sock = -1;
    Z.ready = false;
    return;
  }
  if (m.type == CTL_REPLY && m.error == 0) {
    Z.ready = true;
    Z.failures = 0;
  }
  ctl_msg_clear(&m);
}

/* Our children: spares, used or not. */
static void reap(int sfd) {
  struct signalfd_siginfo si;
  while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
  }
  pid_t pid;
  while ((pid = waitpid(-1, NULL, WNOHANG | __WALL)) > 0) {
    if (pid != Z.pid) continue;
    if (!Z.ready) Z.failures++;
    spare_forget();
    spare_start();
  }
}

int zygote_main(void) {
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull >= 0) {
    dup2(devnull, 0);
    dup2(devnull, 1);
    dup2(devnull, 2);
    close(devnull);
  }
  for (int sig = 1; sig < NSIG; sig++)
    if (sig != SIGKILL && sig != SIGSTOP) signal(sig, SIG_DFL);
  fcntl(3, F_SETFD, FD_CLOEXEC);
  close_range(4, ~0U, 0);
  prctl(PR_SET_NAME, "aurae-zygote");
  init_S.last_cap = cell_caps_last();
  char why[256];
  if (cell_seccomp_build(&init_S.seccomp, why, sizeof(why)) < 0)
    init_S.seccomp = (cell_seccomp){0}; /* each init builds it and reports why */
  ctl_msg_init(&Z.cfg);
  Z.policy = sched_getscheduler(0);
  sched_getparam(0, &Z.param);
  /* SIGCHLD only through the signalfd (the inits we clone set their own
   * mask before they run anything). */
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_SETMASK, &chld, NULL);
  int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) return 1;
  for (;;) {
    struct pollfd p[3] = {{.fd = 3, .events = POLLIN},
                          {.fd = sfd, .events = POLLIN},
                          {.fd = Z.sock, .events = POLLIN}};
    if (poll(p, 3, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p[1].revents) reap(sfd);
    if (p[2].revents && Z.sock >= 0) spare_message();
    if (!p[0].revents) continue;
    ctl_msg m;
    int r = ctl_recv(3, &m);
    if (r == -EBADMSG || r == -EAGAIN) continue;
    if (r < 0) break; /* auraed is gone */
    if (m.type == CTL_SPARE_CONFIG)
      spare_configure(&m);
    else if (m.type == CTL_SPAWN_CELL)
      spawn_cell(&m);
    else
      ctl_send_error(3, m.seq, -EBADMSG, "unknown request");
    ctl_msg_clear(&m);
  }
  /* The unused spare goes with us, reaped, so its cgroup is empty. */
  pid_t spare = Z.pid;
  spare_drop();
  if (spare > 0) waitpid(spare, NULL, __WALL);
  return 0;
}
