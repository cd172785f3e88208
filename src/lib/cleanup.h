/* Scope-bound cleanup helpers (the systemd/crun idiom). Every destructor
 * accepts NULL / -1, so a variable can be declared with its cleanup and
 * filled later. */
#pragma once

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static inline void cleanup_freep(void *p) { free(*(void **)p); }
static inline void cleanup_closep(int *fd) {
  if (*fd >= 0) {
    int saved = errno;
    close(*fd);
    errno = saved;
  }
}
static inline void cleanup_fclosep(FILE **f) {
  if (*f) fclose(*f);
}
static inline void cleanup_strvp(char ***v) {
  if (!*v) return;
  for (char **p = *v; *p; p++)
    free(*p);
  free(*v);
}

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(cleanup_freep)
#define _cleanup_close_ _cleanup_(cleanup_closep)
#define _cleanup_fclose_ _cleanup_(cleanup_fclosep)
#define _cleanup_strv_ _cleanup_(cleanup_strvp)

/* Hand ownership out of a cleanup-managed variable. */
#define TAKE_PTR(p)                                                                                \
  ({                                                                                               \
    __typeof__(p) _taken = (p);                                                                    \
    (p) = NULL;                                                                                    \
    _taken;                                                                                        \
  })
#define TAKE_FD(fd)                                                                                \
  ({                                                                                               \
    int _taken = (fd);                                                                             \
    (fd) = -1;                                                                                     \
    _taken;                                                                                        \
  })

/* Closes *fd when it is open and marks it closed. */
static inline void close_fd(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
