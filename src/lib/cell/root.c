/* The private root of a default cell: a fresh tmpfs with read-only,
 * nosuid, nodev binds of what programs need (/usr, /bin, /sbin, /lib*,
 * /etc less its secrets), private size-capped /tmp, /var/tmp, /run and
 * /dev/shm, the cell's own /proc, a read-only /sys and a minimal /dev; no
 * /home, /root, /var, /srv, /opt, /mnt or /media, and none of the host's
 * sockets or device nodes. systemd's ProtectSystem=strict, ProtectHome=yes,
 * PrivateTmp=yes and PrivateDevices=yes are the bar. Runs in the
 * single-threaded cell init, inside the cell's new mount (and user)
 * namespace, before any workload exists. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cell/harden.h"
#include "cleanup.h"

/* Host directories a program needs, bound read-only when they are
 * directories and recreated when they are symlinks (merged /usr). */
static const char *const system_dirs[] = {"usr",   "bin",    "sbin", "lib", "lib32",
                                          "lib64", "libx32", "etc",  NULL};

/* What /etc holds that is nobody's business in a cell. With a user
 * namespace these files are unreadable anyway (their owner is unmapped);
 * they are hidden for cells that share the host's ids too. */
static const char *const etc_secrets[] = {
    "etc/shadow",           "etc/shadow-",     "etc/gshadow",     "etc/gshadow-",
    "etc/security/opasswd", "etc/ssl/private", "etc/krb5.keytab", NULL};

/* Where the new root is assembled before pivot_root: an existing directory
 * of the host view, covered only in the cell's own mount namespace. */
static const char *const staging_dirs[] = {"/tmp", "/run", "/mnt", "/var/tmp", NULL};

static int setattr(const char *path, unsigned flags, uint64_t set) {
  struct mount_attr attr = {.attr_set = set};
  return mount_setattr(AT_FDCWD, path, flags, &attr, sizeof(attr)) < 0 ? -errno : 0;
}

static int fail(char *why, size_t size, const char *what, const char *path, int e) {
  snprintf(why, size, "%s /%s: %s", what, path, strerror(e));
  return -e;
}

/* A recursive bind of SRC (a host path) onto DST, then read-only, nosuid
 * and nodev on every mount below it. */
static int bind_ro(const char *src, const char *dst, uint64_t extra, char *why, size_t size) {
  if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) < 0) return fail(why, size, "bind", dst, errno);
  int r =
      setattr(dst, AT_RECURSIVE, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | extra);
  return r < 0 ? fail(why, size, "make read-only", dst, -r) : 0;
}

static int add_system_dirs(char *why, size_t size) {
  for (const char *const *d = system_dirs; *d; d++) {
    char host[64], target[4096];
    snprintf(host, sizeof(host), "/%s", *d);
    struct stat st;
    if (lstat(host, &st) < 0) continue; /* lib32 and the like are optional */
    if (S_ISLNK(st.st_mode)) {
      ssize_t n = readlink(host, target, sizeof(target) - 1);
      if (n < 0) return fail(why, size, "readlink", *d, errno);
      target[n] = '\0';
      if (symlink(target, *d) < 0) return fail(why, size, "symlink", *d, errno);
      continue;
    }
    if (!S_ISDIR(st.st_mode)) continue;
    if (mkdir(*d, 0755) < 0) return fail(why, size, "mkdir", *d, errno);
    int r = bind_ro(host, *d, 0, why, size);
    if (r < 0) return r;
  }
  return 0;
}

/* Private keys of the host's sshd (ssh_host_*_key) sit next to public
 * files programs may read (ssh_config, known hosts). */
static int mask_ssh_keys(char *why, size_t size) {
  DIR *d = opendir("etc/ssh");
  if (!d) return 0;
  int r = 0;
  struct dirent *de;
  while (r == 0 && (de = readdir(d))) {
    size_t l = strlen(de->d_name);
    if (l < 5 || strcmp(de->d_name + l - 4, "_key") != 0) continue;
    char path[300];
    snprintf(path, sizeof(path), "etc/ssh/%s", de->d_name);
    const char *const one[] = {path, NULL};
    r = cell_mask_paths(one, why, size);
  }
  closedir(d);
  return r;
}

/* Masks (with readonly false) or makes read-only each absolute path of
 * PATHS inside the new root, the cwd: auraed's own paths and the OCI
 * defaults name host paths, of which only those under a directory the root
 * has exist there. */
static int harden_in_root(const char *const *paths, bool readonly, char *why, size_t size) {
  for (const char *const *p = paths; p && *p; p++) {
    if ((*p)[0] != '/' || !(*p)[1]) continue;
    const char *const one[] = {*p + 1, NULL};
    int r = readonly ? cell_readonly_paths(one, why, size) : cell_mask_paths(one, why, size);
    if (r < 0) return r;
  }
  return 0;
}

static int add_scratch(const char *dir, const char *mode, const cell_root_spec *s, char *why,
                       size_t size) {
  char opts[96];
  snprintf(opts, sizeof(opts), "mode=%s,size=%um,nr_inodes=%u", mode, s->scratch_mb,
           s->scratch_inodes);
  if (mkdir(dir, 0755) < 0 && errno != EEXIST) return fail(why, size, "mkdir", dir, errno);
  if (mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
    return fail(why, size, "mount tmpfs on", dir, errno);
  return 0;
}

static int add_proc_sys(const cell_root_spec *s, char *why, size_t size) {
  if (mkdir("proc", 0555) < 0 || mkdir("sys", 0555) < 0)
    return fail(why, size, "mkdir", "proc", errno);
  int r;
  /* Our own /proc only with our own pid namespace: a proc mount shows the
   * pid namespace of its mounter, and one of the host's may only be
   * bound. */
  if (s->own_proc) {
    if (mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
      return fail(why, size, "mount", "proc", errno);
  } else if (mount("/proc", "proc", NULL, MS_BIND | MS_REC, NULL) < 0 ||
             setattr("proc", AT_RECURSIVE,
                     MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC) < 0) {
    return fail(why, size, "bind", "proc", errno);
  }
  /* A sysfs of the cell's own network namespace shows its links, not the
   * host's; sharing the host's network, the host's sysfs is bound. */
  bool own_sys = s->own_net && mount("sysfs", "sys", "sysfs",
                                     MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == 0;
  /* The host's has every cgroup of the host, other cells' included: their
   * names and usage are no cell's business. */
  static const char *const host_cgroups[] = {"sys/fs/cgroup", NULL};
  if ((!own_sys && ((r = bind_ro("/sys", "sys", MOUNT_ATTR_NOEXEC, why, size)) < 0 ||
                    (r = cell_mask_paths(host_cgroups, why, size)) < 0)) ||
      (r = harden_in_root(cell_masked_paths_default, false, why, size)) < 0 ||
      (r = harden_in_root(cell_readonly_paths_default, true, why, size)) < 0)
    return r;
  return 0;
}

/* mkdir -p of REL below the directory ROOT, never through a symlink: the
 * parts that exist are bound host directories (/etc...) whose symlinks
 * would lead out of the new root. Returns an O_PATH fd of the last
 * component, created as a directory or, with file, an empty file. */
static int make_target(int root, const char *rel, bool file, char *why, size_t size) {
  char buf[4096];
  snprintf(buf, sizeof(buf), "%s", rel);
  int dir = fcntl(root, F_DUPFD_CLOEXEC, 0);
  if (dir < 0) return fail(why, size, "dup", rel, errno);
  char *save = NULL;
  char *part = strtok_r(buf, "/", &save);
  while (part) {
    char *next = strtok_r(NULL, "/", &save);
    bool last = next == NULL;
    int fd = openat(dir, part, O_PATH | O_NOFOLLOW | O_CLOEXEC | (last && file ? 0 : O_DIRECTORY));
    if (fd < 0 && errno == ENOENT) {
      int made = last && file ? mknodat(dir, part, S_IFREG | 0644, 0) : mkdirat(dir, part, 0755);
      if (made < 0) {
        close(dir);
        return fail(why, size, "create mount point", rel, errno);
      }
      fd = openat(dir, part, O_PATH | O_NOFOLLOW | O_CLOEXEC | (last && file ? 0 : O_DIRECTORY));
    }
    close(dir);
    if (fd < 0) return fail(why, size, "mount point", rel, errno == ELOOP ? ENOTDIR : errno);
    dir = fd;
    part = next;
  }
  return dir;
}

/* The bind mounts an admin asked for: each source is a detached mount
 * tree that auraed cloned (open_tree) from a path it resolved without
 * following symlinks, so what is bound is what was checked; auraed made
 * it nosuid and nodev (and read-only when asked) already. */
static int add_mounts(int root, const cell_root_spec *s, char *why, size_t size) {
  for (size_t i = 0; i < s->nmounts; i++) {
    const cell_mount *m = &s->mounts[i];
    struct stat st;
    if (fstat(m->fd, &st) < 0) return fail(why, size, "stat source of", m->target + 1, errno);
    _cleanup_close_ int at = make_target(root, m->target + 1, !S_ISDIR(st.st_mode), why, size);
    if (at < 0) return at;
    if (move_mount(m->fd, "", at, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
      return fail(why, size, "bind", m->target + 1, errno);
  }
  return 0;
}

int cell_private_root(const cell_root_spec *s, char *why, size_t size) {
  _cleanup_close_ int old_dev = open("/dev", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (old_dev < 0) return fail(why, size, "open", "dev", errno);
  const char *staging = NULL;
  for (const char *const *d = staging_dirs; *d && !staging; d++) {
    struct stat st;
    if (lstat(*d, &st) == 0 && S_ISDIR(st.st_mode)) staging = *d;
  }
  if (!staging) {
    snprintf(why, size, "build the cell's root: none of /tmp, /run, /mnt, /var/tmp exists");
    return -ENOENT;
  }
  /* The root itself holds directories, symlinks and mount points only. */
  if (mount("tmpfs", staging, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m,nr_inodes=4096") <
      0)
    return fail(why, size, "mount the root tmpfs on", staging + 1, errno);
  _cleanup_close_ int root = open(staging, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root < 0 || chdir(staging) < 0) return fail(why, size, "enter", staging + 1, errno);
  int r;
  if ((r = add_system_dirs(why, size)) < 0 || (r = cell_mask_paths(etc_secrets, why, size)) < 0 ||
      (r = mask_ssh_keys(why, size)) < 0 ||
      (r = harden_in_root((const char *const *)s->masks, false, why, size)) < 0)
    return r;
  if (mkdir("var", 0755) < 0) return fail(why, size, "mkdir", "var", errno);
  if ((r = add_scratch("tmp", "1777", s, why, size)) < 0 ||
      (r = add_scratch("var/tmp", "1777", s, why, size)) < 0 ||
      (r = add_scratch("run", "0755", s, why, size)) < 0 || (r = add_proc_sys(s, why, size)) < 0)
    return r;
  if (mkdir("dev", 0755) < 0) return fail(why, size, "mkdir", "dev", errno);
  if ((r = cell_setup_dev("dev", old_dev, s, why, size)) < 0 ||
      (r = add_mounts(root, s, why, size)) < 0)
    return r;
  /* pivot_root(".", ".") stacks the old root on the new one; detaching it
   * leaves nothing of the host's tree reachable by path. */
  if (syscall(SYS_pivot_root, ".", ".") < 0) return fail(why, size, "pivot_root to", "", errno);
  if (umount2(".", MNT_DETACH) < 0) return fail(why, size, "detach the host's root", "", errno);
  if (chdir("/") < 0) return fail(why, size, "chdir", "", errno);
  /* Nothing but the scratch mounts is writable: the root's directories
   * and /dev's nodes are fixed once made. */
  if (setattr("/", 0, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV) < 0)
    return fail(why, size, "make read-only", "", errno);
  if (setattr("/dev", 0, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC) < 0)
    return fail(why, size, "make read-only", "dev", errno);
  return 0;
}
