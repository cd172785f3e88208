/* The newc writer, read back two ways: byte-level header checks (the
 * format the kernel's unpacker parses) and a full read with libarchive. */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cmocka.h>

#include "initramfs/cpio.h"
#include "initramfs/initramfs.h"

static char tmpdir[] = "/tmp/test_cpio.XXXXXX";

static int setup(void **state) {
  (void)state;
  return mkdtemp(tmpdir) ? 0 : -1;
}
static int teardown(void **state) {
  (void)state;
  char cmd[256];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

static void *slurp(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  void *buf = malloc((size_t)n + 1);
  assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  *size = (size_t)n;
  return buf;
}

static unsigned long hexfield(const char *hdr, int idx) {
  char f[9];
  memcpy(f, hdr + 6 + idx * 8, 8);
  f[8] = '\0';
  return strtoul(f, NULL, 16);
}

typedef struct entry {
  char name[256];
  unsigned long mode, ino, nlink, filesize, rmaj, rmin;
  const char *data;
} entry;

/* Parses newc by hand: "070701", 13 8-hex-digit fields, name, 4-byte pads. */
static size_t parse_newc(const char *buf, size_t size, entry *out, size_t max) {
  size_t off = 0, n = 0;
  while (off + 110 <= size && n < max) {
    const char *h = buf + off;
    assert_memory_equal(h, "070701", 6);
    entry *e = &out[n++];
    e->ino = hexfield(h, 0);
    e->mode = hexfield(h, 1);
    e->nlink = hexfield(h, 4);
    e->filesize = hexfield(h, 6);
    e->rmaj = hexfield(h, 9);
    e->rmin = hexfield(h, 10);
    unsigned long namesize = hexfield(h, 11);
    assert_true(namesize < sizeof(e->name));
    memcpy(e->name, h + 110, namesize);
    assert_int_equal(e->name[namesize - 1], '\0');
    off = (off + 110 + namesize + 3) & ~(size_t)3;
    e->data = buf + off;
    off = (off + e->filesize + 3) & ~(size_t)3;
    if (strcmp(e->name, "TRAILER!!!") == 0) {
      assert_int_equal(off, size); /* nothing after the trailer */
      return n;
    }
  }
  fail_msg("no trailer");
  return n;
}

static void test_entries_and_parents(void **state) {
  (void)state;
  char out[512], src[512];
  snprintf(out, sizeof(out), "%s/a.cpio", tmpdir);
  snprintf(src, sizeof(src), "%s/src.bin", tmpdir);
  /* A source file of an odd size, larger than one copy buffer. */
  FILE *f = fopen(src, "wb");
  for (int i = 0; i < 70001; i++)
    fputc(i * 7, f);
  fclose(f);
  chmod(src, 0750);

  cpio_writer *w = NULL;
  au_error err = {0};
  assert_int_equal(cpio_writer_open_path(out, &w, &err), 0);
  assert_int_equal(cpio_add_data(w, "/etc/deep/x.conf", 0640, "hello", 5, &err), 0);
  assert_int_equal(cpio_add_dir(w, "etc", 0700, &err), 0); /* already there */
  assert_int_equal(cpio_add_file(w, "bin/prog", 0, src, &err), 0);
  assert_int_equal(cpio_add_symlink(w, "bin/sh", "prog", &err), 0);
  assert_int_equal(cpio_add_chardev(w, "dev/console", 0600, 5, 1, &err), 0);
  assert_int_equal(cpio_writer_close(w, &err), 0);

  size_t size;
  char *buf = slurp(out, &size);
  entry e[16];
  size_t n = parse_newc(buf, size, e, 16);
  const char *names[] = {"etc",    "etc/deep", "etc/deep/x.conf", "bin",       "bin/prog",
                         "bin/sh", "dev",      "dev/console",     "TRAILER!!!"};
  assert_int_equal(n, sizeof(names) / sizeof(names[0]));
  for (size_t i = 0; i < n; i++)
    assert_string_equal(e[i].name, names[i]);
  assert_int_equal(e[0].mode, S_IFDIR | 0755);
  assert_int_equal(e[2].mode, S_IFREG | 0640);
  assert_int_equal(e[2].filesize, 5);
  assert_memory_equal(e[2].data, "hello", 5);
  assert_int_equal(e[4].mode, S_IFREG | 0750);
  assert_int_equal(e[4].filesize, 70001);
  for (int i = 0; i < 70001; i++)
    assert_int_equal((unsigned char)e[4].data[i], (unsigned char)(i * 7));
  assert_int_equal(e[5].mode, S_IFLNK | 0777);
  assert_memory_equal(e[5].data, "prog", 4);
  assert_int_equal(e[7].mode, S_IFCHR | 0600);
  assert_int_equal(e[7].rmaj, 5);
  assert_int_equal(e[7].rmin, 1);
  /* Distinct inode numbers and nlink 1 on files: equal (ino, nlink>1)
   * pairs would make the kernel hard-link entries together. */
  for (size_t i = 0; i + 1 < n; i++) {
    assert_int_not_equal(e[i].ino, 0);
    for (size_t j = i + 1; j + 1 < n; j++)
      assert_int_not_equal(e[i].ino, e[j].ino);
    if (!S_ISDIR(e[i].mode)) assert_int_equal(e[i].nlink, 1);
  }

  /* libarchive reads it back as newc with the same contents. */
  struct archive *a = archive_read_new();
  archive_read_support_format_cpio(a);
  assert_int_equal(archive_read_open_memory(a, buf, size), ARCHIVE_OK);
  struct archive_entry *ae;
  size_t count = 0;
  while (archive_read_next_header(a, &ae) == ARCHIVE_OK) {
    assert_string_equal(archive_entry_pathname(ae), names[count]);
    count++;
  }
  assert_int_equal(count, n - 1);
  archive_read_free(a);
  free(buf);
}

static void test_bad_paths(void **state) {
  (void)state;
  char out[512];
  snprintf(out, sizeof(out), "%s/b.cpio", tmpdir);
  cpio_writer *w = NULL;
  au_error err = {0};
  assert_int_equal(cpio_writer_open_path(out, &w, &err), 0);
  assert_int_equal(cpio_add_data(w, "../etc/passwd", 0644, "x", 1, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "bad path"));
  assert_int_equal(cpio_add_data(w, "a/./b", 0644, "x", 1, &err), -EINVAL);
  assert_int_equal(cpio_add_data(w, "a//b", 0644, "x", 1, &err), -EINVAL);
  assert_int_equal(cpio_add_data(w, "/", 0644, "x", 1, &err), -EINVAL);
  assert_int_equal(cpio_add_file(w, "x", 0, "/nonexistent/file", &err), -ENOENT);
  assert_int_equal(cpio_add_file(w, "x", 0, "/tmp", &err), -EINVAL);
  assert_int_equal(cpio_add_symlink(w, "l", "", &err), -EINVAL);
  /* Refused entries left nothing behind: the archive is just a trailer. */
  assert_int_equal(cpio_writer_close(w, &err), 0);
  size_t size;
  char *buf = slurp(out, &size);
  entry e[4];
  assert_int_equal(parse_newc(buf, size, e, 4), 1);
  free(buf);
  assert_int_equal(cpio_writer_open_path("/nonexistent/dir/x.cpio", &w, &err), -ENOENT);
}

/* A fake lib/modules/<ver> tree: modules.dep lists each module's full
 * dependency closure, in the reverse of load order, as depmod writes it. */
static void make_modules(const char *dir) {
  char p[1024];
  snprintf(p, sizeof(p), "%s/kernel", dir);
  mkdir(dir, 0755);
  mkdir(p, 0755);
  const char *mods[] = {"a", "b", "c", "d", "e_f"};
  for (size_t i = 0; i < 5; i++) {
    snprintf(p, sizeof(p), "%s/kernel/%s.ko", dir, mods[i]);
    FILE *f = fopen(p, "w");
    fprintf(f, "module %s\n", mods[i]);
    fclose(f);
  }
  snprintf(p, sizeof(p), "%s/modules.dep", dir);
  FILE *f = fopen(p, "w");
  fputs("kernel/a.ko: kernel/c.ko kernel/b.ko\n"
        "kernel/b.ko: kernel/c.ko\n"
        "kernel/c.ko:\n"
        "kernel/d.ko: kernel/b.ko kernel/c.ko\n"
        "kernel/e_f.ko:\n",
        f);
  fclose(f);
  snprintf(p, sizeof(p), "%s/modules.builtin", dir);
  f = fopen(p, "w");
  fputs("kernel/drivers/tty/builtin-one.ko\n", f);
  fclose(f);
}

static void test_module_order(void **state) {
  (void)state;
  char dir[512];
  snprintf(dir, sizeof(dir), "%s/mods", tmpdir);
  make_modules(dir);
  initramfs_module want[] = {
      {"d", NULL}, {"a", "x=1"}, {"builtin_one", NULL}, {"e-f", NULL}, {"c", "y=2"}};
  initramfs_mod_path *paths = NULL;
  size_t n = 0;
  au_error err = {0};
  assert_int_equal(initramfs_resolve_modules(dir, want, 5, &paths, &n, &err), 0);
  const char *order[] = {"c", "b", "d", "a", "e_f"};
  assert_int_equal(n, 5);
  for (size_t i = 0; i < n; i++)
    assert_string_equal(paths[i].name, order[i]);
  assert_string_equal(paths[3].params, "x=1");
  assert_string_equal(paths[0].params, "y=2"); /* given after it was placed */
  assert_null(paths[1].params);
  assert_non_null(strstr(paths[0].path, "/kernel/c.ko"));
  initramfs_mod_paths_free(paths, n);

  initramfs_module missing[] = {{"nope", NULL}};
  assert_int_equal(initramfs_resolve_modules(dir, missing, 1, &paths, &n, &err), -ENOENT);
  assert_non_null(strstr(err.msg, "nope"));
}

static void test_build_image(void **state) {
  (void)state;
  char dir[512], init[512], out[512];
  snprintf(dir, sizeof(dir), "%s/mods", tmpdir);
  snprintf(init, sizeof(init), "%s/init.sh", tmpdir);
  snprintf(out, sizeof(out), "%s/image.cpio", tmpdir);
  FILE *f = fopen(init, "w");
  fputs("#!/bin/sh\necho hi\n", f);
  fclose(f);
  initramfs_module want[] = {{"a", "x=1"}};
  initramfs_file extra[] = {{init, "etc/copy", 0600}};
  initramfs_spec spec = {.init = init,
                         .modules_dir = dir,
                         .modules = want,
                         .n_modules = 1,
                         .files = extra,
                         .n_files = 1};
  au_error err = {0};
  assert_int_equal(initramfs_build(&spec, out, &err), 0);
  size_t size;
  char *buf = slurp(out, &size);
  entry e[32];
  size_t n = parse_newc(buf, size, e, 32);
  const char *want_order = "c.ko\nb.ko\na.ko x=1\n";
  int saw_init = 0, saw_order = 0, saw_console = 0, saw_copy = 0;
  for (size_t i = 0; i < n; i++) {
    if (strcmp(e[i].name, "init") == 0) {
      saw_init = 1;
      assert_int_equal(e[i].mode, S_IFREG | 0755);
    }
    if (strcmp(e[i].name, "dev/console") == 0) saw_console = 1;
    if (strcmp(e[i].name, "etc/copy") == 0) {
      saw_copy = 1;
      assert_int_equal(e[i].mode, S_IFREG | 0600);
    }
    if (strcmp(e[i].name, "lib/modules/load.order") == 0) {
      saw_order = 1;
      assert_int_equal(e[i].filesize, strlen(want_order));
      assert_memory_equal(e[i].data, want_order, strlen(want_order));
    }
  }
  assert_true(saw_init && saw_order && saw_console && saw_copy);
  free(buf);

  /* A failed build leaves neither the image nor a temporary file. */
  snprintf(out, sizeof(out), "%s/bad.cpio", tmpdir);
  initramfs_module bad[] = {{"nope", NULL}};
  spec.modules = bad;
  assert_int_equal(initramfs_build(&spec, out, &err), -ENOENT);
  assert_int_equal(access(out, F_OK), -1);
  spec.modules = want;
  spec.init = "/nonexistent/init";
  assert_int_equal(initramfs_build(&spec, out, &err), -ENOENT);
  assert_int_equal(access(out, F_OK), -1);
  char cmd[600];
  snprintf(cmd, sizeof(cmd), "ls %s | grep -q tmp", tmpdir);
  assert_int_not_equal(system(cmd), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_entries_and_parents),
      cmocka_unit_test(test_bad_paths),
      cmocka_unit_test(test_module_order),
      cmocka_unit_test(test_build_image),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
