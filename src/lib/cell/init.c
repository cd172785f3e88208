/* The cell init: pid 1 of a cell. auraed re-executes itself as
 *   auraed --cell-init NAME STATE_DIR NS_FLAGS    (fd 3: sync pipe,
 *                                                  fd 4: _init/cgroup.procs)
 * It is single-threaded, so unlike the daemon it may fork and then do
 * anything before execve. It
 *  - finishes the cell's isolation from inside (cgroup namespace rooted at
 *    the cell's cgroup, private mounts, its own /proc, hostname, lo up),
 *  - moves itself into the leaf CELL/_init (cgroup v2 allows processes only
 *    in leaves once controllers are enabled below the cell),
 *  - serves the control socket STATE_DIR/init.sock (ctl.h): it starts the
 *    cell's executables and child cells as its own children, keeps their
 *    exit statuses and the read ends of their output pipes, so both outlive
 *    an auraed restart,
 *  - reaps every orphan in the cell (it is the pid namespace's reaper).
 * It lives until the cell is freed (cgroup.kill). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <grp.h>
#include <linux/sched.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include "cell/cell.h"
#include "cell/ctl.h"
#include "cell/harden.h"
#include "cell/init_priv.h"
#include "cell/spawn.h"
#include "cleanup.h"

struct init_child {
  struct init_child *next;
  char name[64];
  pid_t pid;
  int64_t host_pid; /* from auraed (HOST_PID), 0 until then */
  int pidfd, out_r, err_r;
  bool running;
  int wstatus;
  int64_t end_ns;
};
typedef struct init_child child;

init_state init_S = {.client = -1, .ep = -1, .sfd = -1, .lfd = -1};
/* This file is the init: its state is just S. */
#define S init_S

/* epoll tags */
enum { TAG_SIGNAL = 1, TAG_LISTEN, TAG_CLIENT };

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void close_fd(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

static child *find(const char *name) {
  for (child *c = S.exes; c; c = c->next)
    if (strcmp(c->name, name) == 0) return c;
  return NULL;
}

static int lo_up(void) {
  _cleanup_close_ int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -errno;
  struct ifreq ifr = {0};
  strcpy(ifr.ifr_name, "lo");
  if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) return -errno;
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) return -errno;
  return 0;
}

/* The executable's side of the fork: runs in the single-threaded init's
 * child, reports the failing step and errno on errpipe. */
struct exec_req {
  char **argv, **envp;
  const char *cwd;
  bool creds;
  uid_t uid;
  gid_t gid;
  gid_t *groups;
  size_t ngroups;
  int in, out, err;
};

enum { STEP_FDS = 1, STEP_CREDS, STEP_CWD, STEP_EXEC, STEP_CAPS };

static const char *env_path(char **envp) {
  for (char **e = envp; *e; e++)
    if (strncmp(*e, "PATH=", 5) == 0) return *e + 5;
  return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
}

static void exec_search(char **argv, char **envp) {
  const char *file = argv[0];
  if (strchr(file, '/')) {
    execve(file, argv, envp);
    return;
  }
  const char *path = env_path(envp);
  int saved = ENOENT;
  char buf[4096];
  while (*path) {
    const char *colon = strchrnul(path, ':');
    size_t dl = (size_t)(colon - path);
    if (dl + 1 + strlen(file) + 1 <= sizeof(buf)) {
      memcpy(buf, path, dl);
      buf[dl] = '/';
      strcpy(buf + dl + 1, file);
      if (dl == 0) strcpy(buf, file);
      execve(buf, argv, envp);
      if (errno == EACCES)
        saved = EACCES;
      else if (errno != ENOENT && errno != ENOTDIR)
        saved = errno;
    }
    path = *colon ? colon + 1 : colon;
  }
  errno = saved;
}

static void exec_child(const struct exec_req *r, int errpipe, volatile int *shared) {
  int report[2];
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  setsid();
  report[0] = STEP_FDS;
  if (dup2(r->in, 0) < 0 || dup2(r->out, 1) < 0 || dup2(r->err, 2) < 0) goto fail;
  report[0] = STEP_CREDS;
  if (r->creds) {
    if (setgroups(r->ngroups, r->groups) < 0 || setresgid(r->gid, r->gid, r->gid) < 0 ||
        setresuid(r->uid, r->uid, r->uid) < 0)
      goto fail;
  }
  report[0] = STEP_CAPS;
  if (!S.privileged && (errno = -cell_caps_finish(!r->creds || r->uid == 0)) != 0) goto fail;
  report[0] = STEP_CWD;
  if (chdir(r->cwd) < 0) goto fail;
  report[0] = STEP_CAPS; /* seccomp last: it may deny what the steps above use */
  if ((errno = -cell_seccomp_load(&S.seccomp)) != 0) goto fail;
  report[0] = STEP_EXEC;
  /* Whatever the init holds beyond stdio (control sockets, an fd it was
   * handed without O_CLOEXEC) must not reach the workload. */
  close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
  exec_search(r->argv, r->envp);
fail:
  report[1] = errno;
  if (shared) { /* vfork: our parent reads it when it resumes */
    shared[0] = report[0];
    shared[1] = report[1];
    _exit(127);
  }
  if (write(errpipe, report, sizeof(report)) < 0) _exit(126);
  _exit(127);
}

struct vfork_arg {
  const struct exec_req *req;
  volatile int *report;
};

static int vfork_child(void *p) {
  struct vfork_arg *a = p;
  exec_child(a->req, -1, a->report);
  return 127;
}

/* The vfork child's stack, made once: the init starts one executable at a
 * time and is suspended while the child uses it. A guard page below. */
#define VFORK_STACK (128 * 1024)
static char *vfork_stack(void) {
  static char *stack;
  if (!stack) {
    char *p = mmap(NULL, VFORK_STACK + 4096, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (p == MAP_FAILED) return NULL;
    mprotect(p, 4096, PROT_NONE);
    stack = p + 4096;
  }
  return stack;
}

/* Starts the executable: vfork-style where we can (no page tables copied,
 * no copy-on-write faults, and the exec is confirmed when we resume), else
 * a fork that reports a failed exec on a CLOEXEC pipe. Returns the pid
 * (report[0] == 0: it runs the program) or -errno (clone3 failed). */
static pid_t start_exe(const struct exec_req *req, int cgroup_fd, int *ret_pidfd, int report[2]) {
  volatile int shared[2] = {0, 0};
  struct vfork_arg arg = {.req = req, .report = shared};
  char *stack = vfork_stack();
  pid_t pid = stack ? cell_clone3_vfork(cgroup_fd, ret_pidfd, vfork_child, &arg, stack, VFORK_STACK)
                    : -ENOSYS;
  if (pid != -ENOSYS && pid != -EINVAL) {
    report[0] = shared[0];
    report[1] = shared[1];
    return pid;
  }
  int ep[2];
  if (pipe2(ep, O_CLOEXEC) < 0) return -errno;
  pid = cell_clone3(0, SIGCHLD, cgroup_fd, ret_pidfd);
  if (pid == 0) {
    close(ep[0]);
    exec_child(req, ep[1], NULL);
  }
  close(ep[1]);
  report[0] = 0;
  if (pid > 0) {
    ssize_t n;
    do
      n = read(ep[0], report, 2 * sizeof(int));
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)(2 * sizeof(int))) report[0] = 0;
  }
  close(ep[0]);
  return pid;
}

/* The credentials name the child, so auraed learns its host pid from the
 * kernel (a pidfd's fdinfo says -1 once the process has exited). We reap
 * only after this reply, and the kernel resolves the pid when sending. */
static void reply_pid(uint32_t seq, pid_t pid, int pidfd) {
  int64_t num[1] = {pid};
  ctl_send_pid(S.client, CTL_REPLY, seq, num, 1, &pidfd, 1, pid);
}

static void spawn_exe(ctl_msg *m) {
  char msg[512];
  int64_t argc = m->num[3], envc = m->num[4], ngroups = m->num[5];
  if (argc < 1 || envc < 0 || ngroups < 0 || ngroups > 64 ||
      m->nstr != (size_t)(2 + argc + envc + ngroups) || m->nfds != 6) {
    ctl_send_error(S.client, m->seq, -EBADMSG, "malformed spawn request");
    return;
  }
  const char *name = m->str[0];
  if (find(name)) {
    snprintf(msg, sizeof(msg), "executable %s already exists", name);
    ctl_send_error(S.client, m->seq, -EEXIST, msg);
    return;
  }
  _cleanup_free_ char **argv = calloc((size_t)argc + 1, sizeof(char *));
  _cleanup_free_ char **envp = calloc((size_t)envc + 1, sizeof(char *));
  gid_t groups[64];
  if (!argv || !envp) {
    ctl_send_error(S.client, m->seq, -ENOMEM, "out of memory");
    return;
  }
  for (int64_t i = 0; i < argc; i++)
    argv[i] = m->str[2 + i];
  for (int64_t i = 0; i < envc; i++)
    envp[i] = m->str[2 + argc + i];
  for (int64_t i = 0; i < ngroups; i++)
    groups[i] = (gid_t)strtoul(m->str[2 + argc + envc + i], NULL, 10);
  struct exec_req req = {.argv = argv,
                         .envp = envp,
                         .cwd = m->str[1][0] ? m->str[1] : "/",
                         .creds = m->num[0] != 0,
                         .uid = (uid_t)m->num[1],
                         .gid = (gid_t)m->num[2],
                         .groups = groups,
                         .ngroups = (size_t)ngroups,
                         .in = m->fds[1],
                         .out = m->fds[2],
                         .err = m->fds[3]};
  int pidfd = -1;
  int report[2];
  pid_t pid = start_exe(&req, m->fds[0], &pidfd, report);
  if (pid < 0) {
    snprintf(msg, sizeof(msg), "clone3 into the executable's cgroup: %s", strerror(-pid));
    ctl_send_error(S.client, m->seq, pid, msg);
    return;
  }
  if (report[0] != 0) {
    waitpid(pid, NULL, 0);
    close(pidfd);
    static const char *steps[] = {"",         "set up stdio", "set credentials",
                                  "chdir to", "execute",      "drop capabilities"};
    const char *what = report[0] == STEP_CWD ? req.cwd : report[0] == STEP_EXEC ? argv[0] : "";
    int step = report[0] >= STEP_FDS && report[0] <= STEP_CAPS ? report[0] : STEP_EXEC;
    snprintf(msg, sizeof(msg), "%s%s%s%s: %s", steps[step], *what ? " \"" : "", what,
             *what ? "\"" : "", strerror(report[1]));
    /* The request was wrong (no such program, bad directory or ids), not the
     * runtime. */
    ctl_send_error(S.client, m->seq,
                   report[0] == STEP_FDS || report[0] == STEP_CAPS ? -report[1] : -EINVAL, msg);
    return;
  }
  child *c = calloc(1, sizeof(*c));
  if (!c) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, __WALL);
    close(pidfd);
    ctl_send_error(S.client, m->seq, -ENOMEM, "out of memory");
    return;
  }
  snprintf(c->name, sizeof(c->name), "%s", name);
  c->pid = pid;
  c->pidfd = pidfd;
  c->out_r = TAKE_FD(m->fds[4]);
  c->err_r = TAKE_FD(m->fds[5]);
  c->running = true;
  c->next = S.exes;
  S.exes = c;
  reply_pid(m->seq, pid, pidfd);
}

/* The zygote's argv, which its clones show as their command line: each
 * writes its own there, or `ps` would show every cell init as a zygote
 * (and `pkill -f zygote` would end every cell). */
static char *title;
static size_t title_size;

void init_title_area(int argc, char **argv) {
  title = argv[0];
  title_size = (size_t)(argv[argc - 1] + strlen(argv[argc - 1]) + 1 - argv[0]);
}

void init_set_title(const char *what) {
  if (!title) return;
  memset(title, 0, title_size);
  snprintf(title, title_size, "aurae-cell-init %s", what);
}

uint64_t init_clone_ns_flags(unsigned flags) {
  uint64_t cf = 0;
  if (flags & CELL_NS_PID) cf |= CLONE_NEWPID;
  if (flags & CELL_NS_MNT) cf |= CLONE_NEWNS;
  if (flags & CELL_NS_IPC) cf |= CLONE_NEWIPC;
  if (flags & CELL_NS_UTS) cf |= CLONE_NEWUTS;
  if (flags & CELL_NS_NET) cf |= CLONE_NEWNET;
  return cf;
}

/* Starts a cell init for a SPAWN_CELL request without execve: a clone of
 * this single-threaded process (a parent cell's init, or the zygote) that
 * runs cell_init_main itself. An exec of even the small init binary costs
 * milliseconds here (most of RunCell, see bench/cells/README.md); a clone
 * of a process this small does not. extra: CLONE_PARENT from the zygote,
 * so the init is auraed's child exactly as if auraed had cloned it. */
int init_clone(ctl_msg *m, uint64_t extra, pid_t *ret_pid, int *ret_pidfd) {
  unsigned flags = (unsigned)m->num[0] & (unsigned)(CELL_NS_ALL | CELL_INIT_PRIVILEGED);
  char flags_str[16];
  snprintf(flags_str, sizeof(flags_str), "%u", flags);
  size_t nmask = m->nstr - 3;
  /* The child's copy of this memory is its argv: built before the clone. */
  _cleanup_free_ char **argv = calloc(nmask + 6, sizeof(char *));
  if (!argv) return -ENOMEM;
  argv[0] = "aurae-cell-init";
  argv[1] = CELL_INIT_ARG;
  argv[2] = m->str[0];
  argv[3] = m->str[1];
  argv[4] = flags_str;
  for (size_t i = 0; i < nmask; i++)
    argv[5 + i] = m->str[3 + i];
  uint64_t cf = extra | init_clone_ns_flags(flags);
  /* Out of the way of 3, 4 and 5 first, so placing one cannot clobber
   * another (our own socket may be 3). */
  _cleanup_close_ int s = fcntl(m->fds[1], F_DUPFD_CLOEXEC, 10);
  _cleanup_close_ int p = fcntl(m->fds[2], F_DUPFD_CLOEXEC, 10);
  _cleanup_close_ int d = fcntl(m->fds[3], F_DUPFD_CLOEXEC, 10);
  if (s < 0 || p < 0 || d < 0) return -errno;
  int pidfd = -1;
  /* clone3 wants exit_signal 0 with CLONE_PARENT: the child gets ours
   * (SIGCHLD, as auraed started us). */
  pid_t pid = cell_clone3(cf, (extra & CLONE_PARENT) ? 0 : SIGCHLD, m->fds[0], &pidfd);
  if (pid == 0) {
    if (dup2(s, 3) < 0 || dup2(p, 4) < 0 || dup2(d, 5) < 0) _exit(126);
    /* Nothing of the parent's stays: its clients, children and fds. */
    close_range(6, ~0U, 0);
    S.client = S.ep = S.sfd = S.lfd = -1;
    S.exes = NULL;
    S.cloned = true;
    /* The default filter is the same in every cell: an unprivileged init
     * keeps the one built by its parent (the zygote builds it once). */
    if (flags & CELL_INIT_PRIVILEGED) cell_seccomp_free(&S.seccomp);
    init_set_title(m->str[0]);
    _exit(cell_init_main((int)(5 + nmask), argv));
  }
  if (pid < 0) return pid;
  *ret_pid = pid;
  *ret_pidfd = pidfd;
  return 0;
}

static void spawn_cell(ctl_msg *m) {
  if (m->nstr < 3 || m->nfds != 4) {
    ctl_send_error(S.client, m->seq, -EBADMSG, "malformed cell request");
    return;
  }
  pid_t pid;
  int pidfd = -1;
  int r = init_clone(m, 0, &pid, &pidfd);
  if (r < 0) {
    char msg[256];
    snprintf(msg, sizeof(msg), "start the init of cell %s: %s", m->str[0], strerror(-r));
    ctl_send_error(S.client, m->seq, r, msg);
    return;
  }
  reply_pid(m->seq, pid, pidfd);
  close(pidfd); /* the child init is reaped like any orphan */
}

static void query(ctl_msg *m) {
  child *c = m->nstr == 1 ? find(m->str[0]) : NULL;
  if (!c) {
    ctl_send_error(S.client, m->seq, -ENOENT, "no such executable");
    return;
  }

  int64_t num[5] = {c->running, c->wstatus, c->end_ns, c->pid, c->host_pid};
  int fds[3] = {c->out_r, c->err_r, c->running ? c->pidfd : -1};
  ctl_send(S.client, CTL_REPLY, m->seq, 0, num, 5, NULL, 0, fds, 3);
}

static void note_host_pid(ctl_msg *m) {
  child *c = m->nstr == 1 ? find(m->str[0]) : NULL;
  if (c) c->host_pid = m->num[0];
}

static void forget(ctl_msg *m) {
  for (child **pp = &S.exes; *pp; pp = &(*pp)->next) {
    child *c = *pp;
    if (m->nstr == 1 && strcmp(c->name, m->str[0]) == 0) {
      *pp = c->next;
      close_fd(&c->pidfd);
      close_fd(&c->out_r);
      close_fd(&c->err_r);
      free(c);
      break;
    }
  }
  ctl_send(S.client, CTL_REPLY, m->seq, 0, NULL, 0, NULL, 0, NULL, 0);
}

static void handle_client(void) {
  ctl_msg m;
  int r = ctl_recv(S.client, &m);
  if (r == -EAGAIN) return;
  if (r < 0) {
    close_fd(&S.client); /* auraed went away; a new one will connect */
    return;
  }
  switch (m.type) {
  case CTL_SPAWN_EXE:
    if (m.nfds == 7) {
      /* A 7th fd is the requester's own reply socket: auraed's handler
       * thread reads the reply there directly instead of through its
       * supervisor thread (one thread wake-up less on RunExecutable). */
      int client = S.client;
      S.client = m.fds[6];
      m.nfds = 6;
      spawn_exe(&m);
      S.client = client;
    } else {
      spawn_exe(&m);
    }
    break;
  case CTL_SPAWN_CELL: spawn_cell(&m); break;
  case CTL_QUERY: query(&m); break;
  case CTL_FORGET: forget(&m); break;
  case CTL_HOST_PID: note_host_pid(&m); break;
  default: ctl_send_error(S.client, m.seq, -EBADMSG, "unknown request"); break;
  }
  ctl_msg_clear(&m);
}

/* Every child: executables (their status is recorded and reported),
 * child cell inits and orphans reparented to us. */
static void reap_all(void) {
  for (;;) {
    int st;
    pid_t pid = waitpid(-1, &st, WNOHANG | __WALL);
    if (pid <= 0) return;
    for (child *c = S.exes; c; c = c->next) {
      if (c->pid != pid || !c->running) continue;
      c->running = false;
      c->wstatus = st;
      c->end_ns = now_ns();
      close_fd(&c->pidfd);
      if (S.client >= 0) {
        const char *s[] = {c->name};
        int64_t num[3] = {0, st, c->end_ns};
        ctl_send(S.client, CTL_EXIT_EVENT, 0, 0, num, 3, s, 1, NULL, 0);
      }
    }
  }
}

static int say(char *why, size_t size, const char *what, int e) {
  snprintf(why, size, "%s: %s", what, strerror(e));
  return -e;
}

int init_prepare(unsigned flags, char *const *masks, char *why, size_t size) {
  prctl(PR_SET_NAME, "aurae-cell-init");
  /* Orphans of executables come to us even when the pid namespace is
   * shared with the parent. */
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  /* Once here, not in every executable: the bounding set is inherited, and
   * it only limits what an execve can gain, so we keep our own effective
   * capabilities. A child cell inherits it too: a privileged cell inside a
   * default one gets no more than the default capabilities. */
  int r;
  if (!S.privileged && (r = cell_caps_drop_bounding(S.last_cap)) < 0)
    return say(why, size, "drop capabilities from the bounding set", -r);
  if (flags & CELL_NS_MNT) {
    /* Mounts made in the cell never propagate to the host. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
      return say(why, size, "make mounts private", errno);
    if ((flags & CELL_NS_PID) &&
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
      return say(why, size, "mount /proc", errno);
    /* Only in a mount namespace of our own: masking the host's mounts is
     * not ours to do. auraed's own paths first (they name host paths),
     * then the OCI defaults, then /sys read-only as runc mounts it (it
     * holds the host's cgroup hierarchies). */
    if ((r = cell_mask_paths((const char *const *)masks, why, size)) < 0 ||
        (r = cell_mask_paths(cell_masked_paths_default, why, size)) < 0 ||
        (r = cell_readonly_paths(cell_readonly_paths_default, why, size)) < 0 ||
        (r = cell_readonly_paths((const char *const[]){"/sys", NULL}, why, size)) < 0 ||
        (!S.privileged && (r = cell_setup_dev(why, size)) < 0) ||
        (!S.privileged && (r = cell_readonly_root(why, size)) < 0))
      return r < 0 ? r : -EIO;
  }
  if ((flags & CELL_NS_NET) && (r = lo_up()) < 0) return say(why, size, "bring lo up", -r);
  sigset_t set;
  sigfillset(&set);
  sigprocmask(SIG_SETMASK, &set, NULL);
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  S.sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  S.ep = epoll_create1(EPOLL_CLOEXEC);
  if (S.sfd < 0 || S.ep < 0) return say(why, size, "signalfd/epoll", errno);
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_SIGNAL};
  epoll_ctl(S.ep, EPOLL_CTL_ADD, S.sfd, &ev);
  return 0;
}

int init_join_cgroup(int cgroup_dir, char *why, size_t size) {
  _cleanup_close_ int procs = openat(cgroup_dir, "cgroup.procs", O_WRONLY | O_CLOEXEC);
  if (procs < 0 || write(procs, "0", 1) < 0)
    return say(why, size, "move into the cell's cgroup", errno);
  return 0;
}

int init_enter_cgroup(unsigned flags, int leaf_procs, char *why, size_t size) {
  /* The cgroup namespace is made here, while we sit in the cell's own
   * cgroup (clone3 or init_join_cgroup put us there), so its root is the cell (clone3 would
   * root it at the parent's cgroup). Then into the leaf: cgroup v2 allows
   * processes only in leaves once controllers are enabled below the
   * cell. */
  if ((flags & CELL_NS_CGROUP) && unshare(CLONE_NEWCGROUP) < 0)
    return say(why, size, "unshare cgroup namespace", errno);
  if (write(leaf_procs, "0", 1) < 0) return say(why, size, "move into the _init leaf", errno);
  return 0;
}

int init_activate(const char *name, unsigned flags, char *why, size_t size) {
  const char *leaf = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
  if ((flags & CELL_NS_UTS) && sethostname(leaf, strlen(leaf)) < 0)
    return say(why, size, "sethostname", errno);
  return 0;
}

int init_listen(int statedir, char *why, size_t size) {
  /* Bind through the directory's fd: the path of a nested state dir can be
   * longer than sun_path allows, and the runtime dir is masked in the
   * cell. */
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/init.sock", statedir);
  unlink(sa.sun_path);
  S.lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (S.lfd < 0) return say(why, size, "socket", errno);
  mode_t old = umask(0077);
  int br = bind(S.lfd, (struct sockaddr *)&sa, sizeof(sa));
  umask(old);
  if (br < 0) return say(why, size, "bind init.sock", errno);
  if (listen(S.lfd, 4) < 0) return say(why, size, "listen", errno);
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_LISTEN};
  epoll_ctl(S.ep, EPOLL_CTL_ADD, S.lfd, &ev);
  return 0;
}

void init_adopt_client(int fd) {
  if (S.client >= 0) close_fd(&S.client); /* a new auraed replaces the old */
  S.client = fd;
  /* Blocking: a message (an exit event) waits for room, never dropped. */
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  /* Large argv/env packets. */
  int sz = CTL_MAX_MSG * 2;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_CLIENT};
  epoll_ctl(S.ep, EPOLL_CTL_ADD, fd, &ev);
}

int init_serve(int sync) {
  if (sync >= 0 && write(sync, "ok", 2) < 0) return 1;
  if (sync >= 0) close(sync);
  for (;;) {
    struct epoll_event evs[16];
    int n = epoll_wait(S.ep, evs, 16, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    for (int i = 0; i < n; i++) {
      uint64_t tag = evs[i].data.u64;
      if (tag == TAG_SIGNAL) {
        struct signalfd_siginfo si;
        while (read(S.sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        }
        reap_all();
      } else if (tag == TAG_LISTEN) {
        int c = accept4(S.lfd, NULL, NULL, SOCK_CLOEXEC);
        if (c >= 0) init_adopt_client(c);
      } else if (tag == TAG_CLIENT) {
        if (S.client >= 0) handle_client();
      }
    }
  }
}

/* argv: --cell-init NAME STATE_DIR FLAGS [MASKED_PATH...], fd 3 the sync
 * pipe, fd 4 the _init leaf's cgroup.procs, fd 5 the state directory. */
int cell_init_main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], CELL_INIT_ARG) == 0 && strcmp(argv[2], CELL_ZYGOTE_ARG) == 0)
    return zygote_main(argc, argv);
  if (argc < 5 || strcmp(argv[1], CELL_INIT_ARG) != 0) return 2;
  const char *name = argv[2];
  unsigned flags = (unsigned)strtoul(argv[4], NULL, 10);
  S.privileged = flags & CELL_INIT_PRIVILEGED;
  if (!S.cloned) S.last_cap = cell_caps_last();
  char why[512];
  /* Built once, before any clone: the children only load it. */
  if (!S.privileged && !S.seccomp.main.filter &&
      cell_seccomp_build(&S.seccomp, why, sizeof(why)) < 0)
    goto fail;

  /* Never hold auraed's stdio: its log pipe must see EOF when it exits. */
  int devnull = S.cloned ? -1 : open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull >= 0) {
    dup2(devnull, 0);
    dup2(devnull, 1);
    dup2(devnull, 2);
    close(devnull);
  }
  /* auraed ignores SIGPIPE; ignored dispositions survive execve, and the
   * cell's processes must start with defaults. (64 system calls: a cloned
   * init has its parent's, which did this.) */
  for (int sig = 1; sig < NSIG && !S.cloned; sig++)
    if (sig != SIGKILL && sig != SIGSTOP) signal(sig, SIG_DFL);
  fcntl(3, F_SETFD, FD_CLOEXEC);
  fcntl(4, F_SETFD, FD_CLOEXEC);
  fcntl(5, F_SETFD, FD_CLOEXEC);
  if (init_enter_cgroup(flags, 4, why, sizeof(why)) < 0 ||
      init_prepare(flags, argv + 5, why, sizeof(why)) < 0 ||
      init_activate(name, flags, why, sizeof(why)) < 0 || init_listen(5, why, sizeof(why)) < 0)
    goto fail;
  close(4);
  return init_serve(3);
fail:
  if (write(3, why, strlen(why)) < 0) return 1;
  return 1;
}
