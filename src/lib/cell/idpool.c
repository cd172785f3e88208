/* The id-range pool (idpool.h): one bit a range, next-fit allocation. */
#include "cell/idpool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "log.h"

struct cell_idpool {
  uint32_t start;
  uint32_t cells;
  uint32_t used;
  uint32_t next; /* index where the next search starts */
  uint64_t bits[];
};

int cell_idpool_new(uint32_t start, uint32_t cells, cell_idpool **ret, au_error *err) {
  if (start < CELL_IDS_PER_CELL || start % CELL_IDS_PER_CELL)
    return au_error_set(err, -EINVAL,
                        "cell_id_pool.start: %u is not a multiple of %u of at least %u "
                        "(the first range holds the host's root and system users)",
                        start, CELL_IDS_PER_CELL, CELL_IDS_PER_CELL);
  if (cells < 1 || cells > CELL_IDPOOL_MAX_CELLS)
    return au_error_set(err, -EINVAL, "cell_id_pool.cells: %u is not in [1, %u]", cells,
                        CELL_IDPOOL_MAX_CELLS);
  /* 64-bit arithmetic: the end of a bad pool may lie past 2^32. */
  uint64_t last = (uint64_t)start + (uint64_t)cells * CELL_IDS_PER_CELL - 1;
  if (last > CELL_IDPOOL_LAST_ID)
    return au_error_set(err, -EINVAL,
                        "cell_id_pool: start %u + cells %u * %u ends at id %llu, past %u "
                        "(4294967295 is the kernel's \"no id\")",
                        start, cells, CELL_IDS_PER_CELL, (unsigned long long)last,
                        CELL_IDPOOL_LAST_ID);
  size_t words = (cells + 63) / 64;
  cell_idpool *p = calloc(1, sizeof(*p) + words * sizeof(p->bits[0]));
  if (!p) return au_error_set(err, -ENOMEM, "cell id pool: out of memory");
  p->start = start;
  p->cells = cells;
  log_debug("cell id pool: %u ranges, ids %u-%llu", cells, start, (unsigned long long)last);
  *ret = p;
  return 0;
}

void cell_idpool_free(cell_idpool *p) { free(p); }

static bool is_taken(const cell_idpool *p, uint32_t i) { return (p->bits[i / 64] >> (i % 64)) & 1; }

/* The first free index in [from, to), or `to` when there is none. Bits past
 * `cells` in the last word stay clear, so the result is checked against
 * `to`. */
static uint32_t find_free(const cell_idpool *p, uint32_t from, uint32_t to) {
  for (uint32_t w = from / 64; (uint64_t)w * 64 < to; w++) {
    uint64_t free_bits = ~p->bits[w];
    if (w == from / 64) free_bits &= ~0ULL << (from % 64);
    if (free_bits) {
      uint32_t i = w * 64 + (uint32_t)__builtin_ctzll(free_bits);
      return i < to ? i : to;
    }
  }
  return to;
}

/* The index of the range at base, or -1 when base is not one of ours. */
static int64_t index_of(const cell_idpool *p, uint32_t base) {
  if (base < p->start || (base - p->start) % CELL_IDS_PER_CELL) return -1;
  uint32_t i = (base - p->start) / CELL_IDS_PER_CELL;
  return i < p->cells ? (int64_t)i : -1;
}

static void take(cell_idpool *p, uint32_t i) {
  p->bits[i / 64] |= 1ULL << (i % 64);
  p->used++;
}

int cell_idpool_alloc(cell_idpool *p, uint32_t *ret_base) {
  if (p->used >= p->cells) return -ENOSPC;
  uint32_t i = find_free(p, p->next, p->cells);
  if (i == p->cells) i = find_free(p, 0, p->next);
  /* used < cells, so one of the two searches found a free range. */
  take(p, i);
  p->next = i + 1 == p->cells ? 0 : i + 1;
  *ret_base = p->start + i * CELL_IDS_PER_CELL;
  return 0;
}

int cell_idpool_reserve(cell_idpool *p, uint32_t base) {
  int64_t i = index_of(p, base);
  if (i < 0) return -EINVAL;
  if (is_taken(p, (uint32_t)i)) return -EEXIST;
  take(p, (uint32_t)i);
  return 0;
}

void cell_idpool_release(cell_idpool *p, uint32_t base) {
  int64_t i = index_of(p, base);
  if (i < 0 || !is_taken(p, (uint32_t)i)) return;
  p->bits[i / 64] &= ~(1ULL << (i % 64));
  p->used--;
}

bool cell_idpool_contains(const cell_idpool *p, uint32_t base) { return index_of(p, base) >= 0; }

/* The indexes of the pool's ranges that [base, base + CELL_IDS_PER_CELL)
 * overlaps: [*first, *end). */
static void span_of(const cell_idpool *p, uint32_t base, uint32_t *first, uint32_t *end) {
  uint64_t lo = base, hi = (uint64_t)base + CELL_IDS_PER_CELL; /* exclusive */
  uint64_t pool_lo = p->start, pool_hi = pool_lo + (uint64_t)p->cells * CELL_IDS_PER_CELL;
  if (hi <= pool_lo || lo >= pool_hi) {
    *first = *end = 0;
    return;
  }
  if (lo < pool_lo) lo = pool_lo;
  if (hi > pool_hi) hi = pool_hi;
  *first = (uint32_t)((lo - pool_lo) / CELL_IDS_PER_CELL);
  *end = (uint32_t)((hi - pool_lo + CELL_IDS_PER_CELL - 1) / CELL_IDS_PER_CELL);
}

int cell_idpool_reserve_span(cell_idpool *p, uint32_t base) {
  uint32_t first, end;
  span_of(p, base, &first, &end);
  int r = 0;
  for (uint32_t i = first; i < end; i++) {
    if (is_taken(p, i))
      r = -EEXIST;
    else
      take(p, i);
  }
  return r;
}

void cell_idpool_release_span(cell_idpool *p, uint32_t base) {
  uint32_t first, end;
  span_of(p, base, &first, &end);
  for (uint32_t i = first; i < end; i++)
    if (is_taken(p, i)) {
      p->bits[i / 64] &= ~(1ULL << (i % 64));
      p->used--;
    }
}

/* --------------------------------------------------- /etc/subuid, subgid */

/* Longer lines are skipped as malformed: a user name (useradd allows 32
 * characters) and two numbers of at most 20 digits need far less. */
#define SUBID_LINE_MAX 1024

/* Reads one line (without its '\n') into buf. Returns false at the end of
 * the file. *ret_bad is set when the line was cut short or holds a NUL byte
 * (either makes it malformed). */
static bool read_line(FILE *f, char *buf, size_t cap, bool *ret_bad) {
  size_t n = 0;
  int c;
  bool any = false;
  *ret_bad = false;
  while ((c = getc(f)) != EOF) {
    any = true;
    if (c == '\n') break;
    if (c == '\0' || n + 1 >= cap)
      *ret_bad = true;
    else
      buf[n++] = (char)c;
  }
  buf[n] = '\0';
  return any;
}

/* A decimal number of digits only (strtoull alone would take leading
 * blanks, a sign and wrap negative numbers around). */
static bool parse_u64(const char *s, const char *end, uint64_t *ret) {
  if (s == end || *s < '0' || *s > '9') return false;
  char *stop;
  errno = 0;
  unsigned long long v = strtoull(s, &stop, 10);
  if (errno || stop != end) return false;
  *ret = v;
  return true;
}

/* "name:start:count"; false for anything else. */
static bool parse_subid(char *line, const char **ret_name, uint64_t *ret_start,
                        uint64_t *ret_count) {
  char *c1 = strchr(line, ':');
  if (!c1 || c1 == line) return false;
  char *c2 = strchr(c1 + 1, ':');
  if (!c2) return false;
  char *end = c2 + 1 + strlen(c2 + 1);
  if (memchr(c2 + 1, ':', (size_t)(end - c2 - 1))) return false;
  if (!parse_u64(c1 + 1, c2, ret_start) || !parse_u64(c2 + 1, end, ret_count)) return false;
  *c1 = '\0';
  *ret_name = line;
  return true;
}

int cell_idpool_check_subids(const char *path, uint32_t start, uint64_t len, char *msg,
                             size_t size) {
  if (size) msg[0] = '\0';
  _cleanup_fclose_ FILE *f = fopen(path, "re");
  if (!f) {
    if (errno == ENOENT) return 0;
    int e = errno;
    if (size) snprintf(msg, size, "open %s: %s", path, strerror(e));
    return -e;
  }
  if (len == 0) return 0;
  /* The pool's end, one past its last id, saturated: [start, end). */
  uint64_t end = len > UINT64_MAX - start ? UINT64_MAX : start + len;
  char line[SUBID_LINE_MAX];
  unsigned lineno = 0;
  bool bad;
  while (read_line(f, line, sizeof(line), &bad)) {
    lineno++;
    if (bad) continue;
    /* Blanks around a line, and a '\r' from an editor, would make a
     * valid entry look malformed and so hide an overlap: ignore them. */
    char *s = line + strspn(line, " \t");
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
      s[--n] = '\0';
    if (!*s || *s == '#') continue;
    const char *name;
    uint64_t first, count;
    if (!parse_subid(s, &name, &first, &count) || count == 0) continue;
    /* [first, first + count) overlaps [start, end), without computing
     * first + count (it may not fit in 64 bits). */
    if (first >= end || (first < start && count <= start - first)) continue;
    if (size) {
      /* The name goes into a log line: no control characters. */
      char shown[64];
      size_t k = 0;
      for (; name[k] && k < sizeof(shown) - 1; k++)
        shown[k] = (unsigned char)name[k] < 0x20 || name[k] == 0x7f ? '?' : name[k];
      shown[k] = '\0';
      snprintf(msg, size, "%s line %u (%s%s:%llu:%llu) overlaps the cell id pool %u-%llu", path,
               lineno, shown, name[k] ? "..." : "", (unsigned long long)first,
               (unsigned long long)count, start, (unsigned long long)(end - 1));
    }
    return -EEXIST;
  }
  if (ferror(f)) {
    /* getc left the cause of the failed read in errno. */
    int e = errno > 0 ? errno : EIO;
    if (size) snprintf(msg, size, "read %s: %s", path, strerror(e));
    return -e;
  }
  return 0;
}
