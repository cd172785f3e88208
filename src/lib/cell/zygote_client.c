/* auraed's side of the zygote (zygote.c): start it, configure its spare
 * init, ask it for inits, and start it again when it died. */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cell/cgroup.h"
#include "cell/internal.h"
#include "cell/spawn.h"
#include "cleanup.h"
#include "clock.h"
#include "log.h"

/* A zygote that died is started again on the next request, at most this
 * often (one that dies at once must not cost every RunCell an exec). */
#define ZYGOTE_RESTART_MS 1000

static void forget_spare(cell_manager *m) {
  if (m->spare.sock >= 0) close(m->spare.sock);
  if (m->spare.pidfd >= 0) close(m->spare.pidfd);
  m->spare = (struct cell_spare){.sock = -1, .pidfd = -1};
}

void cell_zygote_stop(cell_manager *m) {
  if (m->zyg_fd >= 0) close(m->zyg_fd); /* EOF: the zygote exits */
  m->zyg_fd = -1;
  if (m->zyg_pidfd >= 0) {
    siginfo_t si;
    waitid(P_PIDFD, (id_t)m->zyg_pidfd, &si, WEXITED | __WALL);
    close(m->zyg_pidfd);
  }
  m->zyg_pidfd = -1;
  pthread_mutex_lock(&m->lock);
  if (m->zyg_notices >= 0) {
    cell_unwatch(m, m->zyg_notices);
    close(m->zyg_notices);
  }
  m->zyg_notices = -1;
  forget_spare(m); /* it died with the zygote */
  pthread_mutex_unlock(&m->lock);
  /* A zygote that exits removes ROOT/_spare; one that was killed cannot. */
  char dir[CELL_PATH_MAX + 8];
  snprintf(dir, sizeof(dir), "%s/" CELL_SPARE_CGROUP, m->root);
  cgroup_kill_wait(dir, 2000, NULL);
  cgroup_remove_tree(dir, NULL);
}

/* Asks the zygote to keep a spare init ready for cells with the default
 * isolation, in ROOT/_spare (zygote.c). */
static void configure_spare(cell_manager *m) {
  char dir[CELL_PATH_MAX + 8];
  snprintf(dir, sizeof(dir), "%s/" CELL_SPARE_CGROUP, m->root);
  /* A leftover of a zygote that was killed (its spare died with it). */
  cgroup_kill_wait(dir, 2000, NULL);
  cgroup_remove_tree(dir, NULL);
  _cleanup_close_ int fd = open(m->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  /* The spare's id range is reserved for it until a cell takes it. */
  pthread_mutex_lock(&m->lock);
  if (!m->spare_ids && m->ids && cell_idpool_alloc(m->ids, &m->spare_ids) < 0) m->spare_ids = 0;
  int64_t num[4] = {CELL_NS_ALL, m->spare_ids, m->scratch_mb, m->scratch_inodes};
  pthread_mutex_unlock(&m->lock);
  int r = fd < 0 ? -errno
                 : ctl_send(m->zyg_fd, CTL_SPARE_CONFIG, 0, 0, num, 4,
                            (const char *const *)m->masks, m->nmasks, &fd, 1);
  if (r < 0) log_debug("cells: no spare init: %s", strerror(-r));
}

/* Without a zygote, cells still start (the init is exec'ed per cell), only
 * slower; so a failure here is logged, not fatal. */
void cell_zygote_start(cell_manager *m) {
  m->zyg_started_ms = monotonic_ms();
  int sv[2], nv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) return;
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, nv) < 0) {
    close(sv[0]);
    close(sv[1]);
    return;
  }
  pid_t pid;
  int r = cell_spawn_zygote(m->self_exe, sv[1], nv[1], &pid, &m->zyg_pidfd);
  close(sv[1]);
  close(nv[1]);
  if (r < 0) {
    close(sv[0]);
    close(nv[0]);
    log_debug("cells: no zygote: %s", strerror(-r));
    return;
  }
  m->zyg_fd = sv[0];
  pthread_mutex_lock(&m->lock);
  m->zyg_notices = nv[0];
  m->zyg_notices_token = cell_watch(m, nv[0]);
  pthread_mutex_unlock(&m->lock);
  if (m->spare_init) configure_spare(m);
}

bool cell_zygote_notice(cell_manager *m, uint64_t token) {
  if (m->zyg_notices < 0 || token != m->zyg_notices_token) return false;
  for (;;) {
    ctl_msg msg;
    int r = ctl_recv(m->zyg_notices, &msg);
    if (r == -EAGAIN) return true;
    if (r == -EBADMSG) continue;
    if (r < 0) { /* the zygote is gone; a request finds out and cleans up */
      cell_unwatch(m, m->zyg_notices);
      return true;
    }
    if (msg.type == CTL_SPARE_READY && msg.nfds == 2 && msg.num[0] > 0) {
      /* A new spare replaces one the zygote has dropped since. */
      forget_spare(m);
      m->spare.sock = TAKE_FD(msg.fds[0]);
      m->spare.pidfd = TAKE_FD(msg.fds[1]);
      m->spare.pid = (pid_t)msg.num[0];
    } else if (msg.type == CTL_SPARE_STALE && msg.num[0] == m->spare.pid) {
      forget_spare(m); /* EOF: it exits, and the zygote makes a new one */
    }
    ctl_msg_clear(&msg);
  }
}

/* One request, one reply. -ENOTCONN when there is no zygote (any more);
 * an error reply fills err. */
static int call(cell_manager *m, uint32_t type, const int64_t *num, size_t nnum,
                const char *const *str, size_t nstr, const int *fds, size_t nfds, ctl_msg *rep,
                au_error *err) {
  if (m->zyg_fd < 0 && monotonic_ms() - m->zyg_started_ms >= ZYGOTE_RESTART_MS) {
    log_debug("cells: starting the zygote again");
    cell_zygote_start(m);
  }
  if (m->zyg_fd < 0) return -ENOTCONN;
  ctl_msg_init(rep);
  int r = ctl_send(m->zyg_fd, type, 1, 0, num, nnum, str, nstr, fds, nfds);
  if (r == -E2BIG || r == -EMSGSIZE) return r;
  if (r == 0) {
    struct pollfd p = {.fd = m->zyg_fd, .events = POLLIN};
    r = poll(&p, 1, 10000) == 1 ? ctl_recv(m->zyg_fd, rep) : -ETIMEDOUT;
  }
  if (r < 0) {
    /* The zygote died or hangs: drop it; the caller execs the init. */
    log_debug("cells: zygote gone: %s", strerror(-r));
    if (m->zyg_pidfd >= 0) cell_pidfd_send_signal(m->zyg_pidfd, SIGKILL);
    cell_zygote_stop(m);
    return -ENOTCONN;
  }
  if (rep->error < 0 || rep->nfds != 1 || rep->num[0] <= 0) {
    r = rep->error < 0 ? rep->error : -EBADMSG;
    au_error_set(err, r, "zygote: %s",
                 rep->error < 0 && rep->nstr ? rep->str[0] : "malformed reply");
    ctl_msg_clear(rep);
    return r;
  }
  return 0;
}

int cell_zygote_spawn(cell_manager *m, const char *name, const cell_spawn_req *req, pid_t *ret_pid,
                      int *ret_pidfd, au_error *err) {
  ctl_msg rep;
  int r = call(m, CTL_SPAWN_CELL, req->num, 6, req->str, req->nstr, req->fds, req->nfds, &rep, err);
  if (r < 0) return r;
  *ret_pid = (pid_t)rep.num[0];
  *ret_pidfd = TAKE_FD(rep.fds[0]);
  log_debug("cell %s: init pid %d cloned by the zygote", name, *ret_pid);
  ctl_msg_clear(&rep);
  return 0;
}

int cell_zygote_take_spare(cell_manager *m, const char *name, const int fds[4], pid_t *ret_pid,
                           int *ret_pidfd, int *ret_ctl, uint32_t *ret_ids) {
  pthread_mutex_lock(&m->lock);
  struct cell_spare sp = m->spare;
  uint32_t ids = m->spare_ids, next = 0;
  if (sp.sock >= 0 && ids) {
    m->spare = (struct cell_spare){.sock = -1, .pidfd = -1};
    /* The spare's range goes with it; the next spare gets a new one. */
    m->spare_ids = 0;
    if (m->ids && cell_idpool_alloc(m->ids, &next) == 0) m->spare_ids = next;
  }
  pthread_mutex_unlock(&m->lock);
  if (sp.sock < 0 || !ids) return -EAGAIN;
  *ret_ids = ids;
  _cleanup_close_ int sock = sp.sock, pidfd = sp.pidfd;
  /* Our control connection to the init comes with the cell: no connect
   * and accept on init.sock. */
  int cv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, cv) < 0) return -errno;
  _cleanup_close_ int ours = cv[0], theirs = cv[1];
  /* Ours does not block, as cell_connect's; the init's end blocks, as an
   * accepted one does: a full socket must hold its exit events back, not
   * drop them. */
  if (fcntl(ours, F_SETFL, O_NONBLOCK) < 0) return -errno;
  int all[5] = {fds[0], fds[1], fds[2], fds[3], theirs};
  int r = ctl_send(sock, CTL_TAKE_SPARE, 0, 0, NULL, 0, &name, 1, all, 5);
  /* Used or dead, the zygote makes the next one, with the next range. */
  int64_t num[2] = {sp.pid, next};
  if (m->zyg_fd >= 0) ctl_send(m->zyg_fd, CTL_TOOK_SPARE, 0, 0, num, 2, NULL, 0, NULL, 0);
  /* It was dropped or died since it was ready: the cell keeps the range
   * (nothing uses it now) and clones its init. */
  if (r < 0) return -EPIPE;
  cell_ctl_setup(ours);
  *ret_pid = sp.pid;
  *ret_pidfd = TAKE_FD(pidfd);
  *ret_ctl = TAKE_FD(ours);
  log_debug("cell %s: init pid %d from the spare", name, *ret_pid);
  return 0;
}

void cell_zygote_build_spare(cell_manager *m) {
  if (m->zyg_fd < 0 || !m->spare_init) return;
  pthread_mutex_lock(&m->lock);
  if (!m->spare_ids && m->ids && cell_idpool_alloc(m->ids, &m->spare_ids) < 0) m->spare_ids = 0;
  int64_t num[1] = {m->spare_ids};
  pthread_mutex_unlock(&m->lock);
  ctl_send(m->zyg_fd, CTL_BUILD_SPARE, 0, 0, num, 1, NULL, 0, NULL, 0);
}

uint32_t cell_zygote_revoke_spare_ids(cell_manager *m) {
  pthread_mutex_lock(&m->lock);
  uint32_t ids = m->spare_ids;
  m->spare_ids = 0;
  if (ids) forget_spare(m); /* EOF: a ready spare exits */
  pthread_mutex_unlock(&m->lock);
  if (!ids) return 0;
  /* The zygote drops a spare it is still making with that range and makes
   * none until BUILD_SPARE brings a new one (a cell is freed). */
  if (m->zyg_fd >= 0) configure_spare(m);
  log_debug("cells: the spare's id range %u goes to a cell", ids);
  return ids;
}
