/* Guest initramfs builder. Modules are resolved from the guest kernel's
 * own modules.dep text file (not the host's configuration: no modprobe.d
 * aliases or blacklists can leak in, and no binary index is needed, so a
 * tree unpacked from a .deb and run through depmod is enough). */
#include "initramfs/initramfs.h"

#include <archive.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "initramfs/cpio.h"
#include "log.h"

#define INITRAMFS_MAX_MODULES 256
/* Decompressed modules are held in memory; none of the drivers a microVM
 * needs is close to this. */
#define INITRAMFS_MODULE_MAX_BYTES (64u << 20)

const initramfs_module initramfs_vm_modules[] = {
    {"virtio_ring", NULL}, {"virtio", NULL},       {"virtio_mmio", NULL},
    {"failover", NULL},    {"net_failover", NULL}, {"virtio_net", "napi_tx=0"},
    {"virtio_blk", NULL},  {"button", NULL},       {"evdev", NULL},
};
const size_t initramfs_vm_modules_count = ARRAY_SIZE(initramfs_vm_modules);

void initramfs_mod_paths_free(initramfs_mod_path *paths, size_t count) {
  if (!paths) return;
  for (size_t i = 0; i < count; i++) {
    free(paths[i].name);
    free(paths[i].path);
    free(paths[i].params);
  }
  free(paths);
}

/* One line of modules.dep: "kernel/x/a.ko: kernel/y/b.ko kernel/z/c.ko",
 * the module's whole dependency closure as depmod computed it. */
typedef struct depline {
  char name[64]; /* "virtio_net": basename, no .ko*, '-' -> '_' */
  char *path;    /* relative to the modules dir */
  char **deps;   /* relative paths */
  size_t n_deps;
} depline;

typedef struct resolver {
  const char *dir;
  depline *lines;
  size_t n_lines;
  initramfs_mod_path *out;
  size_t n;
  /* Names on the DFS stack, to report a dependency cycle instead of
   * recursing forever on a corrupt modules.dep. */
  const char *stack[64];
  size_t depth;
} resolver;

/* "kernel/drivers/net/virtio_net.ko.xz" -> "virtio_net". */
static void module_name_from_path(const char *path, char *buf, size_t size) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  size_t i = 0;
  for (; base[i] && i + 1 < size; i++) {
    if (strncmp(base + i, ".ko", 3) == 0) break;
    buf[i] = base[i] == '-' ? '_' : base[i];
  }
  buf[i] = '\0';
}

static void module_name_norm(const char *name, char *buf, size_t size) {
  size_t i = 0;
  for (; name[i] && i + 1 < size; i++)
    buf[i] = name[i] == '-' ? '_' : name[i];
  buf[i] = '\0';
}

static void deplines_free(depline *lines, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(lines[i].path);
    for (size_t j = 0; j < lines[i].n_deps; j++)
      free(lines[i].deps[j]);
    free(lines[i].deps);
  }
  free(lines);
}

static int deplines_parse(const char *dir, depline **ret, size_t *ret_n, au_error *err) {
  char path[4096];
  snprintf(path, sizeof(path), "%s/modules.dep", dir);
  _cleanup_fclose_ FILE *f = fopen(path, "re");
  if (!f) return au_error_errno(err, -errno, "modules: %s", path);
  depline *lines = NULL;
  size_t n = 0, cap = 0;
  _cleanup_free_ char *line = NULL;
  size_t linecap = 0;
  ssize_t len;
  int r = 0;
  while ((len = getline(&line, &linecap, f)) >= 0) {
    char *colon = strchr(line, ':');
    if (!colon) continue;
    *colon = '\0';
    if (n == cap) {
      cap = cap ? cap * 2 : 256;
      depline *nl = realloc(lines, cap * sizeof(*nl));
      if (!nl) {
        r = au_error_set(err, -ENOMEM, "out of memory");
        break;
      }
      lines = nl;
    }
    depline *d = &lines[n];
    memset(d, 0, sizeof(*d));
    module_name_from_path(line, d->name, sizeof(d->name));
    d->path = strdup(line);
    n++;
    if (!d->path) {
      r = au_error_set(err, -ENOMEM, "out of memory");
      break;
    }
    char *save = NULL;
    for (char *tok = strtok_r(colon + 1, " \t\n", &save); tok;
         tok = strtok_r(NULL, " \t\n", &save)) {
      char **nd = realloc(d->deps, (d->n_deps + 1) * sizeof(*nd));
      if (!nd) {
        r = au_error_set(err, -ENOMEM, "out of memory");
        break;
      }
      d->deps = nd;
      if (!(d->deps[d->n_deps] = strdup(tok))) {
        r = au_error_set(err, -ENOMEM, "out of memory");
        break;
      }
      d->n_deps++;
    }
    if (r < 0) break;
  }
  if (r < 0) {
    deplines_free(lines, n);
    return r;
  }
  *ret = lines;
  *ret_n = n;
  return 0;
}

static const depline *resolver_find(const resolver *r, const char *name) {
  for (size_t i = 0; i < r->n_lines; i++)
    if (strcmp(r->lines[i].name, name) == 0) return &r->lines[i];
  return NULL;
}

static bool resolver_has(const resolver *r, const char *name) {
  for (size_t i = 0; i < r->n; i++)
    if (strcmp(r->out[i].name, name) == 0) return true;
  return false;
}

/* modules.builtin lists "kernel/.../name.ko" for drivers compiled in. */
static bool module_is_builtin(const char *dir, const char *name) {
  char path[4096];
  snprintf(path, sizeof(path), "%s/modules.builtin", dir);
  _cleanup_fclose_ FILE *f = fopen(path, "re");
  if (!f) return false;
  char line[1024], base[64];
  while (fgets(line, sizeof(line), f)) {
    line[strcspn(line, "\n")] = '\0';
    module_name_from_path(line, base, sizeof(base));
    if (strcmp(base, name) == 0) return true;
  }
  return false;
}

/* Depth-first: dependencies are placed before the module. The closure in
 * a line is unordered, so each dependency is visited through its own line,
 * which places its dependencies first in turn. */
static int resolver_visit(resolver *r, const char *name, const char *params, au_error *err) {
  if (resolver_has(r, name)) {
    /* Already placed; a parameter given explicitly still applies. */
    for (size_t i = 0; params && i < r->n; i++)
      if (strcmp(r->out[i].name, name) == 0 && !r->out[i].params) r->out[i].params = strdup(params);
    return 0;
  }
  for (size_t i = 0; i < r->depth; i++)
    if (strcmp(r->stack[i], name) == 0)
      return au_error_set(err, -ELOOP, "module %s: dependency cycle", name);
  if (r->depth == ARRAY_SIZE(r->stack))
    return au_error_set(err, -ELOOP, "module %s: dependencies too deep", name);

  const depline *d = resolver_find(r, name);
  if (!d) {
    if (module_is_builtin(r->dir, name)) return 0;
    return au_error_set(err, -ENOENT, "module %s not found in %s/modules.dep", name, r->dir);
  }
  r->stack[r->depth++] = d->name;
  for (size_t i = 0; i < d->n_deps; i++) {
    char dep[64];
    module_name_from_path(d->deps[i], dep, sizeof(dep));
    int ret = resolver_visit(r, dep, NULL, err);
    if (ret < 0) {
      r->depth--;
      return ret;
    }
  }
  r->depth--;

  if (r->n == INITRAMFS_MAX_MODULES)
    return au_error_set(err, -E2BIG, "more than %d modules", INITRAMFS_MAX_MODULES);
  initramfs_mod_path *p = &r->out[r->n];
  p->name = strdup(d->name);
  if (asprintf(&p->path, "%s/%s", r->dir, d->path) < 0) p->path = NULL;
  p->params = params ? strdup(params) : NULL;
  if (!p->name || !p->path || (params && !p->params)) {
    free(p->name);
    free(p->path);
    free(p->params);
    return au_error_set(err, -ENOMEM, "out of memory");
  }
  r->n++;
  return 0;
}

int initramfs_resolve_modules(const char *modules_dir, const initramfs_module *mods, size_t n_mods,
                              initramfs_mod_path **ret, size_t *ret_count, au_error *err) {
  resolver r = {.dir = modules_dir};
  int ret_code = deplines_parse(modules_dir, &r.lines, &r.n_lines, err);
  if (ret_code < 0) return ret_code;
  r.out = calloc(INITRAMFS_MAX_MODULES, sizeof(*r.out));
  if (!r.out) {
    deplines_free(r.lines, r.n_lines);
    return au_error_set(err, -ENOMEM, "out of memory");
  }
  for (size_t i = 0; i < n_mods && ret_code == 0; i++) {
    char name[64];
    module_name_norm(mods[i].name, name, sizeof(name));
    ret_code = resolver_visit(&r, name, mods[i].params, err);
  }
  deplines_free(r.lines, r.n_lines);
  if (ret_code < 0) {
    initramfs_mod_paths_free(r.out, r.n);
    return ret_code;
  }
  log_debug("modules: resolved %zu modules from %s", r.n, modules_dir);
  *ret = r.out;
  *ret_count = r.n;
  return 0;
}

static bool has_suffix(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Reads a compressed module whole, decompressed (the guest kernel may not
 * support in-kernel decompression, and insmod of a .ko.xz fails there). */
static int read_decompressed(const char *path, void **ret, size_t *ret_size, au_error *err) {
  struct archive *a = archive_read_new();
  if (!a) return au_error_set(err, -ENOMEM, "out of memory");
  archive_read_support_filter_all(a);
  archive_read_support_format_raw(a);
  struct archive_entry *e;
  int r = 0;
  _cleanup_free_ char *buf = NULL;
  size_t size = 0, cap = 0;
  if (archive_read_open_filename(a, path, 65536) != ARCHIVE_OK ||
      archive_read_next_header(a, &e) != ARCHIVE_OK) {
    r = au_error_set(err, -EIO, "module %s: %s", path, archive_error_string(a));
    goto out;
  }
  for (;;) {
    if (cap - size < 65536) {
      cap = cap ? cap * 2 : 1 << 20;
      if (cap > INITRAMFS_MODULE_MAX_BYTES) {
        r = au_error_set(err, -E2BIG, "module %s: larger than %u bytes", path,
                         INITRAMFS_MODULE_MAX_BYTES);
        goto out;
      }
      char *nb = realloc(buf, cap);
      if (!nb) {
        r = au_error_set(err, -ENOMEM, "out of memory");
        goto out;
      }
      buf = nb;
    }
    la_ssize_t n = archive_read_data(a, buf + size, cap - size);
    if (n < 0) {
      r = au_error_set(err, -EIO, "module %s: %s", path, archive_error_string(a));
      goto out;
    }
    if (n == 0) break;
    size += (size_t)n;
  }
  *ret = TAKE_PTR(buf);
  *ret_size = size;
out:
  archive_read_free(a);
  return r;
}

static int add_module(cpio_writer *w, const initramfs_mod_path *m, au_error *err) {
  char dest[512];
  snprintf(dest, sizeof(dest), "lib/modules/%s.ko", m->name);
  if (has_suffix(m->path, ".ko")) return cpio_add_file(w, dest, 0644, m->path, err);
  _cleanup_free_ void *data = NULL;
  size_t size = 0;
  int r = read_decompressed(m->path, &data, &size, err);
  if (r < 0) return r;
  return cpio_add_data(w, dest, 0644, data, size, err);
}

static int write_image(const initramfs_spec *spec, const initramfs_mod_path *mods, size_t n_mods,
                       int fd, au_error *err) {
  _cleanup_cpio_writer_ cpio_writer *w = NULL;
  int r = cpio_writer_open_fd(fd, &w, err);
  if (r < 0) return r;
  static const char *const dirs[] = {"dev", "proc", "sys", "tmp", "run", "lib"};
  for (size_t i = 0; i < ARRAY_SIZE(dirs); i++)
    if ((r = cpio_add_dir(w, dirs[i], 0755, err)) < 0) return r;
  /* The kernel opens /dev/console for init's stdio before any devtmpfs is
   * mounted; without the node init runs with no output. */
  if ((r = cpio_add_chardev(w, "dev/console", 0600, 5, 1, err)) < 0) return r;
  if ((r = cpio_add_file(w, "init", 0755, spec->init, err)) < 0) return r;

  if (n_mods > 0) {
    _cleanup_free_ char *order = NULL;
    size_t order_len = 0;
    _cleanup_fclose_ FILE *mem = open_memstream(&order, &order_len);
    if (!mem) return au_error_errno(err, -errno, "open_memstream");
    for (size_t i = 0; i < n_mods; i++) {
      if ((r = add_module(w, &mods[i], err)) < 0) return r;
      fprintf(mem, "%s.ko%s%s\n", mods[i].name, mods[i].params ? " " : "",
              mods[i].params ? mods[i].params : "");
    }
    if (fclose(mem) != 0) {
      mem = NULL;
      return au_error_set(err, -ENOMEM, "out of memory");
    }
    mem = NULL;
    r = cpio_add_data(w, "lib/modules/load.order", 0644, order, order_len, err);
    if (r < 0) return r;
  }
  for (size_t i = 0; i < spec->n_files; i++) {
    r = cpio_add_file(w, spec->files[i].dest, spec->files[i].mode, spec->files[i].src, err);
    if (r < 0) return r;
  }
  cpio_writer *taken = TAKE_PTR(w);
  return cpio_writer_close(taken, err);
}

int initramfs_build(const initramfs_spec *spec, const char *out_path, au_error *err) {
  if (!spec || !spec->init || !out_path)
    return au_error_set(err, -EINVAL, "initramfs: init and output are required");
  initramfs_mod_path *mods = NULL;
  size_t n_mods = 0;
  int r;
  if (spec->modules_dir) {
    const initramfs_module *want = spec->modules ? spec->modules : initramfs_vm_modules;
    size_t n_want = spec->modules ? spec->n_modules : initramfs_vm_modules_count;
    r = initramfs_resolve_modules(spec->modules_dir, want, n_want, &mods, &n_mods, err);
    if (r < 0) return r;
  }
  size_t len = strlen(out_path);
  _cleanup_free_ char *tmp = malloc(len + 16);
  if (!tmp) {
    initramfs_mod_paths_free(mods, n_mods);
    return au_error_set(err, -ENOMEM, "out of memory");
  }
  snprintf(tmp, len + 16, "%s.tmpXXXXXX", out_path);
  _cleanup_close_ int fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0) {
    initramfs_mod_paths_free(mods, n_mods);
    return au_error_errno(err, -errno, "initramfs: create %s", tmp);
  }
  r = write_image(spec, mods, n_mods, fd, err);
  initramfs_mod_paths_free(mods, n_mods);
  if (r == 0 && fchmod(fd, 0644) < 0) r = au_error_errno(err, -errno, "initramfs: chmod");
  if (r == 0 && rename(tmp, out_path) < 0)
    r = au_error_errno(err, -errno, "initramfs: rename to %s", out_path);
  if (r < 0) {
    unlink(tmp);
    au_error_prefix(err, "initramfs %s", out_path);
    return r;
  }
  return 0;
}
