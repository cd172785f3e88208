/* Allocation helpers for building protobuf responses. */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "services.h"

static void out_of_memory(void) {
  log_error("out of memory building a response");
  abort();
}

char *pb_strdup(const char *s) {
  char *d = strdup(s ? s : "");
  if (!d) out_of_memory();
  return d;
}

void *pb_zalloc(size_t size) {
  void *p = calloc(1, size);
  if (!p) out_of_memory();
  return p;
}
