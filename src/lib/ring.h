/* A bounded byte ring: captured executable output, a VM's serial console.
 * Bytes are addressed by their absolute offset since the stream began, so a
 * reader keeps a cursor and learns exactly how much was dropped (oldest
 * first) when the writer lapped it. Not thread-safe: the owner locks. */
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef struct byte_ring {
  char *buf;
  size_t cap;
  uint64_t start; /* absolute offset of the oldest byte kept */
  uint64_t end;   /* absolute offset one past the newest byte */
} byte_ring;

int byte_ring_init(byte_ring *r, size_t cap);
void byte_ring_free(byte_ring *r);
void byte_ring_append(byte_ring *r, const void *data, size_t len);
/* Bytes dropped so far (never readable again), i.e. the offset of the
 * oldest byte kept; and the offset one past the newest. */
static inline uint64_t byte_ring_dropped(const byte_ring *r) { return r->start; }
static inline uint64_t byte_ring_end(const byte_ring *r) { return r->end; }
/* Copies up to size bytes from *cursor on; bytes before r->start are
 * skipped and counted in *ret_dropped. Advances *cursor; returns the
 * number of bytes copied. */
size_t byte_ring_read(const byte_ring *r, uint64_t *cursor, void *buf, size_t size,
                      uint64_t *ret_dropped);
