/* RunCell, Free, Inspect and List for cells. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cell/cgroup.h"
#include "cell/devcg.h"
#include "cell/internal.h"
#include "cell/spawn.h"
#include "cleanup.h"
#include "log.h"

static unsigned share_to_ns(unsigned share) {
  unsigned ns = CELL_NS_ALL;
  if (share & CELL_SHARE_PID) ns &= ~(unsigned)CELL_NS_PID;
  if (share & CELL_SHARE_MNT) ns &= ~(unsigned)CELL_NS_MNT;
  if (share & CELL_SHARE_IPC) ns &= ~(unsigned)CELL_NS_IPC;
  if (share & CELL_SHARE_UTS) ns &= ~(unsigned)CELL_NS_UTS;
  if (share & CELL_SHARE_NET) ns &= ~(unsigned)CELL_NS_NET;
  if (share & CELL_SHARE_CGROUP) ns &= ~(unsigned)CELL_NS_CGROUP;
  if (share & CELL_PRIVILEGED) ns |= CELL_INIT_PRIVILEGED;
  return ns;
}

/* Waits for the new init's "ok" (or its error text) on the sync pipe.
 * -EPIPE: it exited without a word. */
static int wait_ready(cell_manager *m, int sync_r, const char *name, au_error *err) {
  struct pollfd p = {.fd = sync_r, .events = POLLIN};
  int r = poll(&p, 1, 10000);
  if (r == 0) return au_error_set(err, -ETIMEDOUT, "cell %s: init did not start", name);
  char buf[512];
  ssize_t n = read(sync_r, buf, sizeof(buf) - 1);
  if (n < 0) return au_error_errno(err, -errno, "cell %s: read from init", name);
  buf[n] = '\0';
  if (n == 2 && memcmp(buf, "ok", 2) == 0) return 0;
  if (n == 0)
    return au_error_set(err, -EPIPE, "cell %s: init exited before it was ready (is %s runnable?)",
                        name, m->self_exe);
  return au_error_set(err, -EIO, "cell %s: init: %s", name, buf);
}

/* Once c's init has been asked for: while it sets itself up on the other
 * CPU, the state that must be on disk before we answer and the
 * executables' state directory (a mkdir less on RunExecutable's path);
 * then its "ok". A kill -9 from here on leaves a cell.json whose init may
 * not serve its socket yet: the restarted auraed drops such a cell, as one
 * whose init died. */
static int await_init(cell_manager *m, cell *c, int sync_r, au_error *err) {
  char exedir[CELL_PATH_MAX + 8];
  snprintf(exedir, sizeof(exedir), "%s/_exe", c->statedir);
  if (mkdir(exedir, 0700) < 0 && errno != EEXIST)
    return au_error_errno(err, -errno, "mkdir %s", exedir);
  int r = state_write_cell(c, err);
  return r < 0 ? r : wait_ready(m, sync_r, c->name, err);
}

/* Clones c's init (by the zygote, else by exec; a child cell's by its
 * parent's init) into the cell's cgroup and waits until it serves. fds:
 * the cell's cgroup, the _init leaf's cgroup.procs, the state directory. */
static int clone_init(cell_manager *m, cell *c, cell *parent, unsigned ns, const int fds[3],
                      au_error *err) {
  int sp[2];
  if (pipe2(sp, O_CLOEXEC) < 0) return au_error_errno(err, -errno, "cell %s: pipe", c->name);
  _cleanup_close_ int sync_r = sp[0], sync_w = sp[1];
  int all[4] = {fds[0], sync_w, fds[1], fds[2]};
  int r;
  if (!parent) {
    r = cell_zygote_spawn(m, c->name, c->statedir, ns, all, &c->init_pid, &c->init_pidfd);
    if (r == -ENOTCONN)
      r = cell_spawn_init(m->self_exe, c->name, c->statedir, ns, m->masks, fds[0], sync_w, fds[1],
                          fds[2], &c->init_pid, &c->init_pidfd);
    if (r < 0) return au_error_errno(err, r, "cell %s: clone3 the init", c->name);
  } else {
    /* A child cell is made from inside its parent: the parent's init forks
     * it, so its new namespaces nest in the parent's. */
    int64_t num[1] = {ns};
    size_t nstr = 3 + m->nmasks;
    _cleanup_free_ const char **s = calloc(nstr, sizeof(char *));
    if (!s) return au_error_set(err, -ENOMEM, "out of memory");
    s[0] = c->name;
    s[1] = c->statedir;
    s[2] = m->self_exe;
    for (size_t i = 0; i < m->nmasks; i++)
      s[3 + i] = m->masks[i];
    ctl_msg rep;
    if ((r = cell_request(m, parent, CTL_SPAWN_CELL, num, 1, s, nstr, all, 4, &rep, err)) < 0)
      return r;
    c->init_pid = rep.cred_pid > 0 ? rep.cred_pid : 0;
    ctl_msg_clear(&rep);
  }
  close(TAKE_FD(sync_w));
  return await_init(m, c, sync_r, err);
}

/* For a top-level cell with the default isolation and no limits: the
 * zygote's spare init (zygote.c). fds as for clone_init. true: it took
 * the cell (its answer comes on *ret_sync_r, its control connection is
 * *ret_ctl); false: clone one. */
static bool take_spare(cell_manager *m, cell *c, const int fds[3], int *ret_sync_r, int *ret_ctl) {
  int sp[2];
  if (pipe2(sp, O_CLOEXEC) < 0) return false;
  _cleanup_close_ int sync_r = sp[0], sync_w = sp[1];
  const int all[4] = {fds[0], sync_w, fds[1], fds[2]};
  int r = cell_zygote_take_spare(m, c->name, all, &c->init_pid, &c->init_pidfd, ret_ctl);
  if (r < 0) {
    if (r != -EAGAIN) log_debug("cell %s: no spare init: %s", c->name, strerror(-r));
    return false;
  }
  *ret_sync_r = TAKE_FD(sync_r);
  return true;
}

int cell_create(cell_manager *m, const cell_spec *spec, au_error *err) {
  int r = name_validate_path("cell name", spec->name, err);
  if (r < 0) return r;
  cgroup_setting settings[CELL_RESOURCES_MAX_SETTINGS];
  size_t nset = 0;
  if ((r = cell_resources_to_settings(&spec->resources, settings, &nset, err)) < 0) return r;
  const char *ctrls[8];
  size_t nctrl = cell_settings_controllers(settings, nset, ctrls);

  pthread_mutex_lock(&m->op_lock);
  char parent_name[AU_NAME_MAX + 1];
  bool nested = name_parent(spec->name, parent_name, sizeof(parent_name));
  cell *parent = NULL;
  _cleanup_close_ int cgfd = -1, procs = -1, spare_sync = -1, spare_ctl = -1;
  cell *c = NULL;
  bool made_cgroup = false, made_state = false;

  pthread_mutex_lock(&m->lock);
  if (cell_find(m, spec->name)) {
    pthread_mutex_unlock(&m->lock);
    r = au_error_set(err, -EEXIST, "cell %s already exists", spec->name);
    goto out;
  }
  if (nested) {
    parent = cell_find(m, parent_name);
    if (!parent) {
      pthread_mutex_unlock(&m->lock);
      r = au_error_set(err, -ENOENT, "parent cell %s of %s does not exist (create it first)",
                       parent_name, spec->name);
      goto out;
    }
    if (parent->init_dead) {
      pthread_mutex_unlock(&m->lock);
      r = au_error_set(err, -ENODEV, "parent cell %s: its init is gone", parent_name);
      goto out;
    }
  }
  pthread_mutex_unlock(&m->lock);

  c = calloc(1, sizeof(*c));
  if (!c) {
    r = au_error_set(err, -ENOMEM, "out of memory");
    goto out;
  }
  c->ctl = c->statedir_fd = c->init_pidfd = -1;
  ctl_msg_init(&c->reply);
  snprintf(c->name, sizeof(c->name), "%s", spec->name);
  const char *leaf = name_leaf(spec->name);
  const char *pcg = parent ? parent->cgdir : m->root;
  if (snprintf(c->cgdir, sizeof(c->cgdir), "%s/%s", pcg, leaf) >= (int)sizeof(c->cgdir) ||
      snprintf(c->statedir, sizeof(c->statedir), "%s/%s", parent ? parent->statedir : m->state_root,
               leaf) >= (int)sizeof(c->statedir)) {
    r = au_error_set(err, -EINVAL, "cell %s: path too long", spec->name);
    goto out;
  }
  c->res = spec->resources;
  c->share = spec->share;
  c->created_ns = cell_now_ns();

  /* Say which limit cannot be enforced before anything exists. */
  for (size_t i = 0; i < nctrl; i++)
    if ((r = cgroup_ensure_controller(m->mount, pcg, ctrls[i], false, err)) < 0) goto out;

  if ((r = cgroup_mkdir(c->cgdir, err)) < 0) {
    if (r == -EEXIST) au_error_prefix(err, "cell %s: a stale cgroup is in the way", spec->name);
    goto out;
  }
  made_cgroup = true;
  for (size_t i = 0; i < nctrl; i++)
    if ((r = cgroup_ensure_controller(m->mount, pcg, ctrls[i], true, err)) < 0) goto out;
  for (size_t i = 0; i < nset; i++)
    if ((r = cgroup_write(c->cgdir, settings[i].file, settings[i].value, err)) < 0) {
      au_error_prefix(err, "cell %s: resources", spec->name);
      if (r == -EINVAL || r == -ERANGE) r = err->code = -EINVAL;
      goto out;
    }
  char initdir[CELL_PATH_MAX + 8];
  snprintf(initdir, sizeof(initdir), "%s/_init", c->cgdir);
  if ((r = cgroup_mkdir(initdir, err)) < 0) goto out;

  if (mkdir(c->statedir, 0700) < 0) {
    r = au_error_errno(err, -errno, "mkdir %s", c->statedir);
    goto out;
  }
  made_state = true;
  c->statedir_fd = open(c->statedir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  cgfd = open(c->cgdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  char procs_path[CELL_PATH_MAX + 32];
  snprintf(procs_path, sizeof(procs_path), "%s/cgroup.procs", initdir);
  procs = open(procs_path, O_WRONLY | O_CLOEXEC);
  if (c->statedir_fd < 0 || cgfd < 0 || procs < 0) {
    r = au_error_errno(err, -errno, "cell %s: prepare", spec->name);
    goto out;
  }
  /* Before any process of the cell runs in its cgroup: a privileged cell
   * opens what the host's root may, every other cell only the OCI default
   * devices (devcg.h). */
  if (!(spec->share & CELL_PRIVILEGED) && (r = cell_devices_attach(cgfd, err)) < 0) {
    au_error_prefix(err, "cell %s", spec->name);
    goto out;
  }
  const int fds[3] = {cgfd, procs, c->statedir_fd};
  unsigned ns = share_to_ns(spec->share);
  /* Limits stay with the clone: a migration moves no memory charges and is
   * not checked against pids.max. */
  bool spare =
      !parent && ns == CELL_NS_ALL && nset == 0 && take_spare(m, c, fds, &spare_sync, &spare_ctl);
  if (spare && (r = await_init(m, c, spare_sync, err)) < 0) {
    if (r != -EPIPE) goto out;
    /* The spare was killed as it was handed to us (it died before it could
     * answer): a clone of the usual kind. */
    log_debug("cell %s: the spare init died before it was ready; cloning one", c->name);
    cell_reap_init(m, c);
    close(TAKE_FD(spare_ctl));
    *err = (au_error){0};
    spare = false;
  }
  if (!spare && (r = clone_init(m, c, parent, ns, fds, err)) < 0) goto out;
  int fd = spare ? TAKE_FD(spare_ctl) : cell_connect(c, err);
  if (fd < 0) {
    r = fd;
    goto out;
  }
  c->ctl = fd;

  pthread_mutex_lock(&m->lock);
  c->ctl_token = cell_watch(m, c->ctl);
  c->next = m->cells;
  m->cells = c;
  pthread_mutex_unlock(&m->lock);
  log_debug("cell %s: created, init pid %d", c->name, c->init_pid);
  c = NULL;
  r = 0;
out:
  if (c) {
    /* Nothing stays behind: kill whatever started, remove cgroups and
     * state. */
    if (c->init_pidfd >= 0) cell_pidfd_send_signal(c->init_pidfd, SIGKILL);
    if (made_cgroup) {
      cgroup_kill_wait(c->cgdir, 5000, NULL);
      cgroup_remove_tree(c->cgdir, NULL);
    }
    cell_reap_init(m, c);
    if (made_state) cell_remove_state(c->statedir);
    free_cell_struct(c);
  }
  pthread_mutex_unlock(&m->op_lock);
  return r;
}

static bool is_descendant(const char *name, const char *ancestor) {
  size_t l = strlen(ancestor);
  return strncmp(name, ancestor, l) == 0 && name[l] == '/';
}

int cell_free(cell_manager *m, const char *name, bool recursive, char ***ret_freed, au_error *err) {
  int r = name_validate_path("cell name", name, err);
  if (r < 0) return r;
  pthread_mutex_lock(&m->op_lock);
  pthread_mutex_lock(&m->lock);
  cell *target = cell_find(m, name);
  if (!target) {
    pthread_mutex_unlock(&m->lock);
    pthread_mutex_unlock(&m->op_lock);
    return au_error_set(err, -ENOENT, "cell %s not found", name);
  }
  /* Victims, deepest first (longest names first is enough: a descendant's
   * name is longer than its ancestor's). */
  size_t n = 0;
  for (cell *c = m->cells; c; c = c->next)
    if (c == target || is_descendant(c->name, name)) n++;
  if (n > 1 && !recursive) {
    char child[AU_NAME_MAX + 1] = "";
    for (cell *c = m->cells; c; c = c->next)
      if (is_descendant(c->name, name)) snprintf(child, sizeof(child), "%s", c->name);
    pthread_mutex_unlock(&m->lock);
    pthread_mutex_unlock(&m->op_lock);
    return au_error_set(err, -ENOTEMPTY,
                        "cell %s has child cells (%s); free them first or ask for a "
                        "recursive free",
                        name, child);
  }
  cell **victims = calloc(n, sizeof(*victims));
  char **freed = calloc(n + 1, sizeof(char *));
  if (!victims || !freed) {
    free(victims);
    free(freed);
    pthread_mutex_unlock(&m->lock);
    pthread_mutex_unlock(&m->op_lock);
    return au_error_set(err, -ENOMEM, "out of memory");
  }
  size_t k = 0;
  for (cell *c = m->cells; c; c = c->next)
    if (c == target || is_descendant(c->name, name)) victims[k++] = c;
  for (size_t i = 0; i < n; i++)
    for (size_t j = i + 1; j < n; j++)
      if (strlen(victims[j]->name) > strlen(victims[i]->name)) {
        cell *t = victims[i];
        victims[i] = victims[j];
        victims[j] = t;
      }
  pthread_mutex_unlock(&m->lock);

  /* While the kernel tears this one down, the zygote prepares the next
   * cell's init (zygote.c). */
  cell_zygote_build_spare(m);
  /* One cgroup.kill takes the whole subtree: inits, executables, orphans,
   * child cells. */
  r = cgroup_kill_wait(target->cgdir, 10000, err);
  if (r < 0) {
    au_error_prefix(err, "free cell %s", name);
    free(victims);
    free(freed);
    pthread_mutex_unlock(&m->op_lock);
    return r;
  }
  pthread_mutex_lock(&m->lock);
  for (size_t i = 0; i < n; i++) {
    cell *c = victims[i];
    for (cell **pp = &m->cells; *pp; pp = &(*pp)->next)
      if (*pp == c) {
        *pp = c->next;
        break;
      }
    while (c->exes) {
      exe *e = c->exes;
      if (e->state == EXE_RUNNING || e->state == EXE_STARTING) {
        exe_stream_drain(m, e, 0);
        exe_stream_drain(m, e, 1);
        exe_set_exit(e, SIGKILL, cell_now_ns());
      }
      exe_unlink(m, e);
    }
    cell_unwatch(m, c->ctl);
  }
  pthread_cond_broadcast(&m->cond);
  pthread_mutex_unlock(&m->lock);
  for (size_t i = 0; i < n; i++) {
    cell *c = victims[i];
    cell_reap_init(m, c);
    freed[i] = strdup(c->name);
  }
  au_error rm_err = {0};
  r = cgroup_remove_tree(target->cgdir, &rm_err);
  if (r < 0) log_debug("free cell %s: %s", name, rm_err.msg);
  cell_remove_state(target->statedir);
  for (size_t i = 0; i < n; i++)
    free_cell_struct(victims[i]);
  free(victims);
  pthread_mutex_unlock(&m->op_lock);
  if (ret_freed)
    *ret_freed = freed;
  else {
    for (size_t i = 0; i < n; i++)
      free(freed[i]);
    free(freed);
  }
  return 0;
}

void exe_fill_info(const exe *e, exe_info *out) {
  memset(out, 0, sizeof(*out));
  snprintf(out->cell, sizeof(out->cell), "%s", e->cell_name);
  snprintf(out->name, sizeof(out->name), "%s", e->name);
  size_t n = 0;
  while (e->argv && e->argv[n])
    n++;
  out->argv = calloc(n + 1, sizeof(char *));
  for (size_t i = 0; out->argv && i < n; i++)
    out->argv[i] = strdup(e->argv[i]);
  out->state = e->state == EXE_STARTING ? EXE_RUNNING : e->state;
  out->host_pid = e->host_pid;
  out->cell_pid = e->cell_pid;
  if (e->state == EXE_EXITED) out->exit_code = WEXITSTATUS(e->wstatus);
  if (e->state == EXE_KILLED) out->signal = WTERMSIG(e->wstatus);
  out->started_ns = e->started_ns;
  out->ended_ns = e->ended_ns;
  out->dropped[0] = byte_ring_dropped(&e->out[0].ring);
  out->dropped[1] = byte_ring_dropped(&e->out[1].ring);
  out->output_lost = e->output_lost;
}

void exe_info_clear(exe_info *info) {
  if (info->argv) {
    for (char **a = info->argv; *a; a++)
      free(*a);
    free(info->argv);
  }
  info->argv = NULL;
}

void cell_info_clear(cell_info *info) {
  for (size_t i = 0; i < info->n_exes; i++)
    exe_info_clear(&info->exes[i]);
  free(info->exes);
  if (info->children) {
    for (char **c = info->children; *c; c++)
      free(*c);
    free(info->children);
  }
  memset(info, 0, sizeof(*info));
}

/* m->lock held. */
static void fill_cell(cell_manager *m, cell *c, cell_info *out) {
  memset(out, 0, sizeof(*out));
  snprintf(out->name, sizeof(out->name), "%s", c->name);
  snprintf(out->cgroup_path, sizeof(out->cgroup_path), "%s", c->cgdir);
  out->init_pid = c->init_pid;
  out->resources = c->res;
  out->share = c->share;
  out->created_ns = c->created_ns;
  out->init_alive = !c->init_dead;
  size_t n = 0;
  for (exe *e = c->exes; e; e = e->next)
    n++;
  out->exes = calloc(n ? n : 1, sizeof(exe_info));
  if (out->exes) {
    /* Oldest first: the list is newest first. */
    size_t i = n;
    for (exe *e = c->exes; e; e = e->next)
      exe_fill_info(e, &out->exes[--i]);
    out->n_exes = n;
  }
  size_t nc = 0;
  size_t l = strlen(c->name);
  for (cell *o = m->cells; o; o = o->next)
    if (is_descendant(o->name, c->name) && !strchr(o->name + l + 1, '/')) nc++;
  out->children = calloc(nc + 1, sizeof(char *));
  size_t j = 0;
  for (cell *o = m->cells; o && out->children; o = o->next)
    if (is_descendant(o->name, c->name) && !strchr(o->name + l + 1, '/'))
      out->children[j++] = strdup(o->name);
}

int cell_inspect(cell_manager *m, const char *name, cell_info *ret, au_error *err) {
  int r = name_validate_path("cell name", name, err);
  if (r < 0) return r;
  pthread_mutex_lock(&m->lock);
  cell *c = cell_find(m, name);
  if (c) fill_cell(m, c, ret);
  pthread_mutex_unlock(&m->lock);
  if (!c) return au_error_set(err, -ENOENT, "cell %s not found", name);
  return 0;
}

static int cmp_info(const void *a, const void *b) {
  return strcmp(((const cell_info *)a)->name, ((const cell_info *)b)->name);
}

int cell_list(cell_manager *m, cell_info **ret, size_t *ret_count, au_error *err) {
  pthread_mutex_lock(&m->lock);
  size_t n = 0;
  for (cell *c = m->cells; c; c = c->next)
    n++;
  cell_info *out = calloc(n ? n : 1, sizeof(*out));
  if (!out) {
    pthread_mutex_unlock(&m->lock);
    return au_error_set(err, -ENOMEM, "out of memory");
  }
  size_t i = 0;
  for (cell *c = m->cells; c; c = c->next)
    fill_cell(m, c, &out[i++]);
  pthread_mutex_unlock(&m->lock);
  /* Sorted by name puts every parent before its children. */
  qsort(out, n, sizeof(*out), cmp_info);
  *ret = out;
  *ret_count = n;
  return 0;
}

void cell_list_free(cell_info *cells, size_t count) {
  for (size_t i = 0; i < count; i++)
    cell_info_clear(&cells[i]);
  free(cells);
}
