/* Process creation for cells: clone3 with CLONE_INTO_CGROUP and
 * CLONE_PIDFD (Linux 5.7). Callable from the multi-threaded daemon: every
 * allocation happens before the clone, and the child only makes
 * async-signal-safe calls until execve. */
#pragma once

#include <stdint.h>
#include <sys/types.h>

/* The argv[1] that makes auraed run cell_init_main(). */
#define CELL_INIT_ARG "--cell-init"
/* After CELL_INIT_ARG: run as the zygote that clones top-level inits. */
#define CELL_ZYGOTE_ARG "--zygote"

/* Starts EXE --cell-init --zygote with SOCK (requests) as fd 3 and
 * NOTICES (its messages of its own) as fd 4 (zygote.c). */
int cell_spawn_zygote(const char *exe, int sock, int notices, pid_t *ret_pid, int *ret_pidfd);

/* Starts a cell init: a child in the cgroup CGROUP_FD with new namespaces
 * for the CELL_NS_* bits of flags (the cgroup namespace is made by the
 * init itself, see init.c), running
 *   EXE --cell-init NAME STATE_DIR FLAGS [MASKED_PATH...]
 * with SYNC_W as fd 3, LEAF_PROCS (the init leaf's cgroup.procs) as fd 4
 * and STATE_FD (the state dir) as fd 5: a nested init starts in its
 * parent's mount namespace, where the runtime dir is masked. masks is
 * NULL-terminated (may be NULL). Returns 0 with the child's pid (in the
 * caller's pid namespace) and a pidfd, or -errno. */
int cell_spawn_init(const char *exe, const char *name, const char *state_dir, unsigned flags,
                    char *const *masks, int cgroup_fd, int sync_w, int leaf_procs, int state_fd,
                    pid_t *ret_pid, int *ret_pidfd);

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
