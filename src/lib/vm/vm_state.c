/* vm.json: what a later auraed needs to re-adopt or clean up a VM. Written
 * atomically (temporary file + rename) at every state change. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"
#include "vm/vm_internal.h"

int vm_connect_socket(const char *path, int *ret, au_error *err);

int64_t vm_proc_start_time(int pid) {
  char path[64], buf[2048];
  vm_fmt(path, sizeof(path), "/proc/%d/stat", pid);
  _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  if (n <= 0) return -1;
  buf[n] = '\0';
  /* Field 22 (starttime), counted after the ')' that ends comm, which may
   * itself contain spaces and parentheses. */
  char *p = strrchr(buf, ')');
  if (!p) return -1;
  p += 2;
  for (int field = 3; field < 22 && p; field++) {
    p = strchr(p, ' ');
    if (p) p++;
  }
  return p ? strtoll(p, NULL, 10) : -1;
}

int vm_state_save(vm *v, au_error *err) {
  pthread_mutex_lock(&v->lock);
  json_t *taps = json_array();
  for (size_t i = 0; i < v->st.n_taps; i++) {
    const vm_tap_status *t = &v->st.taps[i];
    json_array_append_new(taps, json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "host", t->host, "guest",
                                          t->guest, "mac", t->mac, "host_addr", t->host_addr,
                                          "guest_addr", t->guest_addr, "bridge", t->bridge));
  }
  json_t *o =
      json_pack("{s:s,s:i,s:s,s:I,s:I,s:I,s:I,s:s,s:s,s:s,s:i,s:I,s:s,s:I,s:o}", "name", v->st.name,
                "state", (int)v->st.state, "accel", vm_accel_name(v->st.accel), "pid",
                (json_int_t)v->st.pid, "pid_start", (json_int_t)v->pid_start, "started_ns",
                (json_int_t)v->st.started_ns, "ended_ns", (json_int_t)v->st.ended_ns, "exit_reason",
                v->st.exit_reason, "accel_reason", v->st.accel_reason, "cgroup", v->st.cgroup,
                "vcpus", (int)v->st.vcpus, "memory_mib", (json_int_t)v->st.memory_mib, "backend",
                v->backend->name, "console_limit", (json_int_t)v->console_limit, "taps", taps);
  pthread_mutex_unlock(&v->lock);
  if (!o) return au_error_set(err, -ENOMEM, "vm %s: state: out of memory", v->st.name);
  char tmp[700], path[700];
  vm_fmt(tmp, sizeof(tmp), "%s/vm.json.tmp", v->dir);
  vm_fmt(path, sizeof(path), "%s/vm.json", v->dir);
  int r = json_dump_file(o, tmp, JSON_INDENT(1));
  json_decref(o);
  if (r < 0) return au_error_set(err, -EIO, "vm %s: write %s failed", v->st.name, tmp);
  if (rename(tmp, path) < 0)
    return au_error_errno(err, -errno, "vm %s: rename %s", v->st.name, tmp);
  return 0;
}

static void copy_str(char *dst, size_t size, json_t *o, const char *key) {
  const char *s = json_string_value(json_object_get(o, key));
  vm_fmt(dst, size, "%s", s ? s : "");
}

/* Re-attaches to a VMM that outlived the previous auraed. */
static int vm_adopt(vm *v, au_error *err) {
  int pidfd = (int)syscall(SYS_pidfd_open, v->st.pid, 0);
  if (pidfd < 0) return au_error_errno(err, -errno, "pidfd_open %d", v->st.pid);
  v->pidfd = pidfd;
  fcntl(pidfd, F_SETFD, FD_CLOEXEC);
  /* The pid may have been reused between the check and pidfd_open. */
  if (vm_proc_start_time(v->st.pid) != v->pid_start)
    return au_error_set(err, -ESRCH, "pid %d is no longer the VMM", v->st.pid);
  char path[700];
  int fd = -1;
  vm_fmt(path, sizeof(path), "%s/qmp.sock", v->dir);
  int r = vm_connect_socket(path, &fd, err);
  if (r < 0) return r;
  if ((r = v->backend->attach(fd, 5000, &v->h, err)) < 0) return r;
  vm_fmt(path, sizeof(path), "%s/console.sock", v->dir);
  au_error e2 = {0};
  if (vm_connect_socket(path, &v->console_fd, &e2) < 0) {
    log_debug("vm %s: console not re-attached: %s", v->st.name, e2.msg);
    v->console_fd = -1;
  }
  const char *note = "[aurae: console re-attached after an auraed restart; "
                     "earlier output was not kept]\r\n";
  vm_console_write(v->console, note, strlen(note));
  v->child = false;
  v->st.adopted = true;
  return vm_start_supervisor(v, err);
}

int vm_state_load(vm_manager *m, const char *dir, vm **ret, au_error *err) {
  *ret = NULL;
  char path[700];
  vm_fmt(path, sizeof(path), "%s/vm.json", dir);
  json_error_t jerr;
  json_t *o = json_load_file(path, 0, &jerr);
  const char *base = strrchr(dir, '/');
  base = base ? base + 1 : dir;
  vm *v = vm_alloc(m, base);
  if (!v) {
    json_decref(o);
    return au_error_set(err, -ENOMEM, "out of memory");
  }
  if (!o) {
    /* No record: nothing of ours can be identified; drop the files. */
    vm_cleanup_resources(v, NULL);
    vm_unref(v);
    return au_error_set(err, -EINVAL, "%s: %s (removed)", path, jerr.text);
  }
  v->st.state = (vm_state)json_integer_value(json_object_get(o, "state"));
  const char *accel = json_string_value(json_object_get(o, "accel"));
  v->st.accel = accel && strcmp(accel, "kvm") == 0 ? VM_ACCEL_KVM : VM_ACCEL_TCG;
  v->st.pid = (int)json_integer_value(json_object_get(o, "pid"));
  v->pid_start = json_integer_value(json_object_get(o, "pid_start"));
  v->st.started_ns = json_integer_value(json_object_get(o, "started_ns"));
  v->st.ended_ns = json_integer_value(json_object_get(o, "ended_ns"));
  v->st.vcpus = (unsigned)json_integer_value(json_object_get(o, "vcpus"));
  v->st.memory_mib = (uint64_t)json_integer_value(json_object_get(o, "memory_mib"));
  v->console_limit = (uint64_t)json_integer_value(json_object_get(o, "console_limit"));
  copy_str(v->st.exit_reason, sizeof(v->st.exit_reason), o, "exit_reason");
  copy_str(v->st.accel_reason, sizeof(v->st.accel_reason), o, "accel_reason");
  copy_str(v->st.cgroup, sizeof(v->st.cgroup), o, "cgroup");
  json_t *taps = json_object_get(o, "taps");
  for (size_t i = 0; i < json_array_size(taps) && i < VM_NICS_MAX; i++) {
    json_t *t = json_array_get(taps, i);
    vm_tap_status *ts = &v->st.taps[v->st.n_taps++];
    copy_str(ts->host, sizeof(ts->host), t, "host");
    copy_str(ts->guest, sizeof(ts->guest), t, "guest");
    copy_str(ts->mac, sizeof(ts->mac), t, "mac");
    copy_str(ts->host_addr, sizeof(ts->host_addr), t, "host_addr");
    copy_str(ts->guest_addr, sizeof(ts->guest_addr), t, "guest_addr");
    copy_str(ts->bridge, sizeof(ts->bridge), t, "bridge");
  }
  json_decref(o);
  v->console = vm_console_new(v->console_limit ? v->console_limit : VM_DEFAULT_CONSOLE_LIMIT);
  if (!v->console) {
    vm_unref(v);
    return au_error_set(err, -ENOMEM, "out of memory");
  }

  if (v->st.state == VM_STATE_STARTING) {
    /* auraed died while starting it: the start failed; undo it all. */
    if (v->st.pid > 0 && vm_proc_start_time(v->st.pid) == v->pid_start) kill(v->st.pid, SIGKILL);
    vm_cleanup_resources(v, NULL);
    vm_unref(v);
    return au_error_set(err, -ECANCELED, "vm %s: start was interrupted; cleaned up", base);
  }
  if (v->st.state == VM_STATE_RUNNING) {
    au_error e2 = {0};
    bool alive = v->st.pid > 0 && vm_proc_start_time(v->st.pid) == v->pid_start;
    int r = alive ? vm_adopt(v, &e2) : -ESRCH;
    if (r < 0) {
      if (alive && v->pidfd >= 0) {
        /* Running but unreachable: a VM nobody can control is worse than
         * none. */
        syscall(SYS_pidfd_send_signal, v->pidfd, SIGKILL, NULL, 0);
      }
      if (v->h) v->backend->detach(v->h), v->h = NULL;
      if (v->pidfd >= 0) close(v->pidfd), v->pidfd = -1;
      if (v->console_fd >= 0) close(v->console_fd), v->console_fd = -1;
      v->st.state = VM_STATE_CRASHED;
      v->st.ended_ns = vm_now_ns();
      v->st.pid = 0;
      if (alive)
        vm_fmt(v->st.exit_reason, sizeof(v->st.exit_reason),
               "killed: could not re-attach after an auraed restart: %.180s", e2.msg);
      else
        vm_fmt(v->st.exit_reason, sizeof(v->st.exit_reason),
               "VMM exited while auraed was not running");
      vm_console_close(v->console);
      vm_state_save(v, &e2);
    }
  } else {
    vm_console_close(v->console);
  }
  *ret = v;
  return 0;
}
