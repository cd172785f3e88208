#include "path.h"

#include <string.h>

bool path_is_plain(const char *p) {
  if (p[0] != '/') return false;
  if (p[1] == '\0') return true;
  for (const char *s = p + 1;;) {
    size_t l = strcspn(s, "/");
    if (l == 0 || (l == 1 && s[0] == '.') || (l == 2 && s[0] == '.' && s[1] == '.')) return false;
    s += l;
    if (!*s) return true;
    s++;
  }
}

bool path_is_below(const char *path, const char *dir) {
  size_t n = strlen(dir);
  if (n == 1 && dir[0] == '/') return path[0] == '/' && path[1] != '\0';
  return strncmp(path, dir, n) == 0 && path[n] == '/';
}
