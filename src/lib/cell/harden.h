/* Secure defaults for what runs in a cell, as runc and crun apply them to
 * an OCI container by default, and a little stricter: a reduced capability
 * set (without MKNOD) with no_new_privs and a seccomp filter for every
 * executable, masked or read-only paths and a minimal /dev in the cell's
 * own mount namespace. None of it applies to a privileged cell except the
 * masked paths. Used by the cell init (single-threaded), so it may
 * allocate; cell_caps_finish and cell_seccomp_load run between fork and
 * execve and only make system calls. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/filter.h>

/* The OCI/Docker default capabilities less MKNOD: CHOWN, DAC_OVERRIDE,
 * FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW,
 * SYS_CHROOT, AUDIT_WRITE, SETFCAP (Docker's CapBnd is 00000000a80425fb).
 * Docker can grant MKNOD because its device cgroup refuses to open any
 * node it did not allow; cgroup v2 has no device controller (only a BPF
 * program attached to the cgroup could do that), so a cell with MKNOD could
 * make /dev/sda anywhere and open it. */
#define CELL_DEFAULT_CAPS UINT64_C(0x00000000a00425fb)

/* The highest capability number this kernel knows
 * (/proc/sys/kernel/cap_last_cap); read it before forking. */
int cell_caps_last(void);

/* Drops every capability not in CELL_DEFAULT_CAPS from the bounding set
 * (needs CAP_SETPCAP). The cell init does it once for all its children. */
int cell_caps_drop_bounding(int last_cap);
/* In the child, after changing credentials: permitted and effective become
 * the default set (empty for a non-root uid, which setresuid has already
 * cleared), inheritable and ambient become empty (CVE-2022-24769: runc
 * and crun no longer fill inheritable), then PR_SET_NO_NEW_PRIVS so that
 * no setuid binary or file capability can win back what was dropped. */
int cell_caps_finish(bool root);

/* Paths a cell's mount namespace hides whatever the configuration says:
 * the OCI default masked paths and read-only paths. */
extern const char *const cell_masked_paths_default[];
extern const char *const cell_readonly_paths_default[];

/* Hides each path: an empty read-only tmpfs over a directory, /dev/null
 * bound over anything else. Missing paths are skipped (a path inside an
 * already hidden directory is gone). On failure, errbuf says which. */
int cell_mask_paths(const char *const *paths, char *errbuf, size_t size);
/* Makes each path read-only (a read-only bind of itself, recursive). */
int cell_readonly_paths(const char *const *paths, char *errbuf, size_t size);

/* A bind mount an admin asked for: FD a detached mount tree (open_tree
 * OPEN_TREE_CLONE of a host directory or file, resolved without following
 * symlinks), TARGET an absolute path in the cell. Always nosuid and
 * nodev. */
typedef struct cell_mount {
  int fd;
  const char *target;
  bool read_only;
} cell_mount;

typedef struct cell_root_spec {
  char *const *masks;                  /* auraed's own paths, NULL-terminated */
  uint32_t scratch_mb, scratch_inodes; /* each of /tmp, /var/tmp, /run, /dev/shm */
  bool own_proc;                       /* a pid namespace of its own: a fresh /proc */
  bool own_net;                        /* a network namespace of its own: a fresh /sys */
  const cell_mount *mounts;
  size_t nmounts;
} cell_root_spec;

/* Replaces the cell's root, in its own mount namespace, by a private one
 * (root.c): a read-only tmpfs with read-only nosuid,nodev binds of /usr,
 * /bin, /sbin, /lib*, /etc (its secrets and the masks hidden), private
 * tmpfs /tmp, /var/tmp, /run, /dev/shm, /proc with the OCI masked and
 * read-only paths, read-only /sys, a minimal /dev, and the mounts; then
 * pivot_root into it. Nothing else of the host's filesystem stays
 * reachable by path. */
int cell_private_root(const cell_root_spec *s, char *errbuf, size_t size);

/* Fills DEV (a directory of the new root, relative to the cwd) with a
 * tmpfs holding only the OCI default devices bound from OLD_DEV (the /dev
 * being replaced: null, zero, full, random, urandom, tty; those missing
 * there are skipped, so a nested cell builds its /dev from its parent's),
 * a devpts instance of its own with ptmx, a capped /dev/shm, and the fd,
 * stdin, stdout, stderr links. */
int cell_setup_dev(const char *dev, int old_dev, const cell_root_spec *s, char *errbuf,
                   size_t size);

/* The default seccomp filter of executables in a cell that is not
 * privileged (seccomp.c): one classic BPF program, built before any
 * clone. */
typedef struct cell_seccomp {
  /* libseccomp's program for the denied system calls behind a hand-written
   * one for personality's safe values, merged into one (seccomp.c). */
  struct sock_fprog main;
} cell_seccomp;

int cell_seccomp_build(cell_seccomp *ret, char *errbuf, size_t size);
/* In the child, last before execve and after no_new_privs (which seccomp
 * requires without CAP_SYS_ADMIN): only prctl, async-signal-safe. A zeroed
 * cell_seccomp loads nothing. */
int cell_seccomp_load(const cell_seccomp *s);
void cell_seccomp_free(cell_seccomp *s);
