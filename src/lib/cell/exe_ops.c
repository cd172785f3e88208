/* RunExecutable and the lifecycle of executables. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cell/cgroup.h"
#include "cell/internal.h"
#include "cell/spawn.h"
#include "cleanup.h"
#include "log.h"

static int validate(const exe_spec *s, au_error *err) {
  int r;
  if ((r = name_validate_path("cell_name", s->cell, err)) < 0) return r;
  if ((r = name_validate_label("executable name", s->name, err)) < 0) return r;
  if (!s->argv || !s->argv[0] || !s->argv[0][0])
    return au_error_set(err, -EINVAL, "args: empty; args[0] must name the program");
  size_t total = 0, n = 0;
  for (char *const *a = s->argv; *a; a++, n++)
    total += strlen(*a) + 1;
  for (char *const *e = s->envp; e && *e; e++, n++) {
    if (!strchr(*e, '=') || **e == '=')
      return au_error_set(err, -EINVAL, "env: \"%.40s\" is not KEY=VALUE", *e);
    total += strlen(*e) + 1;
  }
  if (total > CTL_MAX_STRINGS || n > 4096)
    return au_error_set(err, -EINVAL,
                        "args and env: %zu bytes in %zu entries, at most %d bytes and "
                        "4096 entries allowed",
                        total, n, CTL_MAX_STRINGS);
  if (s->cwd && strlen(s->cwd) >= 4096) return au_error_set(err, -EINVAL, "cwd: too long");
  /* The init resolves it in the cell's root, where a relative one names
   * nothing in particular; the SPAWN_EXE decoder (ctlmsg.h) refuses it. */
  if (s->cwd && s->cwd[0] && s->cwd[0] != '/')
    return au_error_set(err, -EINVAL, "cwd: \"%.64s\" is not an absolute path", s->cwd);
  if (s->ngroups > 64)
    return au_error_set(err, -EINVAL, "credentials: %zu supplementary groups, at most 64",
                        s->ngroups);
  if (s->has_creds) {
    /* (uid_t)-1 and (gid_t)-1 mean "leave unchanged" to setresuid and
     * setresgid: the program would keep the init's ids and run as the
     * cell's root. */
    if (s->uid == (uid_t)-1)
      return au_error_set(err, -EINVAL, "credentials.uid: %u is not a valid id", s->uid);
    if (s->gid == (gid_t)-1)
      return au_error_set(err, -EINVAL, "credentials.gid: %u is not a valid id", s->gid);
    for (size_t i = 0; i < s->ngroups; i++)
      if (s->groups[i] == (gid_t)-1)
        return au_error_set(err, -EINVAL,
                            "credentials.supplementary_gids[%zu]: %u is not a valid id", i,
                            s->groups[i]);
  }
  if (s->output_limit > CELL_OUTPUT_MAX)
    return au_error_set(err, -EINVAL, "output_limit_bytes: %zu, at most %u", s->output_limit,
                        CELL_OUTPUT_MAX);
  if (s->stdin_len > (16u << 20))
    return au_error_set(err, -EINVAL, "stdin: %zu bytes, at most 16 MiB", s->stdin_len);
  return 0;
}

/* In a cell with a user namespace of its own, credentials are ids inside
 * it: the kernel would refuse others only in the child, as "Invalid
 * argument" after setup has begun. */
static int check_ids(const exe_spec *s, au_error *err) {
  if (!s->has_creds) return 0;
  if (s->uid >= CELL_IDS_PER_CELL)
    return au_error_set(err, -EINVAL, "credentials.uid: %u is outside the cell's ids (0-%u)",
                        (unsigned)s->uid, CELL_IDS_PER_CELL - 1);
  if (s->gid >= CELL_IDS_PER_CELL)
    return au_error_set(err, -EINVAL, "credentials.gid: %u is outside the cell's ids (0-%u)",
                        (unsigned)s->gid, CELL_IDS_PER_CELL - 1);
  for (size_t i = 0; i < s->ngroups; i++)
    if (s->groups[i] >= CELL_IDS_PER_CELL)
      return au_error_set(err, -EINVAL,
                          "credentials.supplementary_gids[%zu]: %u is outside the cell's ids "
                          "(0-%u)",
                          i, (unsigned)s->groups[i], CELL_IDS_PER_CELL - 1);
  return 0;
}

static int make_stdin(const exe_spec *s) {
  if (!s->stdin_len) return open("/dev/null", O_RDONLY | O_CLOEXEC);
  /* A sealed-size memfd: the process reads its input at its own pace and
   * nobody has to feed a pipe. */
  int fd = memfd_create("aurae-stdin", MFD_CLOEXEC);
  if (fd < 0) return -1;
  const char *p = s->stdin_data;
  size_t left = s->stdin_len;
  while (left) {
    ssize_t w = write(fd, p, left);
    if (w < 0) {
      if (errno == EINTR) continue;
      close(fd);
      return -1;
    }
    p += w;
    left -= (size_t)w;
  }
  lseek(fd, 0, SEEK_SET);
  return fd;
}

static exe *exe_new(const exe_spec *s) {
  exe *e = calloc(1, sizeof(*e));
  if (!e) return NULL;
  e->pidfd = -1;
  e->out[0].fd = e->out[1].fd = -1;
  size_t n = 0;
  while (s->argv[n])
    n++;
  e->argv = calloc(n + 1, sizeof(char *));
  size_t lim = s->output_limit ? s->output_limit : CELL_OUTPUT_DEFAULT;
  e->limit = lim;
  if (!e->argv || byte_ring_init(&e->out[0].ring, lim) < 0 ||
      byte_ring_init(&e->out[1].ring, lim) < 0) {
    exe_destroy(e);
    return NULL;
  }
  for (size_t i = 0; i < n; i++)
    if (!(e->argv[i] = strdup(s->argv[i]))) {
      exe_destroy(e);
      return NULL;
    }
  snprintf(e->cell_name, sizeof(e->cell_name), "%s", s->cell);
  snprintf(e->name, sizeof(e->name), "%s", s->name);
  return e;
}

struct save_state {
  const cell *c;
  const exe *e;
  bool saved;
};

/* While the init starts the process: the state file must be on disk before
 * we answer, and writing it here takes it off the request's path. It has
 * no pids yet; a restarted auraed asks the init for them (QUERY). */
static void save_state(void *p) {
  struct save_state *s = p;
  au_error err = {0};
  if (state_write_exe(s->c, s->e, &err) < 0)
    log_debug("executable %s: state not saved: %s", s->e->name, err.msg);
  else
    s->saved = true;
}

int exe_run(cell_manager *m, const exe_spec *spec, exe_info *ret, au_error *err) {
  int r = validate(spec, err);
  if (r < 0) return r;
  exe *e = exe_new(spec);
  if (!e) return au_error_set(err, -ENOMEM, "out of memory");

  pthread_mutex_lock(&m->op_lock);
  _cleanup_close_ int leaf_fd = -1, in = -1, out_r = -1, out_w = -1, err_r = -1, err_w = -1;
  bool made_leaf = false, linked = false, forget = false;
  struct save_state save = {0};
  pthread_mutex_lock(&m->lock);
  cell *c = cell_find(m, spec->cell);
  if (!c) {
    pthread_mutex_unlock(&m->lock);
    r = au_error_set(err, -ENOENT, "cell %s not found", spec->cell);
    goto fail;
  }
  if (c->init_dead) {
    pthread_mutex_unlock(&m->lock);
    r = au_error_set(err, -ENODEV, "cell %s: its init is gone; free the cell", spec->cell);
    goto fail;
  }
  if (exe_find(c, spec->name)) {
    pthread_mutex_unlock(&m->lock);
    r = au_error_set(err, -EEXIST, "executable %s already exists in cell %s", spec->name,
                     spec->cell);
    goto fail;
  }
  bool too_long = snprintf(e->leaf, sizeof(e->leaf), "%s/_exe.%s", c->cgdir, spec->name) >=
                  (int)sizeof(e->leaf);
  uint32_t ids = c->id_base;
  pthread_mutex_unlock(&m->lock);
  if (ids && (r = check_ids(spec, err)) < 0) goto fail;
  if (too_long) {
    r = au_error_set(err, -EINVAL, "executable %s: path too long", spec->name);
    goto fail;
  }

  r = cgroup_mkdir(e->leaf, err);
  if (r == -EEXIST) { /* left over from a crash: nobody owns it */
    cgroup_kill_wait(e->leaf, 2000, NULL);
    cgroup_remove_tree(e->leaf, NULL);
    r = cgroup_mkdir(e->leaf, err);
  }
  if (r < 0) goto fail;
  made_leaf = true;
  /* The init, root of the cell's user namespace, clones into it. */
  if (ids && (r = cell_cgroup_delegate(e->leaf, ids, false, err)) < 0) goto fail;
  leaf_fd = open(e->leaf, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  in = make_stdin(spec);
  int p1[2] = {-1, -1}, p2[2] = {-1, -1};
  if (leaf_fd < 0 || in < 0 || pipe2(p1, O_CLOEXEC) < 0 || pipe2(p2, O_CLOEXEC) < 0) {
    r = au_error_errno(err, -errno, "executable %s: prepare", spec->name);
    if (p1[0] >= 0) {
      close(p1[0]);
      close(p1[1]);
    }
    goto fail;
  }
  out_r = p1[0];
  out_w = p1[1];
  err_r = p2[0];
  err_w = p2[1];
  fcntl(out_r, F_SETFL, O_NONBLOCK);
  fcntl(err_r, F_SETFL, O_NONBLOCK);

  /* Registered before the request, so an exit event that overtakes our
   * bookkeeping finds it. */
  pthread_mutex_lock(&m->lock);
  e->state = EXE_STARTING;
  e->cell = c;
  e->next = c->exes;
  c->exes = e;
  e->refs = 1;
  linked = true;
  pthread_mutex_unlock(&m->lock);

  struct ctl_spawn_exe req;
  ctl_spawn_exe_init(&req);
  req.name = spec->name;
  req.cwd = spec->cwd;
  req.argv = spec->argv;
  while (spec->argv[req.argc])
    req.argc++;
  req.envp = spec->envp;
  while (spec->envp && spec->envp[req.envc])
    req.envc++;
  req.has_creds = spec->has_creds;
  if (spec->has_creds) {
    req.uid = spec->uid;
    req.gid = spec->gid;
    /* protobuf-c leaves an empty repeated field NULL. */
    if (spec->ngroups) memcpy(req.groups, spec->groups, spec->ngroups * sizeof(gid_t));
    req.ngroups = spec->ngroups;
  }
  req.cgroup_fd = leaf_fd;
  req.stdin_fd = in;
  req.out_w = out_w;
  req.err_w = err_w;
  req.out_r = out_r;
  req.err_r = err_r;
  ctl_msg raw;
  pthread_mutex_lock(&m->lock);
  e->started_ns = cell_now_ns();
  pthread_mutex_unlock(&m->lock);
  save = (struct save_state){.c = c, .e = e};
  r = cell_request_spawn_exe(m, c, &req, save_state, &save, &raw, err);
  struct ctl_spawn_reply rep;
  ctl_spawn_reply_init(&rep);
  if (r == 0) {
    char why[256];
    if ((r = ctl_spawn_reply_decode(&raw, &rep, why, sizeof(why))) < 0) {
      au_error_set(err, r, "%s", why);
      forget = true; /* it may run, under a name the init keeps */
    }
    ctl_msg_clear(&raw);
  }
  if (r < 0) {
    /* No answer (timeout, connection lost): the init may have started it
     * and kept the name. Its leaf dies below; make the init forget it too,
     * or the name stays taken until the cell is freed. */
    if (r == -ETIMEDOUT || r == -ENODEV) forget = true;
    au_error_prefix(err, "executable %s in cell %s", spec->name, spec->cell);
    goto fail;
  }
  /* Our copies of the write ends must go, or the pipes never see EOF. */
  close(TAKE_FD(out_w));
  close(TAKE_FD(err_w));
  pid_t host_pid = rep.cred_pid;
  pthread_mutex_lock(&m->lock);
  e->cell_pid = rep.pid;
  e->host_pid = host_pid > 0 ? host_pid : 0;
  if (e->state == EXE_STARTING) {
    e->state = EXE_RUNNING;
    e->pidfd = TAKE_FD(rep.pidfd);
  }
  e->out[0].fd = TAKE_FD(out_r);
  e->out[1].fd = TAKE_FD(err_r);
  e->out[0].token = cell_watch(m, e->out[0].fd);
  e->out[1].token = cell_watch(m, e->out[1].fd);
  pthread_mutex_unlock(&m->lock);
  ctl_spawn_reply_clear(&rep);
  /* Kept by the init, so a restarted auraed knows it even after the exit. */
  ctl_out hp;
  struct ctl_host_pid note = {.name = spec->name, .host_pid = host_pid > 0 ? host_pid : 0};
  if (ctl_host_pid_encode(&note, &hp) == 0) cell_send_oneway(m, c, &hp);
  ctl_out_clear(&hp);
  pthread_mutex_lock(&m->lock);
  if (ret) exe_fill_info(e, ret);
  e->refs--;
  pthread_mutex_unlock(&m->lock);
  pthread_mutex_unlock(&m->op_lock);
  return 0;

fail:;
  char leaf[CELL_PATH_MAX];
  snprintf(leaf, sizeof(leaf), "%s", e->leaf); /* e may be gone below */
  if (linked) {
    pthread_mutex_lock(&m->lock);
    e->refs--;
    exe_unlink(m, e);
    pthread_mutex_unlock(&m->lock);
  } else {
    exe_destroy(e);
  }
  if (made_leaf) {
    cgroup_kill_wait(leaf, 2000, NULL);
    cgroup_remove_tree(leaf, NULL);
  }
  if (forget) cell_forget_exe(m, c, spec->name);
  if (save.saved) state_remove_exe(c, spec->name);
  pthread_mutex_unlock(&m->op_lock);
  return r;
}

/* Looks an executable up and takes a reference (m->lock held). */
static exe *get(cell_manager *m, const char *cell_name, const char *name, au_error *err) {
  if (name_validate_path("cell_name", cell_name, err) < 0 ||
      name_validate_label("executable name", name, err) < 0)
    return NULL;
  cell *c = cell_find(m, cell_name);
  if (!c) {
    au_error_set(err, -ENOENT, "cell %s not found", cell_name);
    return NULL;
  }
  exe *e = exe_find(c, name);
  if (!e) {
    au_error_set(err, -ENOENT, "executable %s not found in cell %s", name, cell_name);
    return NULL;
  }
  e->refs++;
  return e;
}

int exe_inspect(cell_manager *m, const char *cell_name, const char *name, exe_info *ret,
                au_error *err) {
  pthread_mutex_lock(&m->lock);
  exe *e = get(m, cell_name, name, err);
  if (e) {
    exe_fill_info(e, ret);
    exe_unref(m, e);
  }
  pthread_mutex_unlock(&m->lock);
  return e ? 0 : err->code;
}

static bool running(const exe *e) { return e->state == EXE_RUNNING || e->state == EXE_STARTING; }

static void deadline_in(struct timespec *ts, int64_t ms) {
  clock_gettime(CLOCK_REALTIME, ts);
  ts->tv_sec += ms / 1000;
  ts->tv_nsec += (ms % 1000) * 1000000;
  if (ts->tv_nsec >= 1000000000) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000;
  }
}

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* m->lock held; waits until e ended, it was freed, or time is up. */
static int wait_locked(cell_manager *m, exe *e, int64_t timeout_ms, cell_cancel_fn cancelled,
                       void *userdata) {
  int64_t end = timeout_ms < 0 ? INT64_MAX : mono_ms() + timeout_ms;
  while (running(e) && !e->unlinked) {
    int64_t left = end - mono_ms();
    if (left <= 0) return -ETIMEDOUT;
    if (cancelled && cancelled(userdata)) return -ECANCELED;
    struct timespec ts;
    deadline_in(&ts, left < 100 ? left : 100); /* poll cancellation */
    pthread_cond_timedwait(&m->cond, &m->lock, &ts);
  }
  return e->unlinked && running(e) ? -ENOENT : 0;
}

int exe_wait(cell_manager *m, const char *cell_name, const char *name, int64_t timeout_ms,
             cell_cancel_fn cancelled, void *userdata, exe_info *ret, au_error *err) {
  pthread_mutex_lock(&m->lock);
  exe *e = get(m, cell_name, name, err);
  if (!e) {
    pthread_mutex_unlock(&m->lock);
    return err->code;
  }
  int r = wait_locked(m, e, timeout_ms, cancelled, userdata);
  if (r == 0) exe_fill_info(e, ret);
  exe_unref(m, e);
  pthread_mutex_unlock(&m->lock);
  if (r == -ETIMEDOUT)
    return au_error_set(err, r, "executable %s in cell_name %s is still running", name, cell_name);
  if (r == -ECANCELED) return au_error_set(err, r, "wait cancelled");
  if (r < 0) return au_error_set(err, r, "executable %s was freed", name);
  return 0;
}

int exe_signal(cell_manager *m, const char *cell_name, const char *name, int sig, exe_info *ret,
               au_error *err) {
  if (sig <= 0 || sig >= 65)
    return au_error_set(err, -EINVAL, "signal: %d is not a signal number", sig);
  pthread_mutex_lock(&m->lock);
  exe *e = get(m, cell_name, name, err);
  if (!e) {
    pthread_mutex_unlock(&m->lock);
    return err->code;
  }
  int r = 0;
  if (!running(e) || e->pidfd < 0)
    r = au_error_set(err, -ESRCH, "executable %s in cell_name %s is not running", name, cell_name);
  else if ((r = cell_pidfd_send_signal(e->pidfd, sig)) < 0)
    au_error_errno(err, r, "signal executable %s", name);
  if (r == 0 && ret) exe_fill_info(e, ret);
  exe_unref(m, e);
  pthread_mutex_unlock(&m->lock);
  /* Not running is a state the caller must see: FAILED_PRECONDITION. */
  if (r == -ESRCH) err->code = r = -EBUSY;
  return r;
}

int exe_stop(cell_manager *m, const char *cell_name, const char *name, uint32_t grace_ms,
             cell_cancel_fn cancelled, void *userdata, exe_info *ret, au_error *err) {
  if (grace_ms == 0) grace_ms = 10000;
  pthread_mutex_lock(&m->lock);
  exe *e = get(m, cell_name, name, err);
  if (!e) {
    pthread_mutex_unlock(&m->lock);
    return err->code;
  }
  if (running(e) && e->pidfd >= 0) cell_pidfd_send_signal(e->pidfd, SIGTERM);
  int r = wait_locked(m, e, grace_ms, cancelled, userdata);
  if (r == -ETIMEDOUT) {
    /* The grace period is over: everything in the executable's leaf goes,
     * including whatever it forked. */
    char leaf[CELL_PATH_MAX];
    snprintf(leaf, sizeof(leaf), "%s", e->leaf);
    pthread_mutex_unlock(&m->lock);
    cgroup_kill_wait(leaf, 5000, NULL);
    pthread_mutex_lock(&m->lock);
    r = wait_locked(m, e, 5000, NULL, NULL);
  }
  if (r == 0) exe_fill_info(e, ret);
  exe_unref(m, e);
  pthread_mutex_unlock(&m->lock);
  if (r < 0) return au_error_set(err, r, "stop executable %s: %s", name, strerror(-r));
  return 0;
}

int exe_free(cell_manager *m, const char *cell_name, const char *name, au_error *err) {
  pthread_mutex_lock(&m->op_lock);
  pthread_mutex_lock(&m->lock);
  exe *e = get(m, cell_name, name, err);
  if (!e) {
    pthread_mutex_unlock(&m->lock);
    pthread_mutex_unlock(&m->op_lock);
    return err->code;
  }
  cell *c = e->cell;
  char leaf[CELL_PATH_MAX];
  snprintf(leaf, sizeof(leaf), "%s", e->leaf);
  pthread_mutex_unlock(&m->lock);
  /* Whatever is left of it dies with its leaf. */
  cgroup_kill_wait(leaf, 5000, NULL);
  au_error ferr = {0};
  cell_forget_request(m, c, name, &ferr);
  cgroup_remove_tree(leaf, NULL);
  state_remove_exe(c, name);
  pthread_mutex_lock(&m->lock);
  if (running(e)) exe_set_exit(e, SIGKILL, cell_now_ns());
  exe_unlink(m, e);
  exe_unref(m, e);
  pthread_mutex_unlock(&m->lock);
  pthread_mutex_unlock(&m->op_lock);
  return 0;
}

int exe_logs(cell_manager *m, const char *cell_name, const char *name, int mask, bool follow,
             exe_log_fn fn, cell_cancel_fn cancelled, void *userdata, au_error *err) {
  if (!(mask & (CELL_STREAM_STDOUT | CELL_STREAM_STDERR)))
    mask = CELL_STREAM_STDOUT | CELL_STREAM_STDERR;
  size_t cap = 32768;
  _cleanup_free_ char *buf = malloc(cap);
  if (!buf) return au_error_set(err, -ENOMEM, "out of memory");
  pthread_mutex_lock(&m->lock);
  exe *e = get(m, cell_name, name, err);
  if (!e) {
    pthread_mutex_unlock(&m->lock);
    return err->code;
  }
  uint64_t cursor[2] = {0, 0};
  int r = 0;
  for (;;) {
    bool sent = false;
    for (int i = 0; i < 2 && r == 0; i++) {
      if (!(mask & (1 << i))) continue;
      uint64_t dropped;
      size_t n = byte_ring_read(&e->out[i].ring, &cursor[i], buf, cap, &dropped);
      if (n == 0 && dropped == 0) continue;
      sent = true;
      pthread_mutex_unlock(&m->lock);
      if (fn(i + 1, buf, n, dropped, userdata) != 0) r = -ECANCELED;
      pthread_mutex_lock(&m->lock);
    }
    if (r < 0 || sent) {
      if (r < 0) break;
      continue;
    }
    /* Caught up. */
    bool ended = !running(e) || e->unlinked;
    if (!follow || ended) break;
    if (cancelled && cancelled(userdata)) {
      r = -ECANCELED;
      break;
    }
    struct timespec ts;
    deadline_in(&ts, 200);
    pthread_cond_timedwait(&m->cond, &m->lock, &ts);
  }
  exe_unref(m, e);
  pthread_mutex_unlock(&m->lock);
  if (r == -ECANCELED) return au_error_set(err, r, "log stream cancelled");
  return 0;
}
