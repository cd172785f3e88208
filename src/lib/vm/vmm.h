/* The VMM backend interface: what differs between QEMU, Firecracker or
 * Cloud Hypervisor. vm.c does everything backend-neutral (validation,
 * files, taps, cgroup, process supervision, state); a backend turns a VM
 * into a command line and speaks the VMM's control protocol. */
#pragma once

#include <stdbool.h>

#include "error.h"
#include "vm/vm.h"

/* Everything a backend needs to build the command line. The fds are open
 * in the daemon without O_CLOEXEC cleared; the child keeps exactly these
 * (same numbers) across execve. */
typedef struct vmm_launch {
  const vm_spec *spec;
  vm_accel accel;
  unsigned tsc_khz; /* 0: unknown (keep the PIT for calibration) */
  const char *cmdline;
  int kernel_fd;
  int initrd_fd;          /* -1: none */
  const int *disk_fds;    /* spec->n_disks */
  const int *tap_fds;     /* spec->n_nics */
  char (*const macs)[18]; /* spec->n_nics */
  int console_listen_fd;  /* listening Unix socket for the serial console */
  int control_listen_fd;  /* listening Unix socket for the control protocol */
} vmm_launch;

typedef enum vmm_event_type {
  VMM_EVENT_SHUTDOWN = 1, /* the VMM is about to exit; reason set */
  VMM_EVENT_PANIC,        /* the guest reported a panic */
  VMM_EVENT_OTHER,
} vmm_event_type;

typedef struct vmm_event {
  vmm_event_type type;
  const char *reason; /* SHUTDOWN: "guest-shutdown", "host-qmp-quit", ... */
  bool guest;         /* SHUTDOWN: initiated by the guest */
} vmm_event;

typedef void (*vmm_event_fn)(const vmm_event *ev, void *userdata);

typedef struct vmm_handle vmm_handle;

typedef struct vmm_backend {
  const char *name;
  const char *default_binary;
  /* argv (NULL-terminated, malloc'd strings) for execve. */
  int (*build_argv)(const vmm_launch *l, const char *binary, char ***ret_argv, au_error *err);
  /* Takes fd (connected to the control socket) and completes the
   * protocol's handshake within timeout_ms. */
  int (*attach)(int fd, int timeout_ms, vmm_handle **ret, au_error *err);
  int (*fd)(vmm_handle *h);
  /* Reads what is available; -EPIPE once the VMM closed the channel. */
  int (*read_events)(vmm_handle *h, vmm_event_fn cb, void *ud, au_error *err);
  /* Asynchronous, safe from any thread. */
  int (*powerdown)(vmm_handle *h, au_error *err);
  int (*quit)(vmm_handle *h, au_error *err);
  void (*detach)(vmm_handle *h);
} vmm_backend;

extern const vmm_backend vmm_qemu_microvm;
