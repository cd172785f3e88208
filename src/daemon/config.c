#include "config.h"

#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cell/idpool.h"
#include "cleanup.h"

void config_init_defaults(auraed_config *c) {
  memset(c, 0, sizeof(*c));
  c->socket_path = strdup("/run/aurae/aurae.sock");
  c->socket_mode = 0600;
  c->runtime_dir = strdup("/run/aurae");
  c->library_dir = strdup("/var/lib/aurae");
  c->ca_crt = strdup("/etc/aurae/pki/ca.crt");
  c->server_crt = strdup("/etc/aurae/pki/server.crt");
  c->server_key = strdup("/etc/aurae/pki/server.key");
  c->max_message_bytes = 4 * 1024 * 1024;
  c->max_concurrent_streams = 100;
  c->handshake_timeout_ms = 5000;
  c->idle_timeout_ms = 300000;
  c->shutdown_grace_ms = 2000;
  c->cell_spare_init = true;
  c->cell_scratch_mb = 64;
  c->cell_scratch_inodes = 16384;
  c->cell_id_pool_start = CELL_IDPOOL_DEFAULT_START;
  c->cell_id_pool_cells = CELL_IDPOOL_DEFAULT_CELLS;
}

int config_set_string(char **field, const char *value) {
  char *copy = strdup(value);
  if (!copy) return -ENOMEM;
  free(*field);
  *field = copy;
  return 0;
}

int config_add_listen(auraed_config *c, const char *address, au_error *err) {
  if (!address[0]) return au_error_set(err, -EINVAL, "listen: empty address");
  if (strncmp(address, "unix:", 5) == 0)
    return au_error_set(
        err, -EINVAL, "listen %s: TCP addresses only; the Unix socket is set with socket", address);
  if (c->n_listen >= AURAED_MAX_LISTEN)
    return au_error_set(err, -E2BIG, "listen: at most %d addresses", AURAED_MAX_LISTEN);
  c->listen[c->n_listen] = strdup(address);
  if (!c->listen[c->n_listen]) return au_error_set(err, -ENOMEM, "out of memory");
  c->n_listen++;
  return 0;
}

int config_parse_size(const char *text, size_t *ret) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(text, &end, 10);
  if (errno || end == text || text[0] == '-') return -EINVAL;
  unsigned long long mult = 1;
  switch (*end) {
  case '\0': break;
  case 'K':
  case 'k':
    mult = 1ULL << 10;
    end++;
    break;
  case 'M':
  case 'm':
    mult = 1ULL << 20;
    end++;
    break;
  case 'G':
  case 'g':
    mult = 1ULL << 30;
    end++;
    break;
  default: return -EINVAL;
  }
  if (*end == 'i') end++;
  if (*end == 'B') end++;
  if (*end) return -EINVAL;
  if (v > SIZE_MAX / mult) return -ERANGE;
  *ret = (size_t)(v * mult);
  return 0;
}

/* ------------------------------------------------------------ JSON reader */

static int want_string(json_t *v, const char *key, char **field, au_error *err) {
  if (!json_is_string(v)) return au_error_set(err, -EINVAL, "%s: must be a string", key);
  return config_set_string(field, json_string_value(v));
}

static int want_int(json_t *v, const char *key, int min, int max, int *field, au_error *err) {
  if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
    return au_error_set(err, -EINVAL, "%s: must be an integer in [%d, %d]", key, min, max);
  *field = (int)json_integer_value(v);
  return 0;
}

static int parse_identities(json_t *arr, const char *key, char **out, size_t *n, au_error *err) {
  if (!json_is_array(arr))
    return au_error_set(err, -EINVAL, "authorization.%s: must be an array of identities", key);
  if (json_array_size(arr) > AURAED_MAX_IDENTITIES)
    return au_error_set(err, -E2BIG, "authorization.%s: at most %d identities", key,
                        AURAED_MAX_IDENTITIES);
  for (size_t i = 0; i < *n; i++)
    free(out[i]);
  *n = 0;
  size_t i;
  json_t *v;
  json_array_foreach(arr, i, v) {
    if (!json_is_string(v) || !json_string_value(v)[0])
      return au_error_set(err, -EINVAL, "authorization.%s[%zu]: must be a non-empty string", key,
                          i);
    out[*n] = strdup(json_string_value(v));
    if (!out[*n]) return au_error_set(err, -ENOMEM, "out of memory");
    (*n)++;
  }
  return 0;
}

static int parse_authz(auraed_config *c, json_t *obj, au_error *err) {
  if (!json_is_object(obj)) return au_error_set(err, -EINVAL, "authorization: must be an object");
  const char *key;
  json_t *v;
  json_object_foreach(obj, key, v) {
    int r;
    if (strcmp(key, "admin") == 0)
      r = parse_identities(v, key, c->authz.admin, &c->authz.n_admin, err);
    else if (strcmp(key, "read_only") == 0)
      r = parse_identities(v, key, c->authz.read_only, &c->authz.n_read_only, err);
    else
      r = au_error_set(err, -EINVAL, "authorization.%s: unknown role (admin, read_only)", key);
    if (r < 0) return r;
  }
  c->authz.configured = true;
  return 0;
}

static int parse_limits(auraed_config *c, json_t *obj, au_error *err) {
  if (!json_is_object(obj)) return au_error_set(err, -EINVAL, "limits: must be an object");
  const char *key;
  json_t *v;
  json_object_foreach(obj, key, v) {
    int r, tmp;
    if (strcmp(key, "max_message_bytes") == 0) {
      r = want_int(v, "limits.max_message_bytes", 1024, 64 << 20, &tmp, err);
      if (r == 0) c->max_message_bytes = (size_t)tmp;
    } else if (strcmp(key, "max_concurrent_streams") == 0)
      r = want_int(v, "limits.max_concurrent_streams", 1, 100000, &c->max_concurrent_streams, err);
    else if (strcmp(key, "handshake_timeout_ms") == 0)
      r = want_int(v, "limits.handshake_timeout_ms", 100, 600000, &c->handshake_timeout_ms, err);
    else if (strcmp(key, "idle_timeout_ms") == 0)
      r = want_int(v, "limits.idle_timeout_ms", 1000, 86400000, &c->idle_timeout_ms, err);
    else if (strcmp(key, "shutdown_grace_ms") == 0)
      r = want_int(v, "limits.shutdown_grace_ms", 0, 60000, &c->shutdown_grace_ms, err);
    else
      r = au_error_set(err, -EINVAL, "limits.%s: unknown key", key);
    if (r < 0) return r;
  }
  return 0;
}

/* Each sub-key is range-checked on its own, then the pair as the pool
 * would be (cell_idpool_new), so that the config is refused at start and
 * not on the first RunCell. A sub-key left out keeps its default. */
static int parse_id_pool(auraed_config *c, json_t *obj, au_error *err) {
  if (!json_is_object(obj))
    return au_error_set(err, -EINVAL,
                        "cell_id_pool: must be an object like {\"start\": %u, \"cells\": %u}",
                        CELL_IDPOOL_DEFAULT_START, CELL_IDPOOL_DEFAULT_CELLS);
  uint32_t start = c->cell_id_pool_start, cells = c->cell_id_pool_cells;
  const char *key;
  json_t *v;
  json_object_foreach(obj, key, v) {
    json_int_t max, min;
    uint32_t *field;
    if (strcmp(key, "start") == 0) {
      field = &start;
      min = CELL_IDS_PER_CELL;
      /* The first id of the last whole range at or below the last id. */
      max = ((CELL_IDPOOL_LAST_ID + 1ULL) / CELL_IDS_PER_CELL - 1) * CELL_IDS_PER_CELL;
    } else if (strcmp(key, "cells") == 0) {
      field = &cells;
      min = 1;
      max = CELL_IDPOOL_MAX_CELLS;
    } else {
      return au_error_set(err, -EINVAL, "cell_id_pool.%s: unknown key (start, cells)", key);
    }
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
      return au_error_set(err, -EINVAL, "cell_id_pool.%s: must be an integer in [%lld, %lld]", key,
                          (long long)min, (long long)max);
    *field = (uint32_t)json_integer_value(v);
  }
  cell_idpool *pool = NULL;
  int r = cell_idpool_new(start, cells, &pool, err);
  cell_idpool_free(pool);
  if (r < 0) return r;
  c->cell_id_pool_start = start;
  c->cell_id_pool_cells = cells;
  return 0;
}

static int parse_key(auraed_config *c, const char *key, json_t *v, au_error *err) {
  if (strcmp(key, "socket") == 0) return want_string(v, key, &c->socket_path, err);
  if (strcmp(key, "socket_group") == 0) return want_string(v, key, &c->socket_group, err);
  if (strcmp(key, "socket_mode") == 0) {
    char *end;
    if (!json_is_string(v))
      return au_error_set(err, -EINVAL, "socket_mode: must be an octal string like \"0660\"");
    unsigned long mode = strtoul(json_string_value(v), &end, 8);
    if (*end || (mode & ~0660UL) || !(mode & 0600))
      return au_error_set(
          err, -EINVAL,
          "socket_mode: \"%s\" is not allowed (owner rw, optional group rw, never others)",
          json_string_value(v));
    c->socket_mode = (unsigned)mode;
    return 0;
  }
  if (strcmp(key, "listen") == 0) {
    if (!json_is_array(v)) return au_error_set(err, -EINVAL, "listen: must be an array");
    size_t i;
    json_t *a;
    json_array_foreach(v, i, a) {
      if (!json_is_string(a)) return au_error_set(err, -EINVAL, "listen[%zu]: must be a string", i);
      int r = config_add_listen(c, json_string_value(a), err);
      if (r < 0) return r;
    }
    return 0;
  }
  if (strcmp(key, "vm_image_dirs") == 0) {
    if (!json_is_array(v) || json_array_size(v) > AURAED_MAX_LISTEN)
      return au_error_set(err, -EINVAL, "vm_image_dirs: must be an array of at most %d paths",
                          AURAED_MAX_LISTEN);
    size_t i;
    json_t *a;
    json_array_foreach(v, i, a) {
      if (!json_is_string(a) || json_string_value(a)[0] != '/')
        return au_error_set(err, -EINVAL, "vm_image_dirs[%zu]: must be an absolute path", i);
      c->vm_image_dirs[c->n_vm_image_dirs] = strdup(json_string_value(a));
      if (!c->vm_image_dirs[c->n_vm_image_dirs]) return au_error_set(err, -ENOMEM, "out of memory");
      c->n_vm_image_dirs++;
    }
    return 0;
  }
  if (strcmp(key, "runtime_dir") == 0) return want_string(v, key, &c->runtime_dir, err);
  if (strcmp(key, "library_dir") == 0) return want_string(v, key, &c->library_dir, err);
  if (strcmp(key, "ca_crt") == 0) return want_string(v, key, &c->ca_crt, err);
  if (strcmp(key, "server_crt") == 0) return want_string(v, key, &c->server_crt, err);
  if (strcmp(key, "server_key") == 0) return want_string(v, key, &c->server_key, err);
  if (strcmp(key, "authorization") == 0) return parse_authz(c, v, err);
  if (strcmp(key, "limits") == 0) return parse_limits(c, v, err);
  if (strcmp(key, "cell_scratch_mb") == 0 || strcmp(key, "cell_scratch_inodes") == 0) {
    bool mb = key[13] == 'm';
    json_int_t lo = mb ? 1 : 64, hi = mb ? 65536 : 16777216;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
      return au_error_set(err, -EINVAL, "%s: must be an integer in [%lld, %lld]", key,
                          (long long)lo, (long long)hi);
    *(mb ? &c->cell_scratch_mb : &c->cell_scratch_inodes) = (uint32_t)json_integer_value(v);
    return 0;
  }
  if (strcmp(key, "cell_spare_init") == 0) {
    if (!json_is_boolean(v))
      return au_error_set(err, -EINVAL, "cell_spare_init: must be true or false");
    c->cell_spare_init = json_is_true(v);
    return 0;
  }
  if (strcmp(key, "cell_id_pool") == 0) return parse_id_pool(c, v, err);
  if (strcmp(key, "log_level") == 0) {
    if (!json_is_string(v)) return au_error_set(err, -EINVAL, "log_level: must be a string");
    const char *s = json_string_value(v);
    if (strcmp(s, "debug") == 0)
      c->verbose = true;
    else if (strcmp(s, "info") != 0)
      return au_error_set(err, -EINVAL, "log_level: \"%s\" (info or debug)", s);
    return 0;
  }
  return au_error_set(err, -EINVAL, "%s: unknown key", key);
}

int config_parse(auraed_config *c, const char *text, const char *source, au_error *err) {
  json_error_t jerr;
  json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
  if (!root)
    return au_error_set(err, -EINVAL, "%s:%d:%d: %s", source, jerr.line, jerr.column, jerr.text);
  int r = 0;
  if (!json_is_object(root)) {
    r = au_error_set(err, -EINVAL, "%s: the top level must be an object", source);
  } else {
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
      if ((r = parse_key(c, key, v, err)) < 0) {
        au_error_prefix(err, "%s", source);
        break;
      }
    }
  }
  json_decref(root);
  return r;
}

int config_load(auraed_config *c, const char *path, bool optional, au_error *err) {
  _cleanup_fclose_ FILE *f = fopen(path, "re");
  if (!f) {
    if (errno == ENOENT && optional) return 0;
    return au_error_errno(err, -errno, "config %s", path);
  }
  static const size_t max = 256 * 1024;
  _cleanup_free_ char *buf = malloc(max + 2);
  if (!buf) return au_error_set(err, -ENOMEM, "out of memory");
  size_t n = fread(buf, 1, max + 1, f);
  if (ferror(f)) return au_error_errno(err, -EIO, "config %s: read", path);
  if (n > max) return au_error_set(err, -EFBIG, "config %s: larger than 256 KiB", path);
  buf[n] = '\0';
  return config_parse(c, buf, path, err);
}

void config_free(auraed_config *c) {
  free(c->socket_path);
  free(c->socket_group);
  for (size_t i = 0; i < c->n_listen; i++)
    free(c->listen[i]);
  free(c->runtime_dir);
  free(c->library_dir);
  free(c->ca_crt);
  free(c->server_crt);
  free(c->server_key);
  free(c->log_file);
  for (size_t i = 0; i < c->n_vm_image_dirs; i++)
    free(c->vm_image_dirs[i]);
  for (size_t i = 0; i < c->authz.n_admin; i++)
    free(c->authz.admin[i]);
  for (size_t i = 0; i < c->authz.n_read_only; i++)
    free(c->authz.read_only[i]);
  memset(c, 0, sizeof(*c));
}
