/* A bounded ring of captured output for one stream of one executable.
 * Bytes are addressed by their absolute offset since the stream began, so a
 * reader keeps a cursor and learns exactly how much was dropped (oldest
 * first) when the writer lapped it. Not thread-safe: the owner locks. */
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef struct out_ring {
  char *buf;
  size_t cap;
  uint64_t start; /* absolute offset of the oldest byte kept */
  uint64_t end;   /* absolute offset one past the newest byte */
} out_ring;

int out_ring_init(out_ring *r, size_t cap);
void out_ring_free(out_ring *r);
void out_ring_append(out_ring *r, const void *data, size_t len);
/* Bytes dropped so far (never readable again). */
static inline uint64_t out_ring_dropped(const out_ring *r) { return r->start; }
/* Copies up to size bytes from *cursor on; bytes before r->start are
 * skipped and counted in *ret_dropped. Advances *cursor; returns the
 * number of bytes copied. */
size_t out_ring_read(const out_ring *r, uint64_t *cursor, void *buf, size_t size,
                     uint64_t *ret_dropped);
