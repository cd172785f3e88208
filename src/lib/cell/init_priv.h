/* Shared by the two single-threaded roles of aurae-cell-init: the cell
 * init (init.c) and the zygote that clones inits and keeps a spare one
 * ready (zygote.c). Not for auraed. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cell/ctl.h"
#include "cell/ctlmsg.h"
#include "cell/harden.h"
#include "cell/spawn.h"

typedef struct init_child init_child;

/* Bind mounts a cell may ask for (each source is an fd in the request). */
#define CELL_MAX_MOUNTS 8

/* What an init needs to start, whichever way it was made. */
typedef struct init_args {
  const char *name;
  cell_init_opts o;
  cell_mount mounts[CELL_MAX_MOUNTS];
  size_t nmounts;
  int sync, leaf_procs, listen; /* fds */
} init_args;

typedef struct init_state {
  int client; /* auraed's connection to init.sock */
  int ep, sfd, lfd;
  init_child *exes;
  bool privileged; /* executables keep every capability */
  bool zygote;     /* this process is the zygote, not a cell's init */
  /* Cloned from the zygote or a parent init, which have set up stdio and
   * signal dispositions (and last_cap) already: the child skips that. */
  bool cloned;
  int last_cap;
  cell_seccomp seccomp; /* zeroed (nothing loaded) when privileged */
} init_state;

extern init_state init_S;

/* Starts a cell init for a SPAWN_CELL request (ctl.h) as a clone of this
 * process (cell_clone_init) that runs init_run itself. extra:
 * CLONE_PARENT from the zygote. On failure, why says what failed. */
int init_clone(const struct ctl_spawn_cell *m, uint64_t extra, pid_t *ret_pid, int *ret_pidfd,
               char *why, size_t size);
/* Replies through the typed encoders (ctlmsg.h): an error {errno,
 * message}; a spawn reply, with SCM_CREDENTIALS naming pid when cred. */
void init_reply_error(int sock, uint32_t seq, int error, const char *msg);
void init_reply_pid(int sock, uint32_t seq, pid_t pid, int pidfd, bool cred);

/* The body of every cell init: into its cgroup, init_prepare,
 * init_activate, then serve. Returns its exit status. */
int init_run(const init_args *a);

/* The half of an init's set-up that does not depend on which cell it
 * serves, done inside its new namespaces: non-dumpable, the bounding set,
 * private mounts and the private root (or, privileged, the host's view
 * with auraed's paths and the OCI defaults masked), lo up, and the
 * signalfd and epoll of its loop. On failure, why says which step. */
int init_prepare(const cell_init_opts *o, const cell_mount *mounts, size_t nmounts, char *why,
                 size_t size);

/* A spare's first step for its cell: into the cell's cgroup, through its
 * cgroup.procs opened by auraed. A cloned init starts there
 * (CLONE_INTO_CGROUP). */
int init_join_cgroup(int cgroup_procs, char *why, size_t size);

/* Then, in the cell's own cgroup: a cgroup
 * namespace rooted there (CELL_NS_CGROUP), then into the _init leaf
 * (leaf_procs: its cgroup.procs). */
int init_enter_cgroup(unsigned flags, int leaf_procs, char *why, size_t size);

/* Last, for the cell NAME: its hostname. */
int init_activate(const char *name, unsigned flags, char *why, size_t size);

/* Serves FD, init.sock in the cell's state directory, bound and listening
 * (auraed made it), where a restarted auraed connects. */
void init_listen(int fd);

/* Takes FD as auraed's connection, as if accepted on init.sock (a spare
 * gets it with its cell). */
void init_adopt_client(int fd);

/* Tells auraed on the sync pipe why the init could not start: a negative
 * errno, then the message (wait_ready in cell_ops.c reads it). */
void init_fail(int sync, int err, const char *why);

/* Answers "ok" on sync, then serves init.sock and reaps until the cell is
 * freed. */
int init_serve(int sync);

/* The zygote (zygote.c), fd 3 its socket to auraed, fd 4 its notices. */
int zygote_main(int argc, char **argv);

/* The command line of the zygote's clones: its argv area (set by the
 * zygote), rewritten as "aurae-cell-init WHAT" (truncated to fit). */
void init_title_area(int argc, char **argv);
void init_set_title(const char *what);
