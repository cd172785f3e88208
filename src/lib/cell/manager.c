/* The cell manager: registry of cells and executables, the supervisor
 * thread (control sockets of the cell inits and output pipes, one epoll),
 * and re-adoption of what a previous auraed left running. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cell/cgroup.h"
#include "cell/ctlmsg.h"
#include "cell/internal.h"
#include "cell/spawn.h"
#include "cleanup.h"
#include "log.h"

#define WAKE_TOKEN 1

int64_t cell_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

cell *cell_find(cell_manager *m, const char *name) {
  for (cell *c = m->cells; c; c = c->next)
    if (strcmp(c->name, name) == 0) return c;
  return NULL;
}

exe *exe_find(cell *c, const char *name) {
  for (exe *e = c->exes; e; e = e->next)
    if (strcmp(e->name, name) == 0) return e;
  return NULL;
}

void exe_destroy(exe *e) {
  for (int i = 0; i < 2; i++) {
    if (e->out[i].fd >= 0) close(e->out[i].fd);
    byte_ring_free(&e->out[i].ring);
  }
  if (e->pidfd >= 0) close(e->pidfd);
  if (e->argv) {
    for (char **a = e->argv; *a; a++)
      free(*a);
    free(e->argv);
  }
  free(e);
}

void exe_unref(cell_manager *m, exe *e) {
  (void)m;
  if (--e->refs == 0 && e->unlinked) exe_destroy(e);
}

uint64_t cell_watch(cell_manager *m, int fd) {
  uint64_t token = ++m->next_token;
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = token};
  if (epoll_ctl(m->ep, EPOLL_CTL_ADD, fd, &ev) < 0) return 0;
  return token;
}

void cell_unwatch(cell_manager *m, int fd) {
  if (fd >= 0) epoll_ctl(m->ep, EPOLL_CTL_DEL, fd, NULL);
}

void exe_unlink(cell_manager *m, exe *e) {
  if (e->unlinked) return;
  if (e->cell) {
    for (exe **pp = &e->cell->exes; *pp; pp = &(*pp)->next)
      if (*pp == e) {
        *pp = e->next;
        break;
      }
  }
  e->cell = NULL;
  e->unlinked = true;
  for (int i = 0; i < 2; i++) {
    cell_unwatch(m, e->out[i].fd);
    if (e->out[i].fd >= 0) close(e->out[i].fd);
    e->out[i].fd = -1;
    e->out[i].eof = true;
  }
  pthread_cond_broadcast(&m->cond);
  e->refs++;
  exe_unref(m, e);
}

void exe_stream_drain(cell_manager *m, exe *e, int i) {
  exe_stream *s = &e->out[i];
  char buf[65536];
  for (int rounds = 0; s->fd >= 0 && rounds < 64; rounds++) {
    ssize_t n = read(s->fd, buf, sizeof(buf));
    if (n > 0) {
      byte_ring_append(&s->ring, buf, (size_t)n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    /* EOF or error: every writer is gone. */
    cell_unwatch(m, s->fd);
    close(s->fd);
    s->fd = -1;
    s->eof = true;
    return;
  }
}

void exe_set_exit(exe *e, int wstatus, int64_t end_ns) {
  e->wstatus = wstatus;
  e->ended_ns = end_ns;
  e->state = WIFSIGNALED(wstatus) ? EXE_KILLED : EXE_EXITED;
  if (e->pidfd >= 0) {
    close(e->pidfd);
    e->pidfd = -1;
  }
}

static bool reaped(int pidfd) {
  siginfo_t si = {0};
  if (waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED | WNOHANG | __WALL) < 0)
    return errno != EINTR; /* ECHILD: not ours to reap (the zygote's) */
  return si.si_pid != 0;
}

void cell_reap_init(cell_manager *m, cell *c) {
  if (c->init_pidfd < 0) return;
  int fd = TAKE_FD(c->init_pidfd);
  /* Its cgroup was killed already; a process stuck in D state can still
   * hold it up, and op_lock must not wait on that. */
  for (int i = 0; i < 10 && !reaped(fd); i++) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    poll(&p, 1, 50);
  }
  if (reaped(fd)) {
    close(fd);
    return;
  }
  log_debug("cell %s: init not gone yet, reaping it later", c->name);
  pthread_mutex_lock(&m->lock);
  struct cell_orphan *o = realloc(m->orphans, (m->norphans + 1) * sizeof(*o));
  uint64_t token = o ? cell_watch(m, fd) : 0;
  if (o) m->orphans = o;
  if (token) {
    m->orphans[m->norphans].pidfd = fd;
    m->orphans[m->norphans].token = token;
    m->norphans++;
  } else {
    close(fd); /* a zombie until auraed exits; nothing blocks on it */
  }
  pthread_mutex_unlock(&m->lock);
}

/* An orphaned init's pidfd became readable (m->lock held). */
static bool handle_orphan(cell_manager *m, uint64_t token) {
  for (size_t i = 0; i < m->norphans; i++) {
    if (m->orphans[i].token != token) continue;
    int fd = m->orphans[i].pidfd;
    if (reaped(fd)) {
      cell_unwatch(m, fd);
      close(fd);
      m->orphans[i] = m->orphans[--m->norphans];
    }
    return true;
  }
  return false;
}

/* A packet from a cell init (m->lock held). */
static void handle_ctl(cell_manager *m, cell *c) {
  for (;;) {
    ctl_msg msg;
    int r = ctl_recv(c->ctl, &msg);
    if (r == -EAGAIN) return;
    /* A malformed or oversized packet was consumed by the recv: drop just
     * that one. Out of memory: the packet is still queued, so level-
     * triggered epoll brings us back to it. Neither means the init is
     * gone; only EOF (-EPIPE) or a connection error does. */
    if (r == -EBADMSG) {
      log_debug("cell %s: dropped a malformed packet from the init", c->name);
      continue;
    }
    if (r == -ENOMEM || r == -ENOBUFS) return;
    if (r < 0) {
      log_debug("cell %s: init connection closed: %s", c->name, strerror(-r));
      cell_unwatch(m, c->ctl);
      close(c->ctl);
      c->ctl = -1;
      c->init_dead = true;
      return;
    }
    if (msg.type == CTL_REPLY && msg.seq == c->want_seq && !c->have_reply) {
      c->reply = msg;
      c->have_reply = true;
      continue; /* owned by the waiting request now */
    }
    if (msg.type == CTL_EXIT_EVENT) {
      struct ctl_exit_event ev;
      char why[256];
      if (ctl_exit_event_decode(&msg, &ev, why, sizeof(why)) < 0) {
        log_debug("cell %s: dropped an exit event: %s", c->name, why);
      } else {
        exe *e = exe_find(c, ev.name);
        if (e && (e->state == EXE_RUNNING || e->state == EXE_STARTING)) {
          /* The process is gone, so what it wrote is in the pipes now:
           * take it before anyone sees the exit, so a follower gets all
           * of it. */
          exe_stream_drain(m, e, 0);
          exe_stream_drain(m, e, 1);
          exe_set_exit(e, ev.wstatus, ev.end_ns);
        }
      }
      ctl_exit_event_clear(&ev);
    }
    ctl_msg_clear(&msg);
  }
}

static void *supervisor(void *arg) {
  cell_manager *m = arg;
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, NULL);
  for (;;) {
    struct epoll_event evs[32];
    int n = epoll_wait(m->ep, evs, 32, -1);
    if (n < 0 && errno != EINTR) break;
    pthread_mutex_lock(&m->lock);
    if (m->stop) {
      pthread_mutex_unlock(&m->lock);
      break;
    }
    for (int i = 0; i < n; i++) {
      uint64_t t = evs[i].data.u64;
      if (t == WAKE_TOKEN) {
        uint64_t v;
        if (read(m->wake, &v, sizeof(v)) < 0) {
        }
        continue;
      }
      bool found = handle_orphan(m, t) || cell_zygote_notice(m, t);
      for (cell *c = m->cells; c && !found; c = c->next) {
        if (c->ctl >= 0 && c->ctl_token == t) {
          handle_ctl(m, c);
          found = true;
          break;
        }
        for (exe *e = c->exes; e && !found; e = e->next)
          for (int s = 0; s < 2; s++)
            if (e->out[s].fd >= 0 && e->out[s].token == t) {
              exe_stream_drain(m, e, s);
              found = true;
              break;
            }
      }
    }
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
  }
  return NULL;
}

/* Sends one request to c's init on FD, waiting for room while its socket
 * is full (at most ~10 s). */
static int send_to_init(cell *c, int fd, uint32_t seq, const ctl_out *o, au_error *err) {
  int r;
  for (int tries = 0;; tries++) {
    r = ctl_out_send(fd, seq, o);
    if (r != -EAGAIN || tries > 100) break;
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    poll(&p, 1, 100);
  }
  if (r == -E2BIG || r == -EMSGSIZE)
    return au_error_set(err, -EINVAL, "request too large for cell %s", c->name);
  if (r < 0) return au_error_errno(err, r, "cell %s: send to init", c->name);
  return 0;
}

/* An error reply becomes err, {errno, message} as the init sent them
 * (ctl_error_reply_decode checks both), and is cleared. */
static int reply_status(ctl_msg *reply, au_error *err) {
  if (reply->error == 0) return 0;
  char why[CTL_ERROR_MSG_MAX + 64];
  struct ctl_error e;
  int r = ctl_error_reply_decode(reply, &e, why, sizeof(why));
  if (r == 0) {
    r = e.error;
    au_error_set(err, r, "%s", e.message);
  } else {
    au_error_set(err, r, "%s", why);
  }
  ctl_error_reply_clear(&e);
  ctl_msg_clear(reply);
  return r;
}

int cell_request(cell_manager *m, cell *c, const ctl_out *req, ctl_msg *reply, au_error *err) {
  pthread_mutex_lock(&m->lock);
  if (c->init_dead || c->ctl < 0) {
    pthread_mutex_unlock(&m->lock);
    return au_error_set(err, -ENODEV, "cell %s: its init is gone", c->name);
  }
  uint32_t seq = ++m->next_seq;
  if (seq == 0) seq = ++m->next_seq;
  c->want_seq = seq;
  c->have_reply = false;
  int fd = c->ctl;
  pthread_mutex_unlock(&m->lock);

  int r = send_to_init(c, fd, seq, req, err);
  if (r < 0) {
    pthread_mutex_lock(&m->lock);
    c->want_seq = 0;
    pthread_mutex_unlock(&m->lock);
    return r;
  }
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += 10;
  pthread_mutex_lock(&m->lock);
  while (!c->have_reply && !c->init_dead && r == 0)
    if (pthread_cond_timedwait(&m->cond, &m->lock, &dl) == ETIMEDOUT) r = -ETIMEDOUT;
  bool have = c->have_reply;
  if (have) {
    *reply = c->reply; /* ownership moves to the caller */
    ctl_msg_init(&c->reply);
  }
  c->have_reply = false;
  c->want_seq = 0;
  pthread_mutex_unlock(&m->lock);
  if (!have) {
    if (r == -ETIMEDOUT)
      return au_error_set(err, -ETIMEDOUT, "cell %s: init did not answer", c->name);
    return au_error_set(err, -ENODEV, "cell %s: its init is gone", c->name);
  }
  return reply_status(reply, err);
}

/* A request that does not encode is too large (or has no room left). */
static int encode_status(cell *c, int r, au_error *err) {
  if (r == -ENOMEM) return au_error_set(err, r, "out of memory");
  return au_error_set(err, -EINVAL, "request too large for cell %s", c->name);
}

int cell_request_spawn_exe(cell_manager *m, cell *c, struct ctl_spawn_exe *req,
                           void (*busy)(void *), void *busy_arg, ctl_msg *reply, au_error *err) {
  ctl_out o;
  int sv[2], r;
  req->reply_fd = -1;
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
    if ((r = ctl_spawn_exe_encode(req, &o)) < 0) return encode_status(c, r, err);
    r = cell_request(m, c, &o, reply, err);
    ctl_out_clear(&o);
    return r;
  }
  _cleanup_close_ int mine = sv[0];
  int one = 1;
  setsockopt(mine, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one));
  req->reply_fd = sv[1];
  r = ctl_spawn_exe_encode(req, &o);
  req->reply_fd = -1;
  if (r < 0) {
    close(sv[1]);
    return encode_status(c, r, err);
  }
  pthread_mutex_lock(&m->lock);
  int fd = c->init_dead ? -1 : c->ctl;
  pthread_mutex_unlock(&m->lock);
  r = fd < 0 ? au_error_set(err, -ENODEV, "cell %s: its init is gone", c->name)
             : send_to_init(c, fd, 1, &o, err);
  ctl_out_clear(&o);
  close(sv[1]); /* the init holds the other end until it has answered */
  if (r < 0) return r;
  if (busy) busy(busy_arg);
  struct pollfd p = {.fd = mine, .events = POLLIN};
  do
    r = poll(&p, 1, 10000);
  while (r < 0 && errno == EINTR);
  if (r == 0) return au_error_set(err, -ETIMEDOUT, "cell %s: init did not answer", c->name);
  if ((r = ctl_recv(mine, reply)) < 0)
    return au_error_set(err, -ENODEV, "cell %s: its init is gone", c->name);
  return reply_status(reply, err);
}

int cell_send_oneway(cell_manager *m, cell *c, const ctl_out *msg) {
  pthread_mutex_lock(&m->lock);
  int fd = c->ctl;
  pthread_mutex_unlock(&m->lock);
  if (fd < 0) return -ENODEV;
  return ctl_out_send(fd, 0, msg);
}

int cell_connect(cell *c, au_error *err) {
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return au_error_errno(err, -errno, "socket");
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/init.sock", c->statedir_fd);
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
    int e = -errno;
    close(fd);
    return au_error_errno(err, e, "connect to the init of cell %s", c->name);
  }
  cell_ctl_setup(fd);
  return fd;
}

int cell_listen_socket(cell *c, au_error *err) {
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) return au_error_errno(err, -errno, "socket");
  /* Through the directory's fd: a nested state dir's path can be longer
   * than sun_path allows. Root's and 0700: only auraed connects. */
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/init.sock", c->statedir_fd);
  unlink(sa.sun_path);
  if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
      fchmodat(c->statedir_fd, "init.sock", 0600, 0) < 0 || listen(fd, 4) < 0) {
    int e = -errno;
    close(fd);
    return au_error_errno(err, e, "cell %s: init.sock", c->name);
  }
  return fd;
}

void cell_ctl_setup(int fd) {
  int sz = CTL_MAX_MSG * 2, one = 1;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
  /* Replies to spawn requests carry the new process's pid as credentials. */
  setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one));
}

static int rm_rf_at(int at, const char *name) {
  int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd >= 0) {
    DIR *d = fdopendir(fd);
    if (d) {
      struct dirent *de;
      while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) rm_rf_at(dirfd(d), de->d_name);
      closedir(d);
    } else {
      close(fd);
    }
    return unlinkat(at, name, AT_REMOVEDIR);
  }
  return unlinkat(at, name, 0);
}

void cell_remove_state(const char *dir) { rm_rf_at(AT_FDCWD, dir); }

int cell_forget_request(cell_manager *m, cell *c, const char *name, au_error *err) {
  ctl_out o;
  int r = ctl_forget_encode(&(struct ctl_forget){.name = name}, &o);
  if (r < 0) {
    ctl_out_clear(&o);
    return encode_status(c, r, err);
  }
  ctl_msg raw;
  r = cell_request(m, c, &o, &raw, err);
  ctl_out_clear(&o);
  if (r < 0) return r;
  char why[256];
  if ((r = ctl_empty_reply_decode(&raw, why, sizeof(why))) < 0)
    au_error_set(err, r, "cell %s: forget %s: %s", c->name, name, why);
  ctl_msg_clear(&raw);
  return r;
}

void cell_forget_exe(cell_manager *m, cell *c, const char *name) {
  au_error err = {0};
  if (cell_forget_request(m, c, name, &err) < 0)
    log_debug("cell %s: forget %s: %s", c->name, name, err.msg);
}

/* ------------------------------------------------------------- adoption */

void free_cell_struct(cell *c) {
  cell_binds_free(c->binds, c->nbinds);
  if (c->ctl >= 0) close(c->ctl);
  if (c->statedir_fd >= 0) close(c->statedir_fd);
  if (c->init_pidfd >= 0) close(c->init_pidfd);
  ctl_msg_clear(&c->reply);
  free(c);
}

/* Adopt the executables of an adopted cell from its _exe/ state. */
static void adopt_exes(cell_manager *m, cell *c) {
  char dir[CELL_PATH_MAX + 8];
  snprintf(dir, sizeof(dir), "%s/_exe", c->statedir);
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *de;
  while ((de = readdir(d))) {
    size_t l = strlen(de->d_name);
    if (l < 6 || strcmp(de->d_name + l - 5, ".json") != 0) continue;
    char path[CELL_PATH_MAX + 300];
    snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
    exe *e = calloc(1, sizeof(*e));
    if (!e) break;
    e->pidfd = -1;
    e->out[0].fd = e->out[1].fd = -1;
    au_error err = {0};
    if (state_read_exe(path, e, &err) < 0) {
      log_debug("cell %s: drop bad executable state: %s", c->name, err.msg);
      unlink(path);
      exe_destroy(e);
      continue;
    }
    snprintf(e->cell_name, sizeof(e->cell_name), "%s", c->name);
    if (snprintf(e->leaf, sizeof(e->leaf), "%s/_exe.%s", c->cgdir, e->name) >=
        (int)sizeof(e->leaf)) {
      exe_destroy(e);
      continue;
    }
    size_t lim = e->limit ? e->limit : CELL_OUTPUT_DEFAULT;
    if (byte_ring_init(&e->out[0].ring, lim) < 0 || byte_ring_init(&e->out[1].ring, lim) < 0) {
      exe_destroy(e);
      continue;
    }
    /* Listed (as STARTING) before the QUERY, like exe_run does: the control
     * socket is already watched, so an exit event that arrives between the
     * init's "running" reply and our bookkeeping must find it. */
    pthread_mutex_lock(&m->lock);
    e->state = EXE_STARTING;
    e->refs = 1;
    e->cell = c;
    e->next = c->exes;
    c->exes = e;
    pthread_mutex_unlock(&m->lock);
    ctl_out o;
    ctl_msg raw;
    struct ctl_query_reply rep;
    ctl_query_reply_init(&rep);
    int r = ctl_query_encode(&(struct ctl_query){.name = e->name}, &o);
    r = r < 0 ? encode_status(c, r, &err) : cell_request(m, c, &o, &raw, &err);
    ctl_out_clear(&o);
    if (r == 0) {
      char why[256];
      if ((r = ctl_query_reply_decode(&raw, &rep, why, sizeof(why))) < 0)
        au_error_set(&err, r, "%s", why);
      ctl_msg_clear(&raw);
    }
    if (r < 0) {
      log_debug("cell %s: executable %s is gone: %s", c->name, e->name, err.msg);
      unlink(path);
      cgroup_kill_wait(e->leaf, 2000, NULL);
      cgroup_remove_tree(e->leaf, NULL);
      pthread_mutex_lock(&m->lock);
      exe_unlink(m, e);
      exe_unref(m, e);
      pthread_mutex_unlock(&m->lock);
      continue;
    }
    /* Output written before the restart lived in the old auraed's memory;
     * from now on it is captured again from the same pipes. */
    pthread_mutex_lock(&m->lock);
    /* The state file is written before the spawn's answer: the pids come
     * from the init. */
    if (!e->cell_pid) e->cell_pid = rep.cell_pid;
    if (!e->host_pid) e->host_pid = rep.host_pid;
    /* auraed died before its HOST_PID note: a live process still says. */
    if (!e->host_pid && rep.pidfd >= 0) {
      pid_t p = cell_pidfd_pid(rep.pidfd);
      if (p > 0) e->host_pid = p;
    }
    e->output_lost = true;
    e->out[0].fd = TAKE_FD(rep.out_r);
    e->out[1].fd = TAKE_FD(rep.err_r);
    for (int i = 0; i < 2; i++) {
      fcntl(e->out[i].fd, F_SETFL, O_NONBLOCK);
      e->out[i].token = cell_watch(m, e->out[i].fd);
    }
    if (e->state != EXE_STARTING) {
      /* Its exit event overtook the reply: already final. */
    } else if (rep.running) {
      e->state = EXE_RUNNING;
      e->pidfd = TAKE_FD(rep.pidfd);
    } else {
      exe_set_exit(e, rep.wstatus, rep.end_ns);
    }
    e->refs--;
    pthread_mutex_unlock(&m->lock);
    ctl_query_reply_clear(&rep);
  }
  closedir(d);
}

static void drop_dead_cell(cell_manager *m, const cell *c, const char *statedir, const char *name) {
  log_debug("cell %s: init gone, cleaning up", name);
  if (c && c->cgdir[0] && strncmp(c->cgdir, m->root, strlen(m->root)) == 0) {
    /* Processes that outlive the kill (stuck in D state) still run with
     * the cell's ids: the range stays taken until auraed restarts. */
    if ((cgroup_kill_wait(c->cgdir, 2000, NULL) < 0 || cgroup_remove_tree(c->cgdir, NULL) < 0) &&
        c->owns_ids && m->ids) {
      log_debug("cell %s: its cgroup does not empty; ids from %u stay taken", name, c->id_base);
      pthread_mutex_lock(&m->lock);
      cell_idpool_reserve_span(m->ids, c->id_base);
      pthread_mutex_unlock(&m->lock);
    }
  }
  cell_remove_state(statedir);
}

/* Depth-first over state dirs: parents are adopted before children. */
static void adopt_dir(cell_manager *m, const char *dir, size_t *count) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (de->d_name[0] == '.' || de->d_name[0] == '_' || de->d_type != DT_DIR) continue;
    char sub[CELL_PATH_MAX];
    if ((size_t)snprintf(sub, sizeof(sub), "%s/%s", dir, de->d_name) >= sizeof(sub)) continue;
    cell *c = calloc(1, sizeof(*c));
    if (!c) break;
    c->ctl = c->statedir_fd = c->init_pidfd = -1;
    ctl_msg_init(&c->reply);
    au_error err = {0};
    if (state_read_cell(sub, c, &err) < 0 || strncmp(c->cgdir, m->root, strlen(m->root)) != 0) {
      drop_dead_cell(m, NULL, sub, de->d_name);
      free_cell_struct(c);
      continue;
    }
    c->statedir_fd = open(sub, O_PATH | O_DIRECTORY | O_CLOEXEC);
    int fd = c->statedir_fd >= 0 ? cell_connect(c, &err) : -1;
    if (fd < 0) {
      drop_dead_cell(m, c, sub, c->name);
      free_cell_struct(c);
      continue;
    }
    pthread_mutex_lock(&m->lock);
    /* Its range stays its own: no new cell may get it while it lives. */
    if (c->owns_ids && (!m->ids || cell_idpool_reserve_span(m->ids, c->id_base) < 0))
      log_debug("cell %s: its ids from %u are outside the configured pool or taken", c->name,
                c->id_base);
    c->ctl = fd;
    c->ctl_token = cell_watch(m, fd);
    c->next = m->cells;
    m->cells = c;
    pthread_mutex_unlock(&m->lock);
    (*count)++;
    adopt_exes(m, c);
    adopt_dir(m, sub, count);
  }
  closedir(d);
}

/* cgroups under ROOT that no adopted cell owns are leftovers of a crash in
 * the middle of a request: kill and remove them. */
static void sweep_cgroups(cell_manager *m, const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (de->d_type != DT_DIR || de->d_name[0] == '.') continue;
    char sub[CELL_PATH_MAX];
    if ((size_t)snprintf(sub, sizeof(sub), "%s/%s", dir, de->d_name) >= sizeof(sub)) continue;
    bool owned = false;
    cell *exe_owner = NULL; /* the cell of a stray _exe.NAME leaf */
    bool is_leaf = de->d_name[0] == '_';
    /* Top-level "_x" directories belong to other subsystems (VMs use
     * ROOT/_vms); cells never start with '_'. */
    if (is_leaf && strcmp(dir, m->root) == 0) continue;
    for (cell *c = m->cells; c; c = c->next) {
      if (strcmp(c->cgdir, sub) == 0) owned = true;
      if (is_leaf && strcmp(c->cgdir, dir) == 0) {
        if (strcmp(de->d_name, "_init") == 0)
          owned = true;
        else if (strncmp(de->d_name, "_exe.", 5) == 0) {
          if (exe_find(c, de->d_name + 5))
            owned = true;
          else
            exe_owner = c;
        }
      }
    }
    if (!owned) {
      log_debug("cgroup: removing stray %s", sub);
      cgroup_kill_wait(sub, 2000, NULL);
      cgroup_remove_tree(sub, NULL);
      /* A crash between the init's spawn and our state file leaves the
       * init holding the name: without this every later RunExecutable of
       * that name fails with "already exists". */
      if (exe_owner) cell_forget_exe(m, exe_owner, de->d_name + 5);
    } else if (!is_leaf) {
      sweep_cgroups(m, sub);
    }
  }
  closedir(d);
}

static void default_root_name(const cell_config *cfg, char *buf, size_t size) {
  const char *env = getenv("AURAE_CGROUP_ROOT");
  if (cfg->cgroup_root && *cfg->cgroup_root) {
    snprintf(buf, size, "%s", cfg->cgroup_root);
  } else if (env && *env) {
    snprintf(buf, size, "%s", env);
  } else if (strcmp(cfg->runtime_dir, "/run/aurae") == 0) {
    snprintf(buf, size, "aurae");
  } else {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *p = cfg->runtime_dir; *p; p++)
      h = (h ^ (uint8_t)*p) * 16777619u;
    snprintf(buf, size, "aurae-%08x", h);
  }
}

int cell_manager_open(const cell_config *cfg, cell_manager **ret, size_t *ret_adopted,
                      au_error *err) {
  if (!cfg->runtime_dir || !cfg->self_exe)
    return au_error_set(err, -EINVAL, "cells: runtime dir and self exe are required");
  cell_manager *m = calloc(1, sizeof(*m));
  if (!m) return au_error_set(err, -ENOMEM, "out of memory");
  pthread_mutex_init(&m->lock, NULL);
  pthread_mutex_init(&m->op_lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_cond_init(&m->cond, &ca);
  m->ep = m->wake = m->zyg_fd = m->zyg_pidfd = m->zyg_notices = m->devprog = -1;
  m->spare = (struct cell_spare){.sock = -1, .pidfd = -1};
  m->next_token = WAKE_TOKEN;
  m->spare_init = !cfg->no_spare_init;
  m->scratch_mb = cfg->scratch_mb ? cfg->scratch_mb : 64;
  m->scratch_inodes = cfg->scratch_inodes ? cfg->scratch_inodes : 16384;
  int r;
  default_root_name(cfg, m->root_name, sizeof(m->root_name));
  if (strchr(m->root_name, '/') || m->root_name[0] == '.') {
    r = au_error_set(err, -EINVAL, "cells: cgroup root \"%s\" must be one directory name",
                     m->root_name);
    goto fail;
  }
  /* Prefer the small aurae-cell-init next to auraed (fast to exec); else
   * auraed itself in its --cell-init mode. */
  snprintf(m->self_exe, sizeof(m->self_exe), "%s", cfg->self_exe);
  char *slash = strrchr(m->self_exe, '/');
  if (slash) {
    char cand[CELL_PATH_MAX + 32];
    snprintf(cand, sizeof(cand), "%.*s/aurae-cell-init", (int)(slash - m->self_exe), m->self_exe);
    if (access(cand, X_OK) == 0 && strlen(cand) < sizeof(m->self_exe))
      memcpy(m->self_exe, cand, strlen(cand) + 1);
  }
  while (cfg->masked_paths && cfg->masked_paths[m->nmasks])
    m->nmasks++;
  m->masks = calloc(m->nmasks + 1, sizeof(char *));
  bool oom = !m->masks;
  for (size_t i = 0; !oom && i < m->nmasks; i++)
    oom = !(m->masks[i] = strdup(cfg->masked_paths[i]));
  if (oom) {
    r = au_error_set(err, -ENOMEM, "out of memory");
    goto fail;
  }
  if ((r = cell_idpool_new(cfg->id_pool_start ? cfg->id_pool_start : CELL_IDPOOL_DEFAULT_START,
                           cfg->id_pool_cells ? cfg->id_pool_cells : CELL_IDPOOL_DEFAULT_CELLS,
                           &m->ids, err)) < 0)
    goto fail;
  if ((r = cgroup_find_mount(m->mount, sizeof(m->mount), err)) < 0) goto fail;
  if (snprintf(m->root, sizeof(m->root), "%s/%s", m->mount, m->root_name) >= (int)sizeof(m->root)) {
    r = au_error_set(err, -ENAMETOOLONG, "cells: cgroup root path too long");
    goto fail;
  }
  if (mkdir(m->root, 0755) < 0 && errno != EEXIST) {
    r = au_error_errno(err, -errno, "cells: mkdir %s", m->root);
    goto fail;
  }
  snprintf(m->state_root, sizeof(m->state_root), "%s/cells", cfg->runtime_dir);
  if (mkdir(m->state_root, 0700) < 0 && errno != EEXIST) {
    r = au_error_errno(err, -errno, "cells: mkdir %s", m->state_root);
    goto fail;
  }
  m->ep = epoll_create1(EPOLL_CLOEXEC);
  m->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (m->ep < 0 || m->wake < 0) {
    r = au_error_errno(err, -errno, "cells: epoll");
    goto fail;
  }
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = WAKE_TOKEN};
  epoll_ctl(m->ep, EPOLL_CTL_ADD, m->wake, &ev);
  if ((r = -pthread_create(&m->sup, NULL, supervisor, m)) < 0) {
    au_error_errno(err, r, "cells: start supervisor");
    goto fail;
  }
  m->sup_started = true;
  size_t count = 0;
  pthread_mutex_lock(&m->op_lock);
  adopt_dir(m, m->state_root, &count);
  sweep_cgroups(m, m->root);
  cell_zygote_start(m);
  pthread_mutex_unlock(&m->op_lock);
  if (ret_adopted) *ret_adopted = count;
  *ret = m;
  return 0;
fail:
  cell_manager_close(m);
  return r;
}

void cell_manager_close(cell_manager *m) {
  if (!m) return;
  if (m->sup_started) {
    pthread_mutex_lock(&m->lock);
    m->stop = true;
    pthread_mutex_unlock(&m->lock);
    uint64_t one = 1;
    if (write(m->wake, &one, sizeof(one)) < 0) {
    }
    pthread_join(m->sup, NULL);
  }
  /* Workloads keep running: we only drop our ends. The inits keep the
   * output pipes' read ends and the exit statuses for the next auraed. */
  while (m->cells) {
    cell *c = m->cells;
    m->cells = c->next;
    while (c->exes) {
      exe *e = c->exes;
      c->exes = e->next;
      e->cell = NULL;
      e->unlinked = true;
      if (e->refs == 0) exe_destroy(e);
    }
    free_cell_struct(c);
  }
  for (size_t i = 0; i < m->norphans; i++)
    close(m->orphans[i].pidfd);
  free(m->orphans);
  cell_zygote_stop(m); /* with its spare and ROOT/_spare */
  cell_idpool_free(m->ids);
  if (m->devprog >= 0) close(m->devprog);
  if (m->ep >= 0) close(m->ep);
  if (m->wake >= 0) close(m->wake);
  /* An empty root goes with us; with cells (or another subsystem's
   * directory) in it, rmdir fails and it stays for the next auraed. */
  if (m->root[0] && rmdir(m->root) == 0) log_debug("cells: removed empty %s", m->root);
  for (size_t i = 0; m->masks && i < m->nmasks; i++)
    free(m->masks[i]);
  free(m->masks);
  pthread_mutex_destroy(&m->lock);
  pthread_mutex_destroy(&m->op_lock);
  pthread_cond_destroy(&m->cond);
  free(m);
}

const char *cell_manager_cgroup_root(const cell_manager *m) { return m->root; }
