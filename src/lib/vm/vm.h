/* Virtual machines (issue 4): the library side of RunVirtualMachine and
 * its lifecycle. No gRPC here; the daemon's services/vms.c adapts protobuf
 * to these calls.
 *
 * A VM is a VMM process (QEMU -M microvm, behind the vmm.h interface) in
 * its own cgroup2 leaf MOUNT/ROOT.vms/<name> (beside the cells' ROOT), with its own state directory
 * RUNTIME_DIR/vms/<name>/ (vm.json, qmp.sock, console.sock, vmm.log), and
 * persistent taps named after it. auraed owns the taps, sockets, cgroup and
 * files: vm_free removes all of them.
 *
 * Across an auraed restart VMs keep running: vm_manager_open re-adopts
 * every VM whose state it finds (same pid and start time, control socket
 * answering), reconnecting to its control and console sockets; a VM that
 * ended while auraed was away is reported CRASHED with that reason, and
 * its taps and cgroup stay until freed. Nothing is leaked silently.
 *
 * Threading: every call may block and is safe from any thread; each
 * running VM has one supervisor thread (pidfd, control socket, console). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define VM_NICS_MAX 8
#define VM_DISKS_MAX 16
#define VM_CMDLINE_MAX 2048
#define VM_MEMORY_MIN_MIB 32
#define VM_DEFAULT_CONSOLE_LIMIT (1u << 20)
#define VM_CONSOLE_LIMIT_MAX (64u << 20)
#define VM_DEFAULT_GRACE_MS 10000
/* A stop holds a daemon worker for its grace period: bounded. */
#define VM_MAX_GRACE_MS (10u * 60 * 1000)

/* Numbered as the API's Accelerator enum. */
typedef enum vm_accel { VM_ACCEL_AUTO = 0, VM_ACCEL_KVM = 1, VM_ACCEL_TCG = 2 } vm_accel;
/* Numbered as the API's VirtualMachineState enum. */
typedef enum vm_state {
  VM_STATE_STARTING = 0,
  VM_STATE_RUNNING = 1,
  VM_STATE_STOPPED = 2,
  VM_STATE_CRASHED = 3,
} vm_state;

const char *vm_accel_name(vm_accel a);
const char *vm_state_name(vm_state s);

/* Is hardware virtualization really usable here? Needs vmx or svm in
 * /proc/cpuinfo AND a /dev/kvm that answers KVM_GET_API_VERSION and
 * KVM_CREATE_VM: a paravirtual nested KVM (PVM) has /dev/kvm without the
 * flags, and ordinary guests hang on it. reason (may be NULL) says why not. */
bool vm_kvm_usable(char *reason, size_t size);
/* AUTO -> KVM or TCG; KVM where unusable -> -EOPNOTSUPP with the reason. */
int vm_accel_resolve(vm_accel want, vm_accel *ret, char *reason, size_t size, au_error *err);

typedef struct vm_disk {
  const char *path;
  bool read_only;
  bool qcow2;
} vm_disk;

typedef struct vm_nic {
  const char *mac;    /* NULL/"": derived from the VM name and index */
  const char *bridge; /* NULL/"": none */
} vm_nic;

typedef struct vm_spec {
  const char *name;      /* a DNS label */
  unsigned vcpus;        /* 0: 1 */
  uint64_t memory_mib;   /* required */
  const char *kernel;    /* vmlinux (PVH ELF) or bzImage */
  const char *initramfs; /* may be NULL */
  const char *cmdline;   /* appended to the base line; NULL/"": base + quiet */
  const vm_disk *disks;
  size_t n_disks;
  const vm_nic *nics; /* the guest sees them as eth0, eth1, ... */
  size_t n_nics;
  vm_accel accel;
  uint64_t console_limit; /* 0: VM_DEFAULT_CONSOLE_LIMIT */
} vm_spec;

typedef struct vm_tap_status {
  char host[16];  /* host tap device */
  char guest[16]; /* eth0, ... */
  char mac[18];
  char host_addr[48];  /* fe80::1 */
  char guest_addr[48]; /* the guest's EUI-64 link-local address */
  char bridge[16];
} vm_tap_status;

typedef struct vm_status {
  char name[64];
  vm_state state;
  vm_accel accel;
  char accel_reason[160];
  int pid;
  vm_tap_status taps[VM_NICS_MAX];
  size_t n_taps;
  char exit_reason[256];
  int64_t started_ns, ended_ns;
  unsigned vcpus;
  uint64_t memory_mib;
  char cgroup[512];
  bool adopted; /* re-adopted from an earlier auraed */
} vm_status;

typedef struct vm_manager vm_manager;

typedef struct vm_manager_config {
  const char *runtime_dir; /* state in runtime_dir/vms */
  /* Kernels, initramfs images and disks must resolve (symlinks followed)
   * to a file under one of these directories. */
  const char *const *image_dirs;
  size_t n_image_dirs;
  /* cgroup2 subtree of the project, as cells use it (cell.h); NULL:
   * $AURAE_CGROUP_ROOT, else "aurae" for /run/aurae, else
   * "aurae-<hash of runtime_dir>". VMs go below "ROOT.vms". */
  const char *cgroup_root;
  const char *qemu_binary; /* NULL: qemu-system-x86_64 from PATH */
} vm_manager_config;

int vm_manager_open(const vm_manager_config *cfg, vm_manager **ret, size_t *ret_adopted,
                    au_error *err);
/* Stops supervising; VMs keep running (re-adopted by the next open). */
void vm_manager_close(vm_manager *m);

/* Validates, starts the VMM and returns once it answers on its control
 * socket (the guest boots on). -EINVAL bad spec (a file outside the
 * allowed directories, a qcow2 image naming host files, a link that is
 * not a bridge, an image that is not a regular file or block device),
 * -ENOENT missing file or bridge, -EEXIST name taken (or a link named as
 * one of its taps exists: left untouched),
 * -EOPNOTSUPP accelerator, -ENOEXEC the VMM exited while starting (its
 * last log line in the message). On failure nothing is left behind. */
int vm_run(vm_manager *m, const vm_spec *spec, vm_status *ret, au_error *err);
int vm_inspect(vm_manager *m, const char *name, vm_status *ret, au_error *err);
/* Until the VM is no longer running; timeout_ms -1: none (then
 * cancelled, if given, is polled). -ETIMEDOUT if still running. */
int vm_wait(vm_manager *m, const char *name, int64_t timeout_ms, bool (*cancelled)(void *),
            void *ud, vm_status *ret, au_error *err);
/* ACPI power-down, grace_ms (0: default; more than VM_MAX_GRACE_MS:
 * -EINVAL) for the guest to power off, then a hard quit, then SIGKILL.
 * Stopping a stopped VM is not an error. cancelled (may be NULL) is polled
 * during the grace period: once true, -ECANCELED (the power-down stays
 * requested; the guest may still act on it). */
int vm_stop(vm_manager *m, const char *name, unsigned grace_ms, bool (*cancelled)(void *), void *ud,
            vm_status *ret, au_error *err);
/* Removes taps, sockets, cgroup and files of a VM that is not running
 * (-EBUSY otherwise). ret_freed: NULL-terminated list of what was removed. */
int vm_free(vm_manager *m, const char *name, char ***ret_freed, au_error *err);
int vm_list(vm_manager *m, vm_status **ret, size_t *ret_count, au_error *err);

/* Console readers. */
typedef struct vm_logs vm_logs;
int vm_logs_open(vm_manager *m, const char *name, vm_logs **ret, au_error *err);
/* As vm_console_read (console.h): eof once the VM ended and all was read. */
size_t vm_logs_read(vm_logs *l, void *buf, size_t max, uint64_t *ret_dropped, int wait_ms,
                    bool *ret_eof);
void vm_logs_close(vm_logs *l);

/* Pure helpers, exported for tests. */
/* Host tap name for NIC index of VM name, at most 15 characters:
 * "au-<name>-<index>" when that fits, else "au-<first 3>_<7 base-32
 * digits of a hash of the whole name><index>" (see vm_spec.c); the '_'
 * keeps the two forms from ever meeting. */
void vm_tap_name(const char *vm_name, unsigned index, char buf[16]);
/* "xx:xx:xx:xx:xx:xx" in hex digits, not multicast. */
bool vm_mac_valid(const char *mac);
/* Locally administered MAC derived from the VM name and NIC index. */
void vm_default_mac(const char *vm_name, unsigned index, char buf[18]);
/* The kernel command line: base settings + user's (or "quiet"). */
int vm_build_cmdline(const char *user, unsigned tsc_khz, char **ret, au_error *err);
