/* Secure defaults for what runs in a cell, as runc and crun apply them to
 * an OCI container by default: a reduced capability set with no_new_privs
 * for every executable, and masked or read-only paths in the cell's own
 * mount namespace. Used by the cell init (single-threaded), so it may
 * allocate; cell_caps_drop runs between fork and execve and only makes
 * system calls. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The OCI/Docker default capabilities: CHOWN, DAC_OVERRIDE, FOWNER,
 * FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW,
 * SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP (what /proc/PID/status shows as
 * CapBnd 00000000a80425fb in a default Docker container). */
#define CELL_DEFAULT_CAPS UINT64_C(0x00000000a80425fb)

/* The highest capability number this kernel knows
 * (/proc/sys/kernel/cap_last_cap); read it before forking. */
int cell_caps_last(void);

/* In the child, before changing credentials: drops every capability not in
 * CELL_DEFAULT_CAPS from the bounding set (needs CAP_SETPCAP). */
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
