#include "cell/cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "clock.h"
#include "log.h"

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape(const char *in, size_t len, char *out, size_t size) {
  size_t o = 0;
  for (size_t i = 0; i < len && o + 1 < size; i++) {
    if (in[i] == '\\' && i + 3 < len && in[i + 1] >= '0' && in[i + 1] <= '7') {
      out[o++] = (char)(((in[i + 1] - '0') << 6) | ((in[i + 2] - '0') << 3) | (in[i + 3] - '0'));
      i += 3;
    } else {
      out[o++] = in[i];
    }
  }
  out[o] = '\0';
}

int cgroup_parse_mountinfo(const char *text, char *buf, size_t size, au_error *err) {
  const char *line = text;
  while (line && *line) {
    const char *eol = strchr(line, '\n');
    size_t len = eol ? (size_t)(eol - line) : strlen(line);
    /* "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SRC SUPER" */
    const char *sep = NULL;
    for (size_t i = 0; i + 3 <= len; i++)
      if (line[i] == ' ' && line[i + 1] == '-' && line[i + 2] == ' ') {
        sep = line + i;
        break;
      }
    if (sep && (size_t)(line + len - (sep + 3)) >= 8 && strncmp(sep + 3, "cgroup2 ", 8) == 0) {
      const char *p = line;
      for (int field = 0; field < 4 && p; field++) {
        p = memchr(p, ' ', (size_t)(line + len - p));
        if (p) p++;
      }
      if (p) {
        const char *end = memchr(p, ' ', (size_t)(line + len - p));
        if (end) {
          if ((size_t)(end - p) >= size)
            return au_error_set(err, -ENAMETOOLONG, "cgroup2 mount point too long");
          unescape(p, (size_t)(end - p), buf, size);
          return 0;
        }
      }
    }
    line = eol ? eol + 1 : NULL;
  }
  return au_error_set(err, -ENOENT, "no cgroup2 file system is mounted (/proc/self/mountinfo)");
}

static int read_file(const char *path, char *buf, size_t size) {
  _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  size_t n = 0;
  while (n + 1 < size) {
    ssize_t r = read(fd, buf + n, size - 1 - n);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (r == 0) break;
    n += (size_t)r;
  }
  buf[n] = '\0';
  return (int)n;
}

int cgroup_find_mount(char *buf, size_t size, au_error *err) {
  /* mountinfo can be large on busy hosts; read it whole. */
  _cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
  if (!f) return au_error_errno(err, -errno, "open /proc/self/mountinfo");
  size_t cap = 1 << 16, n = 0;
  _cleanup_free_ char *text = malloc(cap);
  if (!text) return au_error_set(err, -ENOMEM, "out of memory");
  size_t r;
  while ((r = fread(text + n, 1, cap - 1 - n, f)) > 0) {
    n += r;
    if (n + 1 == cap) {
      char *bigger = realloc(text, cap * 2);
      if (!bigger) return au_error_set(err, -ENOMEM, "out of memory");
      text = bigger;
      cap *= 2;
    }
  }
  text[n] = '\0';
  return cgroup_parse_mountinfo(text, buf, size, err);
}

static bool word_in(const char *list, const char *word) {
  size_t wl = strlen(word);
  for (const char *p = list; (p = strstr(p, word)); p += wl) {
    bool start = p == list || p[-1] == ' ' || p[-1] == '\n';
    bool end = p[wl] == '\0' || p[wl] == ' ' || p[wl] == '\n';
    if (start && end) return true;
  }
  return false;
}

int cgroup_has_controller(const char *dir, const char *controller, bool *ret, au_error *err) {
  char path[4096], buf[1024];
  snprintf(path, sizeof(path), "%s/cgroup.controllers", dir);
  int r = read_file(path, buf, sizeof(buf));
  if (r < 0) return au_error_errno(err, r, "read %s", path);
  *ret = word_in(buf, controller);
  return 0;
}

int cgroup_ensure_controller(const char *mount, const char *dir, const char *controller,
                             bool enable, au_error *err) {
  size_t ml = strlen(mount);
  if (strncmp(dir, mount, ml) != 0 || (dir[ml] != '/' && dir[ml] != '\0'))
    return au_error_set(err, -EINVAL, "%s is not below %s", dir, mount);
  char level[4096];
  /* Walk MOUNT, MOUNT/x, MOUNT/x/y ... DIR. */
  for (size_t i = ml;; i++) {
    if (dir[i] == '/' || dir[i] == '\0') {
      if (i >= sizeof(level)) return au_error_set(err, -ENAMETOOLONG, "path too long");
      memcpy(level, dir, i);
      level[i] = '\0';
      bool have = false;
      int r = cgroup_has_controller(level, controller, &have, err);
      if (r < 0) return r;
      if (!have) {
        char buf[256] = "";
        char path[4200];
        snprintf(path, sizeof(path), "%s/cgroup.controllers", level);
        if (read_file(path, buf, sizeof(buf)) > 0) buf[strcspn(buf, "\n")] = '\0';
        return au_error_set(err, -EOPNOTSUPP,
                            "cgroup controller \"%s\" is not available in the cgroup2 mount %s "
                            "(%s offers \"%s\"); this host cannot enforce %s limits",
                            controller, mount, path, buf, controller);
      }
      if (enable) {
        char plus[64];
        snprintf(plus, sizeof(plus), "+%s", controller);
        r = cgroup_write(level, "cgroup.subtree_control", plus, err);
        if (r < 0) return r;
      }
    }
    if (dir[i] == '\0') break;
  }
  return 0;
}

int cgroup_write(const char *dir, const char *file, const char *value, au_error *err) {
  char path[4200];
  snprintf(path, sizeof(path), "%s/%s", dir, file);
  _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return au_error_errno(err, -errno, "open %s", path);
  size_t len = strlen(value);
  ssize_t w = write(fd, value, len);
  if (w < 0) return au_error_errno(err, -errno, "write \"%s\" to %s", value, path);
  if ((size_t)w != len) return au_error_set(err, -EIO, "short write to %s", path);
  return 0;
}

int cgroup_mkdir(const char *dir, au_error *err) {
  if (mkdir(dir, 0755) < 0) return au_error_errno(err, -errno, "mkdir %s", dir);
  return 0;
}

int cgroup_populated(const char *dir, bool *ret) {
  char path[4200], buf[256];
  snprintf(path, sizeof(path), "%s/cgroup.events", dir);
  int r = read_file(path, buf, sizeof(buf));
  if (r < 0) return r;
  *ret = strstr(buf, "populated 1") != NULL;
  return 0;
}

int cgroup_kill_wait(const char *dir, int timeout_ms, au_error *err) {
  char path[4200];
  snprintf(path, sizeof(path), "%s/cgroup.events", dir);
  _cleanup_close_ int ev = open(path, O_RDONLY | O_CLOEXEC);
  if (ev < 0) {
    if (errno == ENOENT) return 0; /* already gone */
    return au_error_errno(err, -errno, "open %s", path);
  }
  int r = cgroup_write(dir, "cgroup.kill", "1", err);
  if (r < 0) return r;
  int64_t deadline = monotonic_ms() + timeout_ms;
  for (;;) {
    bool populated = true;
    r = cgroup_populated(dir, &populated);
    if (r < 0) return au_error_errno(err, r, "read %s", path);
    if (!populated) return 0;
    int64_t left = deadline - monotonic_ms();
    if (left <= 0)
      return au_error_set(err, -ETIMEDOUT, "%s still populated after cgroup.kill", dir);
    /* cgroup.events raises POLLPRI when "populated" changes. */
    struct pollfd p = {.fd = ev, .events = POLLPRI};
    poll(&p, 1, left > 50 ? 50 : (int)left);
  }
}

static int remove_below(int dirfd, const char *path) {
  _cleanup_close_ int fd = openat(dirfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? 0 : -errno;
  int dup_fd = dup(fd);
  if (dup_fd < 0) return -errno;
  DIR *d = fdopendir(dup_fd);
  if (!d) {
    close(dup_fd);
    return -errno;
  }
  int ret = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (de->d_type != DT_DIR || strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    int r = remove_below(fd, de->d_name);
    if (r < 0 && ret == 0) ret = r;
  }
  closedir(d);
  if (unlinkat(dirfd, path, AT_REMOVEDIR) < 0 && errno != ENOENT && ret == 0) ret = -errno;
  return ret;
}

int cgroup_remove_tree(const char *dir, au_error *err) {
  int r = remove_below(AT_FDCWD, dir);
  if (r < 0) return au_error_errno(err, r, "remove cgroup %s", dir);
  log_debug("cgroup: removed %s", dir);
  return 0;
}
