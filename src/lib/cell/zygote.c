/* The zygote: auraed starts it once (--cell-init --zygote, fd 3 a
 * SEQPACKET socket) and asks it for every top-level cell init, so that
 * neither an exec nor a clone of the big multi-threaded daemon is on the
 * RunCell path. When auraed goes (EOF) it exits and the cells stay.
 *
 * It also keeps one spare init ready for the default isolation
 * (CTL_SPARE_CONFIG): a clone made ahead of time in the cgroup
 * ROOT/_spare, whose namespaces, mounts, /dev and lo are done. Once it is
 * ready, its socket goes to auraed (SPARE_READY on fd 4, which auraed's
 * supervisor thread reads), so that RunCell hands it the cell directly
 * (CTL_TAKE_SPARE), without a round trip through us: the spare moves
 * itself into the cell's cgroup, makes its cgroup namespace there, moves
 * into the _init leaf, sets its hostname, answers, and binds init.sock; it
 * serves auraed on a socket that came with the cell. auraed then tells us
 * (TOOK_SPARE), and we make the next one when we are idle, SPARE_REST_MS
 * later or when auraed frees a cell (BUILD_SPARE).
 *
 * cgroup v2 cannot rename a cgroup, or _spare would simply become the
 * cell's. A migration moves no memory charges and is not checked against
 * pids.max, so auraed hands the spare only cells without resource limits.
 * RunCell went from ~5 ms to ~1.2 ms (bench/cells/README.md).
 *
 * Who owns what:
 *  - Inits cloned on request are auraed's children (CLONE_PARENT), as
 *    when auraed cloned them itself.
 *  - The spare is the zygote's own child (so an unused one never becomes
 *    a zombie of auraed's) and stays that after it becomes a cell's init:
 *    the zygote reaps it when the cell is freed, and auraed, whose waitid
 *    on it answers ECHILD, treats it like an adopted init.
 *  - An unused spare never outlives the zygote: PR_SET_PDEATHSIG kills it
 *    (and before the spare has set it, EOF on its socket, still ours then,
 *    ends it). On a clean exit the zygote kills and reaps it first and
 *    removes ROOT/_spare.
 *  - A spare sees the host's mounts (and the host's IPv4 sysctl defaults
 *    and domainname) as they were when it was made, so a change of our
 *    mount table (POLLPRI on /proc/self/mountinfo, once it has been quiet
 *    for MOUNTS_QUIET_MS) retires it, as does an age of SPARE_MAX_AGE_MS;
 *    a cell made in between still gets the older view. Once auraed holds it, only
 *    auraed may let it go (it may be handing it a cell right now): we ask
 *    (SPARE_STALE), auraed closes its socket unless it has used it, and the
 *    spare exits on EOF.
 *  - A spare that fails to get ready is dropped (the next RunCell clones
 *    its init, which reports the real error); after SPARE_MAX_FAILURES in
 *    a row no more spares are made. */
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cell/cell.h"
#include "cell/init_priv.h"
#include "cell/spawn.h"
#include "cleanup.h"
#include "clock.h"

#define SPARE_MAX_FAILURES 3
#define SPARE_MAX_AGE_MS (60 * 1000)
/* After a spare is taken, the next one waits this long, or until auraed
 * says now (BUILD_SPARE: a cell is being freed). Making one costs ~3 ms of
 * CPU, ~1 ms of it in clone3 where the kernel does not preempt; made right
 * away it lands on the new cell's first executable (on 2 CPUs that cost
 * ~2 ms of RunExecutable and Wait), while cells are freed in a loop of
 * create, run, free, and a pause of this length means the loop is over. */
#define SPARE_REST_MS 20
/* A change of the host's mounts retires the spare once the mount table has
 * been quiet this long: a host that mounts all the time (container
 * runtimes, automounters) must not cost a new spare per mount. */
#define MOUNTS_QUIET_MS 100

static struct {
  /* From CTL_SPARE_CONFIG; masks point into cfg. opts.id_base is the
   * id range of the next spare (TOOK_SPARE and BUILD_SPARE bring a new
   * one; 0: none, so no spare). */
  struct ctl_spare_config cfg;
  bool enabled;
  cell_init_opts opts;
  int root_fd; /* the cells' cgroup root, cfg's */
  /* The spare, while unused (pid 0: none). */
  pid_t pid;
  int pidfd, sock;
  bool ready;    /* its socket went to auraed */
  bool retiring; /* auraed was asked to let it go */
  int64_t born_ms;
  int failures;           /* in a row */
  int64_t build_at;       /* the next spare, not before (CLOCK_MONOTONIC ms) */
  int64_t mounts_changed; /* when, while the spare has not been retired */
} Z = {.root_fd = -1, .pidfd = -1, .sock = -1};

/* The spare's life (fd 3: its socket, to the zygote and then to auraed):
 * prepared, "ready" to the zygote, then it waits for the one cell it will
 * serve. */
static int spare_main(void) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  init_set_title("(spare)");
  char why[512];
  if (init_prepare(&Z.opts, NULL, 0, why, sizeof(why)) < 0) return 1;
  ctl_out o;
  int r = ctl_empty_reply_encode(&o);
  if (r == 0) r = ctl_out_send(3, 0, &o);
  ctl_out_clear(&o);
  if (r < 0) return 1;
  ctl_msg raw;
  if (ctl_recv(3, &raw) < 0) return 0; /* the zygote is gone or dropped us */
  struct ctl_take_spare m;
  r = ctl_take_spare_decode(&raw, &m, why, sizeof(why));
  ctl_msg_clear(&raw);
  /* Nothing to answer a malformed one on: auraed's wait_ready sees EOF. */
  if (r < 0) return 1;
  /* A cell's init from here on: it outlives the zygote and auraed. */
  prctl(PR_SET_PDEATHSIG, 0);
  init_set_title(m.name);
  close(3);
  int sync = TAKE_FD(m.sync_w);
  if ((r = init_join_cgroup(m.cgroup_procs, why, sizeof(why))) < 0 ||
      (r = init_enter_cgroup(Z.opts.flags, m.leaf_procs, why, sizeof(why))) < 0 ||
      (r = init_activate(m.name, Z.opts.flags, why, sizeof(why))) < 0) {
    init_fail(sync, r, why);
    return 1;
  }
  init_adopt_client(TAKE_FD(m.ctl));
  init_listen(TAKE_FD(m.listen_fd));
  ctl_take_spare_clear(&m);
  return init_serve(sync);
}

static void spare_forget(void) {
  if (Z.sock >= 0) close(Z.sock);
  if (Z.pidfd >= 0) close(Z.pidfd);
  Z.sock = Z.pidfd = -1;
  Z.pid = 0;
  Z.ready = Z.retiring = false;
}

/* Kills an unused spare; its SIGCHLD reaps it. */
static void spare_drop(void) {
  if (Z.pidfd >= 0) cell_pidfd_send_signal(Z.pidfd, SIGKILL);
  spare_forget();
}

/* A spare too old, or with a stale view of the host's mounts: killed while
 * it is ours alone, else auraed is asked to let it go. */
static void spare_retire(void) {
  if (Z.pid == 0 || Z.retiring) return;
  if (!Z.ready) {
    spare_drop();
    return;
  }
  /* Asked once: if auraed cannot hear it, it is going away too. */
  ctl_out o;
  if (ctl_spare_stale_encode(&(struct ctl_spare_stale){.pid = Z.pid}, &o) == 0)
    ctl_out_send(4, 0, &o);
  ctl_out_clear(&o);
  Z.retiring = true;
}

/* ROOT/_spare once no spare is in it. */
static void spare_rmdir(void) { unlinkat(Z.root_fd, CELL_SPARE_CGROUP, AT_REMOVEDIR); }

static bool spare_wanted(void) {
  return Z.enabled && Z.opts.id_base && Z.pid == 0 && Z.failures < SPARE_MAX_FAILURES;
}

static bool spare_due(void) { return spare_wanted() && monotonic_ms() >= Z.build_at; }

static void spare_start(void) {
  if (mkdirat(Z.root_fd, CELL_SPARE_CGROUP, 0755) < 0 && errno != EEXIST) {
    Z.failures++;
    return;
  }
  _cleanup_close_ int cg = openat(Z.root_fd, CELL_SPARE_CGROUP, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int sv[2];
  if (cg < 0 || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0) {
    Z.failures++;
    return;
  }
  int pidfd = -1;
  pid_t pid =
      cell_clone_init(cell_ns_clone_flags(Z.opts.flags), SIGCHLD, cg, Z.opts.id_base, &pidfd);
  if (pid == 0) {
    /* Nothing of ours but the socket: not auraed's socket (our fd 3), not
     * the signalfd, not the cgroups. */
    if (dup2(sv[1], 3) < 0) _exit(126);
    close_range(4, ~0U, 0);
    /* Blocking for the spare: it waits for its cell in recv. */
    fcntl(3, F_SETFL, 0);
    init_S.cloned = true;
    init_S.zygote = false;
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
  Z.born_ms = monotonic_ms();
}

/* SPARE_CONFIG (ctlmsg.h), decoded: replaces an earlier one. */
static void spare_configure(struct ctl_spare_config *m) {
  spare_drop();
  ctl_spare_config_clear(&Z.cfg);
  Z.enabled = false;
  Z.failures = 0;
  /* Only for the isolation every spare gets; a privileged or sharing cell
   * is cloned on request. */
  if (m->flags != CELL_NS_ALL || !init_S.seccomp.main.filter) return;
  Z.cfg = *m;
  ctl_spare_config_init(m);
  Z.opts = (cell_init_opts){.flags = Z.cfg.flags,
                            .id_base = Z.cfg.id_base,
                            .scratch_mb = Z.cfg.scratch_mb,
                            .scratch_inodes = Z.cfg.scratch_inodes,
                            .masks = (char **)Z.cfg.masks};
  Z.root_fd = Z.cfg.cgroup_root;
  Z.enabled = true;
}

/* TOOK_SPARE: the spare auraed has given a cell, with its id range; the
 * range of the next one (0: none to be had now, so no spare). */
static void took_spare(const struct ctl_took_spare *m) {
  if (Z.pid > 0 && m->pid == Z.pid) spare_forget(); /* a cell's init now */
  Z.opts.id_base = m->next_id_base;
  Z.build_at = monotonic_ms() + SPARE_REST_MS;
}

static void spawn_cell(uint32_t seq, const struct ctl_spawn_cell *m) {
  pid_t pid;
  int pidfd = -1, r;
  char why[256];
  if ((r = init_clone(m, CLONE_PARENT, &pid, &pidfd, why, sizeof(why))) < 0) {
    init_reply_error(3, seq, r, why);
  } else {
    /* Our child's pid is auraed's to see (the zygote shares its pid
     * namespace): no credentials. */
    init_reply_pid(3, seq, pid, pidfd, false);
    close(pidfd);
  }
}

/* The spare says it is ready: its socket goes to auraed (fd 4), which
 * hands it a cell without us. We keep its pid and pidfd, to reap it and to
 * drop it while auraed has not used it. */
static void spare_message(void) {
  ctl_msg m;
  int r = ctl_recv(Z.sock, &m);
  if (r == -EAGAIN || r == -EBADMSG) return;
  if (r < 0) { /* it exited; SIGCHLD reaps it */
    close(Z.sock);
    Z.sock = -1;
    return;
  }
  bool ready = ctl_empty_reply_decode(&m, NULL, 0) == 0;
  ctl_msg_clear(&m);
  if (!ready) return;
  Z.failures = 0;
  ctl_out o;
  struct ctl_spare_ready rd = {.pid = Z.pid, .sock = Z.sock, .pidfd = Z.pidfd};
  r = ctl_spare_ready_encode(&rd, &o);
  if (r == 0) r = ctl_out_send(4, 0, &o);
  ctl_out_clear(&o);
  if (r < 0) {
    Z.failures++;
    spare_drop();
    return;
  }
  close(Z.sock);
  Z.sock = -1;
  Z.ready = true;
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
  }
}

/* The next spare is made when nothing is waiting for us; a spare too old
 * is retired (and made again once reaped). */
static int poll_timeout(void) {
  if (Z.mounts_changed) {
    int64_t left = Z.mounts_changed + MOUNTS_QUIET_MS - monotonic_ms();
    return left > 0 ? (int)left : 0;
  }
  if (spare_wanted()) {
    int64_t left = Z.build_at - monotonic_ms();
    return left > 0 ? (int)left : 0;
  }
  if (Z.pid == 0 || Z.retiring) return -1;
  int64_t left = Z.born_ms + SPARE_MAX_AGE_MS - monotonic_ms();
  return left > 0 ? (int)left : 0;
}

int zygote_main(int argc, char **argv) {
  init_title_area(argc, argv);
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
  fcntl(4, F_SETFD, FD_CLOEXEC);
  close_range(5, ~0U, 0);
  prctl(PR_SET_NAME, "aurae-zygote");
  prctl(PR_SET_DUMPABLE, 0);
  init_S.zygote = true;
  init_S.last_cap = cell_caps_last();
  char why[256];
  if (cell_seccomp_build(&init_S.seccomp, why, sizeof(why)) < 0)
    init_S.seccomp = (cell_seccomp){0}; /* each init builds it and reports why */
  ctl_spare_config_init(&Z.cfg);
  /* SIGCHLD only through the signalfd (the inits we clone set their own
   * mask before they run anything). */
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_SETMASK, &chld, NULL);
  int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  int mounts = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
  if (sfd < 0) return 1;
  for (;;) {
    struct pollfd p[4] = {{.fd = 3, .events = POLLIN},
                          {.fd = sfd, .events = POLLIN},
                          {.fd = Z.sock, .events = POLLIN},
                          {.fd = mounts, .events = POLLPRI}};
    int n = poll(p, 4, poll_timeout());
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (n == 0) {
      if (Z.mounts_changed && monotonic_ms() - Z.mounts_changed >= MOUNTS_QUIET_MS) {
        Z.mounts_changed = 0;
        spare_retire();
      } else if (spare_due())
        spare_start();
      else if (Z.pid && monotonic_ms() - Z.born_ms >= SPARE_MAX_AGE_MS)
        spare_retire();
      continue;
    }
    if (p[1].revents) reap(sfd);
    if (p[3].revents) Z.mounts_changed = monotonic_ms(); /* retired once quiet */
    /* reap() may have closed the spare's socket since the poll. */
    if (p[2].revents && Z.sock >= 0) spare_message();
    if (!p[0].revents) continue;
    ctl_msg m;
    int r = ctl_recv(3, &m);
    if (r == -EBADMSG || r == -EAGAIN) continue;
    if (r < 0) break; /* auraed is gone */
    char req_why[256] = "";
    uint32_t seq = m.seq;
    /* The notices have no reply: a malformed one is dropped. */
    if (m.type == CTL_SPARE_CONFIG) {
      struct ctl_spare_config x;
      if (ctl_spare_config_decode(&m, &x, NULL, 0) == 0) spare_configure(&x);
      ctl_spare_config_clear(&x);
    } else if (m.type == CTL_TOOK_SPARE) {
      struct ctl_took_spare x;
      if (ctl_took_spare_decode(&m, &x, NULL, 0) == 0) took_spare(&x);
    } else if (m.type == CTL_BUILD_SPARE) {
      struct ctl_build_spare x;
      if (ctl_build_spare_decode(&m, &x, NULL, 0) == 0) {
        if (x.id_base) Z.opts.id_base = x.id_base;
        Z.build_at = 0;
      }
    } else if (m.type == CTL_SPAWN_CELL) {
      struct ctl_spawn_cell x;
      if ((r = ctl_spawn_cell_decode(&m, &x, req_why, sizeof(req_why))) == 0)
        spawn_cell(seq, &x);
      else
        init_reply_error(3, seq, r, req_why);
      ctl_spawn_cell_clear(&x);
    } else {
      snprintf(req_why, sizeof(req_why), "unknown request %s (type %u)", ctl_type_name(m.type),
               m.type);
      init_reply_error(3, seq, -EBADMSG, req_why);
    }
    ctl_msg_clear(&m);
  }
  /* The unused spare goes with us, reaped, and so does its cgroup. */
  pid_t spare = Z.pid;
  spare_drop();
  if (spare > 0) waitpid(spare, NULL, __WALL);
  if (Z.root_fd >= 0) spare_rmdir();
  return 0;
}
