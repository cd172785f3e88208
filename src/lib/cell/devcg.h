/* The device cgroup of a cell that is not privileged. cgroup v2 has no
 * device controller file: what a process may open or create as a device
 * node is decided by the BPF_CGROUP_DEVICE programs attached to its cgroup
 * and to every cgroup above it, all of which must allow. A cell's minimal
 * /dev (devices.c) only decides which nodes are there to find; this
 * program also holds against a node reached some other way (a mount
 * shared with the host, a file descriptor passed in, a process the host
 * moves into the cell's cgroup). Used by auraed, not by the cell init. */
#pragma once

#include "error.h"

/* Loads the cell device filter, which allows reading and writing the OCI
 * default character devices (null, zero, full, random, urandom, tty, ptmx
 * and the pty slaves) and refuses mknod, every block device and anything
 * else. Returns the program's fd (the verifier costs ~0.1 ms: auraed loads
 * it once and attaches it to every cell). */
int cell_devices_load(au_error *err);

/* Attaches the program PROG_FD to the cgroup2 directory CGROUP_DIR_FD with
 * BPF_F_ALLOW_MULTI, so that a nested cell can attach it again below. The
 * attachment lives as long as the cgroup. */
int cell_devices_attach(int cgroup_dir_fd, int prog_fd, au_error *err);
