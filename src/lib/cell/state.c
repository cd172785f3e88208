/* Persisted state, so a restarted auraed can re-adopt: one JSON file per
 * cell (cell.json) and per executable (_exe/NAME.json), written atomically
 * (temp file + rename). Exit statuses are not persisted: the cell init
 * keeps them. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cell/internal.h"
#include "cleanup.h"

static int write_json(const char *path, json_t *j, au_error *err) {
  char tmp[CELL_PATH_MAX + 8];
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  if (json_dump_file(j, tmp, JSON_COMPACT) < 0) {
    int e = errno ? -errno : -EIO;
    return au_error_errno(err, e, "write %s", tmp);
  }
  if (rename(tmp, path) < 0) {
    int e = -errno;
    unlink(tmp);
    return au_error_errno(err, e, "rename %s", tmp);
  }
  return 0;
}

static json_t *res_to_json(const cell_resources *r) {
  return json_pack("{s:I,s:I,s:I,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "cpu_weight",
                   (json_int_t)r->cpu_weight, "cpu_max_quota_us", (json_int_t)r->cpu_max_quota_us,
                   "cpu_period_us", (json_int_t)r->cpu_period_us, "cpuset_cpus", r->cpuset_cpus,
                   "cpuset_mems", r->cpuset_mems, "memory_min", (json_int_t)r->memory_min,
                   "memory_low", (json_int_t)r->memory_low, "memory_high",
                   (json_int_t)r->memory_high, "memory_max", (json_int_t)r->memory_max,
                   "memory_swap_max", (json_int_t)r->memory_swap_max, "pids_max",
                   (json_int_t)r->pids_max, "io_weight", (json_int_t)r->io_weight);
}

static void res_from_json(json_t *j, cell_resources *r) {
  if (!j) return;
  r->cpu_weight = (uint64_t)json_integer_value(json_object_get(j, "cpu_weight"));
  r->cpu_max_quota_us = json_integer_value(json_object_get(j, "cpu_max_quota_us"));
  r->cpu_period_us = (uint64_t)json_integer_value(json_object_get(j, "cpu_period_us"));
  const char *s = json_string_value(json_object_get(j, "cpuset_cpus"));
  snprintf(r->cpuset_cpus, sizeof(r->cpuset_cpus), "%s", s ? s : "");
  s = json_string_value(json_object_get(j, "cpuset_mems"));
  snprintf(r->cpuset_mems, sizeof(r->cpuset_mems), "%s", s ? s : "");
  r->memory_min = json_integer_value(json_object_get(j, "memory_min"));
  r->memory_low = json_integer_value(json_object_get(j, "memory_low"));
  r->memory_high = json_integer_value(json_object_get(j, "memory_high"));
  r->memory_max = json_integer_value(json_object_get(j, "memory_max"));
  r->memory_swap_max = json_integer_value(json_object_get(j, "memory_swap_max"));
  r->pids_max = json_integer_value(json_object_get(j, "pids_max"));
  r->io_weight = (uint64_t)json_integer_value(json_object_get(j, "io_weight"));
}

int state_write_cell(const cell *c, au_error *err) {
  json_t *binds = json_array();
  for (size_t i = 0; binds && i < c->nbinds; i++)
    json_array_append_new(binds, json_pack("{s:s,s:s,s:b}", "source", c->binds[i].source, "target",
                                           c->binds[i].target, "read_only", c->binds[i].read_only));
  json_t *j =
      json_pack("{s:s,s:s,s:I,s:I,s:I,s:o,s:I,s:b,s:o}", "name", c->name, "cgroup", c->cgdir,
                "init_pid", (json_int_t)c->init_pid, "share", (json_int_t)c->share, "created_ns",
                (json_int_t)c->created_ns, "resources", res_to_json(&c->res), "id_base",
                (json_int_t)c->id_base, "owns_ids", c->owns_ids, "mounts", binds);
  if (!j) return au_error_set(err, -ENOMEM, "encode cell state");
  char path[CELL_PATH_MAX + 16];
  snprintf(path, sizeof(path), "%s/cell.json", c->statedir);
  int r = write_json(path, j, err);
  json_decref(j);
  return r;
}

int state_read_cell(const char *dir, cell *c, au_error *err) {
  char path[CELL_PATH_MAX + 16];
  snprintf(path, sizeof(path), "%s/cell.json", dir);
  json_error_t je;
  json_t *j = json_load_file(path, 0, &je);
  if (!j) return au_error_set(err, -EBADMSG, "read %s: %s", path, je.text);
  const char *name = json_string_value(json_object_get(j, "name"));
  const char *cg = json_string_value(json_object_get(j, "cgroup"));
  int r = 0;
  if (!name || !cg || name_validate_path("cell name", name, err) < 0) {
    r = au_error_set(err, -EBADMSG, "%s: missing or bad name/cgroup", path);
  } else {
    snprintf(c->name, sizeof(c->name), "%s", name);
    snprintf(c->cgdir, sizeof(c->cgdir), "%s", cg);
    snprintf(c->statedir, sizeof(c->statedir), "%s", dir);
    c->init_pid = (pid_t)json_integer_value(json_object_get(j, "init_pid"));
    c->share = (unsigned)json_integer_value(json_object_get(j, "share"));
    c->created_ns = json_integer_value(json_object_get(j, "created_ns"));
    res_from_json(json_object_get(j, "resources"), &c->res);
    json_int_t ids = json_integer_value(json_object_get(j, "id_base"));
    c->id_base = ids > 0 && ids <= UINT32_MAX ? (uint32_t)ids : 0;
    c->owns_ids = c->id_base && json_is_true(json_object_get(j, "owns_ids"));
    json_t *binds = json_object_get(j, "mounts");
    size_t nb = json_array_size(binds);
    if (nb > CELL_BINDS_MAX) nb = CELL_BINDS_MAX;
    c->binds = nb ? calloc(nb, sizeof(*c->binds)) : NULL;
    for (size_t i = 0; c->binds && i < nb; i++) {
      json_t *b = json_array_get(binds, i);
      const char *src = json_string_value(json_object_get(b, "source"));
      const char *dst = json_string_value(json_object_get(b, "target"));
      char *s2 = src && dst ? strdup(src) : NULL, *d2 = s2 ? strdup(dst) : NULL;
      if (!d2) { /* malformed, or out of memory: Inspect no longer shows it */
        free(s2);
        continue;
      }
      c->binds[c->nbinds++] = (cell_bind){
          .source = s2, .target = d2, .read_only = json_is_true(json_object_get(b, "read_only"))};
    }
  }
  json_decref(j);
  return r;
}

int state_write_exe(const cell *c, const exe *e, au_error *err) {
  json_t *args = json_array();
  for (char **a = e->argv; a && *a; a++)
    json_array_append_new(args, json_string(*a));
  json_t *j = json_pack("{s:s,s:o,s:I,s:I,s:I,s:I}", "name", e->name, "args", args, "host_pid",
                        (json_int_t)e->host_pid, "cell_pid", (json_int_t)e->cell_pid, "started_ns",
                        (json_int_t)e->started_ns, "limit", (json_int_t)e->limit);
  if (!j) return au_error_set(err, -ENOMEM, "encode executable state");
  char dir[CELL_PATH_MAX + 8], path[CELL_PATH_MAX + 96];
  snprintf(dir, sizeof(dir), "%s/_exe", c->statedir);
  if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
    json_decref(j);
    return au_error_errno(err, -errno, "mkdir %s", dir);
  }
  snprintf(path, sizeof(path), "%s/%s.json", dir, e->name);
  int r = write_json(path, j, err);
  json_decref(j);
  return r;
}

int state_read_exe(const char *path, exe *e, au_error *err) {
  json_error_t je;
  json_t *j = json_load_file(path, 0, &je);
  if (!j) return au_error_set(err, -EBADMSG, "read %s: %s", path, je.text);
  const char *name = json_string_value(json_object_get(j, "name"));
  json_t *args = json_object_get(j, "args");
  int r = 0;
  if (!name || name_validate_label("executable name", name, err) < 0 || !json_is_array(args)) {
    r = au_error_set(err, -EBADMSG, "%s: bad executable state", path);
    goto out;
  }
  snprintf(e->name, sizeof(e->name), "%s", name);
  size_t n = json_array_size(args);
  e->argv = calloc(n + 1, sizeof(char *));
  if (!e->argv) {
    r = -ENOMEM;
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    const char *a = json_string_value(json_array_get(args, i));
    e->argv[i] = strdup(a ? a : "");
  }
  e->host_pid = (pid_t)json_integer_value(json_object_get(j, "host_pid"));
  e->cell_pid = (pid_t)json_integer_value(json_object_get(j, "cell_pid"));
  e->started_ns = json_integer_value(json_object_get(j, "started_ns"));
  e->limit = (size_t)json_integer_value(json_object_get(j, "limit"));
out:
  json_decref(j);
  return r;
}

void state_remove_exe(const cell *c, const char *name) {
  char path[CELL_PATH_MAX + 96];
  snprintf(path, sizeof(path), "%s/_exe/%s.json", c->statedir, name);
  unlink(path);
}
