/* The lower bound for "start a cell and run /bin/true in it", done the
 * cheapest way the kernel allows, in five variants measured interleaved
 * (each iteration runs all of them, in a rotating order), each adding one
 * step to the one before:
 * - base: mkdir a cgroup, clone3 with the cell's namespaces straight into
 *   it, exec /bin/true, wait, rmdir (the old lower bound);
 * - userns: + CLONE_NEWUSER, "0 BASE 65536" written to uid_map and gid_map
 *   by the parent while the child waits on a pipe, the child becomes the
 *   namespace's root (setgroups, setresgid, setresuid), and the cgroup is
 *   delegated to it (chown of the directory, cgroup.procs, cgroup.threads,
 *   cgroup.subtree_control);
 * - root: + the private root, in the child's own mount namespace: a tmpfs
 *   on a staging directory made under /tmp, recursive binds of /usr and
 *   /etc, the host's /bin, /sbin, /lib* symlinks, /dev/null over /etc's
 *   secrets (an empty read-only tmpfs over the directories), one recursive
 *   read-only, nosuid, nodev for all of that (so a masked file refuses its
 *   open instead of reading empty: as hidden, one call fewer a file), tmpfs
 *   /tmp, /var/tmp, /run, a fresh /proc with the OCI masks and read-only
 *   paths, a recursive read-only bind of /sys, a /dev tmpfs with the 6
 *   nodes bound from the host's (made nosuid, noexec in one call), devpts,
 *   /dev/shm and the /dev symlinks, pivot_root(".", "."), detach of the old
 *   root, /dev read-only;
 * - devcg: + BPF_PROG_ATTACH of a BPF_PROG_TYPE_CGROUP_DEVICE program (the
 *   OCI default devices) to the new cgroup, the program loaded once before
 *   the loop (as a daemon could);
 * - devload: as devcg, but the program is loaded for every cell (what a
 *   daemon that does not keep it pays; not part of the bound).
 * What is known before any cell (which host paths exist, the /bin
 * symlinks) is looked up once, before the loop. Nothing is left on the
 * host: every mount is made in the child's mount namespace (which, owned by
 * the new user namespace, receives the host's mounts as slaves and
 * propagates nothing back) and goes with it; the cgroups and the staging
 * directory are removed.
 *
 * Prints one line per iteration on stdout: the five times in ms, in the
 * order above. On stderr, per variant, the medians of the spans of one
 * iteration (parent: cgroup preparation, clone3, writing the maps, from
 * the child's execve until reaped; child: until it runs, the gate and its
 * credentials, and each part of the private root), then a "direct:" line
 * with each new step's own time in the variant that adds it.
 * Usage: lower_bound CGROUP_PARENT_DIR ITERATIONS */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/mount.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ID_BASE 0x60000000u /* not auraed's default pool (0x70000000) */
#define IDS 65536u

enum { M_BASE, M_USERNS, M_ROOT, M_DEVCG, M_DEVLOAD, NMODES };
static const char *const mode_names[NMODES] = {"base", "+userns", "+private root", "+device filter",
                                               "(device filter loaded per cell)"};

/* Timestamps of one run, written by the parent and the child (a shared
 * page: the child is a copy of us). */
enum {
  T_START,     /* parent: before mkdir */
  T_MKDIR,     /* parent: cgroup made and opened */
  T_FILTER,    /* parent: device filter attached (loaded first in devload) */
  T_CGROUP,    /* parent: cgroup delegated, gate made: ready to clone */
  T_CLONED,    /* parent: clone3 returned */
  T_MAPS,      /* parent: maps written, gate opened */
  T_CHILD,     /* child: first instruction */
  T_CREDS,     /* child: the namespace's root */
  T_R_BINDS,   /* child: root tmpfs, dirs, /usr /etc binds, masks, read-only */
  T_R_SCRATCH, /* child: /tmp /var/tmp /run */
  T_R_PROC,    /* child: /proc, its masks and read-only paths */
  T_R_SYS,     /* child: /sys */
  T_R_DEV,     /* child: /dev */
  T_R_PIVOT,   /* child: pivot_root, detach, /dev read-only */
  T_EXEC,      /* child: before execve */
  T_END,       /* parent: reaped, cgroup removed */
  NT
};
static volatile double *T;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static char staging[64];

static void die(const char *what) {
  fprintf(stderr, "lower_bound: %s: %s\n", what, strerror(errno));
  if (staging[0]) rmdir(staging);
  exit(1);
}

/* The child's failures: which step, as its exit status. */
#define CHECK(cond, step)                                                                          \
  do {                                                                                             \
    if (!(cond)) _exit(step);                                                                      \
  } while (0)

static int setattr(const char *path, unsigned flags, uint64_t set) {
  struct mount_attr a = {.attr_set = set};
  return (int)syscall(SYS_mount_setattr, AT_FDCWD, path, flags, &a, sizeof(a));
}

/* ---- what is looked up once ---- */

static struct { char name[16], target[64]; } links[8];
static int nlinks;
static const char *const dirs_bound[] = {"usr", "etc", NULL};
static int have_dir[2];
/* Masks below the bound /etc: (path, is_dir). */
static const char *const etc_secrets[] = {
    "etc/shadow",           "etc/shadow-",     "etc/gshadow",     "etc/gshadow-",
    "etc/security/opasswd", "etc/ssl/private", "etc/krb5.keytab", NULL};
static const char *const proc_masks[] = {"proc/acpi",
                                         "proc/kcore",
                                         "proc/keys",
                                         "proc/latency_stats",
                                         "proc/timer_list",
                                         "proc/timer_stats",
                                         "proc/sched_debug",
                                         "proc/scsi",
                                         "sys/firmware",
                                         "sys/devices/virtual/powercap",
                                         NULL};
static const char *const proc_ro[] = {"proc/bus",           "proc/fs", "proc/irq", "proc/sys",
                                      "proc/sysrq-trigger", NULL};
static const char *const dev_nodes[] = {"null", "zero", "full", "random", "urandom", "tty", NULL};
static const char *const dev_links[][2] = {{"dev/ptmx", "pts/ptmx"},
                                           {"dev/fd", "/proc/self/fd"},
                                           {"dev/stdin", "/proc/self/fd/0"},
                                           {"dev/stdout", "/proc/self/fd/1"},
                                           {"dev/stderr", "/proc/self/fd/2"}};
/* Present paths of the lists above: (relative path, is a directory). */
static struct {
  const char *path;
  int dir;
} etc_m[16], proc_m[16];
static const char *proc_r[8];
static int netc, nproc_m, nproc_r;

static void look_up(void) {
  static const char *const sys_dirs[] = {"bin", "sbin", "lib", "lib32", "lib64", "libx32", NULL};
  for (const char *const *d = sys_dirs; *d; d++) {
    char host[32];
    snprintf(host, sizeof(host), "/%s", *d);
    ssize_t n = readlink(host, links[nlinks].target, sizeof(links[0].target) - 1);
    if (n < 0) continue; /* absent, or a directory: not on this host (merged /usr) */
    links[nlinks].target[n] = '\0';
    snprintf(links[nlinks].name, sizeof(links[0].name), "%s", *d);
    nlinks++;
  }
  struct stat st;
  for (int i = 0; dirs_bound[i]; i++) {
    char host[32];
    snprintf(host, sizeof(host), "/%s", dirs_bound[i]);
    have_dir[i] = lstat(host, &st) == 0 && S_ISDIR(st.st_mode);
  }
  for (const char *const *p = etc_secrets; *p; p++) {
    char host[128];
    snprintf(host, sizeof(host), "/%s", *p);
    if (lstat(host, &st) == 0) etc_m[netc].path = *p, etc_m[netc++].dir = S_ISDIR(st.st_mode);
  }
  for (const char *const *p = proc_masks; *p; p++) {
    char host[128];
    snprintf(host, sizeof(host), "/%s", *p);
    if (lstat(host, &st) == 0)
      proc_m[nproc_m].path = *p, proc_m[nproc_m++].dir = S_ISDIR(st.st_mode);
  }
  for (const char *const *p = proc_ro; *p; p++) {
    char host[128];
    snprintf(host, sizeof(host), "/%s", *p);
    if (lstat(host, &st) == 0) proc_r[nproc_r++] = *p;
  }
}

static int mask(const char *path, int dir) {
  if (dir)
    return mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0555");
  return mount("/dev/null", path, NULL, MS_BIND, NULL);
}

/* ---- the private root, in the child (cwd: anywhere on the host) ---- */

static void private_root(void) {
  CHECK(mount("tmpfs", staging, "tmpfs", MS_NOSUID | MS_NODEV,
              "mode=0755,size=1m,nr_inodes=4096") == 0,
        10);
  CHECK(chdir(staging) == 0, 11);
  static const char *const mkdirs[] = {"var", "var/tmp", "tmp", "run", "proc", "sys", "dev", NULL};
  for (int i = 0; dirs_bound[i]; i++)
    if (have_dir[i]) CHECK(mkdir(dirs_bound[i], 0755) == 0, 12);
  for (const char *const *d = mkdirs; *d; d++)
    CHECK(mkdir(*d, 0755) == 0, 12);
  for (int i = 0; i < nlinks; i++)
    CHECK(symlink(links[i].target, links[i].name) == 0, 13);
  for (int i = 0; dirs_bound[i]; i++) {
    if (!have_dir[i]) continue;
    char host[32];
    snprintf(host, sizeof(host), "/%s", dirs_bound[i]);
    CHECK(mount(host, dirs_bound[i], NULL, MS_BIND | MS_REC, NULL) == 0, 14);
  }
  for (int i = 0; i < netc; i++)
    CHECK(mask(etc_m[i].path, etc_m[i].dir) == 0, 15);
  /* The root, /usr, /etc and the masks in one call. */
  CHECK(setattr(".", AT_RECURSIVE, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV) == 0,
        16);
  T[T_R_BINDS] = now_ms();

  CHECK(mount("tmpfs", "tmp", "tmpfs", MS_NOSUID | MS_NODEV,
              "mode=1777,size=64m,nr_inodes=16384") == 0,
        17);
  CHECK(mount("tmpfs", "var/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
              "mode=1777,size=64m,nr_inodes=16384") == 0,
        17);
  CHECK(mount("tmpfs", "run", "tmpfs", MS_NOSUID | MS_NODEV,
              "mode=0755,size=64m,nr_inodes=16384") == 0,
        17);
  T[T_R_SCRATCH] = now_ms();

  CHECK(mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == 0, 18);
  for (int i = 0; i < nproc_m; i++)
    if (strncmp(proc_m[i].path, "proc/", 5) == 0)
      CHECK(mask(proc_m[i].path, proc_m[i].dir) == 0, 19);
  for (int i = 0; i < nproc_r; i++) {
    CHECK(mount(proc_r[i], proc_r[i], NULL, MS_BIND | MS_REC, NULL) == 0, 20);
    CHECK(setattr(proc_r[i], AT_RECURSIVE,
                  MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV) == 0,
          20);
  }
  T[T_R_PROC] = now_ms();

  CHECK(mount("/sys", "sys", NULL, MS_BIND | MS_REC, NULL) == 0, 21);
  CHECK(setattr("sys", AT_RECURSIVE,
                MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC) == 0,
        21);
  for (int i = 0; i < nproc_m; i++)
    if (strncmp(proc_m[i].path, "sys/", 4) == 0)
      CHECK(mask(proc_m[i].path, proc_m[i].dir) == 0, 22);
  T[T_R_SYS] = now_ms();

  CHECK(mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_STRICTATIME,
              "mode=0755,size=64k,nr_inodes=64") == 0,
        23);
  for (const char *const *n = dev_nodes; *n; n++) {
    char src[32], dst[32];
    snprintf(src, sizeof(src), "/dev/%s", *n);
    snprintf(dst, sizeof(dst), "dev/%s", *n);
    int fd = open(dst, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0666);
    CHECK(fd >= 0, 24);
    close(fd);
    CHECK(mount(src, dst, NULL, MS_BIND, NULL) == 0, 25);
  }
  /* The host's /dev is neither nosuid nor noexec, and its binds keep its
   * flags: one call for the six (the tmpfs under them has both already). */
  CHECK(setattr("dev", AT_RECURSIVE, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC) == 0, 26);
  CHECK(mkdir("dev/pts", 0755) == 0 && mkdir("dev/shm", 01777) == 0, 27);
  CHECK(mount("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
              "newinstance,ptmxmode=0666,mode=0620,gid=5") == 0,
        28);
  CHECK(mount("shm", "dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "mode=1777,size=64m,nr_inodes=16384") == 0,
        29);
  for (size_t i = 0; i < sizeof(dev_links) / sizeof(dev_links[0]); i++)
    CHECK(symlink(dev_links[i][1], dev_links[i][0]) == 0, 30);
  T[T_R_DEV] = now_ms();

  CHECK(syscall(SYS_pivot_root, ".", ".") == 0, 31);
  CHECK(umount2(".", MNT_DETACH) == 0, 32);
  CHECK(chdir("/") == 0, 33);
  CHECK(setattr("/dev", 0, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC) == 0, 34);
  T[T_R_PIVOT] = now_ms();
}

/* ---- the device filter ---- */

#define INSN(c, d, s, o, i)                                                                        \
  ((struct bpf_insn){.code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i)})
#define LDX_W(d, off) INSN(BPF_LDX | BPF_MEM | BPF_W, d, BPF_REG_1, off, 0)
#define JNE(r, v, off) INSN(BPF_JMP | BPF_JNE | BPF_K, r, 0, off, v)
#define JA(off) INSN(BPF_JMP | BPF_JA, 0, 0, off, 0)

/* The OCI default devices, all character devices, read and write only
 * (the same rules as the daemon's): r2 access, r3 type, r4 major, r5
 * minor. Laid out by hand: ALLOW and DENY are the last four. */
static int load_program(void) {
  struct bpf_insn p[64];
  int n = 0;
  p[n++] = LDX_W(BPF_REG_2, offsetof(struct bpf_cgroup_dev_ctx, access_type));
  p[n++] = INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_3, BPF_REG_2, 0, 0);
  p[n++] = INSN(BPF_ALU64 | BPF_AND | BPF_K, BPF_REG_3, 0, 0, 0xffff);
  p[n++] = INSN(BPF_ALU64 | BPF_RSH | BPF_K, BPF_REG_2, 0, 0, 16);
  int to_deny[32], nd = 0, to_allow[32], na = 0;
  to_deny[nd++] = n;
  p[n++] = JNE(BPF_REG_3, BPF_DEVCG_DEV_CHAR, 0);
  to_deny[nd++] = n;
  p[n++] = INSN(BPF_JMP | BPF_JSET | BPF_K, BPF_REG_2, 0, 0,
                (int32_t) ~(uint32_t)(BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE));
  p[n++] = LDX_W(BPF_REG_4, offsetof(struct bpf_cgroup_dev_ctx, major));
  p[n++] = LDX_W(BPF_REG_5, offsetof(struct bpf_cgroup_dev_ctx, minor));
  static const int one[][2] = {{1, 3}, {1, 5}, {1, 7}, {1, 8}, {1, 9}, {5, 0}, {5, 2}};
  for (size_t i = 0; i < sizeof(one) / sizeof(one[0]); i++) {
    p[n++] = JNE(BPF_REG_4, one[i][0], 2);
    p[n++] = JNE(BPF_REG_5, one[i][1], 1);
    to_allow[na++] = n;
    p[n++] = JA(0);
  }
  /* 136..143, any minor: the pty slaves. */
  p[n++] = INSN(BPF_JMP | BPF_JLT | BPF_K, BPF_REG_4, 0, 2, 136);
  p[n++] = INSN(BPF_JMP | BPF_JGT | BPF_K, BPF_REG_4, 0, 1, 143);
  to_allow[na++] = n;
  p[n++] = JA(0);
  int deny = n;
  p[n++] = INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0);
  p[n++] = INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
  int allow = n;
  p[n++] = INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 1);
  p[n++] = INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
  for (int i = 0; i < nd; i++)
    p[to_deny[i]].off = (int16_t)(deny - to_deny[i] - 1);
  for (int i = 0; i < na; i++)
    p[to_allow[i]].off = (int16_t)(allow - to_allow[i] - 1);
  union bpf_attr a;
  memset(&a, 0, sizeof(a));
  a.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
  a.insns = (uint64_t)(uintptr_t)p;
  a.insn_cnt = (uint32_t)n;
  a.license = (uint64_t)(uintptr_t) "GPL";
  return (int)syscall(SYS_bpf, BPF_PROG_LOAD, &a, sizeof(a));
}

static int attach(int cg, int prog) {
  union bpf_attr a;
  memset(&a, 0, sizeof(a));
  a.target_fd = (uint32_t)cg;
  a.attach_bpf_fd = (uint32_t)prog;
  a.attach_type = BPF_CGROUP_DEVICE;
  a.attach_flags = BPF_F_ALLOW_MULTI;
  return (int)syscall(SYS_bpf, BPF_PROG_ATTACH, &a, sizeof(a));
}

/* ---- one iteration ---- */

static int write_file(const char *path, const char *s) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = write(fd, s, strlen(s));
  close(fd);
  return n == (ssize_t)strlen(s) ? 0 : -1;
}

static double run_one(const char *parent, int mode, int i, int prog) {
  char *const args[] = {"/bin/true", NULL};
  char *const env[] = {NULL};
  char dir[4096];
  snprintf(dir, sizeof(dir), "%s/lb-%d-%d", parent, mode, i);
  for (int k = 0; k < NT; k++)
    T[k] = 0;
  double t0 = T[T_START] = now_ms();
  if (mkdir(dir, 0755) < 0) die("mkdir");
  int cg = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cg < 0) die("open cgroup");
  T[T_MKDIR] = now_ms();
  if (mode == M_DEVLOAD) {
    int p = load_program();
    if (p < 0) die("BPF_PROG_LOAD");
    if (attach(cg, p) < 0) die("BPF_PROG_ATTACH");
    close(p);
  } else if (mode >= M_DEVCG && attach(cg, prog) < 0) {
    die("BPF_PROG_ATTACH");
  }
  T[T_FILTER] = now_ms();
  int gate[2] = {-1, -1};
  uint64_t flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET |
                   CLONE_NEWCGROUP | CLONE_INTO_CGROUP;
  if (mode >= M_USERNS) {
    static const char *const files[] = {"", "/cgroup.procs", "/cgroup.threads",
                                        "/cgroup.subtree_control"};
    for (int k = 0; k < 4; k++) {
      char path[4200];
      snprintf(path, sizeof(path), "%s%s", dir, files[k]);
      if (chown(path, ID_BASE, ID_BASE) < 0) die("chown (delegate)");
    }
    flags |= CLONE_NEWUSER;
    if (pipe2(gate, O_CLOEXEC) < 0) die("pipe");
  }
  T[T_CGROUP] = now_ms();
  struct clone_args ca = {.flags = flags, .exit_signal = SIGCHLD, .cgroup = (unsigned)cg};
  long pid = syscall(SYS_clone3, &ca, sizeof(ca));
  if (pid == 0) {
    T[T_CHILD] = now_ms();
    if (mode >= M_USERNS) {
      char go;
      close(gate[1]);
      CHECK(read(gate[0], &go, 1) == 1, 2);
      CHECK(syscall(SYS_setgroups, 0, NULL) == 0 && syscall(SYS_setresgid, 0, 0, 0) == 0 &&
                syscall(SYS_setresuid, 0, 0, 0) == 0,
            3);
      T[T_CREDS] = now_ms();
    }
    if (mode >= M_ROOT) private_root();
    T[T_EXEC] = now_ms();
    execve(args[0], args, env);
    _exit(127);
  }
  if (pid < 0) die("clone3");
  T[T_CLONED] = now_ms();
  if (mode >= M_USERNS) {
    char path[64], map[64];
    close(gate[0]);
    snprintf(map, sizeof(map), "0 %u %u\n", ID_BASE, IDS);
    snprintf(path, sizeof(path), "/proc/%ld/uid_map", pid);
    if (write_file(path, map) < 0) die("uid_map");
    snprintf(path, sizeof(path), "/proc/%ld/gid_map", pid);
    if (write_file(path, map) < 0) die("gid_map");
    if (write(gate[1], "g", 1) != 1) die("gate");
    close(gate[1]);
    T[T_MAPS] = now_ms();
  }
  int st;
  waitpid((pid_t)pid, &st, 0);
  close(cg);
  if (rmdir(dir) < 0) die("rmdir");
  T[T_END] = now_ms();
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    fprintf(stderr, "lower_bound: %s: the child failed at step %d\n", mode_names[mode],
            WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st));
    rmdir(staging);
    exit(1);
  }
  return T[T_END] - t0;
}

/* ---- medians of the spans ---- */

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof(*v), cmp);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static const struct {
  const char *name;
  int from, to, min_mode;
} spans[] = {
    {"mkdir", T_START, T_MKDIR, 0},
    {"filter", T_MKDIR, T_FILTER, M_DEVCG},
    {"delegate+pipe", T_FILTER, T_CGROUP, M_USERNS},
    {"clone3", T_CGROUP, T_CLONED, 0},
    {"maps", T_CLONED, T_MAPS, M_USERNS},
    {"child runs", T_CGROUP, T_CHILD, 0},
    {"gate+creds", T_CHILD, T_CREDS, M_USERNS},
    {"root: tmpfs,binds,masks,ro", T_CREDS, T_R_BINDS, M_ROOT},
    {"scratch", T_R_BINDS, T_R_SCRATCH, M_ROOT},
    {"proc", T_R_SCRATCH, T_R_PROC, M_ROOT},
    {"sys", T_R_PROC, T_R_SYS, M_ROOT},
    {"dev", T_R_SYS, T_R_DEV, M_ROOT},
    {"pivot", T_R_DEV, T_R_PIVOT, M_ROOT},
    {"exec..reaped,rmdir", T_EXEC, T_END, 0},
};
#define NSPANS (sizeof(spans) / sizeof(spans[0]))

int main(int argc, char **argv) {
  if (argc != 3) return 2;
  int n = atoi(argv[2]);
  if (n < 1) return 2;
  T = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (T == MAP_FAILED) die("mmap");
  snprintf(staging, sizeof(staging), "/tmp/aurae-lb-root-XXXXXX");
  if (!mkdtemp(staging)) die("mkdtemp");
  look_up();
  int prog = load_program();
  if (prog < 0) die("BPF_PROG_LOAD");
  double *tot = calloc((size_t)n * NMODES, sizeof(double));
  double *span = calloc((size_t)n * NMODES * NSPANS, sizeof(double));
  double *direct[NMODES];
  for (int k = 0; k < NMODES; k++)
    direct[k] = calloc((size_t)n, sizeof(double));
  for (int i = 0; i < n; i++) {
    for (int k = 0; k < NMODES; k++) {
      int mode = (i + k) % NMODES;
      tot[i * NMODES + mode] = run_one(argv[1], mode, i, prog);
      for (size_t s = 0; s < NSPANS; s++)
        span[(mode * NSPANS + s) * n + i] = T[spans[s].to] - T[spans[s].from];
      double d = T[T_FILTER] - T[T_MKDIR]; /* M_DEVCG, M_DEVLOAD */
      if (mode == M_USERNS)
        d = (T[T_CGROUP] - T[T_FILTER]) + (T[T_MAPS] - T[T_CLONED]) + (T[T_CREDS] - T[T_CHILD]);
      else if (mode == M_ROOT)
        d = T[T_R_PIVOT] - T[T_CREDS];
      direct[mode][i] = d;
    }
    for (int mode = 0; mode < NMODES; mode++)
      printf("%.3f%c", tot[i * NMODES + mode], mode == NMODES - 1 ? '\n' : ' ');
  }
  close(prog);
  if (rmdir(staging) < 0) die("rmdir staging");
  staging[0] = '\0';
  fprintf(stderr, "spans (median ms):");
  for (int mode = 0; mode < NMODES; mode++) {
    fprintf(stderr, "\n  %s:", mode_names[mode]);
    for (size_t s = 0; s < NSPANS; s++)
      if (mode >= spans[s].min_mode)
        fprintf(stderr, " %s %.3f%s", spans[s].name, median(&span[(mode * NSPANS + s) * n], n),
                s == NSPANS - 1 ? "" : ",");
  }
  fprintf(stderr, "\n");
  /* Each new step's own spans, in the variant that adds it: what the
   * totals' differences measure, less their noise, but without the step's
   * share of the teardown at exit. */
  fprintf(stderr, "direct: userns %.3f root %.3f attach %.3f loadattach %.3f\n",
          median(direct[M_USERNS], n), median(direct[M_ROOT], n), median(direct[M_DEVCG], n),
          median(direct[M_DEVLOAD], n));
  return 0;
}
