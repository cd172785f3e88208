#include "ring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int byte_ring_init(byte_ring *r, size_t cap) {
  *r = (byte_ring){0};
  if (cap == 0) return -EINVAL;
  r->buf = malloc(cap);
  if (!r->buf) return -ENOMEM;
  r->cap = cap;
  return 0;
}

void byte_ring_free(byte_ring *r) {
  free(r->buf);
  *r = (byte_ring){0};
}

void byte_ring_append(byte_ring *r, const void *data, size_t len) {
  const char *p = data;
  if (len > r->cap) { /* only the newest cap bytes can survive */
    p += len - r->cap;
    r->end += len - r->cap;
    r->start = r->end;
    len = r->cap;
  }
  size_t pos = (size_t)(r->end % r->cap);
  size_t first = len < r->cap - pos ? len : r->cap - pos;
  memcpy(r->buf + pos, p, first);
  memcpy(r->buf, p + first, len - first);
  r->end += len;
  if (r->end - r->start > r->cap) r->start = r->end - r->cap;
}

size_t byte_ring_read(const byte_ring *r, uint64_t *cursor, void *buf, size_t size,
                      uint64_t *ret_dropped) {
  uint64_t c = *cursor;
  *ret_dropped = 0;
  if (c < r->start) {
    *ret_dropped = r->start - c;
    c = r->start;
  }
  if (c > r->end) c = r->end;
  size_t avail = (size_t)(r->end - c);
  size_t n = avail < size ? avail : size;
  size_t pos = (size_t)(c % r->cap);
  size_t first = n < r->cap - pos ? n : r->cap - pos;
  memcpy(buf, r->buf + pos, first);
  memcpy((char *)buf + first, r->buf, n - first);
  *cursor = c + n;
  return n;
}
