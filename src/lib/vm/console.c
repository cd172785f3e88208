#include "vm/console.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ring.h"

struct vm_console {
  pthread_mutex_t lock;
  pthread_cond_t cond; /* signalled on write and close */
  byte_ring ring;
  bool closed;
};

vm_console *vm_console_new(size_t capacity) {
  if (capacity < 4096) capacity = 4096;
  vm_console *c = calloc(1, sizeof(*c));
  if (!c) return NULL;
  if (byte_ring_init(&c->ring, capacity) < 0) {
    free(c);
    return NULL;
  }
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
  byte_ring_free(&c->ring);
  free(c);
}

void vm_console_write(vm_console *c, const void *data, size_t size) {
  pthread_mutex_lock(&c->lock);
  byte_ring_append(&c->ring, data, size);
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

uint64_t vm_console_end(vm_console *c) {
  pthread_mutex_lock(&c->lock);
  uint64_t e = byte_ring_end(&c->ring);
  pthread_mutex_unlock(&c->lock);
  return e;
}

uint64_t vm_console_start(vm_console *c) {
  pthread_mutex_lock(&c->lock);
  uint64_t s = byte_ring_dropped(&c->ring);
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
  *ret_eof = false;
  pthread_mutex_lock(&c->lock);
  /* Wait only while the cursor is at the end of what was written. */
  while (*cursor >= byte_ring_end(&c->ring) && !c->closed && wait_ms != 0) {
    int r = wait_ms < 0 ? pthread_cond_wait(&c->cond, &c->lock)
                        : pthread_cond_timedwait(&c->cond, &c->lock, &deadline);
    if (r == ETIMEDOUT) break;
  }
  size_t n = byte_ring_read(&c->ring, cursor, buf, max, ret_dropped);
  if (n == 0 && c->closed) *ret_eof = true;
  pthread_mutex_unlock(&c->lock);
  return n;
}
