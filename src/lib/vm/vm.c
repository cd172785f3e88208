/* VM manager: validation, resources (files, sockets, taps, cgroup), the
 * supervisor thread, and the lifecycle calls. */
#include "vm/vm.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cell/cgroup.h"
#include "cleanup.h"
#include "log.h"
#include "names.h"
#include "net/net.h"
#include "path.h"
#include "vm/vm_internal.h"

#define VM_ATTACH_TIMEOUT_MS 10000
#define VM_QUIT_WAIT_MS 3000
#define VM_KILL_WAIT_MS 5000

int64_t vm_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void ts_after_ms(struct timespec *ts, int64_t ms) {
  clock_gettime(CLOCK_MONOTONIC, ts);
  ts->tv_sec += ms / 1000;
  ts->tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}

/* ------------------------------------------------------------ vm objects */

vm *vm_alloc(vm_manager *m, const char *name) {
  vm *v = calloc(1, sizeof(*v));
  if (!v) return NULL;
  v->refs = 1;
  v->m = m;
  v->backend = &vmm_qemu_microvm;
  v->pidfd = v->console_fd = v->wake_fd = -1;
  v->st.pid = 0;
  vm_fmt(v->st.name, sizeof(v->st.name), "%s", name);
  vm_fmt(v->dir, sizeof(v->dir), "%s/%s", m->state_dir, name);
  pthread_mutex_init(&v->lock, NULL);
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&v->cond, &attr);
  pthread_condattr_destroy(&attr);
  return v;
}

static void vm_release(vm *v) {
  if (v->h) v->backend->detach(v->h);
  if (v->pidfd >= 0) close(v->pidfd);
  if (v->console_fd >= 0) close(v->console_fd);
  if (v->wake_fd >= 0) close(v->wake_fd);
  vm_console_free(v->console);
  pthread_mutex_destroy(&v->lock);
  pthread_cond_destroy(&v->cond);
  free(v);
}

void vm_unref(vm *v) {
  if (!v) return;
  vm_manager *m = v->m;
  pthread_mutex_lock(&m->lock);
  bool last = --v->refs == 0;
  pthread_mutex_unlock(&m->lock);
  if (last) vm_release(v);
}

/* Finds name and takes a reference; NULL if unknown. */
static vm *vm_get(vm_manager *m, const char *name) {
  vm *found = NULL;
  pthread_mutex_lock(&m->lock);
  for (size_t i = 0; i < m->n_vms; i++)
    if (strcmp(m->vms[i]->st.name, name) == 0) {
      found = m->vms[i];
      found->refs++;
      break;
    }
  pthread_mutex_unlock(&m->lock);
  return found;
}

static int vm_get_or_fail(vm_manager *m, const char *name, vm **ret, au_error *err) {
  if (!name || !*name) return au_error_set(err, -EINVAL, "name: required");
  *ret = vm_get(m, name);
  if (!*ret) return au_error_set(err, -ENOENT, "virtual machine %s not found", name);
  return 0;
}

static void vm_snapshot(vm *v, vm_status *ret) {
  pthread_mutex_lock(&v->lock);
  *ret = v->st;
  pthread_mutex_unlock(&v->lock);
}

/* ------------------------------------------------------------ supervisor */

static void vm_on_event(const vmm_event *ev, void *ud) {
  vm *v = ud;
  pthread_mutex_lock(&v->lock);
  if (ev->type == VMM_EVENT_SHUTDOWN) {
    v->shutdown_seen = true;
    v->shutdown_guest = ev->guest;
    vm_fmt(v->shutdown_reason, sizeof(v->shutdown_reason), "%s",
           ev->reason ? ev->reason : "unknown");
  } else if (ev->type == VMM_EVENT_PANIC) {
    v->panicked = true;
  }
  pthread_mutex_unlock(&v->lock);
}

/* Reads the console socket until it would block; false at EOF/error. */
static bool vm_pump_console(vm *v) {
  char buf[16384];
  for (;;) {
    ssize_t n = recv(v->console_fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0) {
      vm_console_write(v->console, buf, (size_t)n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }
}

static const char *sig_name(int sig) {
  const char *d = sigabbrev_np(sig);
  return d ? d : "?";
}

/* The last non-empty line of the VMM's log (its error, if it failed). */
static void vm_log_tail(vm *v, char *buf, size_t size) {
  char path[600];
  vm_fmt(path, sizeof(path), "%s/vmm.log", v->dir);
  buf[0] = '\0';
  _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  char tail[1024];
  off_t end = lseek(fd, 0, SEEK_END);
  off_t start = end > (off_t)sizeof(tail) - 1 ? end - (off_t)sizeof(tail) + 1 : 0;
  ssize_t n = pread(fd, tail, sizeof(tail) - 1, start);
  if (n <= 0) return;
  tail[n] = '\0';
  while (n > 0 && (tail[n - 1] == '\n' || tail[n - 1] == '\r'))
    tail[--n] = '\0';
  char *line = strrchr(tail, '\n');
  line = line ? line + 1 : tail;
  /* QEMU's -msg timestamp=on prefix: "2024-...Z qemu-system-x86_64: ". */
  char *colon = strstr(line, ": ");
  if (colon && strncmp(line, "20", 2) == 0) line = colon + 2;
  vm_fmt(buf, size, "%s", line);
}

/* Decides state and reason once the VMM process has ended. */
static void vm_finish(vm *v) {
  siginfo_t si = {0};
  bool have_status = false;
  if (v->child) {
    if (waitid(P_PIDFD, (id_t)v->pidfd, &si, WEXITED) == 0) have_status = true;
  }
  char tail[300];
  vm_log_tail(v, tail, sizeof(tail));

  pthread_mutex_lock(&v->lock);
  vm_state state = VM_STATE_CRASHED;
  char *r = v->st.exit_reason;
  size_t rs = sizeof(v->st.exit_reason);
  const char *sd = v->shutdown_seen ? v->shutdown_reason : "";
  if (v->panicked) {
    vm_fmt(r, rs, "guest kernel panicked");
  } else if (v->stop_phase > 0 && strcmp(sd, "guest-shutdown") == 0) {
    state = VM_STATE_STOPPED;
    vm_fmt(r, rs, "stopped: guest powered off after the ACPI power button");
  } else if (v->stop_phase >= 2 && strcmp(sd, "host-qmp-quit") == 0) {
    state = VM_STATE_STOPPED;
    vm_fmt(r, rs, "stopped: guest did not power off within %u ms, VMM quit", v->stop_grace_ms);
  } else if (v->stop_phase >= 2) {
    /* Phase 1 alone (a stop cancelled in its grace period) ends below like
     * any other exit. */
    state = VM_STATE_STOPPED;
    vm_fmt(r, rs, "stopped: VMM killed after it ignored quit");
  } else if (strcmp(sd, "guest-shutdown") == 0) {
    state = VM_STATE_STOPPED;
    vm_fmt(r, rs, "guest powered off");
  } else if (strcmp(sd, "guest-reset") == 0) {
    state = VM_STATE_STOPPED;
    vm_fmt(r, rs, "guest reset (a VM ends on reset; panic=-1 makes a panic a reset)");
  } else if (strcmp(sd, "guest-panic") == 0) {
    vm_fmt(r, rs, "guest kernel panicked");
  } else if (strcmp(sd, "host-qmp-quit") == 0) {
    state = VM_STATE_STOPPED;
    vm_fmt(r, rs, "VMM quit over its control socket (not by auraed)");
  } else if (strcmp(sd, "host-signal") == 0) {
    vm_fmt(r, rs, "VMM terminated by a signal from outside auraed");
  } else if (have_status && si.si_code == CLD_EXITED) {
    if (si.si_status == 0) {
      state = VM_STATE_STOPPED;
      vm_fmt(r, rs, "VMM exited");
    } else {
      vm_fmt(r, rs, "VMM exited with status %d%s%s", si.si_status, tail[0] ? ": " : "", tail);
    }
  } else if (have_status) {
    vm_fmt(r, rs, "VMM killed by signal %d (SIG%s) from outside auraed", si.si_status,
           sig_name(si.si_status));
  } else {
    vm_fmt(r, rs,
           "VMM exited without a shutdown event (exit status unknown: "
           "not a child of this auraed)");
  }
  v->st.state = state;
  v->st.ended_ns = vm_now_ns();
  v->st.pid = 0;
  pthread_cond_broadcast(&v->cond);
  pthread_mutex_unlock(&v->lock);
  vm_console_close(v->console);
  au_error err = {0};
  if (vm_state_save(v, &err) < 0) log_debug("vm %s: %s", v->st.name, err.msg);
  log_debug("vm %s: %s: %s", v->st.name, vm_state_name(state), v->st.exit_reason);
}

static void *vm_supervise(void *arg) {
  vm *v = arg;
  bool control_open = true, console_open = v->console_fd >= 0;
  au_error err = {0};
  for (;;) {
    struct pollfd p[4] = {
        {.fd = v->pidfd, .events = POLLIN},
        {.fd = control_open ? v->backend->fd(v->h) : -1, .events = POLLIN},
        {.fd = console_open ? v->console_fd : -1, .events = POLLIN},
        {.fd = v->wake_fd, .events = POLLIN},
    };
    int n = poll(p, 4, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      log_debug("vm %s: poll: %s", v->st.name, strerror(errno));
      usleep(100000);
      continue;
    }
    if (p[3].revents) return NULL; /* the manager closes; the VM runs on */
    if (p[1].revents && v->backend->read_events(v->h, vm_on_event, v, &err) == -EPIPE)
      control_open = false;
    if (p[2].revents && !vm_pump_console(v)) console_open = false;
    if (p[0].revents) {
      /* Collect what the VMM said last before deciding why it ended. */
      if (control_open) v->backend->read_events(v->h, vm_on_event, v, &err);
      if (console_open) vm_pump_console(v);
      vm_finish(v);
      return NULL;
    }
  }
}

int vm_start_supervisor(vm *v, au_error *err) {
  v->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (v->wake_fd < 0) return au_error_errno(err, -errno, "eventfd");
  int r = pthread_create(&v->thread, NULL, vm_supervise, v);
  if (r != 0) return au_error_errno(err, -r, "vm %s: supervisor thread", v->st.name);
  v->has_thread = true;
  return 0;
}

/* ------------------------------------------------------------- resources */

static int freed_add(char ***list, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int freed_add(char ***list, const char *fmt, ...) {
  if (!list) return 0;
  size_t n = 0;
  while (*list && (*list)[n])
    n++;
  char **nl = realloc(*list, (n + 2) * sizeof(*nl));
  if (!nl) return -ENOMEM;
  *list = nl;
  va_list ap;
  va_start(ap, fmt);
  if (vasprintf(&nl[n], fmt, ap) < 0) nl[n] = NULL;
  va_end(ap);
  nl[n + 1] = NULL;
  return 0;
}

void vm_cleanup_resources(vm *v, char ***freed) {
  au_error err = {0};
  for (size_t i = 0; i < v->st.n_taps; i++) {
    const char *tap = v->st.taps[i].host;
    if (!tap[0]) continue;
    int r = net_link_delete(tap, &err);
    if (r == 0)
      freed_add(freed, "tap %s", tap);
    else if (r != -ENODEV)
      log_debug("vm %s: %s", v->st.name, err.msg);
  }
  if (v->st.cgroup[0] && access(v->st.cgroup, F_OK) == 0) {
    bool populated = false;
    if (cgroup_populated(v->st.cgroup, &populated) == 0 && populated)
      cgroup_kill_wait(v->st.cgroup, 2000, &err);
    if (cgroup_remove_tree(v->st.cgroup, &err) == 0)
      freed_add(freed, "cgroup %s", v->st.cgroup);
    else
      log_debug("vm %s: %s", v->st.name, err.msg);
  }
  static const char *const files[] = {"vm.json", "vm.json.tmp", "qmp.sock", "console.sock",
                                      "vmm.log"};
  char path[700];
  for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
    vm_fmt(path, sizeof(path), "%s/%s", v->dir, files[i]);
    unlink(path);
  }
  if (rmdir(v->dir) == 0)
    freed_add(freed, "dir %s", v->dir);
  else if (errno != ENOENT)
    log_debug("vm %s: rmdir %s: %s", v->st.name, v->dir, strerror(errno));
}

/* A listening Unix socket at path (replacing a stale one) and a client
 * already connected to it: the connection waits in the backlog until the
 * VMM, which inherits the listener, accepts it. */
static int vm_socket_pair(const char *path, int *ret_listen, int *ret_client, au_error *err) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof(sa.sun_path))
    return au_error_set(err, -ENAMETOOLONG, "socket path %s too long", path);
  strcpy(sa.sun_path, path);
  _cleanup_close_ int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (l < 0) return au_error_errno(err, -errno, "socket");
  unlink(path);
  if (bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0)
    return au_error_errno(err, -errno, "bind %s", path);
  chmod(path, 0600);
  if (listen(l, 4) < 0) return au_error_errno(err, -errno, "listen %s", path);
  _cleanup_close_ int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c < 0) return au_error_errno(err, -errno, "socket");
  if (connect(c, (struct sockaddr *)&sa, sizeof(sa)) < 0)
    return au_error_errno(err, -errno, "connect %s", path);
  *ret_listen = TAKE_FD(l);
  *ret_client = TAKE_FD(c);
  return 0;
}

int vm_connect_socket(const char *path, int *ret, au_error *err);
int vm_connect_socket(const char *path, int *ret, au_error *err) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof(sa.sun_path))
    return au_error_set(err, -ENAMETOOLONG, "socket path %s too long", path);
  strcpy(sa.sun_path, path);
  _cleanup_close_ int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c < 0) return au_error_errno(err, -errno, "socket");
  if (connect(c, (struct sockaddr *)&sa, sizeof(sa)) < 0)
    return au_error_errno(err, -errno, "connect %s", path);
  *ret = TAKE_FD(c);
  return 0;
}

/* Opens an image (kernel, initramfs, disk) if it resolves into an allowed
 * directory; the check is repeated on the opened fd, so a path swapped
 * between the check and the open is caught. */
static int vm_open_image(vm_manager *m, const char *field, const char *path, bool writable,
                         int *ret_fd, au_error *err) {
  if (!path || !*path) return au_error_set(err, -EINVAL, "%s: required", field);
  if (path[0] != '/')
    return au_error_set(err, -EINVAL, "%s: %s is not an absolute path", field, path);
  _cleanup_free_ char *real = realpath(path, NULL);
  if (!real) return au_error_errno(err, -errno, "%s: %s", field, path);
  bool allowed = false;
  for (size_t i = 0; i < m->n_image_dirs && !allowed; i++)
    allowed = path_is_below(real, m->image_dirs[i]);
  if (!allowed) {
    char dirs[512] = "";
    for (size_t i = 0; i < m->n_image_dirs; i++) {
      size_t l = strlen(dirs);
      vm_fmt(dirs + l, sizeof(dirs) - l, "%s%s", i ? ", " : "", m->image_dirs[i]);
    }
    return au_error_set(err, -EINVAL, "%s: %s is outside the allowed image directories (%s)", field,
                        path, m->n_image_dirs ? dirs : "none configured");
  }
  /* Look at the type before opening for real: open() of a FIFO blocks
   * until a writer comes (a worker stuck forever), and opening a device
   * can have effects of its own. O_PATH opens nothing; O_NOFOLLOW, since
   * realpath already followed the links the policy allows, refuses a
   * symlink swapped in since. */
  _cleanup_close_ int pfd = open(real, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (pfd < 0)
    return au_error_errno(err, errno == ELOOP ? -EINVAL : -errno, "%s: open %s", field, path);
  struct stat st;
  if (fstat(pfd, &st) < 0) return au_error_errno(err, -errno, "%s: stat %s", field, path);
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
    return au_error_set(err, -EINVAL, "%s: %s is not a regular file or block device", field, path);
  /* The same inode, now readable. O_NONBLOCK in case of surprises, then
   * cleared: QEMU inherits the descriptor. */
  char self[64];
  vm_fmt(self, sizeof(self), "/proc/self/fd/%d", pfd);
  _cleanup_close_ int fd =
      open(self, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return au_error_errno(err, -errno, "%s: open %s", field, path);
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
    return au_error_errno(err, -errno, "%s: fcntl %s", field, path);
  /* auraed runs as root, which reads anything: honour the file's own mode
   * so an operator can mark an image unusable. */
  if (!(st.st_mode & 0444))
    return au_error_set(err, -EINVAL, "%s: %s is not readable (mode %04o)", field, path,
                        st.st_mode & 07777);
  if (writable && !(st.st_mode & 0222))
    return au_error_set(err, -EINVAL, "%s: %s is read-only (mode %04o); attach it read_only", field,
                        path, st.st_mode & 07777);
  char link[64], now[4096];
  vm_fmt(link, sizeof(link), "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, now, sizeof(now) - 1);
  if (n < 0) return au_error_errno(err, -errno, "%s: readlink", field);
  now[n] = '\0';
  allowed = false;
  for (size_t i = 0; i < m->n_image_dirs && !allowed; i++)
    allowed = path_is_below(now, m->image_dirs[i]);
  if (!allowed)
    return au_error_set(err, -EINVAL, "%s: %s moved out of the allowed directories", field, path);
  /* Keep it above stdio for the child's dup2s. */
  if (fd <= 2) {
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (moved < 0) return au_error_errno(err, -errno, "dup");
    close(fd);
    fd = moved;
  }
  *ret_fd = TAKE_FD(fd);
  return 0;
}

static int vm_validate(const vm_spec *s, au_error *err) {
  int r = name_validate_label("name", s->name, err);
  if (r < 0) return r;
  if (strlen(s->name) >= sizeof(((vm_status *)0)->name))
    return au_error_set(err, -EINVAL, "name: too long");
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  if (cpus < 1) cpus = 1;
  if (s->vcpus > (unsigned long)cpus)
    return au_error_set(err, -EINVAL, "vcpus: %u is more than this host's %ld CPUs", s->vcpus,
                        cpus);
  if (s->memory_mib == 0)
    return au_error_set(err, -EINVAL, "memory_mib: required (at least %d)", VM_MEMORY_MIN_MIB);
  if (s->memory_mib < VM_MEMORY_MIN_MIB)
    return au_error_set(err, -EINVAL, "memory_mib: %llu is below the minimum of %d",
                        (unsigned long long)s->memory_mib, VM_MEMORY_MIN_MIB);
  long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
  uint64_t host_mib = pages > 0 && psize > 0 ? (uint64_t)pages * (uint64_t)psize >> 20 : 0;
  if (host_mib && s->memory_mib > host_mib)
    return au_error_set(err, -EINVAL, "memory_mib: %llu is more than this host's %llu MiB",
                        (unsigned long long)s->memory_mib, (unsigned long long)host_mib);
  if (s->n_nics > VM_NICS_MAX)
    return au_error_set(err, -EINVAL, "interfaces: at most %d", VM_NICS_MAX);
  if (s->n_disks > VM_DISKS_MAX)
    return au_error_set(err, -EINVAL, "disks: at most %d", VM_DISKS_MAX);
  for (size_t i = 0; i < s->n_nics; i++) {
    if (s->nics[i].mac && *s->nics[i].mac && !vm_mac_valid(s->nics[i].mac))
      return au_error_set(err, -EINVAL, "interfaces[%zu].mac: \"%s\" is not a unicast MAC", i,
                          s->nics[i].mac);
    if (s->nics[i].bridge && *s->nics[i].bridge &&
        (r = net_ifname_validate(s->nics[i].bridge, err)) < 0)
      return au_error_prefix(err, "interfaces[%zu].bridge", i), r;
  }
  if (s->accel != VM_ACCEL_AUTO && s->accel != VM_ACCEL_KVM && s->accel != VM_ACCEL_TCG)
    return au_error_set(err, -EINVAL, "accelerator: unknown value %d", (int)s->accel);
  if (s->console_limit > VM_CONSOLE_LIMIT_MAX)
    return au_error_set(err, -EINVAL, "console_limit_bytes: at most %u", VM_CONSOLE_LIMIT_MAX);
  return 0;
}

/* Sets up one tap: created persistent, described, DAD off, up, fe80::1/64
 * without DAD, optionally on a bridge. The tap is recorded (t->host, and
 * vm.json) only once this VM has created it: cleanup deletes what is
 * recorded, and must never delete a tap of the same name that someone
 * else made. */
static int vm_setup_tap(vm *v, size_t i, const char *name, const vm_nic *nic, int *ret_fd,
                        au_error *err) {
  vm_tap_status *t = &v->st.taps[i];
  int r = net_tap_create(name, ret_fd, err);
  if (r < 0) return r;
  pthread_mutex_lock(&v->lock);
  vm_fmt(t->host, sizeof(t->host), "%s", name);
  pthread_mutex_unlock(&v->lock);
  /* A crash from here on leaves a record the next auraed cleans up. */
  if ((r = vm_state_save(v, err)) < 0) return r;
  char alias[128];
  vm_fmt(alias, sizeof(alias), "aurae vm %s %s", v->st.name, t->guest);
  if ((r = net_link_set_alias(t->host, alias, err)) < 0) return r;
  if ((r = net_ipv6_disable_dad(t->host, err)) < 0) return r;
  if ((r = net_link_set_up(t->host, err)) < 0) return r;
  if ((r = net_addr_add(t->host, "fe80::1/64", true, err)) < 0) return r;
  if (nic->bridge && *nic->bridge && (r = net_link_set_master(t->host, nic->bridge, err)) < 0)
    return r;
  return 0;
}

static void close_fds(int *fds, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (fds[i] >= 0) {
      close(fds[i]);
      fds[i] = -1;
    }
}

static void strv_free(char **v) {
  if (!v) return;
  for (char **p = v; *p; p++)
    free(*p);
  free(v);
}

/* Everything of vm_run after the name is reserved; on failure the caller
 * cleans up what v records. */
static int vm_launch(vm_manager *m, vm *v, const vm_spec *s, au_error *err) {
  int kernel_fd = -1, initrd_fd = -1, disk_fds[VM_DISKS_MAX], tap_fds[VM_NICS_MAX];
  int qmp_l = -1, qmp_c = -1, con_l = -1, con_c = -1, log_fd = -1, cg_fd = -1;
  char macs[VM_NICS_MAX][18], taps[VM_NICS_MAX][16];
  char **argv = NULL;
  _cleanup_free_ char *cmdline = NULL;
  for (size_t i = 0; i < VM_DISKS_MAX; i++)
    disk_fds[i] = -1;
  for (size_t i = 0; i < VM_NICS_MAX; i++)
    tap_fds[i] = -1;
  int r;

  if ((r = vm_open_image(m, "kernel_path", s->kernel, false, &kernel_fd, err)) < 0) goto out;
  if (s->initramfs && *s->initramfs &&
      (r = vm_open_image(m, "initramfs_path", s->initramfs, false, &initrd_fd, err)) < 0)
    goto out;
  for (size_t i = 0; i < s->n_disks; i++) {
    char field[32];
    vm_fmt(field, sizeof(field), "disks[%zu]", i);
    if ((r = vm_open_image(m, field, s->disks[i].path, !s->disks[i].read_only, &disk_fds[i], err)) <
        0)
      goto out;
    if (s->disks[i].qcow2 && (r = vm_check_qcow2(disk_fds[i], field, s->disks[i].path, err)) < 0)
      goto out;
  }
  if ((r = vm_accel_resolve(s->accel, &v->st.accel, v->st.accel_reason, sizeof(v->st.accel_reason),
                            err)) < 0)
    goto out;
  if ((r = vm_build_cmdline(s->cmdline, v->st.accel == VM_ACCEL_TCG ? m->tsc_khz : 0, &cmdline,
                            err)) < 0)
    goto out;
  /* Before anything is created: a missing bridge is the caller's mistake
   * (NOT_FOUND), not a half-made VM to undo. */
  for (size_t i = 0; i < s->n_nics; i++)
    if (s->nics[i].bridge && *s->nics[i].bridge &&
        (r = net_bridge_check(s->nics[i].bridge, err)) < 0) {
      au_error_prefix(err, "interfaces[%zu].bridge", i);
      goto out;
    }

  /* State directory: a leftover of a VM nobody knows (its record was
   * already freed or never written) is ours to replace. */
  if (mkdir(v->dir, 0700) < 0 && errno != EEXIST) {
    r = au_error_errno(err, -errno, "mkdir %s", v->dir);
    goto out;
  }
  v->st.n_taps = s->n_nics;
  for (size_t i = 0; i < s->n_nics; i++) {
    vm_tap_status *t = &v->st.taps[i];
    vm_tap_name(v->st.name, (unsigned)i, taps[i]);
    t->host[0] = '\0'; /* set once created: vm_setup_tap */
    vm_fmt(t->guest, sizeof(t->guest), "eth%zu", i);
    if (s->nics[i].mac && *s->nics[i].mac)
      vm_fmt(t->mac, sizeof(t->mac), "%s", s->nics[i].mac);
    else
      vm_default_mac(v->st.name, (unsigned)i, t->mac);
    for (char *c = t->mac; *c; c++)
      *c = (char)(*c >= 'A' && *c <= 'F' ? *c + 32 : *c);
    memcpy(macs[i], t->mac, 18);
    vm_fmt(t->host_addr, sizeof(t->host_addr), "fe80::1");
    net_mac_to_link_local(t->mac, t->guest_addr, sizeof(t->guest_addr));
    vm_fmt(t->bridge, sizeof(t->bridge), "%s", s->nics[i].bridge ? s->nics[i].bridge : "");
  }
  if (m->cgroup_base[0])
    vm_fmt(v->st.cgroup, sizeof(v->st.cgroup), "%s/%s", m->cgroup_base, v->st.name);
  /* Written before the cgroup exists (and again as each tap is made), so
   * a crash from here on leaves a record the next auraed cleans up. */
  v->st.state = VM_STATE_STARTING;
  if ((r = vm_state_save(v, err)) < 0) goto out;

  for (size_t i = 0; i < s->n_nics; i++) {
    if ((r = vm_setup_tap(v, i, taps[i], &s->nics[i], &tap_fds[i], err)) < 0) {
      au_error_prefix(err, "interface %zu", i);
      goto out;
    }
  }
  if (v->st.cgroup[0]) {
    if ((r = cgroup_mkdir(v->st.cgroup, err)) < 0) {
      if (r == -EEXIST) {
        /* A stale cgroup of a VM of this name that nobody tracks. */
        bool pop = false;
        if (cgroup_populated(v->st.cgroup, &pop) == 0 && pop) {
          r = au_error_set(err, -EBUSY, "cgroup %s exists and has processes", v->st.cgroup);
          v->st.cgroup[0] = '\0';
          goto out;
        }
        au_error_clear(err);
      } else {
        goto out;
      }
    }
    cg_fd = open(v->st.cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cg_fd < 0) {
      r = au_error_errno(err, -errno, "open %s", v->st.cgroup);
      goto out;
    }
  }
  char path[700];
  vm_fmt(path, sizeof(path), "%s/qmp.sock", v->dir);
  if ((r = vm_socket_pair(path, &qmp_l, &qmp_c, err)) < 0) goto out;
  vm_fmt(path, sizeof(path), "%s/console.sock", v->dir);
  if ((r = vm_socket_pair(path, &con_l, &con_c, err)) < 0) goto out;
  vm_fmt(path, sizeof(path), "%s/vmm.log", v->dir);
  log_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_APPEND, 0600);
  if (log_fd < 0) {
    r = au_error_errno(err, -errno, "open %s", path);
    goto out;
  }

  vmm_launch l = {.spec = s,
                  .accel = v->st.accel,
                  .tsc_khz = m->tsc_khz,
                  .cmdline = cmdline,
                  .kernel_fd = kernel_fd,
                  .initrd_fd = initrd_fd,
                  .disk_fds = disk_fds,
                  .tap_fds = tap_fds,
                  .macs = macs,
                  .console_listen_fd = con_l,
                  .control_listen_fd = qmp_l};
  if ((r = v->backend->build_argv(&l, m->qemu, &argv, err)) < 0) goto out;
  int keep[4 + VM_DISKS_MAX + VM_NICS_MAX];
  size_t n_keep = 0;
  keep[n_keep++] = kernel_fd;
  if (initrd_fd >= 0) keep[n_keep++] = initrd_fd;
  keep[n_keep++] = qmp_l;
  keep[n_keep++] = con_l;
  for (size_t i = 0; i < s->n_disks; i++)
    keep[n_keep++] = disk_fds[i];
  for (size_t i = 0; i < s->n_nics; i++)
    keep[n_keep++] = tap_fds[i];
  if ((r = vm_spawn(argv, keep, n_keep, log_fd, cg_fd, &v->st.pid, &v->pidfd, err)) < 0) goto out;
  v->child = true;
  v->pid_start = vm_proc_start_time(v->st.pid);
  v->st.started_ns = vm_now_ns();
  /* QEMU holds its copies now. */
  close(qmp_l), qmp_l = -1;
  close(con_l), con_l = -1;

  /* Wait for QMP, or for QEMU to die trying (bad image, bad option). */
  int qfd = qmp_c;
  qmp_c = -1;
  r = v->backend->attach(qfd, VM_ATTACH_TIMEOUT_MS, &v->h, err);
  if (r < 0) {
    char tail[300], cause[AU_ERROR_MSG_MAX];
    vm_fmt(cause, sizeof(cause), "%s", err->msg); /* err->msg is rewritten below */
    struct pollfd p = {.fd = v->pidfd, .events = POLLIN};
    bool exited = poll(&p, 1, 2000) > 0;
    if (!exited) syscall(SYS_pidfd_send_signal, v->pidfd, SIGKILL, NULL, 0);
    siginfo_t si;
    waitid(P_PIDFD, (id_t)v->pidfd, &si, WEXITED);
    vm_log_tail(v, tail, sizeof(tail));
    /* QEMU giving up by itself is almost always about what it was given
     * (a kernel it cannot load, an image it cannot parse): ENOEXEC, a
     * failed precondition, not an internal error. */
    r = au_error_set(err,
                     exited            ? -ENOEXEC
                     : r == -ETIMEDOUT ? -ETIMEDOUT
                                       : -EIO,
                     "VMM did not start: %s", tail[0] ? tail : cause);
    close(v->pidfd);
    v->pidfd = -1;
    v->st.pid = 0;
    goto out;
  }
  v->console_fd = TAKE_FD(con_c);
  v->st.state = VM_STATE_RUNNING;
  r = 0;
out:
  if (kernel_fd >= 0) close(kernel_fd);
  if (initrd_fd >= 0) close(initrd_fd);
  close_fds(disk_fds, VM_DISKS_MAX);
  close_fds(tap_fds, VM_NICS_MAX);
  int rest[] = {qmp_l, qmp_c, con_l, con_c, log_fd, cg_fd};
  close_fds(rest, ARRAY_SIZE(rest));
  strv_free(argv);
  return r;
}

int vm_run(vm_manager *m, const vm_spec *spec, vm_status *ret, au_error *err) {
  int r = vm_validate(spec, err);
  if (r < 0) return r;
  vm *v = vm_alloc(m, spec->name);
  if (!v) return au_error_set(err, -ENOMEM, "out of memory");
  v->st.vcpus = spec->vcpus ? spec->vcpus : 1;
  v->st.memory_mib = spec->memory_mib;
  v->console_limit = spec->console_limit ? spec->console_limit : VM_DEFAULT_CONSOLE_LIMIT;
  v->console = vm_console_new(v->console_limit);
  if (!v->console) {
    vm_release(v);
    return au_error_set(err, -ENOMEM, "out of memory");
  }
  /* Reserve the name. */
  pthread_mutex_lock(&m->lock);
  bool taken = false;
  for (size_t i = 0; i < m->n_vms; i++)
    taken |= strcmp(m->vms[i]->st.name, spec->name) == 0;
  if (!taken && m->n_vms == m->cap_vms) {
    size_t cap = m->cap_vms ? m->cap_vms * 2 : 16;
    vm **nv = realloc(m->vms, cap * sizeof(*nv));
    if (nv) m->vms = nv, m->cap_vms = cap;
  }
  if (!taken && m->n_vms < m->cap_vms)
    m->vms[m->n_vms++] = v;
  else if (!taken)
    r = au_error_set(err, -ENOMEM, "out of memory");
  pthread_mutex_unlock(&m->lock);
  if (taken) {
    vm_release(v);
    return au_error_set(err, -EEXIST, "virtual machine %s already exists", spec->name);
  }
  if (r < 0) {
    vm_release(v);
    return r;
  }

  r = vm_launch(m, v, spec, err);
  if (r == 0) r = vm_start_supervisor(v, err);
  if (r == 0) {
    au_error e2 = {0};
    if (vm_state_save(v, &e2) < 0) log_debug("vm %s: %s", v->st.name, e2.msg);
    vm_snapshot(v, ret);
    return 0;
  }
  au_error_prefix(err, "start vm %s", spec->name);
  if (v->st.pid > 0 && v->pidfd >= 0) { /* started, supervisor failed */
    syscall(SYS_pidfd_send_signal, v->pidfd, SIGKILL, NULL, 0);
    siginfo_t si;
    waitid(P_PIDFD, (id_t)v->pidfd, &si, WEXITED);
  }
  vm_cleanup_resources(v, NULL);
  /* Callers of Wait may have found the reserved name: give them an end
   * state (and a reason) to return, rather than a STARTING that never
   * changes. */
  pthread_mutex_lock(&v->lock);
  v->st.state = VM_STATE_CRASHED;
  v->st.pid = 0;
  v->st.ended_ns = vm_now_ns();
  vm_fmt(v->st.exit_reason, sizeof(v->st.exit_reason), "%s",
         err && err->msg[0] ? err->msg : "start failed");
  pthread_cond_broadcast(&v->cond);
  pthread_mutex_unlock(&v->lock);
  vm_console_close(v->console);
  pthread_mutex_lock(&m->lock);
  for (size_t i = 0; i < m->n_vms; i++)
    if (m->vms[i] == v) {
      m->vms[i] = m->vms[--m->n_vms];
      break;
    }
  pthread_mutex_unlock(&m->lock);
  vm_unref(v);
  return r;
}

int vm_inspect(vm_manager *m, const char *name, vm_status *ret, au_error *err) {
  vm *v;
  int r = vm_get_or_fail(m, name, &v, err);
  if (r < 0) return r;
  vm_snapshot(v, ret);
  vm_unref(v);
  return 0;
}

int vm_wait(vm_manager *m, const char *name, int64_t timeout_ms, bool (*cancelled)(void *),
            void *ud, vm_status *ret, au_error *err) {
  vm *v;
  int r = vm_get_or_fail(m, name, &v, err);
  if (r < 0) return r;
  struct timespec deadline;
  ts_after_ms(&deadline, timeout_ms < 0 ? 0 : timeout_ms);
  pthread_mutex_lock(&v->lock);
  while (v->st.state == VM_STATE_RUNNING || v->st.state == VM_STATE_STARTING) {
    if (cancelled && cancelled(ud)) {
      r = au_error_set(err, -ECANCELED, "wait for vm %s: cancelled", name);
      break;
    }
    struct timespec slice;
    ts_after_ms(&slice, 250);
    if (timeout_ms >= 0 && (slice.tv_sec > deadline.tv_sec ||
                            (slice.tv_sec == deadline.tv_sec && slice.tv_nsec > deadline.tv_nsec)))
      slice = deadline;
    int w = pthread_cond_timedwait(&v->cond, &v->lock, &slice);
    /* STARTING counts too: past the deadline, slice stays in the past and
     * the loop would spin. */
    if (w == ETIMEDOUT && timeout_ms >= 0 && slice.tv_sec == deadline.tv_sec &&
        slice.tv_nsec == deadline.tv_nsec &&
        (v->st.state == VM_STATE_RUNNING || v->st.state == VM_STATE_STARTING)) {
      r = au_error_set(err, -ETIMEDOUT, "vm %s is still %s", name, vm_state_name(v->st.state));
      break;
    }
  }
  *ret = v->st;
  pthread_mutex_unlock(&v->lock);
  vm_unref(v);
  return r;
}

/* Waits for the VM to leave RUNNING for up to ms; 1 if it did, 0 if not,
 * -ECANCELED once cancelled (polled every 250 ms; may be NULL). */
static int vm_wait_ended(vm *v, int64_t ms, bool (*cancelled)(void *), void *ud) {
  struct timespec deadline;
  ts_after_ms(&deadline, ms);
  int r = 0;
  pthread_mutex_lock(&v->lock);
  while (v->st.state == VM_STATE_RUNNING) {
    if (cancelled && cancelled(ud)) {
      r = -ECANCELED;
      break;
    }
    struct timespec slice = deadline;
    if (cancelled) {
      ts_after_ms(&slice, 250);
      if (slice.tv_sec > deadline.tv_sec ||
          (slice.tv_sec == deadline.tv_sec && slice.tv_nsec > deadline.tv_nsec))
        slice = deadline;
    }
    if (pthread_cond_timedwait(&v->cond, &v->lock, &slice) == ETIMEDOUT &&
        slice.tv_sec == deadline.tv_sec && slice.tv_nsec == deadline.tv_nsec)
      break;
  }
  if (v->st.state != VM_STATE_RUNNING) r = 1;
  pthread_mutex_unlock(&v->lock);
  return r;
}

int vm_stop(vm_manager *m, const char *name, unsigned grace_ms, bool (*cancelled)(void *), void *ud,
            vm_status *ret, au_error *err) {
  /* Bounded: the stop holds a daemon worker (and daemon shutdown) for as
   * long as it waits. */
  if (grace_ms > VM_MAX_GRACE_MS)
    return au_error_set(err, -EINVAL,
                        "grace_period_ms: %u is more than the maximum of %u "
                        "(10 minutes)",
                        grace_ms, VM_MAX_GRACE_MS);
  vm *v;
  int r = vm_get_or_fail(m, name, &v, err);
  if (r < 0) return r;
  if (grace_ms == 0) grace_ms = VM_DEFAULT_GRACE_MS;
  pthread_mutex_lock(&v->lock);
  bool running = v->st.state == VM_STATE_RUNNING;
  bool first = running && v->stop_phase == 0;
  if (first) {
    v->stop_phase = 1;
    v->stop_grace_ms = grace_ms;
  }
  pthread_mutex_unlock(&v->lock);
  if (running) {
    au_error e2 = {0};
    if (first && v->backend->powerdown(v->h, &e2) < 0)
      log_debug("vm %s: power-down: %s", name, e2.msg);
    int ended = vm_wait_ended(v, grace_ms, cancelled, ud);
    if (ended == -ECANCELED) {
      /* The caller went away (or auraed is shutting down): stop waiting
       * rather than hold a worker. No escalation: the power-down request
       * stands and the guest may still act on it; another Stop finishes
       * the job. */
      r = au_error_set(err, -ECANCELED,
                       "stop vm %s: cancelled during the %u ms grace "
                       "period (the ACPI power-down stays requested)",
                       name, grace_ms);
      /* The next Stop starts afresh (presses the button again, with its
       * own grace), and a guest that powers off later is reported as
       * such, not as stopped by this call. */
      pthread_mutex_lock(&v->lock);
      if (first && v->stop_phase == 1) v->stop_phase = 0;
      pthread_mutex_unlock(&v->lock);
    } else if (!ended) {
      pthread_mutex_lock(&v->lock);
      if (v->stop_phase < 2) v->stop_phase = 2;
      pthread_mutex_unlock(&v->lock);
      /* Quit and kill are bounded (seconds) and not cancelled: a hard
       * stop, once begun, is finished. */
      if (v->backend->quit(v->h, &e2) < 0) log_debug("vm %s: quit: %s", name, e2.msg);
      if (!vm_wait_ended(v, VM_QUIT_WAIT_MS, NULL, NULL)) {
        pthread_mutex_lock(&v->lock);
        v->stop_phase = 3;
        pthread_mutex_unlock(&v->lock);
        syscall(SYS_pidfd_send_signal, v->pidfd, SIGKILL, NULL, 0);
        if (!vm_wait_ended(v, VM_KILL_WAIT_MS, NULL, NULL))
          r = au_error_set(err, -ETIMEDOUT, "vm %s: VMM did not die after SIGKILL", name);
      }
    }
  }
  vm_snapshot(v, ret);
  vm_unref(v);
  return r;
}

int vm_free(vm_manager *m, const char *name, char ***ret_freed, au_error *err) {
  vm *v;
  int r = vm_get_or_fail(m, name, &v, err);
  if (r < 0) return r;
  pthread_mutex_lock(&m->lock);
  pthread_mutex_lock(&v->lock);
  bool running = v->st.state == VM_STATE_RUNNING || v->st.state == VM_STATE_STARTING;
  pthread_mutex_unlock(&v->lock);
  bool listed = false;
  if (!running)
    for (size_t i = 0; i < m->n_vms; i++)
      if (m->vms[i] == v) {
        m->vms[i] = m->vms[--m->n_vms];
        listed = true;
        v->refs--; /* the list's reference; ours keeps v alive */
        break;
      }
  pthread_mutex_unlock(&m->lock);
  if (running) {
    vm_unref(v);
    return au_error_set(err, -EBUSY, "virtual machine %s is running: stop it first", name);
  }
  if (!listed) { /* freed concurrently */
    vm_unref(v);
    return au_error_set(err, -ENOENT, "virtual machine %s not found", name);
  }
  if (v->has_thread) {
    pthread_join(v->thread, NULL);
    v->has_thread = false;
  }
  char **freed = NULL;
  freed_add(&freed, "vm %s", name);
  vm_cleanup_resources(v, &freed);
  vm_console_close(v->console);
  if (ret_freed)
    *ret_freed = freed;
  else
    strv_free(freed);
  vm_unref(v);
  return 0;
}

int vm_list(vm_manager *m, vm_status **ret, size_t *ret_count, au_error *err) {
  pthread_mutex_lock(&m->lock);
  size_t n = m->n_vms;
  vm_status *out = calloc(n ? n : 1, sizeof(*out));
  if (!out) {
    pthread_mutex_unlock(&m->lock);
    return au_error_set(err, -ENOMEM, "out of memory");
  }
  for (size_t i = 0; i < n; i++)
    vm_snapshot(m->vms[i], &out[i]);
  pthread_mutex_unlock(&m->lock);
  *ret = out;
  *ret_count = n;
  return 0;
}

struct vm_logs {
  vm *v;
  uint64_t cursor;
};

int vm_logs_open(vm_manager *m, const char *name, vm_logs **ret, au_error *err) {
  vm *v;
  int r = vm_get_or_fail(m, name, &v, err);
  if (r < 0) return r;
  vm_logs *l = calloc(1, sizeof(*l));
  if (!l) {
    vm_unref(v);
    return au_error_set(err, -ENOMEM, "out of memory");
  }
  l->v = v;
  l->cursor = vm_console_start(v->console);
  *ret = l;
  return 0;
}

size_t vm_logs_read(vm_logs *l, void *buf, size_t max, uint64_t *ret_dropped, int wait_ms,
                    bool *ret_eof) {
  return vm_console_read(l->v->console, &l->cursor, buf, max, ret_dropped, wait_ms, ret_eof);
}

void vm_logs_close(vm_logs *l) {
  if (!l) return;
  vm_unref(l->v);
  free(l);
}

/* --------------------------------------------------------------- manager */

static unsigned host_tsc_khz(void) {
  /* Under TCG the guest's TSC runs at the host's rate. "cpu MHz" is the
   * TSC frequency on x86 hosts with a constant TSC. */
  _cleanup_fclose_ FILE *f = fopen("/proc/cpuinfo", "re");
  if (!f) return 0;
  char line[512];
  while (fgets(line, sizeof(line), f)) {
    double mhz;
    if (sscanf(line, "cpu MHz : %lf", &mhz) == 1 && mhz > 1) return (unsigned)(mhz * 1000);
  }
  return 0;
}

static uint32_t fnv(const char *s) {
  uint32_t h = 2166136261u;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

static int find_in_path(const char *name, char *buf, size_t size) {
  if (strchr(name, '/')) {
    vm_fmt(buf, size, "%s", name);
    return access(buf, X_OK) == 0 ? 0 : -errno;
  }
  static const char *const dirs[] = {"/usr/bin", "/usr/local/bin", "/bin", "/usr/sbin"};
  for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
    vm_fmt(buf, size, "%s/%s", dirs[i], name);
    if (access(buf, X_OK) == 0) return 0;
  }
  return -ENOENT;
}

int vm_manager_open(const vm_manager_config *cfg, vm_manager **ret, size_t *ret_adopted,
                    au_error *err) {
  vm_manager *m = calloc(1, sizeof(*m));
  if (!m) return au_error_set(err, -ENOMEM, "out of memory");
  pthread_mutex_init(&m->lock, NULL);
  vm_fmt(m->state_dir, sizeof(m->state_dir), "%s/vms", cfg->runtime_dir);
  int r = 0;
  if (mkdir(m->state_dir, 0700) < 0 && errno != EEXIST) {
    r = au_error_errno(err, -errno, "mkdir %s", m->state_dir);
    goto fail;
  }
  m->image_dirs = calloc(cfg->n_image_dirs + 1, sizeof(char *));
  for (size_t i = 0; m->image_dirs && i < cfg->n_image_dirs; i++) {
    char *real = realpath(cfg->image_dirs[i], NULL);
    if (real)
      m->image_dirs[m->n_image_dirs++] = real;
    else
      log_debug("vm: image dir %s: %s (skipped)", cfg->image_dirs[i], strerror(errno));
  }
  if ((r = find_in_path(cfg->qemu_binary ? cfg->qemu_binary : vmm_qemu_microvm.default_binary,
                        m->qemu, sizeof(m->qemu))) < 0) {
    r = au_error_errno(err, r, "VMM %s",
                       cfg->qemu_binary ? cfg->qemu_binary : "qemu-system-x86_64");
    goto fail;
  }
  m->tsc_khz = host_tsc_khz();

  char mount[512];
  au_error cgerr = {0};
  if (cgroup_find_mount(mount, sizeof(mount), &cgerr) == 0) {
    char root[256];
    const char *env = getenv("AURAE_CGROUP_ROOT");
    if (cfg->cgroup_root)
      vm_fmt(root, sizeof(root), "%s", cfg->cgroup_root);
    else if (env && *env)
      vm_fmt(root, sizeof(root), "%s", env);
    else if (strcmp(cfg->runtime_dir, "/run/aurae") == 0)
      vm_fmt(root, sizeof(root), "aurae");
    else
      vm_fmt(root, sizeof(root), "aurae-%08x", fnv(cfg->runtime_dir));
    /* A sibling of the cells' root, not a child: the cell manager owns
     * everything below its root and sweeps cgroups it does not know. */
    vm_fmt(m->cgroup_base, sizeof(m->cgroup_base), "%s/%s.vms", mount, root);
    if (mkdir(m->cgroup_base, 0755) < 0 && errno != EEXIST) {
      r = au_error_errno(err, -errno, "mkdir %s", m->cgroup_base);
      goto fail;
    }
  } else {
    log_debug("vm: no cgroup2 mount (%s); VMs run without their own cgroup", cgerr.msg);
  }

  /* Re-adopt. */
  size_t adopted = 0;
  DIR *d = opendir(m->state_dir);
  if (d) {
    struct dirent *de;
    while ((de = readdir(d))) {
      if (de->d_name[0] == '.') continue;
      char dir[700];
      vm_fmt(dir, sizeof(dir), "%s/%s", m->state_dir, de->d_name);
      vm *v = NULL;
      au_error e2 = {0};
      int lr = vm_state_load(m, dir, &v, &e2);
      if (lr < 0) {
        log_debug("vm: %s: %s", dir, e2.msg);
        continue;
      }
      if (!v) continue; /* cleaned up */
      if (m->n_vms == m->cap_vms) {
        size_t cap = m->cap_vms ? m->cap_vms * 2 : 16;
        vm **nv = realloc(m->vms, cap * sizeof(*nv));
        if (!nv) {
          vm_release(v);
          continue;
        }
        m->vms = nv;
        m->cap_vms = cap;
      }
      m->vms[m->n_vms++] = v;
      if (v->st.adopted && v->st.state == VM_STATE_RUNNING) adopted++;
    }
    closedir(d);
  }
  if (ret_adopted) *ret_adopted = adopted;
  *ret = m;
  return 0;
fail:
  vm_manager_close(m);
  return r;
}

void vm_manager_close(vm_manager *m) {
  if (!m) return;
  pthread_mutex_lock(&m->lock);
  m->closing = true;
  vm **vms = m->vms;
  size_t n = m->n_vms;
  m->vms = NULL;
  m->n_vms = m->cap_vms = 0;
  pthread_mutex_unlock(&m->lock);
  for (size_t i = 0; i < n; i++) {
    vm *v = vms[i];
    if (v->has_thread) {
      uint64_t one = 1;
      ssize_t w = write(v->wake_fd, &one, sizeof(one));
      (void)w;
      pthread_join(v->thread, NULL);
    }
    /* Readers of logs may still hold references. */
    vm_console_close(v->console);
    vm_unref(v);
  }
  free(vms);
  /* Only succeeds when no VM cgroup is left below it. */
  if (m->cgroup_base[0]) rmdir(m->cgroup_base);
  for (size_t i = 0; i < m->n_image_dirs; i++)
    free(m->image_dirs[i]);
  free(m->image_dirs);
  pthread_mutex_destroy(&m->lock);
  free(m);
}
