/* newc cpio writer on libarchive. libarchive hands every entry the same
 * inode/dev numbering it is given, so we number entries ourselves: the
 * kernel's unpacker treats entries with equal (dev, ino, nlink > 1) as hard
 * links, and zeroed inode numbers would turn every file into a link of the
 * first. */
#include "initramfs/cpio.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "cleanup.h"

#define CPIO_PATH_MAX 4096

struct cpio_writer {
  struct archive *ar;
  int fd; /* ours when owns_fd */
  bool owns_fd;
  bool failed; /* after a write error only free is useful */
  int64_t next_ino;
  /* Directories already written, to add missing parents exactly once. */
  char **dirs;
  size_t n_dirs, cap_dirs;
};

static int cpio_ar_error(cpio_writer *w, au_error *err, const char *what, const char *path) {
  int e = archive_errno(w->ar);
  if (e <= 0) e = EIO;
  w->failed = true;
  return au_error_set(err, -e, "cpio %s %s: %s", what, path,
                      archive_error_string(w->ar) ? archive_error_string(w->ar) : strerror(e));
}

static int cpio_writer_new(int fd, bool owns, cpio_writer **ret, au_error *err) {
  cpio_writer *w = calloc(1, sizeof(*w));
  if (!w) return au_error_set(err, -ENOMEM, "cpio: out of memory");
  w->fd = fd;
  w->owns_fd = owns;
  w->next_ino = 1;
  w->ar = archive_write_new();
  if (!w->ar) {
    free(w);
    return au_error_set(err, -ENOMEM, "cpio: out of memory");
  }
  /* libarchive pads its output to 10 KiB blocks by default; the kernel
   * accepts trailing zeros, but an exact archive is easier to reason about. */
  if (archive_write_set_format_cpio_newc(w->ar) != ARCHIVE_OK ||
      archive_write_add_filter_none(w->ar) != ARCHIVE_OK ||
      archive_write_set_bytes_per_block(w->ar, 0) != ARCHIVE_OK ||
      archive_write_open_fd(w->ar, fd) != ARCHIVE_OK) {
    int r = cpio_ar_error(w, err, "open", "");
    w->owns_fd = false;
    cpio_writer_free(w);
    return r;
  }
  *ret = w;
  return 0;
}

int cpio_writer_open_fd(int fd, cpio_writer **ret, au_error *err) {
  if (fd < 0) return au_error_set(err, -EBADF, "cpio: bad fd");
  return cpio_writer_new(fd, false, ret, err);
}

int cpio_writer_open_path(const char *path, cpio_writer **ret, au_error *err) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return au_error_errno(err, -errno, "cpio: create %s", path);
  int r = cpio_writer_new(fd, true, ret, err);
  if (r < 0) close(fd);
  return r;
}

void cpio_writer_free(cpio_writer *w) {
  if (!w) return;
  if (w->ar) archive_write_free(w->ar); /* also closes the archive */
  if (w->owns_fd && w->fd >= 0) close(w->fd);
  for (size_t i = 0; i < w->n_dirs; i++)
    free(w->dirs[i]);
  free(w->dirs);
  free(w);
}

/* Normalizes an archive path: no leading '/', no "." / ".." / empty parts. */
static int cpio_norm_path(const char *path, char *buf, size_t size, au_error *err) {
  while (*path == '/')
    path++;
  size_t len = strlen(path);
  while (len > 0 && path[len - 1] == '/')
    len--;
  if (len == 0 || len >= size) return au_error_set(err, -EINVAL, "cpio: bad path \"%s\"", path);
  memcpy(buf, path, len);
  buf[len] = '\0';
  for (const char *p = buf; *p;) {
    const char *e = strchrnul(p, '/');
    size_t n = (size_t)(e - p);
    if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
      return au_error_set(err, -EINVAL, "cpio: bad path \"%s\"", path);
    p = *e ? e + 1 : e;
  }
  return 0;
}

static bool cpio_has_dir(const cpio_writer *w, const char *path) {
  for (size_t i = 0; i < w->n_dirs; i++)
    if (strcmp(w->dirs[i], path) == 0) return true;
  return false;
}

static int cpio_remember_dir(cpio_writer *w, const char *path, au_error *err) {
  if (w->n_dirs == w->cap_dirs) {
    size_t cap = w->cap_dirs ? w->cap_dirs * 2 : 16;
    char **d = realloc(w->dirs, cap * sizeof(*d));
    if (!d) return au_error_set(err, -ENOMEM, "cpio: out of memory");
    w->dirs = d;
    w->cap_dirs = cap;
  }
  w->dirs[w->n_dirs] = strdup(path);
  if (!w->dirs[w->n_dirs]) return au_error_set(err, -ENOMEM, "cpio: out of memory");
  w->n_dirs++;
  return 0;
}

/* Writes one header (and the data that follows, if any). */
static int cpio_write_entry(cpio_writer *w, const char *path, mode_t type_mode, int64_t size,
                            const char *symlink, dev_t rdev, const void *data, au_error *err) {
  if (w->failed) return au_error_set(err, -EIO, "cpio: writer failed earlier");
  struct archive_entry *e = archive_entry_new();
  if (!e) return au_error_set(err, -ENOMEM, "cpio: out of memory");
  archive_entry_set_pathname(e, path);
  archive_entry_set_mode(e, type_mode);
  archive_entry_set_size(e, size);
  archive_entry_set_uid(e, 0);
  archive_entry_set_gid(e, 0);
  archive_entry_set_nlink(e, S_ISDIR(type_mode) ? 2 : 1);
  archive_entry_set_ino64(e, w->next_ino++);
  archive_entry_set_dev(e, 0);
  if (symlink) archive_entry_set_symlink(e, symlink);
  if (rdev) archive_entry_set_rdev(e, rdev);
  int r = 0;
  if (archive_write_header(w->ar, e) != ARCHIVE_OK)
    r = cpio_ar_error(w, err, "write header", path);
  else if (data && size > 0 && archive_write_data(w->ar, data, (size_t)size) != (la_ssize_t)size)
    r = cpio_ar_error(w, err, "write data", path);
  archive_entry_free(e);
  return r;
}

/* Adds the missing parents of path (not path itself), outermost first. */
static int cpio_add_parents(cpio_writer *w, const char *path, au_error *err) {
  char buf[CPIO_PATH_MAX];
  snprintf(buf, sizeof(buf), "%s", path);
  for (char *s = strchr(buf, '/'); s; s = strchr(s + 1, '/')) {
    *s = '\0';
    if (!cpio_has_dir(w, buf)) {
      int r = cpio_write_entry(w, buf, S_IFDIR | 0755, 0, NULL, 0, NULL, err);
      if (r < 0) return r;
      r = cpio_remember_dir(w, buf, err);
      if (r < 0) return r;
    }
    *s = '/';
  }
  return 0;
}

int cpio_add_dir(cpio_writer *w, const char *path, mode_t mode, au_error *err) {
  char p[CPIO_PATH_MAX];
  int r = cpio_norm_path(path, p, sizeof(p), err);
  if (r < 0) return r;
  if (cpio_has_dir(w, p)) return 0;
  r = cpio_add_parents(w, p, err);
  if (r < 0) return r;
  r = cpio_write_entry(w, p, S_IFDIR | (mode & 07777), 0, NULL, 0, NULL, err);
  if (r < 0) return r;
  return cpio_remember_dir(w, p, err);
}

int cpio_add_data(cpio_writer *w, const char *path, mode_t mode, const void *data, size_t size,
                  au_error *err) {
  char p[CPIO_PATH_MAX];
  int r = cpio_norm_path(path, p, sizeof(p), err);
  if (r < 0) return r;
  r = cpio_add_parents(w, p, err);
  if (r < 0) return r;
  return cpio_write_entry(w, p, S_IFREG | (mode & 07777), (int64_t)size, NULL, 0, data, err);
}

int cpio_add_file(cpio_writer *w, const char *path, mode_t mode, const char *src, au_error *err) {
  char p[CPIO_PATH_MAX];
  int r = cpio_norm_path(path, p, sizeof(p), err);
  if (r < 0) return r;
  _cleanup_close_ int fd = open(src, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return au_error_errno(err, -errno, "cpio: open %s", src);
  struct stat st;
  if (fstat(fd, &st) < 0) return au_error_errno(err, -errno, "cpio: stat %s", src);
  if (!S_ISREG(st.st_mode))
    return au_error_set(err, -EINVAL, "cpio: %s is not a regular file", src);
  if (mode == 0) mode = st.st_mode & 07777;
  r = cpio_add_parents(w, p, err);
  if (r < 0) return r;
  r = cpio_write_entry(w, p, S_IFREG | (mode & 07777), st.st_size, NULL, 0, NULL, err);
  if (r < 0) return r;
  /* Stream the body; the header promised st_size bytes, so a file that
   * changes size under us is an error rather than a corrupt archive. */
  char buf[65536];
  int64_t left = st.st_size;
  while (left > 0) {
    ssize_t n = read(fd, buf, sizeof(buf) < (size_t)left ? sizeof(buf) : (size_t)left);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      w->failed = true;
      return au_error_errno(err, -errno, "cpio: read %s", src);
    }
    if (n == 0) {
      w->failed = true;
      return au_error_set(err, -EIO, "cpio: %s shrank while being archived", src);
    }
    if (archive_write_data(w->ar, buf, (size_t)n) != n)
      return cpio_ar_error(w, err, "write data", p);
    left -= n;
  }
  return 0;
}

int cpio_add_symlink(cpio_writer *w, const char *path, const char *target, au_error *err) {
  char p[CPIO_PATH_MAX];
  int r = cpio_norm_path(path, p, sizeof(p), err);
  if (r < 0) return r;
  if (!target || !*target)
    return au_error_set(err, -EINVAL, "cpio: empty symlink target for %s", p);
  r = cpio_add_parents(w, p, err);
  if (r < 0) return r;
  return cpio_write_entry(w, p, S_IFLNK | 0777, 0, target, 0, NULL, err);
}

int cpio_add_chardev(cpio_writer *w, const char *path, mode_t mode, unsigned major, unsigned minor,
                     au_error *err) {
  char p[CPIO_PATH_MAX];
  int r = cpio_norm_path(path, p, sizeof(p), err);
  if (r < 0) return r;
  r = cpio_add_parents(w, p, err);
  if (r < 0) return r;
  return cpio_write_entry(w, p, S_IFCHR | (mode & 07777), 0, NULL, makedev(major, minor), NULL,
                          err);
}

int cpio_writer_close(cpio_writer *w, au_error *err) {
  if (!w) return 0;
  int r = 0;
  if (w->failed)
    r = au_error_set(err, -EIO, "cpio: writer failed earlier");
  else if (archive_write_close(w->ar) != ARCHIVE_OK)
    r = cpio_ar_error(w, err, "close", "");
  if (r == 0 && w->owns_fd) {
    int fd = w->fd;
    w->fd = -1;
    if (close(fd) < 0) r = au_error_errno(err, -errno, "cpio: close");
  }
  cpio_writer_free(w);
  return r;
}
