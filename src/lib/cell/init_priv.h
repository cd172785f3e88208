/* Shared by the two single-threaded roles of aurae-cell-init: the cell
 * init (init.c) and the zygote that clones inits and keeps a spare one
 * ready (zygote.c). Not for auraed. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cell/ctl.h"
#include "cell/harden.h"

typedef struct init_child init_child;

typedef struct init_state {
  int client; /* auraed's connection to init.sock */
  int ep, sfd, lfd;
  init_child *exes;
  bool privileged; /* executables keep every capability */
  /* Cloned from the zygote or a parent init, which have set up stdio and
   * signal dispositions (and last_cap) already: the child skips that. */
  bool cloned;
  int last_cap;
  cell_seccomp seccomp; /* zeroed (nothing loaded) when privileged */
} init_state;

extern init_state init_S;

/* The clone3 flags for the namespaces in flags (CELL_NS_*) that clone3
 * makes; the cgroup namespace is unshared later, in the cell's cgroup. */
uint64_t init_clone_ns_flags(unsigned flags);

/* Starts a cell init for a SPAWN_CELL request (ctl.h) as a clone of this
 * process that runs cell_init_main itself. extra: CLONE_PARENT from the
 * zygote. */
int init_clone(ctl_msg *m, uint64_t extra, pid_t *ret_pid, int *ret_pidfd);

/* The half of an init's set-up that does not depend on which cell it
 * serves, done inside its new namespaces (flags: CELL_NS_*): private
 * mounts, its /proc, masked and read-only paths (masks: NULL-terminated,
 * auraed's own paths), /dev, the read-only root, lo up, and the signalfd
 * and epoll of its loop. On failure, why says which step. */
int init_prepare(unsigned flags, char *const *masks, char *why, size_t size);

/* A spare's first step for its cell: into the cell's cgroup (cgroup_dir).
 * A cloned init starts there (CLONE_INTO_CGROUP). */
int init_join_cgroup(int cgroup_dir, char *why, size_t size);

/* Then, in the cell's own cgroup: a cgroup
 * namespace rooted there (CELL_NS_CGROUP), then into the _init leaf
 * (leaf_procs: its cgroup.procs). */
int init_enter_cgroup(unsigned flags, int leaf_procs, char *why, size_t size);

/* Last, for the cell NAME: its hostname. */
int init_activate(const char *name, unsigned flags, char *why, size_t size);

/* init.sock bound in the cell's state directory (statedir, an fd), where
 * auraed connects (a restarted one, or for an init it cloned). */
int init_listen(int statedir, char *why, size_t size);

/* Takes FD as auraed's connection, as if accepted on init.sock (a spare
 * gets it with its cell). */
void init_adopt_client(int fd);

/* Answers "ok" on sync, then serves init.sock and reaps until the cell is
 * freed. */
int init_serve(int sync);

/* The zygote (zygote.c), fd 3 its socket to auraed, fd 4 its notices. */
int zygote_main(int argc, char **argv);

/* The command line of the zygote's clones: its argv area (set by the
 * zygote), rewritten as "aurae-cell-init WHAT" (truncated to fit). */
void init_title_area(int argc, char **argv);
void init_set_title(const char *what);
