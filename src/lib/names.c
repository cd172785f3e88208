#include "names.h"

#include <errno.h>
#include <string.h>

static bool label_char_ok(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

static int check_label(const char *field, const char *label, size_t len, au_error *err) {
  if (len == 0) return au_error_set(err, -EINVAL, "%s: empty name part", field);
  if (len > AU_NAME_LABEL_MAX)
    return au_error_set(err, -EINVAL, "%s: part \"%.*s...\" is %zu characters, at most %d allowed",
                        field, 16, label, len, AU_NAME_LABEL_MAX);
  for (size_t i = 0; i < len; i++) {
    if (!label_char_ok(label[i]))
      return au_error_set(
          err, -EINVAL, "%s: part \"%.*s\" has character %#x at %zu; allowed are a-z, 0-9 and '-'",
          field, (int)len, label, (unsigned char)label[i], i);
  }
  if (label[0] == '-' || label[len - 1] == '-')
    return au_error_set(err, -EINVAL, "%s: part \"%.*s\" must not start or end with '-'", field,
                        (int)len, label);
  return 0;
}

int name_validate_label(const char *field, const char *label, au_error *err) {
  if (!label) return au_error_set(err, -EINVAL, "%s: missing", field);
  return check_label(field, label, strlen(label), err);
}

int name_validate_path(const char *field, const char *path, au_error *err) {
  if (!path || !*path) return au_error_set(err, -EINVAL, "%s: missing", field);
  size_t total = strlen(path);
  if (total > AU_NAME_MAX)
    return au_error_set(err, -EINVAL, "%s: %zu characters, at most %d allowed", field, total,
                        AU_NAME_MAX);
  int depth = 0;
  const char *p = path;
  for (;;) {
    const char *slash = strchr(p, '/');
    size_t len = slash ? (size_t)(slash - p) : strlen(p);
    int r = check_label(field, p, len, err);
    if (r < 0) return r;
    if (++depth > AU_NAME_MAX_DEPTH)
      return au_error_set(err, -EINVAL, "%s: deeper than %d levels", field, AU_NAME_MAX_DEPTH);
    if (!slash) break;
    p = slash + 1;
  }
  return 0;
}

bool name_parent(const char *path, char *buf, size_t size) {
  const char *slash = strrchr(path, '/');
  if (!slash || (size_t)(slash - path) >= size) return false;
  memcpy(buf, path, (size_t)(slash - path));
  buf[slash - path] = '\0';
  return true;
}

const char *name_leaf(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}
