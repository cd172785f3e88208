/* A newc ("070701") cpio writer, the format the kernel unpacks as an
 * initramfs. Backed by libarchive; entries are written in call order, and
 * missing parent directories are added first (the kernel's unpacker needs a
 * directory before the files in it). Output is uncompressed: under TCG an
 * uncompressed newc archive boots as fast as gzip or lz4 (DESIGN.md). */
#pragma once

#include <stddef.h>
#include <sys/types.h>

#include "error.h"

typedef struct cpio_writer cpio_writer;

/* Writes to fd (not closed by the writer) or creates path (mode 0644,
 * truncated). */
int cpio_writer_open_fd(int fd, cpio_writer **ret, au_error *err);
int cpio_writer_open_path(const char *path, cpio_writer **ret, au_error *err);

/* Paths are archive paths ("init", "lib/modules/x.ko"); a leading "/" is
 * dropped. "." and ".." components are refused (-EINVAL). mode holds the
 * permission bits only. */
int cpio_add_dir(cpio_writer *w, const char *path, mode_t mode, au_error *err);
int cpio_add_data(cpio_writer *w, const char *path, mode_t mode, const void *data, size_t size,
                  au_error *err);
/* Copies a host file's contents (streamed, any size). mode 0 takes the
 * source's permission bits. */
int cpio_add_file(cpio_writer *w, const char *path, mode_t mode, const char *src, au_error *err);
int cpio_add_symlink(cpio_writer *w, const char *path, const char *target, au_error *err);
int cpio_add_chardev(cpio_writer *w, const char *path, mode_t mode, unsigned major, unsigned minor,
                     au_error *err);

/* Writes the trailer and flushes. Returns 0 or a negative errno. */
int cpio_writer_close(cpio_writer *w, au_error *err);
/* Frees without finishing (after an error); accepts NULL. */
void cpio_writer_free(cpio_writer *w);
static inline void cpio_writer_freep(cpio_writer **w) { cpio_writer_free(*w); }
#define _cleanup_cpio_writer_ __attribute__((cleanup(cpio_writer_freep)))
