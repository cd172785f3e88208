/* cgroup v2 plumbing for cells. Paths are absolute paths in the host's
 * cgroup2 mount, found in /proc/self/mountinfo (never hard-coded: on a
 * hybrid host it is /sys/fs/cgroup/unified, on a pure v2 host
 * /sys/fs/cgroup). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

/* Pure: the mount point of the first cgroup2 file system in a
 * /proc/self/mountinfo text (octal escapes decoded). -ENOENT if none. */
int cgroup_parse_mountinfo(const char *text, char *buf, size_t size, au_error *err);
/* Reads /proc/self/mountinfo. */
int cgroup_find_mount(char *buf, size_t size, au_error *err);

/* Is CONTROLLER listed in DIR/cgroup.controllers? */
int cgroup_has_controller(const char *dir, const char *controller, bool *ret, au_error *err);
/* Makes sure CONTROLLER can be used in the children of every cgroup from
 * MOUNT down to DIR (inclusive): checks cgroup.controllers first and fails
 * with -EOPNOTSUPP naming the controller and the mount when the host does
 * not offer it; with enable, writes "+controller" into each
 * cgroup.subtree_control on the way. */
int cgroup_ensure_controller(const char *mount, const char *dir, const char *controller,
                             bool enable, au_error *err);

int cgroup_write(const char *dir, const char *file, const char *value, au_error *err);
/* mkdir that treats EEXIST as an error (a cell's cgroup is ours alone). */
int cgroup_mkdir(const char *dir, au_error *err);
/* cgroup.kill (Linux 5.14) and wait until cgroup.events says unpopulated,
 * at most timeout_ms. */
int cgroup_kill_wait(const char *dir, int timeout_ms, au_error *err);
/* rmdir DIR and every cgroup below it, deepest first. Missing is fine. */
int cgroup_remove_tree(const char *dir, au_error *err);
/* Is DIR populated (any process in it or below)? */
int cgroup_populated(const char *dir, bool *ret);
