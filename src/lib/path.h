/* Absolute paths as strings: the checks every module that takes a path
 * from a client shares. Also names of nested workloads ("a/b/c"), whose
 * parts are joined by '/' the same way. */
#pragma once

#include <stdbool.h>

/* Whether P is absolute and in its one plain spelling: no empty, "." or
 * ".." parts and no trailing '/' ("/" itself is plain). String checks on a
 * plain path see what the kernel will resolve. */
bool path_is_plain(const char *p);

/* Whether PATH lies strictly below DIR, by whole parts: "/a/b/c" is below
 * "/a/b", "/a/bc" and "/a/b" are not. "/" holds every other absolute
 * path. Works for workload names too ("a/b" is below "a"). */
bool path_is_below(const char *path, const char *dir);
