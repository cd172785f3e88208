/* Workload names. A part is a DNS label: 1-63 of [a-z0-9-], not starting or
 * ending with '-'. Cells are hierarchical: parts joined by '/', at most
 * AU_NAME_MAX_DEPTH deep. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

#define AU_NAME_LABEL_MAX 63
#define AU_NAME_MAX_DEPTH 8
#define AU_NAME_MAX 255

/* 0 or -EINVAL with a message naming the field and the bad part. */
int name_validate_label(const char *field, const char *label, au_error *err);
int name_validate_path(const char *field, const char *path, au_error *err);

/* Writes the parent of "a/b/c" ("a/b") into buf; returns false for a
 * top-level name. */
bool name_parent(const char *path, char *buf, size_t size);
/* The last part of "a/b/c" ("c"); a pointer into path. */
const char *name_leaf(const char *path);
