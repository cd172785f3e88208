/* A minimal /dev for a cell: the host's /dev holds its disks, /dev/mem,
 * /dev/kmsg..., and cgroup v2 has no device controller (only a BPF program
 * attached to the cgroup could filter opens), so what a cell may open is
 * decided by what its /dev contains, with a BPF device filter on its
 * cgroup behind it. Runs in the single-threaded cell init, in the cell's own
 * mount namespace, while its private root is built (root.c). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cell/harden.h"
#include "cleanup.h"

/* The OCI default devices (runtime-spec config-linux.md). */
static const char *const dev_nodes[] = {"null", "zero", "full", "random", "urandom", "tty", NULL};

static const struct {
  const char *link, *target;
} dev_links[] = {
    {"ptmx", "pts/ptmx"},          {"fd", "/proc/self/fd"},       {"stdin", "/proc/self/fd/0"},
    {"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"},
};

static int fail(char *errbuf, size_t size, const char *what, const char *path, int e) {
  snprintf(errbuf, size, "%s %s: %s", what, path, strerror(e));
  return -e;
}

/* Binds OLD_DEV/NAME (a device node of the /dev we replace) onto
 * DEV/NAME. The old /dev is reached through its fd. A node the old /dev
 * lacks is skipped (a nested cell's parent may have none, a minimal host
 * may lack one). */
static int bind_node(const char *dev, int old_dev, const char *name, char *errbuf, size_t size) {
  char src[64], dst[4096];
  struct stat st;
  if (fstatat(old_dev, name, &st, 0) < 0) {
    if (errno == ENOENT) return 0;
    return fail(errbuf, size, "stat host device", name, errno);
  }
  if (!S_ISCHR(st.st_mode)) return 0; /* only character devices are wanted */
  snprintf(src, sizeof(src), "/proc/self/fd/%d/%s", old_dev, name);
  snprintf(dst, sizeof(dst), "%s/%s", dev, name);
  _cleanup_close_ int fd = open(dst, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0666);
  if (fd < 0) return fail(errbuf, size, "create", dst, errno);
  if (mount(src, dst, NULL, MS_BIND, NULL) < 0) return fail(errbuf, size, "bind", dst, errno);
  /* The bind keeps the host mount's flags; a device needs none of suid or
   * exec. It must keep dev: nodev on this mount would refuse its open. */
  if (mount(NULL, dst, NULL, MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NOEXEC, NULL) < 0)
    return fail(errbuf, size, "remount", dst, errno);
  return 0;
}

int cell_setup_dev(const char *dev, int old_dev, const cell_root_spec *s, char *errbuf,
                   size_t size) {
  char path[4096], opts[96];
  /* nodev on the tmpfs itself: only the nodes bound below (mounts of their
   * own) can be opened as devices. */
  if (mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_STRICTATIME,
            "mode=0755,size=64k,nr_inodes=64") < 0)
    return fail(errbuf, size, "mount tmpfs on", dev, errno);
  for (const char *const *n = dev_nodes; *n; n++) {
    int r = bind_node(dev, old_dev, *n, errbuf, size);
    if (r < 0) return r;
  }
  snprintf(path, sizeof(path), "%s/pts", dev);
  if (mkdir(path, 0755) < 0) return fail(errbuf, size, "mkdir", path, errno);
  /* A devpts of its own: the host's ptys (ssh sessions, consoles) are not
   * the cell's to open. gid 5 is the tty group of Debian and the OCI
   * default. */
  if (mount("devpts", path, "devpts", MS_NOSUID | MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620,gid=5") < 0)
    return fail(errbuf, size, "mount devpts on", path, errno);
  snprintf(path, sizeof(path), "%s/shm", dev);
  if (mkdir(path, 01777) < 0) return fail(errbuf, size, "mkdir", path, errno);
  snprintf(opts, sizeof(opts), "mode=1777,size=%um,nr_inodes=%u", s->scratch_mb, s->scratch_inodes);
  if (mount("shm", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts) < 0)
    return fail(errbuf, size, "mount tmpfs on", path, errno);
  for (size_t i = 0; i < sizeof(dev_links) / sizeof(dev_links[0]); i++) {
    snprintf(path, sizeof(path), "%s/%s", dev, dev_links[i].link);
    if (symlink(dev_links[i].target, path) < 0) return fail(errbuf, size, "symlink", path, errno);
  }
  return 0;
}
