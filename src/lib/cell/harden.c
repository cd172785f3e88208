#include "cell/harden.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

const char *const cell_masked_paths_default[] = {"/proc/acpi",
                                                 "/proc/kcore",
                                                 "/proc/keys",
                                                 "/proc/latency_stats",
                                                 "/proc/timer_list",
                                                 "/proc/timer_stats",
                                                 "/proc/sched_debug",
                                                 "/proc/scsi",
                                                 "/sys/firmware",
                                                 "/sys/devices/virtual/powercap",
                                                 NULL};

const char *const cell_readonly_paths_default[] = {
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger", NULL};

int cell_caps_last(void) {
  int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return CAP_LAST_CAP;
  char buf[16] = "";
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  int last = n > 0 ? atoi(buf) : 0;
  return last > 0 && last < 64 ? last : CAP_LAST_CAP;
}

int cell_caps_drop_bounding(int last_cap) {
  for (int cap = 0; cap <= last_cap; cap++)
    if (!(CELL_DEFAULT_CAPS & (UINT64_C(1) << cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
      return -errno;
  return 0;
}

int cell_caps_finish(bool root) {
  uint64_t keep = root ? CELL_DEFAULT_CAPS : 0;
  struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  struct __user_cap_data_struct data[2] = {
      {.effective = (uint32_t)keep, .permitted = (uint32_t)keep, .inheritable = 0},
      {.effective = (uint32_t)(keep >> 32), .permitted = (uint32_t)(keep >> 32), .inheritable = 0}};
  if (syscall(SYS_capset, &hdr, data) < 0) return -errno;
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
    return -errno;
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return -errno;
  return 0;
}

static int fail(char *errbuf, size_t size, const char *what, const char *path, int e) {
  snprintf(errbuf, size, "%s %s: %s", what, path, strerror(e));
  return -e;
}

int cell_mask_paths(const char *const *paths, char *errbuf, size_t size) {
  for (const char *const *p = paths; p && *p; p++) {
    struct stat st;
    if (lstat(*p, &st) < 0) {
      if (errno == ENOENT || errno == ENOTDIR) continue;
      return fail(errbuf, size, "mask", *p, errno);
    }
    int r;
    if (S_ISDIR(st.st_mode))
      r = mount("tmpfs", *p, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0555");
    else
      r = mount("/dev/null", *p, NULL, MS_BIND, NULL);
    if (r < 0) return fail(errbuf, size, "mask", *p, errno);
  }
  return 0;
}

int cell_readonly_paths(const char *const *paths, char *errbuf, size_t size) {
  for (const char *const *p = paths; p && *p; p++) {
    if (mount(*p, *p, NULL, MS_BIND | MS_REC, NULL) < 0) {
      if (errno == ENOENT) continue;
      return fail(errbuf, size, "bind", *p, errno);
    }
    /* A plain MS_REMOUNT|MS_RDONLY does not reach submounts (/sys/fs/cgroup
     * below /sys); mount_setattr with AT_RECURSIVE (Linux 5.12) does. */
    struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV};
    if (mount_setattr(AT_FDCWD, *p, AT_RECURSIVE, &attr, sizeof(attr)) < 0)
      return fail(errbuf, size, "make read-only", *p, errno);
  }
  return 0;
}
