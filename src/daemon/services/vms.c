/* Virtual machines: protobuf <-> src/lib/vm. RunVirtualMachine and the
 * lifecycle ops for WORKLOAD_KIND_VIRTUAL_MACHINE. Messages built here are
 * malloc'd all the way down (protobuf_c_message_free_unpacked frees them).
 *
 * Image policy: kernels, initramfs images and disks must lie (symlinks
 * resolved) under LIBRARY_DIR/images, LIBRARY_DIR/kernel,
 * /var/lib/aurae/kernel (where scripts/setup-guest-kernel.sh installs the
 * guest kernel) or a directory listed in the config's vm_image_dirs (an
 * array of absolute paths). qcow2 images that name other host files
 * (backing or external data files) are refused (vm_check_qcow2).
 *
 * When auraed stops, VMs keep running; the next auraed re-adopts them over
 * their QMP and console sockets (see src/lib/vm/vm.h). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "services.h"
#include "vm/vm.h"

typedef Aurae__Runtime__V0__VirtualMachineStatus pb_vm_status;

static vm_manager *g_vms;

static bool not_ready(rpc_call *call) {
  if (g_vms) return false;
  rpc_call_fail(call, RPC_UNAVAILABLE,
                "virtual machines are not available (vms_service_init failed; is "
                "qemu-system-x86 installed?)");
  return true;
}

static pb_vm_status *status_to_pb(const vm_status *st) {
  pb_vm_status *s = pb_zalloc(sizeof(*s));
  aurae__runtime__v0__virtual_machine_status__init(s);
  s->name = pb_strdup(st->name);
  s->state = (Aurae__Runtime__V0__VirtualMachineState)st->state;
  s->accelerator = (Aurae__Runtime__V0__Accelerator)st->accel;
  s->accelerator_reason = pb_strdup(st->accel_reason);
  s->vmm_pid = st->pid;
  s->exit_reason = pb_strdup(st->exit_reason);
  s->started_at_ns = st->started_ns;
  s->ended_at_ns = st->ended_ns;
  s->vcpus = st->vcpus;
  s->memory_mib = st->memory_mib;
  s->cgroup_path = pb_strdup(st->cgroup);
  s->adopted = st->adopted;
  s->n_taps = st->n_taps;
  s->taps = st->n_taps ? pb_zalloc(st->n_taps * sizeof(*s->taps)) : NULL;
  for (size_t i = 0; i < st->n_taps; i++) {
    Aurae__Runtime__V0__TapStatus *t = pb_zalloc(sizeof(*t));
    aurae__runtime__v0__tap_status__init(t);
    t->host_name = pb_strdup(st->taps[i].host);
    t->guest_name = pb_strdup(st->taps[i].guest);
    t->mac = pb_strdup(st->taps[i].mac);
    t->host_address = pb_strdup(st->taps[i].host_addr);
    t->guest_address = pb_strdup(st->taps[i].guest_addr);
    t->bridge = pb_strdup(st->taps[i].bridge);
    s->taps[i] = t;
  }
  return s;
}

static void reply_status(rpc_call *call, const vm_status *st) {
  pb_vm_status *s = status_to_pb(st);
  rpc_call_reply(call, &s->base);
  protobuf_c_message_free_unpacked(&s->base, NULL);
}

static void reply_workload(rpc_call *call, const vm_status *st) {
  Aurae__Runtime__V0__WorkloadStatus ws = AURAE__RUNTIME__V0__WORKLOAD_STATUS__INIT;
  ws.status_case = AURAE__RUNTIME__V0__WORKLOAD_STATUS__STATUS_VIRTUAL_MACHINE;
  ws.virtual_machine = status_to_pb(st);
  rpc_call_reply(call, &ws.base);
  protobuf_c_message_free_unpacked(&ws.virtual_machine->base, NULL);
}

void vms_run_virtual_machine(rpc_call *call, const ProtobufCMessage *msg, void *ud) {
  (void)ud;
  if (not_ready(call)) return;
  const Aurae__Runtime__V0__VirtualMachine *req = (const void *)msg;
  vm_disk disks[VM_DISKS_MAX];
  vm_nic nics[VM_NICS_MAX];
  if (req->n_disks > VM_DISKS_MAX) {
    rpc_call_fail(call, RPC_INVALID_ARGUMENT, "disks: at most %d", VM_DISKS_MAX);
    return;
  }
  if (req->n_interfaces > VM_NICS_MAX) {
    rpc_call_fail(call, RPC_INVALID_ARGUMENT, "interfaces: at most %d", VM_NICS_MAX);
    return;
  }
  for (size_t i = 0; i < req->n_disks; i++)
    disks[i] = (vm_disk){.path = req->disks[i]->path,
                         .read_only = req->disks[i]->read_only,
                         .qcow2 = req->disks[i]->format ==
                                  AURAE__RUNTIME__V0__DISK_FORMAT__DISK_FORMAT_QCOW2};
  for (size_t i = 0; i < req->n_interfaces; i++)
    nics[i] = (vm_nic){.mac = req->interfaces[i]->mac, .bridge = req->interfaces[i]->bridge};
  vm_spec spec = {.name = req->name,
                  .vcpus = req->vcpus,
                  .memory_mib = req->memory_mib,
                  .kernel = req->kernel_path,
                  .initramfs = req->initramfs_path,
                  .cmdline = req->kernel_cmdline,
                  .disks = disks,
                  .n_disks = req->n_disks,
                  .nics = nics,
                  .n_nics = req->n_interfaces,
                  .accel = (vm_accel)req->accelerator,
                  .console_limit = req->console_limit_bytes};
  vm_status st;
  au_error err = {0};
  if (vm_run(g_vms, &spec, &st, &err) < 0) {
    rpc_call_fail_error(call, &err);
    return;
  }
  log_info("vm %s: started, VMM pid %d, accelerator %s (%s), %zu tap(s)%s%s", st.name, st.pid,
           vm_accel_name(st.accel), st.accel_reason, st.n_taps, st.n_taps ? " first " : "",
           st.n_taps ? st.taps[0].host : "");
  reply_status(call, &st);
}

static void vms_inspect(rpc_call *call, const Aurae__Runtime__V0__WorkloadRef *ref) {
  if (not_ready(call)) return;
  vm_status st;
  au_error err = {0};
  if (vm_inspect(g_vms, ref->name, &st, &err) < 0)
    rpc_call_fail_error(call, &err);
  else
    reply_workload(call, &st);
}

/* Also true once the server shuts down: waits end and free their worker. */
static bool call_cancelled(void *ud) { return rpc_call_cancelled(ud); }

static void vms_wait(rpc_call *call, const Aurae__Runtime__V0__WaitRequest *req) {
  if (not_ready(call)) return;
  int64_t left = rpc_call_remaining_ms(call);
  vm_status st;
  au_error err = {0};
  if (vm_wait(g_vms, req->ref->name, left == INT64_MAX ? -1 : left, call_cancelled, call, &st,
              &err) < 0)
    rpc_call_fail_error(call, &err);
  else
    reply_workload(call, &st);
}

/* SIGTERM/SIGINT/SIGPWR: graceful stop; SIGKILL: hard stop (no grace). */
static void vms_signal(rpc_call *call, const Aurae__Runtime__V0__SignalRequest *req) {
  if (not_ready(call)) return;
  unsigned grace;
  if (req->signal == SIGTERM || req->signal == SIGINT || req->signal == SIGPWR)
    grace = 0;
  else if (req->signal == SIGKILL)
    grace = 1;
  else {
    rpc_call_fail(call, RPC_INVALID_ARGUMENT,
                  "signal %d: a virtual machine takes SIGTERM/SIGINT/SIGPWR (ACPI power-down) "
                  "or SIGKILL (quit)",
                  req->signal);
    return;
  }
  vm_status st;
  au_error err = {0};
  if (vm_stop(g_vms, req->ref->name, grace, call_cancelled, call, &st, &err) < 0)
    rpc_call_fail_error(call, &err);
  else
    reply_workload(call, &st);
}

static void vms_stop(rpc_call *call, const Aurae__Runtime__V0__StopRequest *req) {
  if (not_ready(call)) return;
  vm_status st;
  au_error err = {0};
  /* grace_period_ms is bounded (VM_MAX_GRACE_MS, INVALID_ARGUMENT above)
   * and the wait ends early when the call is cancelled. */
  if (vm_stop(g_vms, req->ref->name, req->grace_period_ms, call_cancelled, call, &st, &err) < 0) {
    rpc_call_fail_error(call, &err);
    return;
  }
  log_info("vm %s: %s: %s", st.name, vm_state_name(st.state), st.exit_reason);
  reply_workload(call, &st);
}

static void vms_free(rpc_call *call, const Aurae__Runtime__V0__FreeRequest *req) {
  if (not_ready(call)) return;
  char **freed = NULL;
  au_error err = {0};
  if (vm_free(g_vms, req->ref->name, &freed, &err) < 0) {
    rpc_call_fail_error(call, &err);
    return;
  }
  Aurae__Runtime__V0__FreeResponse resp = AURAE__RUNTIME__V0__FREE_RESPONSE__INIT;
  size_t n = 0;
  while (freed && freed[n])
    n++;
  resp.n_freed = n;
  resp.freed = freed;
  log_info("vm %s: freed (%zu resources)", req->ref->name, n);
  rpc_call_reply(call, &resp.base);
  for (size_t i = 0; i < n; i++)
    free(freed[i]);
  free(freed);
}

static void vms_logs(rpc_call *call, const Aurae__Runtime__V0__LogsRequest *req) {
  if (not_ready(call)) return;
  if (req->stream != AURAE__RUNTIME__V0__LOG_STREAM__LOG_STREAM_ALL &&
      req->stream != AURAE__RUNTIME__V0__LOG_STREAM__LOG_STREAM_CONSOLE) {
    rpc_call_fail(call, RPC_INVALID_ARGUMENT,
                  "stream: a virtual machine has only its console (LOG_STREAM_CONSOLE)");
    return;
  }
  vm_logs *l = NULL;
  au_error err = {0};
  if (vm_logs_open(g_vms, req->ref->name, &l, &err) < 0) {
    rpc_call_fail_error(call, &err);
    return;
  }
  char *chunk = malloc(65536);
  if (!chunk) {
    vm_logs_close(l);
    rpc_call_fail(call, RPC_RESOURCE_EXHAUSTED, "out of memory");
    return;
  }
  rpc_status end = RPC_OK;
  for (;;) {
    if (rpc_call_cancelled(call)) {
      end = RPC_CANCELLED;
      break;
    }
    uint64_t dropped = 0;
    bool eof = false;
    /* Short waits so a cancelled follower is noticed promptly. */
    size_t n = vm_logs_read(l, chunk, 65536, &dropped, req->follow ? 250 : 0, &eof);
    if (n == 0 && !req->follow) break;
    if (n == 0 && eof) break;
    if (n == 0) continue;
    Aurae__Runtime__V0__LogChunk c = AURAE__RUNTIME__V0__LOG_CHUNK__INIT;
    c.stream = AURAE__RUNTIME__V0__LOG_STREAM__LOG_STREAM_CONSOLE;
    c.data.data = (uint8_t *)chunk;
    c.data.len = n;
    c.dropped_bytes = dropped;
    if (rpc_call_send(call, &c.base) < 0) {
      end = RPC_CANCELLED;
      break;
    }
  }
  free(chunk);
  vm_logs_close(l);
  rpc_call_finish(call, end, end == RPC_OK ? "" : "cancelled");
}

static int vms_list(Aurae__Runtime__V0__ListResponse *out, au_error *err) {
  if (!g_vms) return 0;
  vm_status *all = NULL;
  size_t n = 0;
  int r = vm_list(g_vms, &all, &n, err);
  if (r < 0) return r;
  if (n) {
    pb_vm_status **arr =
        realloc(out->virtual_machines, (out->n_virtual_machines + n) * sizeof(*arr));
    if (!arr) {
      free(all);
      return au_error_set(err, -ENOMEM, "out of memory");
    }
    out->virtual_machines = arr;
    for (size_t i = 0; i < n; i++)
      arr[out->n_virtual_machines++] = status_to_pb(&all[i]);
  }
  free(all);
  return 0;
}

static const workload_ops ops = {
    .kind_name = "virtual machine",
    .inspect = vms_inspect,
    .wait = vms_wait,
    .signal = vms_signal,
    .stop = vms_stop,
    .free = vms_free,
    .logs = vms_logs,
    .list = vms_list,
};

const workload_ops *vms_workload_ops(void) { return &ops; }

int vms_service_init(const daemon_ctx *ctx, au_error *err) {
  char images[4200], kernel[4200];
  snprintf(images, sizeof(images), "%s/images", ctx->library_dir);
  snprintf(kernel, sizeof(kernel), "%s/kernel", ctx->library_dir);
  const char *dirs[16] = {images, kernel, "/var/lib/aurae/kernel"};
  size_t n = 3;
  for (size_t i = 0; i < ctx->n_vm_image_dirs && n < 16; i++)
    dirs[n++] = ctx->vm_image_dirs[i];
  vm_manager_config cfg = {.runtime_dir = ctx->runtime_dir, .image_dirs = dirs, .n_image_dirs = n};
  size_t adopted = 0;
  int r = vm_manager_open(&cfg, &g_vms, &adopted, err);
  if (r < 0) {
    au_error_prefix(err, "virtual machines");
    return r;
  }
  char why[160];
  bool kvm = vm_kvm_usable(why, sizeof(why));
  log_info("virtual machines: %zu re-adopted; accelerator auto = %s (%s)", adopted,
           kvm ? "kvm" : "tcg", why);
  return 0;
}

void vms_service_shutdown(void) {
  /* VMs keep running; the next auraed re-adopts them. */
  vm_manager_close(g_vms);
  g_vms = NULL;
}
