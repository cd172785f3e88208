/* A small error object that crosses module boundaries: a negative errno
 * plus a message chain built from the innermost cause outwards, e.g.
 * "start cell web: mount proc: Permission denied". */
#pragma once

#include <stdarg.h>

#define AU_ERROR_MSG_MAX 512

typedef struct au_error {
  int code;                   /* negative errno, 0 when no error */
  char msg[AU_ERROR_MSG_MAX]; /* human readable chain */
} au_error;

/* Set err (may be NULL) to code and a formatted message; returns code so a
 * caller can write `return au_error_set(err, -EINVAL, "...")`. */
int au_error_set(au_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Like au_error_set, appending ": strerror(-code)". */
int au_error_errno(au_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix the existing message with a context ("start cell web: ..."). */
int au_error_prefix(au_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void au_error_clear(au_error *err);
