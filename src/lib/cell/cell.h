/* Cells and executables (issue 3): the library side of RunCell,
 * RunExecutable and their lifecycle. No gRPC here; the daemon's
 * services/cells.c adapts protobuf to these calls.
 *
 * Layout. Cgroups: MOUNT/ROOT/<a>/<b>... mirror cell names; each cell's
 * processes live in leaves, so controllers can be enabled for child cells
 * (cgroup v2's no-internal-processes rule):
 *   MOUNT/ROOT/a/_init        the cell init (pid 1 of the cell)
 *   MOUNT/ROOT/a/_exe.NAME    one leaf per executable (and its descendants)
 *   MOUNT/ROOT/a/b/...        child cell b
 * '_' and '.' never occur in DNS labels, so leaves cannot collide with
 * child cells. State: RUNTIME_DIR/cells/a/{cell.json,init.sock},
 * RUNTIME_DIR/cells/a/_exe/NAME.json, RUNTIME_DIR/cells/a/b/...
 *
 * Threading: every call may block and is safe from any thread; one
 * supervisor thread reads the cell inits' control sockets and the output
 * pipes. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cell/resources.h"
#include "error.h"
#include "names.h"

typedef struct cell_manager cell_manager;

typedef struct cell_config {
  const char *runtime_dir; /* state goes to runtime_dir/cells */
  /* Subtree of the cgroup2 mount for cells; NULL: $AURAE_CGROUP_ROOT, else
   * "aurae" for the default runtime dir /run/aurae, else "aurae-<hash of
   * runtime_dir>" so daemons with their own runtime dirs never collide. */
  const char *cgroup_root;
  const char *self_exe; /* re-executed with --cell-init */
  /* Absolute paths hidden in every cell's mount namespace (auraed's
   * runtime and library dirs, its config and PKI); NULL-terminated, may be
   * NULL. */
  const char *const *masked_paths;
  /* Without a spare init ready in the zygote, every RunCell clones its
   * init (~3 ms more on the request path, one idle process less). */
  bool no_spare_init;
  /* Each private tmpfs of a cell (/tmp, /var/tmp, /run, /dev/shm): its
   * size in MiB and its inodes; 0: 64 MiB and 16384. */
  uint32_t scratch_mb, scratch_inodes;
  /* The pool of user-namespace id ranges for top-level cells
   * (cell/idpool.h); 0 means CELL_IDPOOL_DEFAULT_START and
   * CELL_IDPOOL_DEFAULT_CELLS. */
  uint32_t id_pool_start;
  uint32_t id_pool_cells;
} cell_config;

/* Opens the manager and re-adopts what a previous auraed left: cells from
 * state whose init still answers, their executables; dead cells and stray
 * cgroups are cleaned up. ret_adopted counts adopted cells (may be NULL). */
int cell_manager_open(const cell_config *cfg, cell_manager **ret, size_t *ret_adopted,
                      au_error *err);
/* Stops supervising; every cell and executable keeps running. */
void cell_manager_close(cell_manager *m);
const char *cell_manager_cgroup_root(const cell_manager *m);

/* Isolation: a set bit shares the parent's namespace instead of making a
 * new one (the host's for a top-level cell, the parent cell's otherwise). */
enum {
  CELL_SHARE_PID = 1 << 0, /* root in the cell can then signal auraed and other cells */
  CELL_SHARE_MNT = 1 << 1,
  CELL_SHARE_IPC = 1 << 2,
  CELL_SHARE_UTS = 1 << 3,
  CELL_SHARE_NET = 1 << 4,
  CELL_SHARE_CGROUP = 1 << 5,
  /* The parent's user namespace (the host's ids for a top-level cell)
   * instead of a range of 65,536 ids of its own (cell_config id pool). */
  CELL_SHARE_USER = 1 << 6,
  /* Not a namespace: the cell's executables keep every capability, may
   * gain privileges and run without seccomp or a device filter, with the
   * host's ids and the host's filesystem (less cell_config.masked_paths
   * and the OCI masked paths). Without it (the default) they get the OCI
   * default capabilities minus MKNOD, no_new_privs, the default seccomp
   * filter, a BPF device filter, a user namespace of their own and, in a
   * cell with its own mount namespace, a private root (harden.h). With
   * CELL_SHARE_MNT nothing is masked (the mounts are the host's) and /proc
   * stays the host's even in a new pid namespace: such a cell sees every
   * host process and auraed's files. Only a privileged cell may have
   * privileged children. */
  CELL_PRIVILEGED = 1 << 8,
};

/* A host path bound into the cell (RunCell's Mount). */
typedef struct cell_bind {
  const char *source, *target;
  bool read_only;
} cell_bind;

#define CELL_BINDS_MAX 8

typedef struct cell_spec {
  const char *name;
  cell_resources resources;
  unsigned share;
  const cell_bind *binds;
  size_t nbinds;
} cell_spec;

/* -EINVAL bad name/resources, -ENOENT missing parent, -EEXIST,
 * -EOPNOTSUPP controller not available. On failure nothing is left. */
int cell_create(cell_manager *m, const cell_spec *spec, au_error *err);
/* Kills everything in the cell (cgroup.kill), removes cgroups and state.
 * A cell with children needs recursive (else -ENOTEMPTY). ret_freed gets
 * a NULL-terminated list of freed names (deepest first; may be NULL). */
int cell_free(cell_manager *m, const char *name, bool recursive, char ***ret_freed, au_error *err);
/* Who reaps a freed cell's init: a top-level init cloned on request is
 * auraed's child and auraed reaps it through its pidfd; one that was the
 * zygote's spare is the zygote's child and the zygote reaps it; a nested
 * init is its parent init's child and is reaped there. After auraed (or
 * the zygote) died, their inits were reparented to the host's pid 1 (or
 * the nearest PR_SET_CHILD_SUBREAPER ancestor, e.g. systemd's service
 * manager), and only that process can reap them: a re-adopting auraed is
 * not their ancestor, so freeing such a cell leaves the init a zombie
 * until the host's init reaps it. A real init (systemd, tini, auraed as
 * pid 1) does; a bare pid 1 that never calls wait() does not. Making
 * auraed a subreaper would not change this (it is the process that died),
 * and every process it starts already has a living parent that reaps it. */

typedef enum exe_state {
  EXE_STARTING = 0,
  EXE_RUNNING = 1,
  EXE_EXITED = 2,
  EXE_KILLED = 3,
} exe_state;

typedef struct exe_spec {
  const char *cell;
  const char *name;
  char *const *argv; /* NULL-terminated, at least one entry */
  char *const *envp; /* NULL-terminated, may be NULL */
  const char *cwd;   /* NULL: "/" */
  bool has_creds;
  uid_t uid;
  gid_t gid;
  const gid_t *groups;
  size_t ngroups;
  const void *stdin_data;
  size_t stdin_len;
  size_t output_limit; /* per stream; 0: CELL_OUTPUT_DEFAULT */
} exe_spec;

#define CELL_OUTPUT_DEFAULT (1u << 20)
#define CELL_OUTPUT_MAX (64u << 20)

typedef struct exe_info {
  char cell[AU_NAME_MAX + 1];
  char name[AU_NAME_LABEL_MAX + 1];
  char **argv; /* NULL-terminated, owned */
  exe_state state;
  pid_t host_pid, cell_pid;
  int exit_code, signal;
  int64_t started_ns, ended_ns;
  uint64_t dropped[2]; /* stdout, stderr */
  bool output_lost;
} exe_info;

typedef struct cell_info {
  char name[AU_NAME_MAX + 1];
  char cgroup_path[4096];
  pid_t init_pid;
  cell_resources resources;
  unsigned share;
  int64_t created_ns;
  uint32_t id_base; /* host id of the cell's root; 0: the host's ids */
  cell_bind *binds; /* strings owned */
  size_t nbinds;
  bool init_alive;
  exe_info *exes;
  size_t n_exes;
  char **children; /* NULL-terminated, direct children's full names */
} cell_info;

void exe_info_clear(exe_info *info);
void cell_info_clear(cell_info *info);

/* -EINVAL bad input, -ENOENT no such cell, -EEXIST duplicate name. The
 * process is in every namespace and the cgroup of the cell before any user
 * code runs; a failed exec (no such program) is -EINVAL and leaves
 * nothing. */
int exe_run(cell_manager *m, const exe_spec *spec, exe_info *ret, au_error *err);

int cell_inspect(cell_manager *m, const char *name, cell_info *ret, au_error *err);
/* Every cell, parents before children. */
int cell_list(cell_manager *m, cell_info **ret, size_t *ret_count, au_error *err);
void cell_list_free(cell_info *cells, size_t count);

int exe_inspect(cell_manager *m, const char *cell, const char *name, exe_info *ret, au_error *err);
/* Blocks until the executable has ended, timeout_ms passed (-ETIMEDOUT;
 * <0: no timeout) or cancelled(userdata) says so (-ECANCELED). */
typedef bool (*cell_cancel_fn)(void *userdata);
int exe_wait(cell_manager *m, const char *cell, const char *name, int64_t timeout_ms,
             cell_cancel_fn cancelled, void *userdata, exe_info *ret, au_error *err);
int exe_signal(cell_manager *m, const char *cell, const char *name, int sig, exe_info *ret,
               au_error *err);
/* SIGTERM, then after grace_ms SIGKILL to everything in the executable's
 * leaf cgroup; returns once it has ended. */
/* cancelled(userdata) ends the grace period early with -ECANCELED (the
 * caller went away, or auraed is stopping): SIGTERM was sent, nothing is
 * killed. */
int exe_stop(cell_manager *m, const char *cell, const char *name, uint32_t grace_ms,
             cell_cancel_fn cancelled, void *userdata, exe_info *ret, au_error *err);
/* Forgets an executable (killing what is left of it). */
int exe_free(cell_manager *m, const char *cell, const char *name, au_error *err);

enum { CELL_STREAM_STDOUT = 1, CELL_STREAM_STDERR = 2 };
/* Called without locks held; return non-zero to stop. stream is
 * CELL_STREAM_*; dropped counts bytes lost (oldest first) before data. */
typedef int (*exe_log_fn)(int stream, const void *data, size_t len, uint64_t dropped,
                          void *userdata);
/* Sends captured output of the streams in mask; with follow, keeps
 * sending until the executable has ended and its output is drained. */
int exe_logs(cell_manager *m, const char *cell, const char *name, int mask, bool follow,
             exe_log_fn fn, cell_cancel_fn cancelled, void *userdata, au_error *err);

/* Lifecycle of a whole cell (cell_life.c). A cell's subtree is one unit,
 * as for cell_free: these act on the executables of the cell and of every
 * cell below it; the cells themselves stay (cell_free removes them). ret
 * gets the named cell's status afterwards.
 * cell_signal: sig to the main process of each running executable;
 *   -EBUSY when none is running.
 * cell_stop: SIGTERM to each, then after grace_ms (0: 10 s), or as soon as
 *   all have ended, cgroup.kill of every executable's leaf (what they
 *   forked goes too; the init stays); returns once everything has ended.
 * cell_wait: until no executable runs in the subtree; -ETIMEDOUT after
 *   timeout_ms (<0: none), -ECANCELED, -ENOENT if the cell is freed. */
int cell_signal(cell_manager *m, const char *name, int sig, cell_info *ret, au_error *err);
int cell_stop(cell_manager *m, const char *name, uint32_t grace_ms, cell_cancel_fn cancelled,
              void *userdata, cell_info *ret, au_error *err);
int cell_wait(cell_manager *m, const char *name, int64_t timeout_ms, cell_cancel_fn cancelled,
              void *userdata, cell_info *ret, au_error *err);

/* The cell-init mode of auraed: main() calls this when argv[1] is
 * "--cell-init" (CELL_INIT_ARG), before anything else. */
int cell_init_main(int argc, char **argv);
