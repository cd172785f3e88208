#include "error.h"

#include <stdio.h>
#include <string.h>

static void vformat(au_error *err, const char *fmt, va_list ap) {
  vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
}

int au_error_set(au_error *err, int code, const char *fmt, ...) {
  if (!err) return code;
  va_list ap;
  va_start(ap, fmt);
  vformat(err, fmt, ap);
  va_end(ap);
  err->code = code;
  return code;
}

int au_error_errno(au_error *err, int code, const char *fmt, ...) {
  if (!err) return code;
  va_list ap;
  va_start(ap, fmt);
  vformat(err, fmt, ap);
  va_end(ap);
  size_t n = strlen(err->msg);
  snprintf(err->msg + n, sizeof(err->msg) - n, ": %s", strerror(-code));
  err->code = code;
  return code;
}

int au_error_prefix(au_error *err, const char *fmt, ...) {
  if (!err) return 0;
  char prefix[AU_ERROR_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof(prefix), fmt, ap);
  va_end(ap);
  /* Build "prefix: old" in place, truncating the tail if it is too long. */
  char old[AU_ERROR_MSG_MAX];
  memcpy(old, err->msg, sizeof(old));
  size_t n = strnlen(prefix, sizeof(err->msg) - 1);
  memcpy(err->msg, prefix, n);
  if (n + 2 < sizeof(err->msg)) {
    memcpy(err->msg + n, ": ", 2);
    n += 2;
  }
  size_t rest = strnlen(old, sizeof(old));
  if (rest > sizeof(err->msg) - 1 - n) rest = sizeof(err->msg) - 1 - n;
  memcpy(err->msg + n, old, rest);
  err->msg[n + rest] = '\0';
  return err->code;
}

void au_error_clear(au_error *err) {
  if (!err) return;
  err->code = 0;
  err->msg[0] = '\0';
}
