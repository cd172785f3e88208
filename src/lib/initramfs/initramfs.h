/* Builds guest initramfs images: an init program, the kernel modules a
 * microVM needs (with their dependencies, in load order from modules.dep),
 * and extra files. Used by RunVirtualMachine's tooling and by Spawn. */
#pragma once

#include <stddef.h>

#include "error.h"

/* One module to load in the guest, with its parameters ("napi_tx=0"). */
typedef struct initramfs_module {
  const char *name;   /* "virtio_net" (or "virtio-net") */
  const char *params; /* may be NULL */
} initramfs_module;

/* The set a microVM with virtio-mmio NICs and disks and an ACPI power
 * button needs (DESIGN.md). virtio_net gets napi_tx=0: without it about 7%
 * of guest power-offs hang in virtnet_poll on 6.1.x. */
extern const initramfs_module initramfs_vm_modules[];
extern const size_t initramfs_vm_modules_count;

/* A resolved module: where it lies on the host and how to load it. */
typedef struct initramfs_mod_path {
  char *name;   /* module name as the kernel knows it ("virtio_net") */
  char *path;   /* absolute host path of the .ko (maybe compressed) */
  char *params; /* NULL or parameters */
} initramfs_mod_path;

/* Resolves modules (and, recursively, their dependencies from modules.dep)
 * under modules_dir (a lib/modules/<version> directory) into load order:
 * every dependency before its users, each module once, the requested order
 * kept among independent modules. Built-in modules are skipped. Returns the
 * count in *ret_count; free with initramfs_mod_paths_free. */
int initramfs_resolve_modules(const char *modules_dir, const initramfs_module *mods, size_t n_mods,
                              initramfs_mod_path **ret, size_t *ret_count, au_error *err);
void initramfs_mod_paths_free(initramfs_mod_path *paths, size_t count);

typedef struct initramfs_file {
  const char *src;  /* host file */
  const char *dest; /* path in the image */
  unsigned mode;    /* 0: the source's permission bits */
} initramfs_file;

typedef struct initramfs_spec {
  const char *init;                /* host file that becomes /init (required) */
  const char *modules_dir;         /* NULL: no modules */
  const initramfs_module *modules; /* NULL with modules_dir: initramfs_vm_modules */
  size_t n_modules;
  const initramfs_file *files;
  size_t n_files;
} initramfs_spec;

/* Writes the image to out_path atomically (a temporary file renamed into
 * place). Layout: /init, /dev/console, /proc, /sys, /dev, /tmp, /run, and
 * for modules /lib/modules/<name>.ko (decompressed) plus
 * /lib/modules/load.order: one line per module in load order,
 * "<name>.ko[ <params>]", for the guest's init to insmod. */
int initramfs_build(const initramfs_spec *spec, const char *out_path, au_error *err);
