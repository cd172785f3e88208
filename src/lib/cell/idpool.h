/* The pool of id ranges for per-cell user namespaces. Every top-level cell
 * gets one range of CELL_IDS_PER_CELL host ids, used for both its uids and
 * its gids (the Kubernetes user-namespace and podman --userns=auto model):
 * root in cell k is host id start + k * CELL_IDS_PER_CELL, and no two
 * cells share an id, so a process or file of one cell is never owned by
 * another cell's ids.
 *
 * Not thread-safe: the caller serializes every call on one pool (the cell
 * manager, under its own lock). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define CELL_IDS_PER_CELL 65536u
/* Just above systemd's container range (0x00080000-0x6FFFFFFF) and below
 * 2^31, which some software treats as a signed int: 4096 ranges,
 * 1879048192-2147483647. */
#define CELL_IDPOOL_DEFAULT_START 0x70000000u
#define CELL_IDPOOL_DEFAULT_CELLS 4096u
/* The highest id a range may hold: 4294967295 is the kernel's "no id",
 * (uid_t)-1. */
#define CELL_IDPOOL_LAST_ID 4294967294u
#define CELL_IDPOOL_MAX_CELLS 65536u

typedef struct cell_idpool cell_idpool;

/* A pool of `cells` ranges from `start`. start is a multiple of
 * CELL_IDS_PER_CELL and at least CELL_IDS_PER_CELL (the first range holds
 * the host's own root and system users), 1 <= cells <= 65536, and the last
 * id, start + cells * CELL_IDS_PER_CELL - 1, is at most
 * CELL_IDPOOL_LAST_ID. -EINVAL with a message naming the config field
 * ("cell_id_pool.start: ..."), -ENOMEM. */
int cell_idpool_new(uint32_t start, uint32_t cells, cell_idpool **ret, au_error *err);
/* Frees the pool; accepts NULL. */
void cell_idpool_free(cell_idpool *p);

/* Takes a free range and returns its first id; -ENOSPC when every range is
 * taken. Next-fit: the search starts after the last range handed out and
 * wraps around, so a range just released is reused only after every other
 * free range was, and the files and processes a dying cell leaves behind
 * do not meet the next cell at once. The position is not kept across
 * restarts of auraed. */
int cell_idpool_alloc(cell_idpool *p, uint32_t *ret_base);
/* Marks the range at base taken, for cells re-adopted after a restart:
 * -EINVAL when base is not the first id of a range of this pool, -EEXIST
 * when it is already taken. */
int cell_idpool_reserve(cell_idpool *p, uint32_t base);
/* Returns a range to the pool; a free range or a base outside the pool is
 * a no-op. */
void cell_idpool_release(cell_idpool *p, uint32_t base);
/* For a cell's range [base, base + CELL_IDS_PER_CELL) that need not be a
 * range of this pool (the pool was moved in the config while the cell
 * lived): marks every range of the pool it overlaps taken, so no new cell
 * shares an id with it; -EEXIST when one was taken already (the others are
 * marked all the same). A base outside the pool marks nothing. */
int cell_idpool_reserve_span(cell_idpool *p, uint32_t base);
/* Gives back every range reserve_span marked for base. */
void cell_idpool_release_span(cell_idpool *p, uint32_t base);
/* Whether base is the first id of one of the pool's ranges (taken or
 * not). */
bool cell_idpool_contains(const cell_idpool *p, uint32_t base);

/* Reads an /etc/subuid-style file ("name:start:count" a line; '#' comments
 * and blank lines skipped) and returns -EEXIST, with a message in msg,
 * when one of its ranges overlaps [start, start + len). Ids delegated to a
 * user (for rootless podman, say) must never be a cell's too: the user
 * could then own a cell's files and signal its processes. The file is not
 * ours, so malformed lines are skipped; a missing file is 0; another error
 * is a negative errno with a message. */
int cell_idpool_check_subids(const char *path, uint32_t start, uint64_t len, char *msg,
                             size_t size);
