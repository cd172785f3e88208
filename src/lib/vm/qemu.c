/* The QEMU microvm backend. Command line, as measured in DESIGN.md:
 * microvm with ACPI (virtio-mmio discovery and the power button), no PIT
 * or PIC (tsc_early_khz on the kernel line makes that safe), the RTC kept
 * (without it the guest spends 1.6 s calibrating), no defaults, no user
 * config, the seccomp sandbox on, and no file QEMU opens by itself: kernel,
 * initramfs and disks come as inherited fds (/dev/fd/N), taps as fds, and
 * the QMP and console sockets as inherited listening sockets, so the
 * daemon is connected before QEMU runs and never races its start. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "vm/qmp.h"
#include "vm/vmm.h"

typedef struct argv_builder {
  char **v;
  size_t n, cap;
  bool oom;
} argv_builder;

static void argv_add(argv_builder *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void argv_add(argv_builder *b, const char *fmt, ...) {
  if (b->oom) return;
  if (b->n + 2 > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 64;
    char **nv = realloc(b->v, cap * sizeof(*nv));
    if (!nv) {
      b->oom = true;
      return;
    }
    b->v = nv;
    b->cap = cap;
  }
  va_list ap;
  va_start(ap, fmt);
  int r = vasprintf(&b->v[b->n], fmt, ap);
  va_end(ap);
  if (r < 0) {
    b->oom = true;
    return;
  }
  b->v[++b->n] = NULL;
}

/* QEMU's option parser splits on ','; a literal comma is written ",,". */
static char *qemu_escape(const char *s) {
  size_t n = 0;
  for (const char *p = s; *p; p++)
    n += *p == ',' ? 2 : 1;
  char *out = malloc(n + 1), *o = out;
  if (!out) return NULL;
  for (const char *p = s; *p; p++) {
    *o++ = *p;
    if (*p == ',') *o++ = ',';
  }
  *o = '\0';
  return out;
}

static int qemu_build_argv(const vmm_launch *l, const char *binary, char ***ret_argv,
                           au_error *err) {
  const vm_spec *s = l->spec;
  argv_builder b = {0};
  _cleanup_free_ char *name = qemu_escape(s->name);
  if (!name) return au_error_set(err, -ENOMEM, "out of memory");
  argv_add(&b, "%s", binary);
  argv_add(&b, "-name");
  argv_add(&b, "guest=%s,process=aurae-vm-%s,debug-threads=on", name, name);
  argv_add(&b, "-M");
  /* Without a known TSC frequency the guest calibrates against the PIT. */
  argv_add(&b, "microvm,acpi=on,pit=%s,pic=off,rtc=on,isa-serial=on",
           l->tsc_khz || l->accel == VM_ACCEL_KVM ? "off" : "on");
  argv_add(&b, "-nodefaults");
  argv_add(&b, "-no-user-config");
  argv_add(&b, "-display");
  argv_add(&b, "none");
  /* No exec, no setuid, no resource changes, no obsolete syscalls. */
  argv_add(&b, "-sandbox");
  argv_add(&b, "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
  argv_add(&b, "-accel");
  argv_add(&b, "%s", l->accel == VM_ACCEL_KVM ? "kvm" : "tcg");
  argv_add(&b, "-cpu");
  argv_add(&b, "%s", l->accel == VM_ACCEL_KVM ? "host" : "max");
  argv_add(&b, "-smp");
  argv_add(&b, "%u", s->vcpus ? s->vcpus : 1);
  argv_add(&b, "-m");
  argv_add(&b, "%llu", (unsigned long long)s->memory_mib);
  /* A guest reset ends the VM: it is reported, never silently rebooted. */
  argv_add(&b, "-no-reboot");
  argv_add(&b, "-kernel");
  argv_add(&b, "/dev/fd/%d", l->kernel_fd);
  if (l->initrd_fd >= 0) {
    argv_add(&b, "-initrd");
    argv_add(&b, "/dev/fd/%d", l->initrd_fd);
  }
  argv_add(&b, "-append");
  argv_add(&b, "%s", l->cmdline);
  argv_add(&b, "-chardev");
  argv_add(&b, "socket,id=con0,fd=%d,server=on,wait=off", l->console_listen_fd);
  argv_add(&b, "-serial");
  argv_add(&b, "chardev:con0");
  argv_add(&b, "-chardev");
  argv_add(&b, "socket,id=qmp0,fd=%d,server=on,wait=off", l->control_listen_fd);
  argv_add(&b, "-mon");
  argv_add(&b, "chardev=qmp0,mode=control");
  /* NICs first and in order: microvm hands out virtio-mmio slots in
   * creation order, which is the guest's probe order (eth0, eth1, ...). */
  for (size_t i = 0; i < s->n_nics; i++) {
    argv_add(&b, "-netdev");
    argv_add(&b, "tap,id=net%zu,fd=%d", i, l->tap_fds[i]);
    argv_add(&b, "-device");
    /* status=off: without the link-status feature the guest does not wait
     * a second for the link to come up. */
    argv_add(&b, "virtio-net-device,netdev=net%zu,mac=%s,status=off", i, l->macs[i]);
  }
  for (size_t i = 0; i < s->n_disks; i++) {
    argv_add(&b, "-drive");
    argv_add(&b, "if=none,id=disk%zu,file=/dev/fd/%d,format=%s,readonly=%s", i, l->disk_fds[i],
             s->disks[i].qcow2 ? "qcow2" : "raw", s->disks[i].read_only ? "on" : "off");
    argv_add(&b, "-device");
    argv_add(&b, "virtio-blk-device,drive=disk%zu", i);
  }
  argv_add(&b, "-msg");
  argv_add(&b, "timestamp=on");
  if (b.oom) {
    for (size_t i = 0; i < b.n; i++)
      free(b.v[i]);
    free(b.v);
    return au_error_set(err, -ENOMEM, "out of memory");
  }
  *ret_argv = b.v;
  return 0;
}

struct vmm_handle {
  qmp_client *qmp;
};

static int qemu_attach(int fd, int timeout_ms, vmm_handle **ret, au_error *err) {
  vmm_handle *h = calloc(1, sizeof(*h));
  if (!h) {
    close(fd);
    return au_error_set(err, -ENOMEM, "out of memory");
  }
  int r = qmp_client_open(fd, timeout_ms, &h->qmp, err);
  if (r < 0) {
    free(h);
    return r;
  }
  *ret = h;
  return 0;
}

static int qemu_fd(vmm_handle *h) { return qmp_client_fd(h->qmp); }

typedef struct qemu_ev_ctx {
  vmm_event_fn cb;
  void *ud;
} qemu_ev_ctx;

static void qemu_on_msg(const qmp_msg *m, void *ud) {
  qemu_ev_ctx *c = ud;
  if (m->type != QMP_MSG_EVENT) return;
  vmm_event ev = {.type = VMM_EVENT_OTHER};
  if (strcmp(m->event, "SHUTDOWN") == 0) {
    ev.type = VMM_EVENT_SHUTDOWN;
    ev.reason = json_string_value(json_object_get(m->data, "reason"));
    ev.guest = json_is_true(json_object_get(m->data, "guest"));
  } else if (strcmp(m->event, "GUEST_PANICKED") == 0) {
    ev.type = VMM_EVENT_PANIC;
  } else {
    return;
  }
  c->cb(&ev, c->ud);
}

static int qemu_read_events(vmm_handle *h, vmm_event_fn cb, void *ud, au_error *err) {
  qemu_ev_ctx c = {cb, ud};
  return qmp_client_read(h->qmp, qemu_on_msg, &c, err);
}

static int qemu_powerdown(vmm_handle *h, au_error *err) {
  return qmp_client_send(h->qmp, "system_powerdown", NULL, err);
}

static int qemu_quit(vmm_handle *h, au_error *err) {
  return qmp_client_send(h->qmp, "quit", NULL, err);
}

static void qemu_detach(vmm_handle *h) {
  if (!h) return;
  qmp_client_free(h->qmp);
  free(h);
}

const vmm_backend vmm_qemu_microvm = {
    .name = "qemu-microvm",
    .default_binary = "qemu-system-x86_64",
    .build_argv = qemu_build_argv,
    .attach = qemu_attach,
    .fd = qemu_fd,
    .read_events = qemu_read_events,
    .powerdown = qemu_powerdown,
    .quit = qemu_quit,
    .detach = qemu_detach,
};
