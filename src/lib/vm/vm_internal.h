/* Shared between the files of the VM module; not a public header. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "error.h"
#include "vm/console.h"
#include "vm/vm.h"
#include "vm/vmm.h"

/* snprintf where truncation is acceptable (paths are bounded by the
 * caller's validation; messages may be cut). */
void vm_fmt(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* clone3 + execve with only keep[] (and stdio: /dev/null in, log_fd out
 * and err) inherited; into cgroup_fd's cgroup when >= 0. */
int vm_spawn(char *const argv[], const int *keep, size_t n_keep, int log_fd, int cgroup_fd,
             int *ret_pid, int *ret_pidfd, au_error *err);

/* A qcow2 image may name other host files (a backing file, an external
 * data file) that QEMU would open by path, past the allowed-directory
 * check: refuse those, and anything that is not qcow2 at all. fd is the
 * opened image; field names it in the message ("disks[0]"). */
int vm_check_qcow2(int fd, const char *field, const char *path, au_error *err);

typedef struct vm {
  int refs; /* under the manager's lock */
  struct vm_manager *m;
  const vmm_backend *backend;
  char dir[512];

  pthread_mutex_t lock;
  pthread_cond_t cond; /* state changes */
  vm_status st;        /* name, taps, cgroup, accel... and state */
  int64_t pid_start;   /* /proc/PID/stat start time, against pid reuse */
  bool child;          /* our child: waitid gives its exit status */
  int pidfd;
  vmm_handle *h;
  int console_fd;
  vm_console *console;
  uint64_t console_limit;
  int wake_fd; /* eventfd: the manager closes */
  pthread_t thread;
  bool has_thread;

  /* From the VMM's events, for the exit reason. */
  char shutdown_reason[64];
  bool shutdown_seen, shutdown_guest, panicked;
  /* vm_stop's progress: 0 none, 1 power-down sent, 2 quit sent, 3 killed. */
  int stop_phase;
  unsigned stop_grace_ms;
} vm;

struct vm_manager {
  pthread_mutex_t lock;
  vm **vms;
  size_t n_vms, cap_vms;
  char state_dir[512];   /* RUNTIME_DIR/vms */
  char cgroup_base[512]; /* MOUNT/ROOT.vms, "" when no cgroup2 */
  char **image_dirs;     /* resolved */
  size_t n_image_dirs;
  char qemu[512];
  unsigned tsc_khz;
  bool closing;
};

/* vm_state.c: vm.json and re-adoption. */
int vm_state_save(vm *v, au_error *err);
int vm_state_load(vm_manager *m, const char *dir, vm **ret, au_error *err);
int64_t vm_proc_start_time(int pid);

/* vm.c */
vm *vm_alloc(vm_manager *m, const char *name);
void vm_unref(vm *v);
int vm_start_supervisor(vm *v, au_error *err);
/* Removes taps, cgroup and files (what vm_free does, without the list). */
void vm_cleanup_resources(vm *v, char ***freed);
int64_t vm_now_ns(void);
