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
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <grp.h>
#include <linux/openat2.h>
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

/* The working directory, resolved inside the cell's root as the target
 * user: never through a magic link (/proc/self/fd/N, /proc/1/cwd), which
 * would lead to whatever the init holds or to another process's view. */
static int enter_cwd(const char *cwd) {
  struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
                         .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
  int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) return -1;
  int fd = (int)syscall(SYS_openat2, root, cwd, &how, sizeof(how));
  int saved = errno;
  close(root);
  if (fd < 0) {
    errno = saved;
    return -1;
  }
  int r = fchdir(fd);
  saved = errno;
  close(fd);
  errno = saved;
  return r;
}

static void exec_child(const struct exec_req *r, int errpipe, volatile int *shared) {
  int report[2];
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  setsid();
  report[0] = STEP_FDS;
  if (dup2(r->in, 0) < 0 || dup2(r->out, 1) < 0 || dup2(r->err, 2) < 0) goto fail;
  /* Nothing the init holds (its control sockets, the cgroup directories
   * auraed sent, other executables' pipes) stays in this process: not even
   * /proc/self/fd can name it from here on. The fork fallback keeps its
   * error pipe, moved to 3. */
  if (errpipe >= 0) {
    if (errpipe != 3 && dup3(errpipe, 3, O_CLOEXEC) < 0) goto fail;
    errpipe = 3;
  }
  if (close_range(errpipe >= 0 ? 4 : 3, ~0U, 0) < 0) goto fail;
  report[0] = STEP_CREDS;
  if (r->creds) {
    if (setgroups(r->ngroups, r->groups) < 0 || setresgid(r->gid, r->gid, r->gid) < 0 ||
        setresuid(r->uid, r->uid, r->uid) < 0)
      goto fail;
  }
  report[0] = STEP_CAPS;
  if (!S.privileged && (errno = -cell_caps_finish(!r->creds || r->uid == 0)) != 0) goto fail;
  report[0] = STEP_CWD;
  if (enter_cwd(r->cwd) < 0) goto fail;
  report[0] = STEP_CAPS; /* seccomp last: it may deny what the steps above use */
  if ((errno = -cell_seccomp_load(&S.seccomp)) != 0) goto fail;
  report[0] = STEP_EXEC;
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

/* Sends an encoded message (an encoder failing sends nothing). */
static void send_out(int sock, uint32_t seq, int r, ctl_out *o) {
  if (r == 0) ctl_out_send(sock, seq, o);
  ctl_out_clear(o);
}

void init_reply_error(int sock, uint32_t seq, int error, const char *msg) {
  ctl_out o;
  send_out(sock, seq,
           ctl_error_reply_encode(&(struct ctl_error){.error = error, .message = msg}, &o), &o);
}

/* The credentials name the child, so auraed learns its host pid from the
 * kernel (a pidfd's fdinfo says -1 once the process has exited). We reap
 * only after this reply, and the kernel resolves the pid when sending. */
void init_reply_pid(int sock, uint32_t seq, pid_t pid, int pidfd, bool cred) {
  ctl_out o;
  struct ctl_spawn_reply rep = {.pid = pid, .pidfd = pidfd, .cred_pid = cred ? pid : 0};
  send_out(sock, seq, ctl_spawn_reply_encode(&rep, &o), &o);
}

static void spawn_exe(int sock, uint32_t seq, struct ctl_spawn_exe *m) {
  char msg[512];
  const char *name = m->name;
  if (find(name)) {
    snprintf(msg, sizeof(msg), "executable %s already exists", name);
    init_reply_error(sock, seq, -EEXIST, msg);
    return;
  }
  struct exec_req req = {.argv = (char **)m->argv,
                         .envp = (char **)m->envp,
                         .cwd = m->cwd[0] ? m->cwd : "/",
                         .creds = m->has_creds,
                         .uid = m->uid,
                         .gid = m->gid,
                         .groups = m->groups,
                         .ngroups = m->ngroups,
                         .in = m->stdin_fd,
                         .out = m->out_w,
                         .err = m->err_w};
  int pidfd = -1;
  int report[2];
  pid_t pid = start_exe(&req, m->cgroup_fd, &pidfd, report);
  if (pid < 0) {
    snprintf(msg, sizeof(msg), "clone3 into the executable's cgroup: %s", strerror(-pid));
    init_reply_error(sock, seq, pid, msg);
    return;
  }
  if (report[0] != 0) {
    waitpid(pid, NULL, 0);
    close(pidfd);
    static const char *steps[] = {"",         "set up stdio", "set credentials",
                                  "chdir to", "execute",      "drop capabilities"};
    const char *what = report[0] == STEP_CWD ? req.cwd : report[0] == STEP_EXEC ? m->argv[0] : "";
    int step = report[0] >= STEP_FDS && report[0] <= STEP_CAPS ? report[0] : STEP_EXEC;
    snprintf(msg, sizeof(msg), "%s%s%s%s: %s", steps[step], *what ? " \"" : "", what,
             *what ? "\"" : "", strerror(report[1]));
    /* The request was wrong (no such program, bad directory or ids), not the
     * runtime. */
    init_reply_error(sock, seq,
                     report[0] == STEP_FDS || report[0] == STEP_CAPS ? -report[1] : -EINVAL, msg);
    return;
  }
  child *c = calloc(1, sizeof(*c));
  if (!c) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, __WALL);
    close(pidfd);
    init_reply_error(sock, seq, -ENOMEM, "out of memory");
    return;
  }
  snprintf(c->name, sizeof(c->name), "%s", name);
  c->pid = pid;
  c->pidfd = pidfd;
  c->out_r = TAKE_FD(m->out_r);
  c->err_r = TAKE_FD(m->err_r);
  c->running = true;
  c->next = S.exes;
  S.exes = c;
  init_reply_pid(sock, seq, pid, pidfd, true);
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

/* A decoded SPAWN_CELL request as the arguments of an init. Strings
 * point into m; the mount fds stay m's. */
static void cell_args_from_msg(const struct ctl_spawn_cell *m, init_args *a) {
  *a = (init_args){.name = m->name,
                   .o = {.flags = m->flags,
                         .id_base = m->id_base,
                         .scratch_mb = m->scratch_mb,
                         .scratch_inodes = m->scratch_inodes,
                         .masks = (char **)m->masks},
                   .nmounts = m->nmounts};
  for (size_t i = 0; i < a->nmounts; i++)
    a->mounts[i] = (cell_mount){
        .fd = m->mounts[i].fd, .target = m->mounts[i].target, .read_only = m->mounts[i].read_only};
}

int init_clone(const struct ctl_spawn_cell *m, uint64_t extra, pid_t *ret_pid, int *ret_pidfd,
               char *why, size_t size) {
  init_args a;
  cell_args_from_msg(m, &a);
  /* A child is never less confined than its parent: an unprivileged init
   * cannot make a privileged one (auraed refuses to ask). */
  if (!S.privileged && !S.zygote) a.o.flags &= ~(unsigned)CELL_INIT_PRIVILEGED;
  /* Out of the way of 3, 4 and 5 first, so placing one cannot clobber
   * another (our own socket may be 3). */
  _cleanup_close_ int s = fcntl(m->sync_w, F_DUPFD_CLOEXEC, 10);
  _cleanup_close_ int p = fcntl(m->leaf_procs, F_DUPFD_CLOEXEC, 10);
  _cleanup_close_ int l = fcntl(m->listen_fd, F_DUPFD_CLOEXEC, 10);
  if (s < 0 || p < 0 || l < 0) {
    snprintf(why, size, "dup: %s", strerror(errno));
    return -errno;
  }
  int pidfd = -1;
  /* clone3 wants exit_signal 0 with CLONE_PARENT: the child gets ours
   * (SIGCHLD, as auraed started us). */
  pid_t pid =
      cell_clone_init(extra | cell_ns_clone_flags(a.o.flags), (extra & CLONE_PARENT) ? 0 : SIGCHLD,
                      m->cgroup_fd, a.o.id_base, &pidfd);
  if (pid == 0) {
    /* The mount sources go above 6 + nmounts first, so that neither
     * placing 3, 4, 5 nor placing them at 6... clobbers one. */
    int hi = 6 + (int)a.nmounts;
    for (size_t i = 0; i < a.nmounts; i++)
      if ((a.mounts[i].fd = fcntl(a.mounts[i].fd, F_DUPFD_CLOEXEC, hi)) < 0) _exit(126);
    if (dup2(s, 3) < 0 || dup2(p, 4) < 0 || dup2(l, 5) < 0) _exit(126);
    for (size_t i = 0; i < a.nmounts; i++)
      if ((a.mounts[i].fd = dup3(a.mounts[i].fd, 6 + (int)i, O_CLOEXEC)) < 0) _exit(126);
    /* Nothing of the parent's stays but those: its clients, children and
     * other fds. */
    close_range((unsigned)hi, ~0U, 0);
    S.client = S.ep = S.sfd = S.lfd = -1;
    S.exes = NULL;
    S.cloned = true;
    S.zygote = false;
    /* The default filter is the same in every cell: an unprivileged init
     * keeps the one built by its parent (the zygote builds it once). */
    if (a.o.flags & CELL_INIT_PRIVILEGED) cell_seccomp_free(&S.seccomp);
    init_set_title(a.name);
    a.sync = 3;
    a.leaf_procs = 4;
    a.listen = 5;
    _exit(init_run(&a));
  }
  if (pid < 0) {
    snprintf(why, size, "clone3 the init: %s", strerror(-pid));
    return pid;
  }
  *ret_pid = pid;
  *ret_pidfd = pidfd;
  return 0;
}

static void spawn_cell(uint32_t seq, const struct ctl_spawn_cell *m) {
  pid_t pid;
  int pidfd = -1;
  char why[256];
  int r = init_clone(m, 0, &pid, &pidfd, why, sizeof(why));
  if (r < 0) {
    char msg[512];
    snprintf(msg, sizeof(msg), "start the init of cell %s: %s", m->name, why);
    init_reply_error(S.client, seq, r, msg);
    return;
  }
  init_reply_pid(S.client, seq, pid, pidfd, true);
  close(pidfd); /* the child init is reaped like any orphan */
}

static void query(uint32_t seq, const char *name) {
  child *c = find(name);
  if (!c) {
    init_reply_error(S.client, seq, -ENOENT, "no such executable");
    return;
  }
  struct ctl_query_reply rep = {.running = c->running,
                                .wstatus = c->running ? 0 : c->wstatus,
                                .end_ns = c->running ? 0 : c->end_ns,
                                .cell_pid = c->pid,
                                .host_pid = c->host_pid,
                                .out_r = c->out_r,
                                .err_r = c->err_r,
                                .pidfd = c->running ? c->pidfd : -1};
  ctl_out o;
  send_out(S.client, seq, ctl_query_reply_encode(&rep, &o), &o);
}

static void note_host_pid(const struct ctl_host_pid *m) {
  child *c = find(m->name);
  if (c) c->host_pid = m->host_pid;
}

static void forget(uint32_t seq, const char *name) {
  for (child **pp = &S.exes; *pp; pp = &(*pp)->next) {
    child *c = *pp;
    if (strcmp(c->name, name) == 0) {
      *pp = c->next;
      close_fd(&c->pidfd);
      close_fd(&c->out_r);
      close_fd(&c->err_r);
      free(c);
      break;
    }
  }
  ctl_out o;
  send_out(S.client, seq, ctl_empty_reply_encode(&o), &o);
}

static void handle_client(void) {
  ctl_msg m;
  int r = ctl_recv(S.client, &m);
  if (r == -EAGAIN) return;
  if (r < 0) {
    close_fd(&S.client); /* auraed went away; a new one will connect */
    return;
  }
  uint32_t seq = m.seq;
  char why[256] = "";
  /* Where an error goes: a SPAWN_EXE's requester waits on its own reply
   * socket, the 7th fd, also when the request does not decode. */
  int err_to = m.type == CTL_SPAWN_EXE && m.nfds == 7 && m.fds[6] >= 0 ? m.fds[6] : S.client;
  switch (m.type) {
  case CTL_SPAWN_EXE: {
    struct ctl_spawn_exe x;
    if ((r = ctl_spawn_exe_decode(&m, &x, why, sizeof(why))) == 0) {
      /* The optional reply socket is the requester's own: auraed's
       * handler thread reads the reply there directly instead of through
       * its supervisor thread (one thread wake-up less on RunExecutable). */
      spawn_exe(x.reply_fd >= 0 ? x.reply_fd : S.client, seq, &x);
    }
    ctl_spawn_exe_clear(&x);
    break;
  }
  case CTL_SPAWN_CELL: {
    struct ctl_spawn_cell x;
    if ((r = ctl_spawn_cell_decode(&m, &x, why, sizeof(why))) == 0) spawn_cell(seq, &x);
    ctl_spawn_cell_clear(&x);
    break;
  }
  case CTL_QUERY: {
    struct ctl_query x;
    if ((r = ctl_query_decode(&m, &x, why, sizeof(why))) == 0) query(seq, x.name);
    ctl_query_clear(&x);
    break;
  }
  case CTL_FORGET: {
    struct ctl_forget x;
    if ((r = ctl_forget_decode(&m, &x, why, sizeof(why))) == 0) forget(seq, x.name);
    ctl_forget_clear(&x);
    break;
  }
  case CTL_HOST_PID: {
    struct ctl_host_pid x;
    /* No reply: a malformed one is dropped. */
    if (ctl_host_pid_decode(&m, &x, NULL, 0) == 0) note_host_pid(&x);
    ctl_host_pid_clear(&x);
    r = 0;
    break;
  }
  default:
    snprintf(why, sizeof(why), "unknown request %s (type %u)", ctl_type_name(m.type), m.type);
    r = -EBADMSG;
    break;
  }
  /* A request that decoded is answered by now, and m is empty. */
  if (r < 0) init_reply_error(err_to, seq, r, why);
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
        struct ctl_exit_event ev = {.name = c->name, .wstatus = st, .end_ns = c->end_ns};
        ctl_out o;
        send_out(S.client, 0, ctl_exit_event_encode(&ev, &o), &o);
      }
    }
  }
}

static int say(char *why, size_t size, const char *what, int e) {
  snprintf(why, size, "%s: %s", what, strerror(e));
  return -e;
}

int init_prepare(const cell_init_opts *o, const cell_mount *mounts, size_t nmounts, char *why,
                 size_t size) {
  prctl(PR_SET_NAME, "aurae-cell-init");
  /* Its memory and fds are the host's business while it serves the cell:
   * an exec'd init is dumpable again after its execve. */
  prctl(PR_SET_DUMPABLE, 0);
  /* Orphans of executables come to us even when the pid namespace is
   * shared with the parent. */
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  /* Once here, not in every executable: the bounding set is inherited, and
   * it only limits what an execve can gain, so we keep our own effective
   * capabilities. A child cell inherits it too. */
  int r;
  if (!S.privileged && (r = cell_caps_drop_bounding(S.last_cap)) < 0)
    return say(why, size, "drop capabilities from the bounding set", -r);
  if (o->flags & CELL_NS_MNT) {
    /* Mounts made in the cell never propagate to the host. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
      return say(why, size, "make mounts private", errno);
    if (!S.privileged) {
      cell_root_spec rs = {.masks = o->masks,
                           .scratch_mb = o->scratch_mb,
                           .scratch_inodes = o->scratch_inodes,
                           .own_proc = o->flags & CELL_NS_PID,
                           .own_net = o->flags & CELL_NS_NET,
                           .mounts = mounts,
                           .nmounts = nmounts};
      if ((r = cell_private_root(&rs, why, size)) < 0) return r;
    } else {
      /* A privileged cell keeps the host's view, less auraed's own paths
       * and the OCI defaults, with /sys read-only as runc mounts it. */
      if ((o->flags & CELL_NS_PID) &&
          mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        return say(why, size, "mount /proc", errno);
      if ((r = cell_mask_paths((const char *const *)o->masks, why, size)) < 0 ||
          (r = cell_mask_paths(cell_masked_paths_default, why, size)) < 0 ||
          (r = cell_readonly_paths(cell_readonly_paths_default, why, size)) < 0 ||
          (r = cell_readonly_paths((const char *const[]){"/sys", NULL}, why, size)) < 0)
        return r;
    }
  }
  if ((o->flags & CELL_NS_NET) && (r = lo_up()) < 0) return say(why, size, "bring lo up", -r);
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

int init_join_cgroup(int cgroup_procs, char *why, size_t size) {
  /* auraed opened it: the kernel checks a migration against the opener's
   * credentials and cgroup namespace, and ours are the cell's. */
  if (write(cgroup_procs, "0", 1) < 0) return say(why, size, "move into the cell's cgroup", errno);
  return 0;
}

int init_enter_cgroup(unsigned flags, int leaf_procs, char *why, size_t size) {
  /* The cgroup namespace is made here, while we sit in the cell's own
   * cgroup (clone3 or init_join_cgroup put us there), so its root is the
   * cell (clone3 would root it at the parent's cgroup). Then into the
   * leaf: cgroup v2 allows processes only in leaves once controllers are
   * enabled below the cell. */
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

void init_listen(int fd) {
  /* auraed bound and listens on it (runtime_dir/cells/NAME/init.sock): a
   * directory the cell's root may not write, and one it cannot see. */
  S.lfd = fd;
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_LISTEN};
  epoll_ctl(S.ep, EPOLL_CTL_ADD, S.lfd, &ev);
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

void init_fail(int sync, int err, const char *why) {
  /* errno first, so auraed can tell a refused setup from a broken one. */
  char buf[sizeof(int32_t) + 512];
  int32_t e = err < 0 ? err : -EIO;
  size_t n = strnlen(why, 511);
  memcpy(buf, &e, sizeof(e));
  memcpy(buf + sizeof(e), why, n);
  if (write(sync, buf, sizeof(e) + n) < 0) return;
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

int init_run(const init_args *a) {
  S.privileged = a->o.flags & CELL_INIT_PRIVILEGED;
  if (!S.cloned) S.last_cap = cell_caps_last();
  char why[512];
  int r = 0;
  /* Built once, before any clone: the children only load it. */
  if (!S.privileged && !S.seccomp.main.filter &&
      (r = cell_seccomp_build(&S.seccomp, why, sizeof(why))) < 0)
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
  fcntl(a->sync, F_SETFD, FD_CLOEXEC);
  fcntl(a->leaf_procs, F_SETFD, FD_CLOEXEC);
  fcntl(a->listen, F_SETFD, FD_CLOEXEC);
  if ((r = init_enter_cgroup(a->o.flags, a->leaf_procs, why, sizeof(why))) < 0 ||
      (r = init_prepare(&a->o, a->mounts, a->nmounts, why, sizeof(why))) < 0 ||
      (r = init_activate(a->name, a->o.flags, why, sizeof(why))) < 0)
    goto fail;
  close(a->leaf_procs);
  for (size_t i = 0; i < a->nmounts; i++)
    close(a->mounts[i].fd);
  init_listen(a->listen);
  return init_serve(a->sync);
fail:
  init_fail(a->sync, r, why);
  return 1;
}

/* argv: --cell-init NAME SCRATCH_MB:INODES FLAGS [MASKED_PATH | --mount=ro:TARGET
 * | --mount=rw:TARGET]..., fd 3 the sync pipe, fd 4 the _init leaf's
 * cgroup.procs, fd 5 init.sock (listening), fds 6... the mount sources in
 * order. The exec'd form of init_run, for an auraed without a zygote. */
int cell_init_main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], CELL_INIT_ARG) == 0 && strcmp(argv[2], CELL_ZYGOTE_ARG) == 0)
    return zygote_main(argc, argv);
  if (argc < 5 || strcmp(argv[1], CELL_INIT_ARG) != 0) return 2;
  prctl(PR_SET_DUMPABLE, 0);
  init_args a = {.name = argv[2], .sync = 3, .leaf_procs = 4, .listen = 5};
  if (sscanf(argv[3], "%u:%u", &a.o.scratch_mb, &a.o.scratch_inodes) != 2) return 2;
  a.o.flags = (unsigned)strtoul(argv[4], NULL, 10) & (unsigned)CELL_INIT_FLAGS;
  _cleanup_free_ char **masks = calloc((size_t)argc, sizeof(char *));
  if (!masks) return 1;
  size_t nmask = 0;
  for (int i = 5; i < argc; i++) {
    const char *v = argv[i];
    if (strncmp(v, "--mount=", 8) == 0 && strlen(v) > 11 && a.nmounts < CELL_MAX_MOUNTS) {
      a.mounts[a.nmounts] = (cell_mount){
          .fd = 6 + (int)a.nmounts, .target = v + 11, .read_only = v[8] == 'r' && v[9] == 'o'};
      fcntl(a.mounts[a.nmounts].fd, F_SETFD, FD_CLOEXEC);
      a.nmounts++;
    } else {
      masks[nmask++] = argv[i];
    }
  }
  a.o.masks = masks;
  return init_run(&a);
}
