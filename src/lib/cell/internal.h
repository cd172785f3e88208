/* Shared between the manager's files; not a public header. Locking: m->lock
 * guards every field of the manager, its cells and executables;
 * m->op_lock serializes structural changes (create, free, spawn) and the
 * requests to cell inits, which may take milliseconds, so they run without
 * m->lock. Cells are only unlinked under both locks; executables are
 * reference-counted because waiters hold them across m->lock releases. */
#pragma once

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "cell/cell.h"
#include "cell/ctl.h"
#include "cell/ctlmsg.h"
#include "cell/idpool.h"
#include "cell/spawn.h"
#include "ring.h"

#define CELL_PATH_MAX 4096

typedef struct exe_stream {
  int fd;
  uint64_t token;
  bool eof;
  byte_ring ring;
} exe_stream;

typedef struct exe {
  struct exe *next;
  struct cell *cell; /* NULL once unlinked */
  int refs;
  bool unlinked;
  char cell_name[AU_NAME_MAX + 1];
  char name[AU_NAME_LABEL_MAX + 1];
  char leaf[CELL_PATH_MAX];
  char **argv;
  exe_state state;
  int wstatus;
  pid_t host_pid, cell_pid;
  int64_t started_ns, ended_ns;
  int pidfd;
  exe_stream out[2];
  bool output_lost;
  size_t limit;
} exe;

typedef struct cell {
  struct cell *next;
  char name[AU_NAME_MAX + 1];
  char cgdir[CELL_PATH_MAX];
  char statedir[CELL_PATH_MAX];
  int statedir_fd;
  int ctl;
  uint64_t ctl_token;
  bool init_dead;
  pid_t init_pid;
  int init_pidfd; /* only when the init is our own child */
  cell_resources res;
  unsigned share;
  int64_t created_ns;
  /* The host id of root in the cell (0: the host's ids), and whether the
   * range is the cell's own from the pool (a nested cell shares its
   * parent's). */
  uint32_t id_base;
  bool owns_ids;
  cell_bind *binds; /* what RunCell bound in, for Inspect */
  size_t nbinds;
  exe *exes;
  uint32_t want_seq;
  bool have_reply;
  ctl_msg reply;
} cell;

struct cell_manager {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  pthread_mutex_t op_lock;
  cell *cells;
  int ep, wake;
  pthread_t sup;
  bool sup_started;
  bool stop;
  uint64_t next_token;
  uint32_t next_seq;
  char mount[CELL_PATH_MAX];
  char root[CELL_PATH_MAX]; /* MOUNT/ROOT */
  char root_name[256];
  char state_root[CELL_PATH_MAX]; /* RUNTIME_DIR/cells */
  char self_exe[CELL_PATH_MAX];
  char **masks;          /* cell_config.masked_paths, NULL-terminated */
  int zyg_fd, zyg_pidfd; /* the zygote (zygote.c), -1 when there is none */
  int64_t zyg_started_ms;
  /* The zygote's notices (SPARE_READY, SPARE_STALE), read by the
   * supervisor thread (m->lock), and the ready spare init they handed us
   * (sock -1: none). */
  int zyg_notices;
  uint64_t zyg_notices_token;
  struct cell_spare {
    int sock, pidfd;
    pid_t pid;
  } spare;
  /* pidfds of inits that had not exited when their cell went (a process
   * stuck in D state): the supervisor reaps them when they do. */
  struct cell_orphan {
    int pidfd;
    uint64_t token;
  } * orphans;
  size_t norphans;
  size_t nmasks;
  bool spare_init; /* ask the zygote to keep a spare init ready */
  cell_idpool *ids;
  /* The id range reserved for the zygote's next spare (0: none). */
  uint32_t spare_ids;
  uint32_t scratch_mb, scratch_inodes;
  int devprog; /* the device filter (devcg.h), loaded by the first cell; op_lock */
};

int64_t cell_now_ns(void);
/* Lookups, m->lock held. */
cell *cell_find(cell_manager *m, const char *name);
exe *exe_find(cell *c, const char *name);
void exe_unref(cell_manager *m, exe *e);
void exe_fill_info(const exe *e, exe_info *out);

/* Registers fd in the supervisor's epoll; returns the token (m->lock held). */
uint64_t cell_watch(cell_manager *m, int fd);
void cell_unwatch(cell_manager *m, int fd);
/* Sends a request to c's init and waits for the reply (op_lock held,
 * m->lock not). On an error reply, err gets the init's message. */
int cell_request(cell_manager *m, cell *c, const ctl_out *req, ctl_msg *reply, au_error *err);
/* Reaps a gone cell's init without blocking for long (op_lock held, m->lock
 * not): if it has not exited yet, the supervisor reaps it later. */
void cell_reap_init(cell_manager *m, cell *c);
/* Tells c's init to drop what it holds for executable NAME (op_lock held,
 * m->lock not); best effort. */
void cell_forget_exe(cell_manager *m, cell *c, const char *name);
/* FORGET to c's init, with its empty reply checked. */
int cell_forget_request(cell_manager *m, cell *c, const char *name, au_error *err);
/* Like cell_request for a SPAWN_EXE, with the reply on a socket of the
 * caller's own passed along (req's reply_fd): no hop through the
 * supervisor thread. busy, if set, runs while the init works on it. */
int cell_request_spawn_exe(cell_manager *m, cell *c, struct ctl_spawn_exe *req,
                           void (*busy)(void *), void *busy_arg, ctl_msg *reply, au_error *err);
/* A message without a reply (HOST_PID); best effort. */
int cell_send_oneway(cell_manager *m, cell *c, const ctl_out *msg);
/* Reads what a stream has now (m->lock held). */
void exe_stream_drain(cell_manager *m, exe *e, int i);
/* Detach an executable from its cell and the supervisor (m->lock held). */
void exe_unlink(cell_manager *m, exe *e);
/* Connects to the init socket of a cell's state dir. */
int cell_connect(cell *c, au_error *err);
/* auraed's end of a control connection: buffers for large packets, and
 * SO_PASSCRED (a spawn's reply names the new process). */
void cell_ctl_setup(int fd);
/* Frees N binds and their strings (NULL is fine). */
void cell_binds_free(cell_bind *b, size_t n);
/* Gives a cgroup directory and its control files to host id ID (the
 * root of a cell's user namespace), as systemd delegates a subtree; with
 * subtree false (an executable's leaf) only its cgroup.procs. */
int cell_cgroup_delegate(const char *dir, uint32_t id, bool subtree, au_error *err);
/* Removes c's state directory tree. */
void cell_remove_state(const char *dir);

/* A SPAWN_CELL request (ctl_spawn_cell_encode), for the zygote and for a
 * parent cell's init: fds[0..3] the cgroup dir, sync_w, the _init leaf's
 * cgroup.procs and init.sock, then the mount trees (at most
 * CELL_BINDS_MAX). ctl_out_clear frees it. */
int cell_spawn_req_build(cell_manager *m, const char *name, const cell_init_opts *o,
                         const cell_bind *binds, const int *trees, size_t nbinds, const int fds[4],
                         ctl_out *ret);
/* init.sock, bound in c's state directory and listening: the init serves
 * it, where a restarted auraed connects. */
int cell_listen_socket(cell *c, au_error *err);

/* zygote_client.c: auraed's side of the zygote (zygote.c). The calls are
 * made with op_lock held. */
void cell_zygote_start(cell_manager *m);
void cell_zygote_stop(cell_manager *m);
/* A cloned top-level cell init (cell_spawn_init's contract). -ENOTCONN
 * when there is no zygote (the caller execs the init itself). */
int cell_zygote_spawn(cell_manager *m, const char *name, const ctl_out *req, pid_t *ret_pid,
                      int *ret_pidfd, au_error *err);
/* The spare init the zygote handed us, for the default top-level cell
 * NAME; fds: the cell's cgroup.procs, sync_w, the _init leaf's
 * cgroup.procs, init.sock. It moves itself into the cell's cgroup and
 * answers on the sync pipe like a cloned init; ret_ctl is our end of its
 * control connection (no connect to init.sock), ret_ids the id range it
 * runs with (the cell's from now on). -EAGAIN when there is no spare
 * (clone an init). */
int cell_zygote_take_spare(cell_manager *m, const char *name, const int fds[4], pid_t *ret_pid,
                           int *ret_pidfd, int *ret_ctl, uint32_t *ret_ids);
/* A good moment for the zygote to make its next spare (a cell is being
 * freed), with a new id range if it has none; one-way. */
void cell_zygote_build_spare(cell_manager *m);
/* The id range kept for the next spare, taken back for a cell when the
 * pool has no other (0: none kept); no spare is made until a cell is
 * freed. */
uint32_t cell_zygote_revoke_spare_ids(cell_manager *m);
/* The supervisor's part (m->lock held): reads the zygote's notices. */
bool cell_zygote_notice(cell_manager *m, uint64_t token);

/* state.c */
int state_write_cell(const cell *c, au_error *err);
int state_read_cell(const char *dir, cell *c, au_error *err);
int state_write_exe(const cell *c, const exe *e, au_error *err);
int state_read_exe(const char *path, exe *e, au_error *err);
void state_remove_exe(const cell *c, const char *name);

/* manager.c */
void free_cell_struct(cell *c);
void exe_destroy(exe *e);
void exe_set_exit(exe *e, int wstatus, int64_t end_ns);
