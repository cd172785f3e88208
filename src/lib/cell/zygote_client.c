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

/* The id range kept for the zygote's next spare, taken from the pool when
 * there is none yet (0: the pool is full; m->lock held). */
static void spare_ids_reserve(cell_manager *m) {
  if (!m->spare_ids && m->ids && cell_idpool_alloc(m->ids, &m->spare_ids) < 0) m->spare_ids = 0;
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
  spare_ids_reserve(m);
  struct ctl_spare_config cfg = {.flags = CELL_NS_ALL,
                                 .id_base = m->spare_ids,
                                 .scratch_mb = m->scratch_mb,
                                 .scratch_inodes = m->scratch_inodes,
                                 .masks = (char *const *)m->masks,
                                 .nmasks = m->nmasks,
                                 .cgroup_root = fd};
  pthread_mutex_unlock(&m->lock);
  ctl_out o = {0};
  int r = fd < 0 ? -errno : ctl_spare_config_encode(&cfg, &o);
  if (r == 0) r = ctl_out_send(m->zyg_fd, 0, &o);
  ctl_out_clear(&o);
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
    char why[256] = "";
    if (msg.type == CTL_SPARE_READY) {
      struct ctl_spare_ready rd;
      if ((r = ctl_spare_ready_decode(&msg, &rd, why, sizeof(why))) == 0) {
        /* A new spare replaces one the zygote has dropped since. */
        forget_spare(m);
        m->spare.sock = TAKE_FD(rd.sock);
        m->spare.pidfd = TAKE_FD(rd.pidfd);
        m->spare.pid = rd.pid;
      }
      ctl_spare_ready_clear(&rd);
    } else if (msg.type == CTL_SPARE_STALE) {
      struct ctl_spare_stale st;
      if ((r = ctl_spare_stale_decode(&msg, &st, why, sizeof(why))) == 0 && st.pid == m->spare.pid)
        forget_spare(m); /* EOF: it exits, and the zygote makes a new one */
    } else {
      r = -EBADMSG;
      snprintf(why, sizeof(why), "%s (type %u) is no notice", ctl_type_name(msg.type), msg.type);
    }
    if (r < 0) log_debug("cells: dropped a zygote notice: %s", why);
    ctl_msg_clear(&msg);
  }
}

/* One request, one spawn reply. -ENOTCONN when there is no zygote (any
 * more); an error reply, or one that does not decode, fills err. */
static int call(cell_manager *m, const ctl_out *req, struct ctl_spawn_reply *ret, au_error *err) {
  ctl_spawn_reply_init(ret);
  if (m->zyg_fd < 0 && monotonic_ms() - m->zyg_started_ms >= ZYGOTE_RESTART_MS) {
    log_debug("cells: starting the zygote again");
    cell_zygote_start(m);
  }
  if (m->zyg_fd < 0) return -ENOTCONN;
  ctl_msg raw;
  ctl_msg_init(&raw);
  int r = ctl_out_send(m->zyg_fd, 1, req);
  if (r == -E2BIG || r == -EMSGSIZE) return r;
  if (r == 0) {
    struct pollfd p = {.fd = m->zyg_fd, .events = POLLIN};
    r = poll(&p, 1, 10000) == 1 ? ctl_recv(m->zyg_fd, &raw) : -ETIMEDOUT;
  }
  if (r < 0) {
    /* The zygote died or hangs: drop it; the caller execs the init. */
    log_debug("cells: zygote gone: %s", strerror(-r));
    if (m->zyg_pidfd >= 0) cell_pidfd_send_signal(m->zyg_pidfd, SIGKILL);
    cell_zygote_stop(m);
    return -ENOTCONN;
  }
  char why[CTL_ERROR_MSG_MAX + 64];
  r = ctl_spawn_reply_decode(&raw, ret, why, sizeof(why));
  ctl_msg_clear(&raw);
  if (r < 0) return au_error_set(err, r, "zygote: %s", why);
  return 0;
}

int cell_zygote_spawn(cell_manager *m, const char *name, const ctl_out *req, pid_t *ret_pid,
                      int *ret_pidfd, au_error *err) {
  struct ctl_spawn_reply rep;
  int r = call(m, req, &rep, err);
  if (r < 0) return r;
  *ret_pid = rep.pid;
  *ret_pidfd = TAKE_FD(rep.pidfd);
  log_debug("cell %s: init pid %d cloned by the zygote", name, *ret_pid);
  ctl_spawn_reply_clear(&rep);
  return 0;
}

int cell_zygote_take_spare(cell_manager *m, const char *name, const int fds[4], pid_t *ret_pid,
                           int *ret_pidfd, int *ret_ctl, uint32_t *ret_ids) {
  /* Our control connection to the init comes with the cell: no connect
   * and accept on init.sock. Made before the spare and its range are
   * taken, so that nothing can fail between taking them and telling the
   * zygote. */
  int cv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, cv) < 0) return -EAGAIN;
  _cleanup_close_ int ours = cv[0], theirs = cv[1];
  /* Ours does not block, as cell_connect's; the init's end blocks, as an
   * accepted one does: a full socket must hold its exit events back, not
   * drop them. */
  if (fcntl(ours, F_SETFL, O_NONBLOCK) < 0) return -EAGAIN;
  pthread_mutex_lock(&m->lock);
  struct cell_spare sp = m->spare;
  uint32_t ids = m->spare_ids, next = 0;
  if (sp.sock >= 0 && ids) {
    m->spare = (struct cell_spare){.sock = -1, .pidfd = -1};
    /* The spare's range goes with it; the next spare gets a new one. */
    m->spare_ids = 0;
    spare_ids_reserve(m);
    next = m->spare_ids;
  }
  pthread_mutex_unlock(&m->lock);
  if (sp.sock < 0 || !ids) return -EAGAIN;
  *ret_ids = ids;
  _cleanup_close_ int sock = sp.sock, pidfd = sp.pidfd;
  struct ctl_take_spare take = {.name = name,
                                .cgroup_procs = fds[0],
                                .sync_w = fds[1],
                                .leaf_procs = fds[2],
                                .listen_fd = fds[3],
                                .ctl = theirs};
  ctl_out o;
  int r = ctl_take_spare_encode(&take, &o);
  if (r == 0) r = ctl_out_send(sock, 0, &o);
  ctl_out_clear(&o);
  /* Used or dead, the zygote makes the next one, with the next range. */
  if (m->zyg_fd >= 0 &&
      ctl_took_spare_encode(&(struct ctl_took_spare){.pid = sp.pid, .next_id_base = next}, &o) == 0)
    ctl_out_send(m->zyg_fd, 0, &o);
  ctl_out_clear(&o);
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
  spare_ids_reserve(m);
  struct ctl_build_spare b = {.id_base = m->spare_ids};
  pthread_mutex_unlock(&m->lock);
  ctl_out o;
  if (ctl_build_spare_encode(&b, &o) == 0) ctl_out_send(m->zyg_fd, 0, &o);
  ctl_out_clear(&o);
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
