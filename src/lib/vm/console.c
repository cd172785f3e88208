#include "vm/console.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct vm_console {
  pthread_mutex_t lock;
  pthread_cond_t cond; /* signalled on write and close */
  char *buf;
  size_t cap;
  uint64_t end; /* bytes ever written; buf[i % cap] holds offset i */
  bool closed;
};

vm_console *vm_console_new(size_t capacity) {
  if (capacity < 4096) capacity = 4096;
  vm_console *c = calloc(1, sizeof(*c));
  if (!c) return NULL;
  c->buf = malloc(capacity);
  if (!c->buf) {
    free(c);
    return NULL;
  }
  c->cap = capacity;
  pthread_mutex_init(&c->lock, NULL);
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&c->cond, &attr);
  pthread_condattr_destroy(&attr);
  return c;
}

void vm_console_free(vm_console *c) {
  if (!c) return;
  pthread_mutex_destroy(&c->lock);
  pthread_cond_destroy(&c->cond);
  free(c->buf);
  free(c);
}

void vm_console_write(vm_console *c, const void *data, size_t size) {
  const char *p = data;
  pthread_mutex_lock(&c->lock);
  if (size > c->cap) { /* only the newest cap bytes can be kept */
    c->end += size - c->cap;
    p += size - c->cap;
    size = c->cap;
  }
  size_t at = (size_t)(c->end % c->cap);
  size_t first = size < c->cap - at ? size : c->cap - at;
  memcpy(c->buf + at, p, first);
  memcpy(c->buf, p + first, size - first);
  c->end += size;
  pthread_cond_broadcast(&c->cond);
  pthread_mutex_unlock(&c->lock);
}

void vm_console_close(vm_console *c) {
  pthread_mutex_lock(&c->lock);
  c->closed = true;
  pthread_cond_broadcast(&c->cond);
  pthread_mutex_unlock(&c->lock);
}

void vm_console_reopen(vm_console *c) {
  pthread_mutex_lock(&c->lock);
  c->closed = false;
  pthread_mutex_unlock(&c->lock);
}

static uint64_t start_locked(const vm_console *c) {
  return c->end > c->cap ? c->end - c->cap : 0;
}

uint64_t vm_console_end(vm_console *c) {
  pthread_mutex_lock(&c->lock);
  uint64_t e = c->end;
  pthread_mutex_unlock(&c->lock);
  return e;
}

uint64_t vm_console_start(vm_console *c) {
  pthread_mutex_lock(&c->lock);
  uint64_t s = start_locked(c);
  pthread_mutex_unlock(&c->lock);
  return s;
}

size_t vm_console_read(vm_console *c, uint64_t *cursor, void *buf, size_t max,
                       uint64_t *ret_dropped, int wait_ms, bool *ret_eof) {
  struct timespec deadline;
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  if (wait_ms > 0) {
    deadline.tv_sec += wait_ms / 1000;
    deadline.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
      deadline.tv_sec++;
      deadline.tv_nsec -= 1000000000L;
    }
  }
  *ret_dropped = 0;
  *ret_eof = false;
  pthread_mutex_lock(&c->lock);
  for (;;) {
    uint64_t start = start_locked(c);
    if (*cursor < start) {
      *ret_dropped += start - *cursor;
      *cursor = start;
    }
    if (*cursor > c->end) *cursor = c->end; /* a cursor from the future */
    if (*cursor < c->end || c->closed || wait_ms == 0) break;
    int r = wait_ms < 0 ? pthread_cond_wait(&c->cond, &c->lock)
                        : pthread_cond_timedwait(&c->cond, &c->lock, &deadline);
    if (r == ETIMEDOUT) break;
  }
  size_t avail = (size_t)(c->end - *cursor);
  size_t n = avail < max ? avail : max;
  size_t at = (size_t)(*cursor % c->cap);
  size_t first = n < c->cap - at ? n : c->cap - at;
  memcpy(buf, c->buf + at, first);
  memcpy((char *)buf + first, c->buf, n - first);
  *cursor += n;
  if (n == 0 && c->closed) *ret_eof = true;
  pthread_mutex_unlock(&c->lock);
  return n;
}
