/* Process creation for cells: clone3 with CLONE_INTO_CGROUP and
 * CLONE_PIDFD (Linux 5.7). Callable from the multi-threaded daemon: every
 * allocation happens before the clone, and the child only makes
 * async-signal-safe calls until execve. */
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include "cell/harden.h"
#include "cell/idpool.h"

/* The argv[1] that makes auraed run cell_init_main(). */
#define CELL_INIT_ARG "--cell-init"
/* After CELL_INIT_ARG: run as the zygote that clones top-level inits. */
#define CELL_ZYGOTE_ARG "--zygote"

/* Starts EXE --cell-init --zygote with SOCK (requests) as fd 3 and
 * NOTICES (its messages of its own) as fd 4 (zygote.c). */
int cell_spawn_zygote(const char *exe, int sock, int notices, pid_t *ret_pid, int *ret_pidfd);

/* How a cell init is made, whichever process makes it. */
typedef struct cell_init_opts {
  unsigned flags;   /* CELL_NS_* | CELL_INIT_PRIVILEGED (ctl.h) */
  uint32_t id_base; /* a new user namespace mapping 0.. to this host id; 0: the parent's */
  uint32_t scratch_mb, scratch_inodes; /* each private tmpfs of a default cell */
  char *const *masks;                  /* NULL-terminated absolute paths, may be NULL */
} cell_init_opts;

/* Starts a cell init by exec (when there is no zygote): a child in the
 * cgroup CGROUP_FD made by cell_clone_init for o, running
 *   EXE --cell-init NAME SCRATCH_MB:INODES FLAGS [MASKED_PATH...]
 * with SYNC_W as fd 3, LEAF_PROCS (the init leaf's cgroup.procs) as fd 4
 * and LISTEN_FD (init.sock, bound and listening) as fd 5, and the
 * sources of MOUNTS at 6... (--mount=ro:TARGET arguments). Returns 0 with
 * the child's pid (in the caller's pid namespace) and a pidfd, or -errno. */
int cell_spawn_init(const char *exe, const char *name, const cell_init_opts *o,
                    const cell_mount *mounts, size_t nmounts, int cgroup_fd, int sync_w,
                    int leaf_procs, int listen_fd, pid_t *ret_pid, int *ret_pidfd);

/* The clone3 flags of the namespaces in flags (CELL_NS_*) that clone3
 * makes; the cgroup namespace is unshared later, in the cell's cgroup. */
uint64_t cell_ns_clone_flags(unsigned flags);

/* The one way a cell init's process comes into being, whoever makes it
 * (auraed before an exec, the zygote, a parent cell's init): clone3 with
 * FLAGS into CGROUP_FD, and with a user namespace of its own when id_base
 * is not 0, whose maps we write before the child goes on; the child then
 * becomes that namespace's root. The child is non-dumpable from its first
 * instruction, so nothing in a cell can open its /proc files while it
 * holds host resources. Returns 0 in the child, like clone3; the child
 * only makes raw system calls before it returns (safe in a clone of a
 * multi-threaded process). */
pid_t cell_clone_init(uint64_t flags, int exit_signal, int cgroup_fd, uint32_t id_base,
                      int *ret_pidfd);

/* Raw clone3: returns 0 in the child, the pid in the parent, -errno.
 * exit_signal 0 makes a child that waitpid(-1) without __WALL ignores. */
pid_t cell_clone3(uint64_t flags, int exit_signal, int cgroup_fd, int *ret_pidfd);

/* posix_spawn's trick with clone3: the child shares our memory
 * (CLONE_VM | CLONE_VFORK), runs fn(arg) on STACK (16-byte aligned top at
 * stack + stack_size) in the cgroup CGROUP_FD with exit signal SIGCHLD,
 * and we resume once it has called execve or exited. No page tables are
 * copied and the child takes no copy-on-write faults, which is most of a
 * fork's cost on this host; the exec is confirmed without a pipe. For a
 * single-threaded caller only (the cell init): the child may use libc but
 * must end in execve or _exit. Returns the pid, or -errno (-ENOSYS where
 * it is not implemented: the caller forks instead). */
pid_t cell_clone3_vfork(int cgroup_fd, int *ret_pidfd, int (*fn)(void *), void *arg, void *stack,
                        size_t stack_size);

/* Host pid of a pidfd, from /proc/self/fdinfo (-ESRCH once reaped). */
pid_t cell_pidfd_pid(int pidfd);
int cell_pidfd_send_signal(int pidfd, int sig);
