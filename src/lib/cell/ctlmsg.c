/* One encoder and one decoder per control message (ctlmsg.h). The
 * decoders check a ctl_msg that ctl_parse has framed; each check names
 * the message and the field, so a rejected packet is explained in one
 * line of a log. */
#include "cell/ctlmsg.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "names.h"
#include "path.h"

/* The num slots of each message (ctlmsg.h lists the layouts). */
enum { EXE_HAS_CREDS, EXE_UID, EXE_GID, EXE_ARGC, EXE_ENVC, EXE_NGROUPS };
enum { CELL_FLAGS, CELL_ID_BASE, CELL_SCRATCH_MB, CELL_SCRATCH_INODES, CELL_NMOUNTS, CELL_RO };
enum { HOST_PID_PID };
enum { EXIT_RESERVED, EXIT_WSTATUS, EXIT_END_NS };
enum { SPARE_FLAGS, SPARE_ID_BASE, SPARE_SCRATCH_MB, SPARE_SCRATCH_INODES };
enum { READY_PID };
enum { STALE_PID };
enum { TOOK_PID, TOOK_NEXT_ID_BASE };
enum { BUILD_ID_BASE };
enum { SPAWNED_PID };
enum { QUERY_RUNNING, QUERY_WSTATUS, QUERY_END_NS, QUERY_CELL_PID, QUERY_HOST_PID };

/* The fixed strings and fds before a message's variable ones. */
enum { EXE_STR_NAME, EXE_STR_CWD, EXE_STR_ARGV };
enum {
  EXE_FD_CGROUP,
  EXE_FD_STDIN,
  EXE_FD_OUT_W,
  EXE_FD_ERR_W,
  EXE_FD_OUT_R,
  EXE_FD_ERR_R,
  EXE_FD_REPLY,
  EXE_NFDS = EXE_FD_REPLY
};
enum { CELL_STR_NAME, CELL_STR_MASKS };
enum { CELL_FD_CGROUP, CELL_FD_SYNC_W, CELL_FD_LEAF_PROCS, CELL_FD_LISTEN, CELL_FD_MOUNTS };
enum {
  TAKE_FD_CGROUP_PROCS,
  TAKE_FD_SYNC_W,
  TAKE_FD_LEAF_PROCS,
  TAKE_FD_LISTEN,
  TAKE_FD_CTL,
  TAKE_NFDS
};
enum { QUERY_FD_OUT_R, QUERY_FD_ERR_R, QUERY_FD_PIDFD };

#define PATH_MAX_LEN 4095 /* PATH_MAX less its NUL */
/* The num slots 0 to n-1, for check_head. */
#define FIRST_SLOTS(n) ((1u << (n)) - 1)
/* A group id as text: up to ten digits and a NUL. */
#define ID_TEXT 11

const char *ctl_type_name(uint32_t type) {
  static const char *const names[] = {
      [CTL_SPAWN_EXE] = "SPAWN_EXE",
      [CTL_SPAWN_CELL] = "SPAWN_CELL",
      [CTL_QUERY] = "QUERY",
      [CTL_FORGET] = "FORGET",
      [CTL_REPLY] = "REPLY",
      [CTL_EXIT_EVENT] = "EXIT_EVENT",
      [CTL_HOST_PID] = "HOST_PID",
      [CTL_SPARE_CONFIG] = "SPARE_CONFIG",
      [CTL_SPARE_READY] = "SPARE_READY",
      [CTL_SPARE_STALE] = "SPARE_STALE",
      [CTL_TAKE_SPARE] = "TAKE_SPARE",
      [CTL_TOOK_SPARE] = "TOOK_SPARE",
      [CTL_BUILD_SPARE] = "BUILD_SPARE",
  };
  return type < ARRAY_SIZE(names) && names[type] ? names[type] : "UNKNOWN";
}

/* ---- Encoding ---- */

int ctl_out_send(int sock, uint32_t seq, const ctl_out *o) {
  /* ctl_send_pid carries neither strings nor an error: no message that
   * names a process in its credentials has them. */
  if (o->cred_pid > 0) {
    if (o->nstr || o->error) return -EINVAL;
    return ctl_send_pid(sock, o->type, seq, o->num, CTL_NUMS, o->fds, o->nfds, o->cred_pid);
  }
  return ctl_send(sock, o->type, seq, o->error, o->num, CTL_NUMS, o->str, o->nstr, o->fds, o->nfds);
}

void ctl_out_clear(ctl_out *o) {
  free(o->str);
  free(o->own);
  memset(o, 0, sizeof(*o));
}

/* Starts ret for a message of TYPE with room for NSTR strings. */
static int out_start(ctl_out *ret, uint32_t type, size_t nstr) {
  memset(ret, 0, sizeof(*ret));
  ret->type = type;
  if (nstr && !(ret->str = calloc(nstr, sizeof(char *)))) return -ENOMEM;
  return 0;
}

static int out_str(ctl_out *o, const char *s) {
  if (!s) return -EINVAL;
  o->str[o->nstr++] = s;
  return 0;
}

/* A required fd must be there: the receiver takes fds by position, and
 * ctl_send skips a -1, which would move every later fd one place up. */
static int out_fd(ctl_out *o, int fd) {
  if (fd < 0) return -EBADF;
  o->fds[o->nfds++] = fd;
  return 0;
}

/* Clears ret when an encoder fails, so no half message is sent by mistake. */
static int out_fail(ctl_out *ret, int r) {
  ctl_out_clear(ret);
  return r;
}

/* For a refusal before out_start: ret may hold garbage, nothing to free. */
static int out_refuse(ctl_out *ret, int r) {
  memset(ret, 0, sizeof(*ret));
  return r;
}

/* ---- Decoding ---- */

typedef struct dec {
  const ctl_msg *raw;
  const char *what; /* the message, first word of every complaint */
  char *why;
  size_t size;
} dec;

__attribute__((format(printf, 2, 3))) static int fail(const dec *d, const char *fmt, ...) {
  if (d->why && d->size) {
    int n = snprintf(d->why, d->size, "%s: ", d->what);
    if (n >= 0 && (size_t)n < d->size) {
      va_list ap;
      va_start(ap, fmt);
      vsnprintf(d->why + n, d->size - (size_t)n, fmt, ap);
      va_end(ap);
    }
  }
  return -EBADMSG;
}

/* The type, no error, and only the num slots in USED set. */
static int check_head(const dec *d, uint32_t type, unsigned used) {
  const ctl_msg *raw = d->raw;
  if (raw->type != type)
    return fail(d, "got a %s message (type %u)", ctl_type_name(raw->type), raw->type);
  if (raw->error != 0) return fail(d, "error %d in a message that is no error reply", raw->error);
  for (unsigned i = 0; i < CTL_NUMS; i++)
    if (!(used & (1u << i)) && raw->num[i] != 0)
      return fail(d, "num[%u] is %lld, and unused", i, (long long)raw->num[i]);
  return 0;
}

static int check_nstr(const dec *d, size_t want) {
  if (d->raw->nstr != want) return fail(d, "%zu strings, %zu expected", d->raw->nstr, want);
  return 0;
}

/* Between MIN and MAX fds, each a real one. */
static int check_nfds(const dec *d, size_t min, size_t max) {
  size_t n = d->raw->nfds;
  if (n < min || n > max) {
    if (min == max) return fail(d, "%zu fds, %zu expected", n, min);
    return fail(d, "%zu fds, %zu to %zu expected", n, min, max);
  }
  for (size_t i = 0; i < n; i++)
    if (d->raw->fds[i] < 0) return fail(d, "fd %zu is missing", i);
  return 0;
}

enum fd_kind { FD_ANY, FD_DIR, FD_FIFO, FD_SOCK, FD_REG };

/* What an fd is, as far as its mode says. A wrong one means a sender's
 * fds are out of order, or an init hands auraed something to hang on. */
static int check_fd_kind(const dec *d, size_t i, const char *field, enum fd_kind kind) {
  static const char *const names[] = {"", "a directory", "a pipe", "a socket", "a file"};
  static const mode_t modes[] = {0, S_IFDIR, S_IFIFO, S_IFSOCK, S_IFREG};
  if (kind == FD_ANY) return 0;
  struct stat st;
  if (fstat(d->raw->fds[i], &st) < 0) return fail(d, "%s (fd %zu): %s", field, i, strerror(errno));
  if ((st.st_mode & S_IFMT) != modes[kind])
    return fail(d, "%s (fd %zu) is not %s", field, i, names[kind]);
  return 0;
}

static int num_range(const dec *d, unsigned slot, const char *field, int64_t lo, int64_t hi,
                     int64_t *ret) {
  int64_t v = d->raw->num[slot];
  /* Set even when out of range: callers test the result, and the
   * compiler cannot see that fail() never returns 0. */
  *ret = v;
  if (v < lo || v > hi)
    return fail(d, "%s %lld is out of range %lld to %lld", field, (long long)v, (long long)lo,
                (long long)hi);
  return 0;
}

static int check_label(const dec *d, const char *field, const char *s) {
  au_error err = {0};
  if (name_validate_label(field, s, &err) < 0) return fail(d, "%s", err.msg);
  return 0;
}

static int check_cell_path(const dec *d, const char *field, const char *s) {
  au_error err = {0};
  if (name_validate_path(field, s, &err) < 0) return fail(d, "%s", err.msg);
  return 0;
}

static int check_abs_path(const dec *d, const char *field, const char *s) {
  if (s[0] != '/') return fail(d, "%s \"%.64s\" is not absolute", field, s);
  if (strlen(s) > PATH_MAX_LEN) return fail(d, "%s is longer than %d", field, PATH_MAX_LEN);
  return 0;
}

/* A bind mount's target: absolute and in its plain form ("/a/b": no
 * empty, "." or ".." parts, no trailing '/'), and never the cell's root.
 * The init resolves it inside the cell's root anyway; the plain form
 * means a path that names something else there never gets that far. */
static int check_mount_target(const dec *d, const char *field, const char *s) {
  int r = check_abs_path(d, field, s);
  if (r < 0) return r;
  if (s[1] == '\0') return fail(d, "%s is \"/\", the cell's root", field);
  if (!path_is_plain(s))
    return fail(d, "%s \"%.64s\" has an empty, \".\" or \"..\" part", field, s);
  return 0;
}

/* A wait status as waitpid reports an ended process: exited (code in bits
 * 8-15) or killed (signal 1-64 in bits 0-6, core dump bit 7). */
static bool wstatus_ok(int64_t st) {
  if (st < 0 || st > 0xffff) return false;
  int sig = (int)(st & 0x7f);
  if (sig == 0) return (st & 0xff) == 0;
  return sig <= 64 && (st & 0xff00) == 0;
}

/* A decimal id as the encoder writes it: digits only, no leading zero,
 * at most CTL_ID_MAX. */
static bool parse_id(const char *s, uint32_t *ret) {
  if (!*s || (s[0] == '0' && s[1]) || strlen(s) > 10) return false;
  uint64_t v = 0;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9') return false;
    v = v * 10 + (uint64_t)(*p - '0');
  }
  if (v > CTL_ID_MAX) return false;
  *ret = (uint32_t)v;
  return true;
}

static int check_flags(const dec *d, unsigned slot, unsigned *ret) {
  int64_t v = d->raw->num[slot];
  *ret = (unsigned)v;
  if (v < 0 || (v & ~(int64_t)CTL_CELL_FLAGS))
    return fail(d, "flags %#llx has bits other than %#x", (long long)v, CTL_CELL_FLAGS);
  return 0;
}

/* 0 (no user namespace), or the first id of a range of CTL_ID_RANGE ids
 * that all are ids: a multiple of CTL_ID_RANGE (idpool.c hands out no
 * other), never the first range, whose root would be the host's. */
static int check_id_base(const dec *d, unsigned slot, const char *field, uint32_t *ret) {
  int64_t v;
  *ret = 0;
  int r = num_range(d, slot, field, 0, (int64_t)CTL_ID_MAX - (CTL_ID_RANGE - 1), &v);
  if (r < 0) return r;
  if (v != 0 && (v < CTL_ID_RANGE || v % CTL_ID_RANGE))
    return fail(d, "%s %lld is not a multiple of %u above 0", field, (long long)v, CTL_ID_RANGE);
  *ret = (uint32_t)v;
  return 0;
}

/* A tmpfs size cap: 1 or more (the init sets every one). */
static int check_cap(const dec *d, unsigned slot, const char *field, uint32_t *ret) {
  int64_t v;
  int r = num_range(d, slot, field, 1, UINT32_MAX, &v);
  *ret = (uint32_t)v;
  return r;
}

static int check_pid(const dec *d, unsigned slot, const char *field, int64_t lo, pid_t *ret) {
  int64_t v;
  int r = num_range(d, slot, field, lo, CTL_PID_MAX, &v);
  *ret = (pid_t)v;
  return r;
}

/* A successful decode owns the packet from here: its buffer goes into
 * store, and raw is left empty. Its fds were moved before. */
static void take_store(ctl_msg *raw, ctl_store *store) {
  store->buf = TAKE_PTR(raw->buf);
  store->str = TAKE_PTR(raw->str);
  ctl_msg_clear(raw);
}

static void store_clear(ctl_store *store) {
  free(store->buf);
  free(store->str);
  free(store->extra);
  *store = (ctl_store){0};
}

/* ---- SPAWN_EXE ---- */

void ctl_spawn_exe_init(struct ctl_spawn_exe *m) {
  *m = (struct ctl_spawn_exe){.cgroup_fd = -1,
                              .stdin_fd = -1,
                              .out_w = -1,
                              .err_w = -1,
                              .out_r = -1,
                              .err_r = -1,
                              .reply_fd = -1};
}

void ctl_spawn_exe_clear(struct ctl_spawn_exe *m) {
  close_fd(&m->cgroup_fd);
  close_fd(&m->stdin_fd);
  close_fd(&m->out_w);
  close_fd(&m->err_w);
  close_fd(&m->out_r);
  close_fd(&m->err_r);
  close_fd(&m->reply_fd);
  store_clear(&m->store);
  ctl_spawn_exe_init(m);
}

int ctl_spawn_exe_encode(const struct ctl_spawn_exe *m, ctl_out *ret) {
  if (!m->argv || m->argc < 1 || m->argc + m->envc > CTL_MAX_ARGS || m->ngroups > CTL_MAX_GROUPS ||
      (m->envc && !m->envp))
    return out_refuse(ret, -EINVAL);
  size_t ngroups = m->has_creds ? m->ngroups : 0;
  int r = out_start(ret, CTL_SPAWN_EXE, EXE_STR_ARGV + m->argc + m->envc + ngroups);
  if (r == 0 && ngroups && !(ret->own = malloc(ngroups * ID_TEXT))) r = -ENOMEM;
  if (r < 0) return out_fail(ret, r);
  ret->num[EXE_HAS_CREDS] = m->has_creds;
  ret->num[EXE_UID] = m->has_creds ? m->uid : 0;
  ret->num[EXE_GID] = m->has_creds ? m->gid : 0;
  ret->num[EXE_ARGC] = (int64_t)m->argc;
  ret->num[EXE_ENVC] = (int64_t)m->envc;
  ret->num[EXE_NGROUPS] = (int64_t)ngroups;
  r = out_str(ret, m->name);
  if (r == 0) r = out_str(ret, m->cwd ? m->cwd : "");
  for (size_t i = 0; r == 0 && i < m->argc; i++)
    r = out_str(ret, m->argv[i]);
  for (size_t i = 0; r == 0 && i < m->envc; i++)
    r = out_str(ret, m->envp[i]);
  for (size_t i = 0; r == 0 && i < ngroups; i++) {
    char *s = ret->own + i * ID_TEXT;
    snprintf(s, ID_TEXT, "%u", (unsigned)m->groups[i]);
    r = out_str(ret, s);
  }
  const int fds[] = {m->cgroup_fd, m->stdin_fd, m->out_w, m->err_w, m->out_r, m->err_r};
  for (size_t i = 0; r == 0 && i < ARRAY_SIZE(fds); i++)
    r = out_fd(ret, fds[i]);
  if (r == 0 && m->reply_fd >= 0) r = out_fd(ret, m->reply_fd);
  return r < 0 ? out_fail(ret, r) : 0;
}

int ctl_spawn_exe_decode(ctl_msg *raw, struct ctl_spawn_exe *ret, char *why, size_t why_size) {
  const dec d = {raw, "SPAWN_EXE", why, why_size};
  ctl_spawn_exe_init(ret);
  int64_t creds, uid, gid, argc, envc, ngroups;
  int r;
  if ((r = check_head(&d, CTL_SPAWN_EXE, FIRST_SLOTS(6))) < 0 ||
      (r = num_range(&d, EXE_HAS_CREDS, "has_creds", 0, 1, &creds)) < 0 ||
      (r = num_range(&d, EXE_UID, "uid", 0, CTL_ID_MAX, &uid)) < 0 ||
      (r = num_range(&d, EXE_GID, "gid", 0, CTL_ID_MAX, &gid)) < 0 ||
      (r = num_range(&d, EXE_ARGC, "argc", 1, CTL_MAX_ARGS, &argc)) < 0 ||
      (r = num_range(&d, EXE_ENVC, "envc", 0, CTL_MAX_ARGS - argc, &envc)) < 0 ||
      (r = num_range(&d, EXE_NGROUPS, "ngroups", 0, CTL_MAX_GROUPS, &ngroups)) < 0 ||
      (r = check_nstr(&d, (size_t)(EXE_STR_ARGV + argc + envc + ngroups))) < 0 ||
      (r = check_nfds(&d, EXE_NFDS, EXE_NFDS + 1)) < 0)
    return r;
  if (!creds && (uid || gid || ngroups)) return fail(&d, "uid, gid or groups without has_creds");
  char *const *str = raw->str;
  const char *name = str[EXE_STR_NAME], *cwd = str[EXE_STR_CWD];
  if ((r = check_label(&d, "executable name", name)) < 0 ||
      (cwd[0] && (r = check_abs_path(&d, "cwd", cwd)) < 0))
    return r;
  char *const *argv = str + EXE_STR_ARGV, *const *envp = argv + argc;
  if (!argv[0][0]) return fail(&d, "argv[0] is empty");
  for (int64_t i = 0; i < envc; i++)
    if (envp[i][0] == '=' || !strchr(envp[i], '='))
      return fail(&d, "envp[%lld] \"%.40s\" is not KEY=VALUE", (long long)i, envp[i]);
  gid_t groups[CTL_MAX_GROUPS];
  for (int64_t i = 0; i < ngroups; i++)
    if (!parse_id(envp[envc + i], &groups[i]))
      return fail(&d, "group %lld \"%.16s\" is no id below 4294967295", (long long)i,
                  envp[envc + i]);
  static const enum fd_kind kinds[] = {FD_DIR, FD_ANY, FD_FIFO, FD_FIFO, FD_FIFO, FD_FIFO, FD_SOCK};
  static const char *const fields[] = {"cgroup", "stdin", "out_w",       "err_w",
                                       "out_r",  "err_r", "reply socket"};
  for (size_t i = 0; i < raw->nfds; i++)
    if ((r = check_fd_kind(&d, i, fields[i], kinds[i])) < 0) return r;
  /* argv and envp are slices of str, each needing its own NULL after it
   * for execve: one array holds both. */
  char **arrays = calloc((size_t)(argc + 1 + envc + 1), sizeof(char *));
  if (!arrays) return -ENOMEM;
  memcpy(arrays, argv, (size_t)argc * sizeof(char *));
  memcpy(arrays + argc + 1, envp, (size_t)envc * sizeof(char *));
  ret->store.extra = arrays;
  ret->name = name;
  ret->cwd = cwd;
  ret->argv = arrays;
  ret->argc = (size_t)argc;
  ret->envp = arrays + argc + 1;
  ret->envc = (size_t)envc;
  ret->has_creds = creds;
  ret->uid = (uid_t)uid;
  ret->gid = (gid_t)gid;
  memcpy(ret->groups, groups, (size_t)ngroups * sizeof(gid_t));
  ret->ngroups = (size_t)ngroups;
  ret->cgroup_fd = TAKE_FD(raw->fds[EXE_FD_CGROUP]);
  ret->stdin_fd = TAKE_FD(raw->fds[EXE_FD_STDIN]);
  ret->out_w = TAKE_FD(raw->fds[EXE_FD_OUT_W]);
  ret->err_w = TAKE_FD(raw->fds[EXE_FD_ERR_W]);
  ret->out_r = TAKE_FD(raw->fds[EXE_FD_OUT_R]);
  ret->err_r = TAKE_FD(raw->fds[EXE_FD_ERR_R]);
  ret->reply_fd = TAKE_FD(raw->fds[EXE_FD_REPLY]);
  take_store(raw, &ret->store);
  return 0;
}

/* ---- SPAWN_CELL ---- */

void ctl_spawn_cell_init(struct ctl_spawn_cell *m) {
  *m = (struct ctl_spawn_cell){.cgroup_fd = -1, .sync_w = -1, .leaf_procs = -1, .listen_fd = -1};
  for (size_t i = 0; i < CTL_MAX_MOUNTS; i++)
    m->mounts[i].fd = -1;
}

void ctl_spawn_cell_clear(struct ctl_spawn_cell *m) {
  close_fd(&m->cgroup_fd);
  close_fd(&m->sync_w);
  close_fd(&m->leaf_procs);
  close_fd(&m->listen_fd);
  for (size_t i = 0; i < CTL_MAX_MOUNTS; i++)
    close_fd(&m->mounts[i].fd);
  store_clear(&m->store);
  ctl_spawn_cell_init(m);
}

int ctl_spawn_cell_encode(const struct ctl_spawn_cell *m, ctl_out *ret) {
  if (m->nmounts > CTL_MAX_MOUNTS || m->nmasks > CTL_MAX_MASKS || (m->nmasks && !m->masks))
    return out_refuse(ret, -EINVAL);
  int r = out_start(ret, CTL_SPAWN_CELL, CELL_STR_MASKS + m->nmasks + m->nmounts);
  if (r < 0) return out_fail(ret, r);
  ret->num[CELL_FLAGS] = m->flags;
  ret->num[CELL_ID_BASE] = m->id_base;
  ret->num[CELL_SCRATCH_MB] = m->scratch_mb;
  ret->num[CELL_SCRATCH_INODES] = m->scratch_inodes;
  ret->num[CELL_NMOUNTS] = (int64_t)m->nmounts;
  for (size_t i = 0; i < m->nmounts; i++)
    if (m->mounts[i].read_only) ret->num[CELL_RO] |= 1 << i;
  r = out_str(ret, m->name);
  for (size_t i = 0; r == 0 && i < m->nmasks; i++)
    r = out_str(ret, m->masks[i]);
  for (size_t i = 0; r == 0 && i < m->nmounts; i++)
    r = out_str(ret, m->mounts[i].target);
  const int fds[] = {m->cgroup_fd, m->sync_w, m->leaf_procs, m->listen_fd};
  for (size_t i = 0; r == 0 && i < ARRAY_SIZE(fds); i++)
    r = out_fd(ret, fds[i]);
  for (size_t i = 0; r == 0 && i < m->nmounts; i++)
    r = out_fd(ret, m->mounts[i].fd);
  return r < 0 ? out_fail(ret, r) : 0;
}

int ctl_spawn_cell_decode(ctl_msg *raw, struct ctl_spawn_cell *ret, char *why, size_t why_size) {
  const dec d = {raw, "SPAWN_CELL", why, why_size};
  ctl_spawn_cell_init(ret);
  unsigned flags;
  uint32_t id_base, scratch_mb, scratch_inodes;
  int64_t nmounts, ro;
  int r;
  if ((r = check_head(&d, CTL_SPAWN_CELL, FIRST_SLOTS(6))) < 0 ||
      (r = check_flags(&d, CELL_FLAGS, &flags)) < 0 ||
      (r = check_id_base(&d, CELL_ID_BASE, "id_base", &id_base)) < 0 ||
      (r = check_cap(&d, CELL_SCRATCH_MB, "scratch_mb", &scratch_mb)) < 0 ||
      (r = check_cap(&d, CELL_SCRATCH_INODES, "scratch_inodes", &scratch_inodes)) < 0 ||
      (r = num_range(&d, CELL_NMOUNTS, "nmounts", 0, CTL_MAX_MOUNTS, &nmounts)) < 0 ||
      (r = num_range(&d, CELL_RO, "read-only bits", 0, (1 << nmounts) - 1, &ro)) < 0 ||
      (r = check_nfds(&d, CELL_FD_MOUNTS + (size_t)nmounts, CELL_FD_MOUNTS + (size_t)nmounts)) < 0)
    return r;
  size_t fixed = CELL_STR_MASKS + (size_t)nmounts;
  if (raw->nstr < fixed) return fail(&d, "%zu strings, at least %zu expected", raw->nstr, fixed);
  size_t nmasks = raw->nstr - fixed;
  if (nmasks > CTL_MAX_MASKS)
    return fail(&d, "%zu masked paths, at most %d", nmasks, CTL_MAX_MASKS);
  char *const *str = raw->str;
  char *const *targets = str + CELL_STR_MASKS + nmasks;
  if ((r = check_cell_path(&d, "cell name", str[CELL_STR_NAME])) < 0) return r;
  for (size_t i = 0; i < nmasks; i++)
    if ((r = check_abs_path(&d, "masked path", str[CELL_STR_MASKS + i])) < 0) return r;
  for (size_t i = 0; i < (size_t)nmounts; i++)
    if ((r = check_mount_target(&d, "mount target", targets[i])) < 0) return r;
  if ((r = check_fd_kind(&d, CELL_FD_CGROUP, "cgroup", FD_DIR)) < 0 ||
      (r = check_fd_kind(&d, CELL_FD_SYNC_W, "sync_w", FD_FIFO)) < 0 ||
      (r = check_fd_kind(&d, CELL_FD_LEAF_PROCS, "leaf_procs", FD_REG)) < 0 ||
      (r = check_fd_kind(&d, CELL_FD_LISTEN, "listen", FD_SOCK)) < 0)
    return r;
  /* The masks are followed by the targets: a NULL-terminated copy. */
  char **masks = calloc(nmasks + 1, sizeof(char *));
  if (!masks) return -ENOMEM;
  memcpy(masks, str + CELL_STR_MASKS, nmasks * sizeof(char *));
  ret->store.extra = masks;
  ret->name = str[CELL_STR_NAME];
  ret->flags = flags;
  ret->id_base = id_base;
  ret->scratch_mb = scratch_mb;
  ret->scratch_inodes = scratch_inodes;
  ret->masks = masks;
  ret->nmasks = nmasks;
  ret->nmounts = (size_t)nmounts;
  for (size_t i = 0; i < (size_t)nmounts; i++) {
    ret->mounts[i].target = targets[i];
    ret->mounts[i].read_only = ro & (1 << i);
    ret->mounts[i].fd = TAKE_FD(raw->fds[CELL_FD_MOUNTS + i]);
  }
  ret->cgroup_fd = TAKE_FD(raw->fds[CELL_FD_CGROUP]);
  ret->sync_w = TAKE_FD(raw->fds[CELL_FD_SYNC_W]);
  ret->leaf_procs = TAKE_FD(raw->fds[CELL_FD_LEAF_PROCS]);
  ret->listen_fd = TAKE_FD(raw->fds[CELL_FD_LISTEN]);
  take_store(raw, &ret->store);
  return 0;
}

/* ---- TAKE_SPARE ---- */

void ctl_take_spare_init(struct ctl_take_spare *m) {
  *m = (struct ctl_take_spare){
      .cgroup_procs = -1, .sync_w = -1, .leaf_procs = -1, .listen_fd = -1, .ctl = -1};
}

void ctl_take_spare_clear(struct ctl_take_spare *m) {
  close_fd(&m->cgroup_procs);
  close_fd(&m->sync_w);
  close_fd(&m->leaf_procs);
  close_fd(&m->listen_fd);
  close_fd(&m->ctl);
  store_clear(&m->store);
  ctl_take_spare_init(m);
}

int ctl_take_spare_encode(const struct ctl_take_spare *m, ctl_out *ret) {
  int r = out_start(ret, CTL_TAKE_SPARE, 1);
  if (r == 0) r = out_str(ret, m->name);
  const int fds[] = {m->cgroup_procs, m->sync_w, m->leaf_procs, m->listen_fd, m->ctl};
  for (size_t i = 0; r == 0 && i < ARRAY_SIZE(fds); i++)
    r = out_fd(ret, fds[i]);
  return r < 0 ? out_fail(ret, r) : 0;
}

int ctl_take_spare_decode(ctl_msg *raw, struct ctl_take_spare *ret, char *why, size_t why_size) {
  const dec d = {raw, "TAKE_SPARE", why, why_size};
  ctl_take_spare_init(ret);
  int r;
  if ((r = check_head(&d, CTL_TAKE_SPARE, 0)) < 0 || (r = check_nstr(&d, 1)) < 0 ||
      (r = check_nfds(&d, TAKE_NFDS, TAKE_NFDS)) < 0 ||
      (r = check_label(&d, "cell name", raw->str[0])) < 0 ||
      (r = check_fd_kind(&d, TAKE_FD_CGROUP_PROCS, "cgroup_procs", FD_REG)) < 0 ||
      (r = check_fd_kind(&d, TAKE_FD_SYNC_W, "sync_w", FD_FIFO)) < 0 ||
      (r = check_fd_kind(&d, TAKE_FD_LEAF_PROCS, "leaf_procs", FD_REG)) < 0 ||
      (r = check_fd_kind(&d, TAKE_FD_LISTEN, "listen", FD_SOCK)) < 0 ||
      (r = check_fd_kind(&d, TAKE_FD_CTL, "ctl", FD_SOCK)) < 0)
    return r;
  ret->name = raw->str[0];
  ret->cgroup_procs = TAKE_FD(raw->fds[TAKE_FD_CGROUP_PROCS]);
  ret->sync_w = TAKE_FD(raw->fds[TAKE_FD_SYNC_W]);
  ret->leaf_procs = TAKE_FD(raw->fds[TAKE_FD_LEAF_PROCS]);
  ret->listen_fd = TAKE_FD(raw->fds[TAKE_FD_LISTEN]);
  ret->ctl = TAKE_FD(raw->fds[TAKE_FD_CTL]);
  take_store(raw, &ret->store);
  return 0;
}

/* ---- QUERY, FORGET: a name ---- */

static int name_only_encode(uint32_t type, const char *name, ctl_out *ret) {
  int r = out_start(ret, type, 1);
  if (r == 0) r = out_str(ret, name);
  return r < 0 ? out_fail(ret, r) : 0;
}

static int name_only_decode(const dec *d, uint32_t type, ctl_msg *raw, const char **ret_name,
                            ctl_store *store) {
  int r;
  if ((r = check_head(d, type, 0)) < 0 || (r = check_nstr(d, 1)) < 0 ||
      (r = check_nfds(d, 0, 0)) < 0 || (r = check_label(d, "executable name", raw->str[0])) < 0)
    return r;
  *ret_name = raw->str[0];
  take_store(raw, store);
  return 0;
}

void ctl_query_init(struct ctl_query *m) { *m = (struct ctl_query){0}; }

void ctl_query_clear(struct ctl_query *m) {
  store_clear(&m->store);
  ctl_query_init(m);
}

int ctl_query_encode(const struct ctl_query *m, ctl_out *ret) {
  return name_only_encode(CTL_QUERY, m->name, ret);
}

int ctl_query_decode(ctl_msg *raw, struct ctl_query *ret, char *why, size_t why_size) {
  const dec d = {raw, "QUERY", why, why_size};
  ctl_query_init(ret);
  return name_only_decode(&d, CTL_QUERY, raw, &ret->name, &ret->store);
}

void ctl_forget_init(struct ctl_forget *m) { *m = (struct ctl_forget){0}; }

void ctl_forget_clear(struct ctl_forget *m) {
  store_clear(&m->store);
  ctl_forget_init(m);
}

int ctl_forget_encode(const struct ctl_forget *m, ctl_out *ret) {
  return name_only_encode(CTL_FORGET, m->name, ret);
}

int ctl_forget_decode(ctl_msg *raw, struct ctl_forget *ret, char *why, size_t why_size) {
  const dec d = {raw, "FORGET", why, why_size};
  ctl_forget_init(ret);
  return name_only_decode(&d, CTL_FORGET, raw, &ret->name, &ret->store);
}

/* ---- HOST_PID ---- */

void ctl_host_pid_init(struct ctl_host_pid *m) { *m = (struct ctl_host_pid){0}; }

void ctl_host_pid_clear(struct ctl_host_pid *m) {
  store_clear(&m->store);
  ctl_host_pid_init(m);
}

int ctl_host_pid_encode(const struct ctl_host_pid *m, ctl_out *ret) {
  int r = name_only_encode(CTL_HOST_PID, m->name, ret);
  if (r == 0) ret->num[HOST_PID_PID] = m->host_pid;
  return r;
}

int ctl_host_pid_decode(ctl_msg *raw, struct ctl_host_pid *ret, char *why, size_t why_size) {
  const dec d = {raw, "HOST_PID", why, why_size};
  ctl_host_pid_init(ret);
  pid_t host_pid;
  int r;
  if ((r = check_head(&d, CTL_HOST_PID, 1u << HOST_PID_PID)) < 0 || (r = check_nstr(&d, 1)) < 0 ||
      (r = check_nfds(&d, 0, 0)) < 0 || (r = check_label(&d, "executable name", raw->str[0])) < 0 ||
      (r = check_pid(&d, HOST_PID_PID, "host_pid", 0, &host_pid)) < 0)
    return r;
  ret->name = raw->str[0];
  ret->host_pid = host_pid;
  take_store(raw, &ret->store);
  return 0;
}

/* ---- EXIT_EVENT ---- */

void ctl_exit_event_init(struct ctl_exit_event *m) { *m = (struct ctl_exit_event){0}; }

void ctl_exit_event_clear(struct ctl_exit_event *m) {
  store_clear(&m->store);
  ctl_exit_event_init(m);
}

int ctl_exit_event_encode(const struct ctl_exit_event *m, ctl_out *ret) {
  int r = name_only_encode(CTL_EXIT_EVENT, m->name, ret);
  if (r < 0) return r;
  ret->num[EXIT_WSTATUS] = m->wstatus;
  ret->num[EXIT_END_NS] = m->end_ns;
  return 0;
}

int ctl_exit_event_decode(ctl_msg *raw, struct ctl_exit_event *ret, char *why, size_t why_size) {
  const dec d = {raw, "EXIT_EVENT", why, why_size};
  ctl_exit_event_init(ret);
  int64_t end_ns;
  int r;
  if ((r = check_head(&d, CTL_EXIT_EVENT, 1u << EXIT_WSTATUS | 1u << EXIT_END_NS)) < 0 ||
      (r = check_nstr(&d, 1)) < 0 || (r = check_nfds(&d, 0, 0)) < 0 ||
      (r = check_label(&d, "executable name", raw->str[0])) < 0 ||
      (r = num_range(&d, EXIT_END_NS, "end_ns", 0, INT64_MAX, &end_ns)) < 0)
    return r;
  if (!wstatus_ok(raw->num[EXIT_WSTATUS]))
    return fail(&d, "wstatus %#llx is no exit status", (long long)raw->num[EXIT_WSTATUS]);
  ret->name = raw->str[0];
  ret->wstatus = (int)raw->num[EXIT_WSTATUS];
  ret->end_ns = end_ns;
  take_store(raw, &ret->store);
  return 0;
}

/* ---- SPARE_CONFIG ---- */

void ctl_spare_config_init(struct ctl_spare_config *m) {
  *m = (struct ctl_spare_config){.cgroup_root = -1};
}

void ctl_spare_config_clear(struct ctl_spare_config *m) {
  close_fd(&m->cgroup_root);
  store_clear(&m->store);
  ctl_spare_config_init(m);
}

int ctl_spare_config_encode(const struct ctl_spare_config *m, ctl_out *ret) {
  if (m->nmasks > CTL_MAX_MASKS || (m->nmasks && !m->masks)) return out_refuse(ret, -EINVAL);
  int r = out_start(ret, CTL_SPARE_CONFIG, m->nmasks);
  if (r < 0) return out_fail(ret, r);
  ret->num[SPARE_FLAGS] = m->flags;
  ret->num[SPARE_ID_BASE] = m->id_base;
  ret->num[SPARE_SCRATCH_MB] = m->scratch_mb;
  ret->num[SPARE_SCRATCH_INODES] = m->scratch_inodes;
  for (size_t i = 0; r == 0 && i < m->nmasks; i++)
    r = out_str(ret, m->masks[i]);
  if (r == 0) r = out_fd(ret, m->cgroup_root);
  return r < 0 ? out_fail(ret, r) : 0;
}

int ctl_spare_config_decode(ctl_msg *raw, struct ctl_spare_config *ret, char *why,
                            size_t why_size) {
  const dec d = {raw, "SPARE_CONFIG", why, why_size};
  ctl_spare_config_init(ret);
  unsigned flags;
  uint32_t id_base, scratch_mb, scratch_inodes;
  int r;
  if ((r = check_head(&d, CTL_SPARE_CONFIG, FIRST_SLOTS(4))) < 0 ||
      (r = check_flags(&d, SPARE_FLAGS, &flags)) < 0 ||
      (r = check_id_base(&d, SPARE_ID_BASE, "id_base", &id_base)) < 0 ||
      (r = check_cap(&d, SPARE_SCRATCH_MB, "scratch_mb", &scratch_mb)) < 0 ||
      (r = check_cap(&d, SPARE_SCRATCH_INODES, "scratch_inodes", &scratch_inodes)) < 0 ||
      (r = check_nfds(&d, 1, 1)) < 0 || (r = check_fd_kind(&d, 0, "cgroup_root", FD_DIR)) < 0)
    return r;
  if (raw->nstr > CTL_MAX_MASKS)
    return fail(&d, "%zu masked paths, at most %d", raw->nstr, CTL_MAX_MASKS);
  for (size_t i = 0; i < raw->nstr; i++)
    if ((r = check_abs_path(&d, "masked path", raw->str[i])) < 0) return r;
  ret->flags = flags;
  ret->id_base = id_base;
  ret->scratch_mb = scratch_mb;
  ret->scratch_inodes = scratch_inodes;
  ret->masks = raw->str;
  ret->nmasks = raw->nstr;
  ret->cgroup_root = TAKE_FD(raw->fds[0]);
  take_store(raw, &ret->store);
  return 0;
}

/* ---- SPARE_READY, SPARE_STALE, TOOK_SPARE, BUILD_SPARE ---- */

void ctl_spare_ready_init(struct ctl_spare_ready *m) {
  *m = (struct ctl_spare_ready){.sock = -1, .pidfd = -1};
}

void ctl_spare_ready_clear(struct ctl_spare_ready *m) {
  close_fd(&m->sock);
  close_fd(&m->pidfd);
  ctl_spare_ready_init(m);
}

int ctl_spare_ready_encode(const struct ctl_spare_ready *m, ctl_out *ret) {
  int r = out_start(ret, CTL_SPARE_READY, 0);
  ret->num[READY_PID] = m->pid;
  if (r == 0) r = out_fd(ret, m->sock);
  if (r == 0) r = out_fd(ret, m->pidfd);
  return r < 0 ? out_fail(ret, r) : 0;
}

int ctl_spare_ready_decode(ctl_msg *raw, struct ctl_spare_ready *ret, char *why, size_t why_size) {
  const dec d = {raw, "SPARE_READY", why, why_size};
  ctl_spare_ready_init(ret);
  pid_t pid;
  int r;
  if ((r = check_head(&d, CTL_SPARE_READY, 1u << READY_PID)) < 0 || (r = check_nstr(&d, 0)) < 0 ||
      (r = check_nfds(&d, 2, 2)) < 0 || (r = check_fd_kind(&d, 0, "sock", FD_SOCK)) < 0 ||
      (r = check_pid(&d, READY_PID, "pid", 1, &pid)) < 0)
    return r;
  ret->pid = pid;
  ret->sock = TAKE_FD(raw->fds[0]);
  ret->pidfd = TAKE_FD(raw->fds[1]);
  ctl_msg_clear(raw);
  return 0;
}

void ctl_spare_stale_init(struct ctl_spare_stale *m) { *m = (struct ctl_spare_stale){0}; }

void ctl_spare_stale_clear(struct ctl_spare_stale *m) { ctl_spare_stale_init(m); }

int ctl_spare_stale_encode(const struct ctl_spare_stale *m, ctl_out *ret) {
  int r = out_start(ret, CTL_SPARE_STALE, 0);
  ret->num[STALE_PID] = m->pid;
  return r;
}

int ctl_spare_stale_decode(ctl_msg *raw, struct ctl_spare_stale *ret, char *why, size_t why_size) {
  const dec d = {raw, "SPARE_STALE", why, why_size};
  ctl_spare_stale_init(ret);
  pid_t pid;
  int r;
  if ((r = check_head(&d, CTL_SPARE_STALE, 1u << STALE_PID)) < 0 || (r = check_nstr(&d, 0)) < 0 ||
      (r = check_nfds(&d, 0, 0)) < 0 || (r = check_pid(&d, STALE_PID, "pid", 1, &pid)) < 0)
    return r;
  ret->pid = pid;
  ctl_msg_clear(raw);
  return 0;
}

void ctl_took_spare_init(struct ctl_took_spare *m) { *m = (struct ctl_took_spare){0}; }

void ctl_took_spare_clear(struct ctl_took_spare *m) { ctl_took_spare_init(m); }

int ctl_took_spare_encode(const struct ctl_took_spare *m, ctl_out *ret) {
  int r = out_start(ret, CTL_TOOK_SPARE, 0);
  ret->num[TOOK_PID] = m->pid;
  ret->num[TOOK_NEXT_ID_BASE] = m->next_id_base;
  return r;
}

int ctl_took_spare_decode(ctl_msg *raw, struct ctl_took_spare *ret, char *why, size_t why_size) {
  const dec d = {raw, "TOOK_SPARE", why, why_size};
  ctl_took_spare_init(ret);
  pid_t pid;
  uint32_t next;
  int r;
  if ((r = check_head(&d, CTL_TOOK_SPARE, 1u << TOOK_PID | 1u << TOOK_NEXT_ID_BASE)) < 0 ||
      (r = check_nstr(&d, 0)) < 0 || (r = check_nfds(&d, 0, 0)) < 0 ||
      (r = check_pid(&d, TOOK_PID, "pid", 1, &pid)) < 0 ||
      (r = check_id_base(&d, TOOK_NEXT_ID_BASE, "next_id_base", &next)) < 0)
    return r;
  ret->pid = pid;
  ret->next_id_base = next;
  ctl_msg_clear(raw);
  return 0;
}

void ctl_build_spare_init(struct ctl_build_spare *m) { *m = (struct ctl_build_spare){0}; }

void ctl_build_spare_clear(struct ctl_build_spare *m) { ctl_build_spare_init(m); }

int ctl_build_spare_encode(const struct ctl_build_spare *m, ctl_out *ret) {
  int r = out_start(ret, CTL_BUILD_SPARE, 0);
  ret->num[BUILD_ID_BASE] = m->id_base;
  return r;
}

int ctl_build_spare_decode(ctl_msg *raw, struct ctl_build_spare *ret, char *why, size_t why_size) {
  const dec d = {raw, "BUILD_SPARE", why, why_size};
  ctl_build_spare_init(ret);
  int r;
  uint32_t id_base;
  if ((r = check_head(&d, CTL_BUILD_SPARE, 1u << BUILD_ID_BASE)) < 0 ||
      (r = check_nstr(&d, 0)) < 0 || (r = check_nfds(&d, 0, 0)) < 0 ||
      (r = check_id_base(&d, BUILD_ID_BASE, "id_base", &id_base)) < 0)
    return r;
  ret->id_base = id_base;
  ctl_msg_clear(raw);
  return 0;
}

/* ---- Replies ---- */

#define ERRNO_MAX 4095 /* the kernel's MAX_ERRNO */

/* An error reply's shape, without taking anything. */
static int check_error_reply(const dec *d) {
  const ctl_msg *raw = d->raw;
  if (raw->type != CTL_REPLY)
    return fail(d, "got a %s message (type %u)", ctl_type_name(raw->type), raw->type);
  if (raw->error >= 0 || raw->error < -ERRNO_MAX)
    return fail(d, "error %d is no negative errno", raw->error);
  for (unsigned i = 0; i < CTL_NUMS; i++)
    if (raw->num[i] != 0) return fail(d, "num[%u] is %lld, and unused", i, (long long)raw->num[i]);
  int r;
  if ((r = check_nstr(d, 1)) < 0 || (r = check_nfds(d, 0, 0)) < 0) return r;
  size_t len = strlen(raw->str[0]);
  if (len == 0) return fail(d, "empty message");
  if (len > CTL_ERROR_MSG_MAX)
    return fail(d, "message of %zu bytes, at most %d", len, CTL_ERROR_MSG_MAX);
  return 0;
}

static void sanitize(char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f) *s = '?';
}

/* For a success-reply decoder: an error reply becomes its error, its
 * message in why; anything else that is no success reply is malformed.
 * 1: a success reply, go on. */
static int reply_or_error(const dec *d) {
  const ctl_msg *raw = d->raw;
  if (raw->type != CTL_REPLY || raw->error == 0) return 1;
  int r = check_error_reply(d);
  if (r < 0) return r;
  if (d->why && d->size) {
    snprintf(d->why, d->size, "%s", raw->str[0]);
    sanitize(d->why);
  }
  return raw->error;
}

void ctl_error_reply_init(struct ctl_error *m) { *m = (struct ctl_error){0}; }

void ctl_error_reply_clear(struct ctl_error *m) {
  store_clear(&m->store);
  ctl_error_reply_init(m);
}

int ctl_error_reply_encode(const struct ctl_error *m, ctl_out *ret) {
  if (m->error >= 0 || m->error < -ERRNO_MAX) return out_refuse(ret, -EINVAL);
  int r = out_start(ret, CTL_REPLY, 1);
  if (r < 0) return out_fail(ret, r);
  ret->error = m->error;
  const char *msg = m->message && *m->message ? m->message : strerror(-m->error);
  size_t len = strlen(msg);
  if (len > CTL_ERROR_MSG_MAX) {
    /* Cut before a UTF-8 sequence, not inside one. */
    len = CTL_ERROR_MSG_MAX;
    while (len > 0 && ((unsigned char)msg[len] & 0xc0) == 0x80)
      len--;
    if (!(ret->own = strndup(msg, len))) return out_fail(ret, -ENOMEM);
    msg = ret->own;
  }
  return out_str(ret, msg);
}

int ctl_error_reply_decode(ctl_msg *raw, struct ctl_error *ret, char *why, size_t why_size) {
  const dec d = {raw, "error REPLY", why, why_size};
  ctl_error_reply_init(ret);
  int r = check_error_reply(&d);
  if (r < 0) return r;
  ret->error = raw->error;
  ret->message = raw->str[0];
  take_store(raw, &ret->store);
  sanitize(ret->store.str[0]);
  return 0;
}

void ctl_spawn_reply_init(struct ctl_spawn_reply *m) { *m = (struct ctl_spawn_reply){.pidfd = -1}; }

void ctl_spawn_reply_clear(struct ctl_spawn_reply *m) {
  close_fd(&m->pidfd);
  ctl_spawn_reply_init(m);
}

int ctl_spawn_reply_encode(const struct ctl_spawn_reply *m, ctl_out *ret) {
  int r = out_start(ret, CTL_REPLY, 0);
  ret->num[SPAWNED_PID] = m->pid;
  ret->cred_pid = m->cred_pid > 0 ? m->cred_pid : 0;
  if (r == 0) r = out_fd(ret, m->pidfd);
  return r < 0 ? out_fail(ret, r) : 0;
}

int ctl_spawn_reply_decode(ctl_msg *raw, struct ctl_spawn_reply *ret, char *why, size_t why_size) {
  const dec d = {raw, "spawn REPLY", why, why_size};
  ctl_spawn_reply_init(ret);
  int r = reply_or_error(&d);
  if (r <= 0) return r;
  pid_t pid;
  if ((r = check_head(&d, CTL_REPLY, 1u << SPAWNED_PID)) < 0 || (r = check_nstr(&d, 0)) < 0 ||
      (r = check_nfds(&d, 1, 1)) < 0 || (r = check_pid(&d, SPAWNED_PID, "pid", 1, &pid)) < 0)
    return r;
  /* The kernel wrote it, but a ctl_msg may come from elsewhere (a test,
   * the fuzzer). */
  if (raw->cred_pid < 0 || raw->cred_pid > CTL_PID_MAX)
    return fail(&d, "credentials pid %d", raw->cred_pid);
  ret->pid = pid;
  ret->cred_pid = raw->cred_pid;
  ret->pidfd = TAKE_FD(raw->fds[0]);
  ctl_msg_clear(raw);
  return 0;
}

void ctl_query_reply_init(struct ctl_query_reply *m) {
  *m = (struct ctl_query_reply){.out_r = -1, .err_r = -1, .pidfd = -1};
}

void ctl_query_reply_clear(struct ctl_query_reply *m) {
  close_fd(&m->out_r);
  close_fd(&m->err_r);
  close_fd(&m->pidfd);
  ctl_query_reply_init(m);
}

int ctl_query_reply_encode(const struct ctl_query_reply *m, ctl_out *ret) {
  int r = out_start(ret, CTL_REPLY, 0);
  ret->num[QUERY_RUNNING] = m->running;
  ret->num[QUERY_WSTATUS] = m->wstatus;
  ret->num[QUERY_END_NS] = m->end_ns;
  ret->num[QUERY_CELL_PID] = m->cell_pid;
  ret->num[QUERY_HOST_PID] = m->host_pid;
  if (r == 0) r = out_fd(ret, m->out_r);
  if (r == 0) r = out_fd(ret, m->err_r);
  /* A pidfd of an ended process would let the receiver think it runs. */
  if (r == 0 && m->running && m->pidfd >= 0) r = out_fd(ret, m->pidfd);
  return r < 0 ? out_fail(ret, r) : 0;
}

int ctl_query_reply_decode(ctl_msg *raw, struct ctl_query_reply *ret, char *why, size_t why_size) {
  const dec d = {raw, "query REPLY", why, why_size};
  ctl_query_reply_init(ret);
  int r = reply_or_error(&d);
  if (r <= 0) return r;
  int64_t running, end_ns;
  pid_t cell_pid, host_pid;
  if ((r = check_head(&d, CTL_REPLY, FIRST_SLOTS(5))) < 0 || (r = check_nstr(&d, 0)) < 0 ||
      (r = num_range(&d, QUERY_RUNNING, "running", 0, 1, &running)) < 0 ||
      (r = check_nfds(&d, 2, running ? 3 : 2)) < 0 ||
      (r = check_fd_kind(&d, QUERY_FD_OUT_R, "out_r", FD_FIFO)) < 0 ||
      (r = check_fd_kind(&d, QUERY_FD_ERR_R, "err_r", FD_FIFO)) < 0 ||
      (r = num_range(&d, QUERY_END_NS, "end_ns", 0, running ? 0 : INT64_MAX, &end_ns)) < 0 ||
      (r = check_pid(&d, QUERY_CELL_PID, "cell_pid", 1, &cell_pid)) < 0 ||
      (r = check_pid(&d, QUERY_HOST_PID, "host_pid", 0, &host_pid)) < 0)
    return r;
  int64_t st = raw->num[QUERY_WSTATUS];
  if (running ? st != 0 : !wstatus_ok(st))
    return fail(&d, "wstatus %#llx of a%s process", (long long)st,
                running ? " running" : "n ended");
  ret->running = running;
  ret->wstatus = (int)st;
  ret->end_ns = end_ns;
  ret->cell_pid = cell_pid;
  ret->host_pid = host_pid;
  ret->out_r = TAKE_FD(raw->fds[QUERY_FD_OUT_R]);
  ret->err_r = TAKE_FD(raw->fds[QUERY_FD_ERR_R]);
  ret->pidfd = TAKE_FD(raw->fds[QUERY_FD_PIDFD]);
  ctl_msg_clear(raw);
  return 0;
}

int ctl_empty_reply_encode(ctl_out *ret) { return out_start(ret, CTL_REPLY, 0); }

int ctl_empty_reply_decode(ctl_msg *raw, char *why, size_t why_size) {
  const dec d = {raw, "empty REPLY", why, why_size};
  int r = reply_or_error(&d);
  if (r <= 0) return r;
  if ((r = check_head(&d, CTL_REPLY, 0)) < 0 || (r = check_nstr(&d, 0)) < 0 ||
      (r = check_nfds(&d, 0, 0)) < 0)
    return r;
  ctl_msg_clear(raw);
  return 0;
}
