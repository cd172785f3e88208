/* RunCell, Free, Inspect and List for cells. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <linux/openat2.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cell/cgroup.h"
#include "cell/devcg.h"
#include "cell/internal.h"
#include "cell/spawn.h"
#include "cleanup.h"
#include "log.h"
#include "path.h"

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

/* Waits for the new init's "ok", or its errno and message (init_fail), on
 * the sync pipe. -EPIPE: it exited without a word. */
static int wait_ready(cell_manager *m, int sync_r, const char *name, au_error *err) {
  struct pollfd p = {.fd = sync_r, .events = POLLIN};
  int r = poll(&p, 1, 10000);
  if (r == 0) return au_error_set(err, -ETIMEDOUT, "cell %s: init did not start", name);
  char buf[sizeof(int32_t) + 512];
  ssize_t n = read(sync_r, buf, sizeof(buf) - 1);
  if (n < 0) return au_error_errno(err, -errno, "cell %s: read from init", name);
  buf[n] = '\0';
  if (n == 2 && memcmp(buf, "ok", 2) == 0) return 0;
  if (n == 0)
    return au_error_set(err, -EPIPE, "cell %s: init exited before it was ready (is %s runnable?)",
                        name, m->self_exe);
  int32_t e = -EIO;
  if ((size_t)n >= sizeof(e)) memcpy(&e, buf, sizeof(e));
  if (e >= 0 || e < -4095) e = -EIO;
  /* A setup step the kernel refused (a mount, a namespace) is the cell's
   * circumstances, not a bug of ours: the caller sees which. */
  if (e == -EPERM || e == -EACCES || e == -ENOENT || e == -EROFS || e == -ENOTDIR) e = -EOPNOTSUPP;
  return au_error_set(err, e, "cell %s: init: %s", name,
                      (size_t)n > sizeof(e) ? buf + sizeof(e) : strerror(-e));
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

int cell_spawn_req_build(cell_manager *m, const char *name, const cell_init_opts *o,
                         const cell_bind *binds, const int *trees, size_t nbinds, const int fds[4],
                         ctl_out *ret) {
  struct ctl_spawn_cell req;
  ctl_spawn_cell_init(&req);
  if (nbinds > CTL_MAX_MOUNTS) {
    memset(ret, 0, sizeof(*ret));
    return -EINVAL;
  }
  req.name = name;
  req.flags = o->flags;
  req.id_base = o->id_base;
  req.scratch_mb = o->scratch_mb;
  req.scratch_inodes = o->scratch_inodes;
  req.masks = (char *const *)m->masks;
  req.nmasks = m->nmasks;
  for (size_t i = 0; i < nbinds; i++)
    req.mounts[i] = (struct ctl_mount){
        .target = binds[i].target, .read_only = binds[i].read_only, .fd = trees[i]};
  req.nmounts = nbinds;
  req.cgroup_fd = fds[0];
  req.sync_w = fds[1];
  req.leaf_procs = fds[2];
  req.listen_fd = fds[3];
  return ctl_spawn_cell_encode(&req, ret); /* borrows; closes nothing */
}

/* What a RunCell needs before anything exists, and what it made so far
 * (undone by create_undo when it fails). */
typedef struct cell_create_ctx {
  cgroup_setting settings[CELL_RESOURCES_MAX_SETTINGS];
  size_t nset;
  const char *ctrls[8];
  size_t nctrl;
  unsigned ns;
  bool new_ids; /* a user namespace of its own */
  int trees[CELL_BINDS_MAX];
  size_t ntrees;
  int cgfd, procs, cell_procs, listen, spare_sync, spare_ctl;
  bool made_cgroup, made_state;
} cell_create_ctx;

static void ctx_close(cell_create_ctx *x) {
  int *fds[] = {&x->cgfd, &x->procs, &x->cell_procs, &x->listen, &x->spare_sync, &x->spare_ctl};
  for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
    if (*fds[i] >= 0) close(TAKE_FD(*fds[i]));
  for (size_t i = 0; i < x->ntrees; i++)
    close(x->trees[i]);
  x->ntrees = 0;
}

/* Whether the directory DIR is TARGET or lies below it, by inode: a path
 * spelled another way, or reached through another mount of the same file
 * system, is still the same object. */
static bool dir_is_under(int dir, const struct stat *target) {
  struct stat root, st;
  if (stat("/", &root) < 0) return true;
  int cur = fcntl(dir, F_DUPFD_CLOEXEC, 0);
  for (int depth = 0; cur >= 0 && depth < 256; depth++) {
    bool hit = false, top = false;
    if (fstat(cur, &st) < 0)
      hit = true;
    else {
      hit = st.st_dev == target->st_dev && st.st_ino == target->st_ino;
      top = st.st_dev == root.st_dev && st.st_ino == root.st_ino;
    }
    if (hit || top) {
      close(cur);
      return hit;
    }
    int up = openat(cur, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
    close(cur);
    cur = up;
  }
  if (cur >= 0) close(cur);
  return true; /* unresolvable: assume the worst */
}

/* FD itself when it is a directory, else the directory PATH names it in. */
static int dir_of(int fd, const struct stat *st, const char *path) {
  if (S_ISDIR(st->st_mode)) return fcntl(fd, F_DUPFD_CLOEXEC, 0);
  char parent[4096];
  snprintf(parent, sizeof(parent), "%s", path);
  char *slash = strrchr(parent, '/');
  if (!slash) {
    errno = EINVAL;
    return -1;
  }
  if (slash == parent)
    slash[1] = '\0';
  else
    *slash = '\0';
  return open(parent, O_PATH | O_DIRECTORY | O_CLOEXEC);
}

/* auraed's own files (the masks) are never bound into a cell, neither
 * below a source nor containing it. */
static int check_not_ours(cell_manager *m, int src, size_t i, const char *source, au_error *err) {
  struct stat sst;
  if (fstat(src, &sst) < 0) return au_error_errno(err, -errno, "mounts[%zu].source", i);
  _cleanup_close_ int sdir = dir_of(src, &sst, source);
  if (sdir < 0)
    return au_error_errno(err, errno ? -errno : -EINVAL, "mounts[%zu].source %s", i, source);
  for (size_t k = 0; k < m->nmasks; k++) {
    _cleanup_close_ int mfd = open(m->masks[k], O_PATH | O_CLOEXEC);
    struct stat mst;
    if (mfd < 0 || fstat(mfd, &mst) < 0) continue; /* nothing there to protect */
    _cleanup_close_ int mdir = dir_of(mfd, &mst, m->masks[k]);
    bool same = sst.st_dev == mst.st_dev && sst.st_ino == mst.st_ino;
    if (same || (S_ISDIR(mst.st_mode) && dir_is_under(sdir, &mst)) ||
        (S_ISDIR(sst.st_mode) && mdir >= 0 && dir_is_under(mdir, &sst)))
      return au_error_set(err, -EPERM,
                          "mounts[%zu].source %s: auraed's own files (%s) are never bound into a "
                          "cell",
                          i, source, m->masks[k]);
  }
  return 0;
}

/* A bind an admin asked for, checked and cloned as a detached mount tree
 * (open_tree) that the init attaches: the source is resolved here without
 * following any symlink, and what the init binds is this very object. */
static int prepare_bind(cell_manager *m, const cell_bind *b, size_t i, int *ret_tree,
                        au_error *err) {
  static const char *const forbidden[] = {"/proc", "/sys", "/dev", NULL};
  if (!b->source || !path_is_plain(b->source) || strcmp(b->source, "/") == 0 ||
      strlen(b->source) >= 4096)
    return au_error_set(err, -EINVAL,
                        "mounts[%zu].source: must be an absolute path other than /, without "
                        "empty, . or .. parts or a trailing /",
                        i);
  if (!b->target || !path_is_plain(b->target) || strcmp(b->target, "/") == 0 ||
      strlen(b->target) >= 4096)
    return au_error_set(err, -EINVAL,
                        "mounts[%zu].target: must be an absolute path other than /, without "
                        "empty, . or .. parts or a trailing /",
                        i);
  for (const char *const *f = forbidden; *f; f++)
    if (strcmp(b->target, *f) == 0 || path_is_below(b->target, *f))
      return au_error_set(err, -EINVAL, "mounts[%zu].target %s: nothing may be bound under %s", i,
                          b->target, *f);
  struct open_how how = {.flags = O_PATH | O_CLOEXEC,
                         .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
  _cleanup_close_ int fd = (int)syscall(SYS_openat2, AT_FDCWD, b->source, &how, sizeof(how));
  if (fd < 0)
    return au_error_errno(err, errno == ELOOP ? -EINVAL : -errno,
                          "mounts[%zu].source %s (symlinks are not followed)", i, b->source);
  int r = check_not_ours(m, fd, i, b->source, err);
  if (r < 0) return r;
  struct stat st;
  if (fstat(fd, &st) < 0) return au_error_errno(err, -errno, "mounts[%zu].source", i);
  if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode) && !S_ISSOCK(st.st_mode))
    return au_error_set(err, -EINVAL,
                        "mounts[%zu].source %s: not a directory, regular file or socket", i,
                        b->source);
  int tree = open_tree(fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE);
  if (tree < 0) return au_error_errno(err, -errno, "mounts[%zu].source %s: clone", i, b->source);
  struct mount_attr attr = {.attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
                                        (b->read_only ? MOUNT_ATTR_RDONLY : 0)};
  if (mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr)) < 0) {
    int e = -errno;
    close(tree);
    return au_error_errno(err, e, "mounts[%zu].source %s: set flags", i, b->source);
  }
  *ret_tree = tree;
  return 0;
}

/* Checks that need no resources: name, limits, binds, the rule that a
 * child is never less confined than its parent (m->lock held for the
 * parent). */
static int create_prepare(cell_manager *m, const cell_spec *spec, cell *parent, cell_create_ctx *x,
                          au_error *err) {
  int r;
  if ((r = cell_resources_to_settings(&spec->resources, x->settings, &x->nset, err)) < 0) return r;
  x->nctrl = cell_settings_controllers(x->settings, x->nset, x->ctrls);
  x->ns = share_to_ns(spec->share);
  if (parent && (spec->share & CELL_PRIVILEGED) && !(parent->share & CELL_PRIVILEGED))
    return au_error_set(err, -EOPNOTSUPP,
                        "isolation.privileged: cell %s is not privileged, so its children "
                        "cannot be",
                        parent->name);
  /* A nested cell lives in its parent's user namespace, whatever that is:
   * one of its own under a privileged parent could not mount its /proc
   * (the kernel refuses a new proc in a user namespace where every proc
   * in sight is partly masked, as the parent's is). */
  x->new_ids = !parent && !(spec->share & (CELL_PRIVILEGED | CELL_SHARE_USER));
  if (spec->nbinds > CELL_BINDS_MAX)
    return au_error_set(err, -EINVAL, "mounts: %zu, at most %d", spec->nbinds, CELL_BINDS_MAX);
  if (spec->nbinds && (spec->share & CELL_SHARE_MNT))
    return au_error_set(err, -EINVAL, "mounts: a cell sharing the host's mounts cannot have any");
  for (size_t i = 0; i < spec->nbinds; i++) {
    for (size_t j = 0; j < i; j++)
      if (strcmp(spec->binds[i].target, spec->binds[j].target) == 0)
        return au_error_set(err, -EINVAL, "mounts[%zu].target %s: given twice", i,
                            spec->binds[i].target);
    if ((r = prepare_bind(m, &spec->binds[i], i, &x->trees[x->ntrees], err)) < 0) return r;
    x->ntrees++;
  }
  return 0;
}

void cell_binds_free(cell_bind *b, size_t n) {
  for (size_t i = 0; b && i < n; i++) {
    free((char *)b[i].source);
    free((char *)b[i].target);
  }
  free(b);
}

/* Copies of N binds with their strings; NULL when N is 0 or memory ran
 * out (then nothing is half made). */
static cell_bind *binds_dup(const cell_bind *b, size_t n) {
  cell_bind *out = n ? calloc(n, sizeof(*out)) : NULL;
  for (size_t i = 0; out && i < n; i++) {
    out[i] = (cell_bind){
        .source = strdup(b[i].source), .target = strdup(b[i].target), .read_only = b[i].read_only};
    if (!out[i].source || !out[i].target) {
      cell_binds_free(out, i + 1);
      out = NULL;
    }
  }
  return out;
}

/* The cell's cgroup directory and its control files belong to the cell's
 * root, as systemd delegates a subtree: the init (that host uid) moves
 * itself and clones executables and child cells into cgroups below it,
 * and the kernel checks those moves against the cgroup.procs files of the
 * target and of the common ancestor. Limits (memory.max...) stay root's.
 * An executable's leaf is only ever a target: its cgroup.procs is all it
 * needs (one chown on RunExecutable's path, not four). */
int cell_cgroup_delegate(const char *dir, uint32_t id, bool subtree, au_error *err) {
  static const char *const files[] = {"/cgroup.procs", "", "/cgroup.threads",
                                      "/cgroup.subtree_control", NULL};
  for (const char *const *f = files; *f && (subtree || f == files); f++) {
    char path[CELL_PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s%s", dir, *f);
    if (chown(path, id, id) < 0 && !(errno == ENOENT && **f))
      return au_error_errno(err, -errno, "delegate %s", path);
  }
  return 0;
}

/* The cell's cgroup (limits, device filter, _init leaf), state directory,
 * init.sock and id range. */
static int create_resources(cell_manager *m, cell *c, const cell_spec *spec, cell *parent,
                            cell_create_ctx *x, au_error *err) {
  const char *pcg = parent ? parent->cgdir : m->root;
  int r;
  /* Say which limit cannot be enforced before anything exists. */
  for (size_t i = 0; i < x->nctrl; i++)
    if ((r = cgroup_ensure_controller(m->mount, pcg, x->ctrls[i], false, err)) < 0) return r;
  if ((r = cgroup_mkdir(c->cgdir, err)) < 0) {
    if (r == -EEXIST) au_error_prefix(err, "cell %s: a stale cgroup is in the way", c->name);
    return r;
  }
  x->made_cgroup = true;
  for (size_t i = 0; i < x->nctrl; i++)
    if ((r = cgroup_ensure_controller(m->mount, pcg, x->ctrls[i], true, err)) < 0) return r;
  for (size_t i = 0; i < x->nset; i++)
    if ((r = cgroup_write(c->cgdir, x->settings[i].file, x->settings[i].value, err)) < 0) {
      au_error_prefix(err, "cell %s: resources", c->name);
      if (r == -EINVAL || r == -ERANGE) r = err->code = -EINVAL;
      return r;
    }
  char initdir[CELL_PATH_MAX + 8];
  snprintf(initdir, sizeof(initdir), "%s/_init", c->cgdir);
  if ((r = cgroup_mkdir(initdir, err)) < 0) return r;
  if (mkdir(c->statedir, 0700) < 0) return au_error_errno(err, -errno, "mkdir %s", c->statedir);
  x->made_state = true;
  c->statedir_fd = open(c->statedir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  x->cgfd = open(c->cgdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  char procs_path[CELL_PATH_MAX + 32];
  snprintf(procs_path, sizeof(procs_path), "%s/cgroup.procs", initdir);
  x->procs = open(procs_path, O_WRONLY | O_CLOEXEC);
  snprintf(procs_path, sizeof(procs_path), "%s/cgroup.procs", c->cgdir);
  x->cell_procs = open(procs_path, O_WRONLY | O_CLOEXEC);
  if (c->statedir_fd < 0 || x->cgfd < 0 || x->procs < 0 || x->cell_procs < 0)
    return au_error_errno(err, -errno, "cell %s: prepare", c->name);
  /* Before any process of the cell runs in its cgroup: a privileged cell
   * opens what the host's root may, every other cell only the OCI default
   * devices (devcg.h). */
  if (!(spec->share & CELL_PRIVILEGED)) {
    r = 0;
    if (m->devprog < 0 && (r = cell_devices_load(err)) >= 0) m->devprog = r;
    if (r < 0 || (r = cell_devices_attach(x->cgfd, m->devprog, err)) < 0) {
      au_error_prefix(err, "cell %s", c->name);
      return r;
    }
  }
  if ((x->listen = cell_listen_socket(c, err)) < 0) return x->listen;
  if (parent) c->id_base = parent->id_base;
  return 0;
}

/* A fresh id range from the pool (m->lock taken here); the last free one
 * may be the one kept for the next spare, which a cell needs more. */
static int take_ids(cell_manager *m, cell *c, au_error *err) {
  pthread_mutex_lock(&m->lock);
  int r = m->ids ? cell_idpool_alloc(m->ids, &c->id_base) : -ENOSPC;
  pthread_mutex_unlock(&m->lock);
  if (r < 0 && (c->id_base = cell_zygote_revoke_spare_ids(m)) != 0) r = 0;
  if (r < 0)
    return au_error_set(err, -ENOSPC,
                        "cell %s: every id range of the pool is in use (auraed.conf "
                        "cell_id_pool.cells)",
                        c->name);
  c->owns_ids = true;
  return 0;
}

/* Clones c's init (by the zygote, else by exec; a child cell's by its
 * parent's init) into the cell's cgroup and waits until it serves. */
static int clone_init(cell_manager *m, cell *c, cell *parent, const cell_spec *spec,
                      cell_create_ctx *x, au_error *err) {
  int sp[2];
  if (pipe2(sp, O_CLOEXEC) < 0) return au_error_errno(err, -errno, "cell %s: pipe", c->name);
  _cleanup_close_ int sync_r = sp[0], sync_w = sp[1];
  int all[4] = {x->cgfd, sync_w, x->procs, x->listen};
  cell_init_opts o = {.flags = x->ns,
                      .id_base = c->owns_ids ? c->id_base : 0,
                      .scratch_mb = m->scratch_mb,
                      .scratch_inodes = m->scratch_inodes,
                      .masks = m->masks};
  ctl_out req;
  int r = cell_spawn_req_build(m, c->name, &o, spec->binds, x->trees, x->ntrees, all, &req);
  if (r < 0) return au_error_set(err, r, "cell %s: encode its SPAWN_CELL", c->name);
  if (!parent) {
    r = cell_zygote_spawn(m, c->name, &req, &c->init_pid, &c->init_pidfd, err);
    if (r == -ENOTCONN) {
      cell_mount mounts[CELL_BINDS_MAX];
      for (size_t i = 0; i < x->ntrees; i++)
        mounts[i] = (cell_mount){.fd = x->trees[i],
                                 .target = spec->binds[i].target,
                                 .read_only = spec->binds[i].read_only};
      r = cell_spawn_init(m->self_exe, c->name, &o, mounts, x->ntrees, x->cgfd, sync_w, x->procs,
                          x->listen, &c->init_pid, &c->init_pidfd);
      if (r < 0) au_error_errno(err, r, "cell %s: clone3 the init", c->name);
    }
  } else {
    /* A child cell is made from inside its parent: the parent's init
     * clones it, so its new namespaces nest in the parent's. */
    ctl_msg raw;
    r = cell_request(m, parent, &req, &raw, err);
    if (r == 0) {
      char why[256];
      struct ctl_spawn_reply rep;
      r = ctl_spawn_reply_decode(&raw, &rep, why, sizeof(why));
      if (r == 0)
        c->init_pid = rep.cred_pid > 0 ? rep.cred_pid : 0;
      else
        au_error_set(err, r, "cell %s: init of %s: %s", c->name, parent->name, why);
      ctl_spawn_reply_clear(&rep);
      ctl_msg_clear(&raw);
    }
  }
  ctl_out_clear(&req);
  if (r < 0) return r;
  close(TAKE_FD(sync_w));
  return await_init(m, c, sync_r, err);
}

/* For a top-level cell with the default isolation, no limits and no
 * binds: the zygote's spare init (zygote.c), which comes with its id
 * range. true: it took the cell (its answer comes on x->spare_sync, its
 * control connection is x->spare_ctl); false: clone one. */
static bool take_spare(cell_manager *m, cell *c, cell_create_ctx *x) {
  int sp[2];
  if (pipe2(sp, O_CLOEXEC) < 0) return false;
  _cleanup_close_ int sync_r = sp[0], sync_w = sp[1];
  const int all[4] = {x->cell_procs, sync_w, x->procs, x->listen};
  uint32_t ids = 0;
  int r =
      cell_zygote_take_spare(m, c->name, all, &c->init_pid, &c->init_pidfd, &x->spare_ctl, &ids);
  if (ids) { /* taken: even a spare that died since it was ready leaves us its range */
    c->id_base = ids;
    c->owns_ids = true;
  }
  if (r < 0) {
    if (r != -EAGAIN) log_debug("cell %s: no spare init: %s", c->name, strerror(-r));
    return false;
  }
  c->id_base = ids;
  c->owns_ids = true;
  x->spare_sync = TAKE_FD(sync_r);
  return true;
}

/* The init: the spare where it fits, else a clone. */
static int create_start(cell_manager *m, cell *c, cell *parent, const cell_spec *spec,
                        cell_create_ctx *x, au_error *err) {
  int r;
  bool spare = !parent && x->ns == CELL_NS_ALL && x->new_ids && x->nset == 0 && x->ntrees == 0 &&
               take_spare(m, c, x);
  /* A spare comes with its range, one that died on the way left it to us,
   * a nested cell has its parent's. */
  if (x->new_ids && !c->owns_ids && (r = take_ids(m, c, err)) < 0) return r;
  if (c->id_base && (r = cell_cgroup_delegate(c->cgdir, c->id_base, true, err)) < 0) return r;
  if (spare && (r = await_init(m, c, x->spare_sync, err)) < 0) {
    if (r != -EPIPE) return r;
    /* The spare was killed as it was handed to us (it died before it could
     * answer): a clone of the usual kind, with the range it had. */
    log_debug("cell %s: the spare init died before it was ready; cloning one", c->name);
    cell_reap_init(m, c);
    close(TAKE_FD(x->spare_ctl));
    *err = (au_error){0};
    spare = false;
  }
  if (!spare && (r = clone_init(m, c, parent, spec, x, err)) < 0) return r;
  int fd = spare ? TAKE_FD(x->spare_ctl) : cell_connect(c, err);
  if (fd < 0) return fd;
  c->ctl = fd;
  return 0;
}

/* Nothing stays behind: kill whatever started, remove cgroups and state,
 * give the id range back. */
static void create_undo(cell_manager *m, cell *c, cell_create_ctx *x) {
  if (c->init_pidfd >= 0) cell_pidfd_send_signal(c->init_pidfd, SIGKILL);
  bool emptied = true;
  if (x->made_cgroup) {
    emptied = cgroup_kill_wait(c->cgdir, 5000, NULL) == 0;
    cgroup_remove_tree(c->cgdir, NULL);
  }
  cell_reap_init(m, c);
  if (x->made_state) cell_remove_state(c->statedir);
  /* Processes that outlive the kill (D state) still run with the range's
   * ids: it stays taken until auraed restarts. */
  if (c->owns_ids && emptied) {
    pthread_mutex_lock(&m->lock);
    if (m->ids) cell_idpool_release(m->ids, c->id_base);
    pthread_mutex_unlock(&m->lock);
  } else if (c->owns_ids) {
    log_debug("cell %s: its cgroup does not empty; ids from %u stay taken", c->name, c->id_base);
  }
  free_cell_struct(c);
}

int cell_create(cell_manager *m, const cell_spec *spec, au_error *err) {
  int r = name_validate_path("cell name", spec->name, err);
  if (r < 0) return r;
  cell_create_ctx x = {
      .cgfd = -1, .procs = -1, .cell_procs = -1, .listen = -1, .spare_sync = -1, .spare_ctl = -1};
  pthread_mutex_lock(&m->op_lock);
  char parent_name[AU_NAME_MAX + 1];
  bool nested = name_parent(spec->name, parent_name, sizeof(parent_name));
  cell *parent = NULL, *c = NULL;

  pthread_mutex_lock(&m->lock);
  if (cell_find(m, spec->name)) {
    r = au_error_set(err, -EEXIST, "cell %s already exists", spec->name);
  } else if (nested && !(parent = cell_find(m, parent_name))) {
    r = au_error_set(err, -ENOENT, "parent cell %s of %s does not exist (create it first)",
                     parent_name, spec->name);
  } else if (parent && parent->init_dead) {
    r = au_error_set(err, -ENODEV, "parent cell %s: its init is gone", parent_name);
  } else {
    r = create_prepare(m, spec, parent, &x, err);
  }
  pthread_mutex_unlock(&m->lock);
  if (r < 0) goto out;

  c = calloc(1, sizeof(*c));
  if (!c) {
    r = au_error_set(err, -ENOMEM, "out of memory");
    goto out;
  }
  c->ctl = c->statedir_fd = c->init_pidfd = -1;
  ctl_msg_init(&c->reply);
  snprintf(c->name, sizeof(c->name), "%s", spec->name);
  const char *leaf = name_leaf(spec->name);
  if (snprintf(c->cgdir, sizeof(c->cgdir), "%s/%s", parent ? parent->cgdir : m->root, leaf) >=
          (int)sizeof(c->cgdir) ||
      snprintf(c->statedir, sizeof(c->statedir), "%s/%s", parent ? parent->statedir : m->state_root,
               leaf) >= (int)sizeof(c->statedir)) {
    r = au_error_set(err, -EINVAL, "cell %s: path too long", spec->name);
    goto out;
  }
  c->res = spec->resources;
  c->share = spec->share;
  c->created_ns = cell_now_ns();
  if (spec->nbinds && !(c->binds = binds_dup(spec->binds, spec->nbinds))) {
    r = au_error_set(err, -ENOMEM, "out of memory");
    goto out;
  }
  c->nbinds = spec->nbinds;
  if ((r = create_resources(m, c, spec, parent, &x, err)) < 0 ||
      (r = create_start(m, c, parent, spec, &x, err)) < 0)
    goto out;

  pthread_mutex_lock(&m->lock);
  c->ctl_token = cell_watch(m, c->ctl);
  c->next = m->cells;
  m->cells = c;
  pthread_mutex_unlock(&m->lock);
  log_debug("cell %s: created, init pid %d, ids from %u", c->name, c->init_pid, c->id_base);
  c = NULL;
  r = 0;
out:
  if (c) create_undo(m, c, &x);
  ctx_close(&x);
  pthread_mutex_unlock(&m->op_lock);
  return r;
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
    if (c == target || path_is_below(c->name, name)) n++;
  if (n > 1 && !recursive) {
    char child[AU_NAME_MAX + 1] = "";
    for (cell *c = m->cells; c; c = c->next)
      if (path_is_below(c->name, name)) snprintf(child, sizeof(child), "%s", c->name);
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
    if (c == target || path_is_below(c->name, name)) victims[k++] = c;
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
  /* Every process of the range is gone with the cgroup: it may serve
   * another cell (the pool hands it out last). */
  pthread_mutex_lock(&m->lock);
  for (size_t i = 0; i < n; i++)
    if (victims[i]->owns_ids && m->ids) cell_idpool_release_span(m->ids, victims[i]->id_base);
  bool no_spare_range = !m->spare_ids;
  pthread_mutex_unlock(&m->lock);
  /* A full pool took the spare's range for a cell: the freed one serves. */
  if (no_spare_range) cell_zygote_build_spare(m);
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
  cell_binds_free(info->binds, info->nbinds);
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
  out->id_base = c->id_base;
  out->init_alive = !c->init_dead;
  out->binds = binds_dup(c->binds, c->nbinds);
  out->nbinds = out->binds ? c->nbinds : 0;
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
    if (path_is_below(o->name, c->name) && !strchr(o->name + l + 1, '/')) nc++;
  out->children = calloc(nc + 1, sizeof(char *));
  size_t j = 0;
  for (cell *o = m->cells; o && out->children; o = o->next)
    if (path_is_below(o->name, c->name) && !strchr(o->name + l + 1, '/'))
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
