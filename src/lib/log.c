#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Atomic int current_level = AU_LOG_INFO;
static _Atomic int extra_fd = -1;

void au_log_set_level(enum au_log_level level) { current_level = level; }
enum au_log_level au_log_get_level(void) { return current_level; }
void au_log_set_extra_fd(int fd) { extra_fd = fd; }

static const char *level_name(enum au_log_level level) {
  switch (level) {
  case AU_LOG_ERROR: return "error";
  case AU_LOG_WARN: return "warn";
  case AU_LOG_INFO: return "info";
  default: return "debug";
  }
}

void au_log(enum au_log_level level, const char *fmt, ...) {
  if ((int)level > current_level) return;
  char line[2048];
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s ",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                   ts.tv_nsec / 1000000, level_name(level));
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
  va_end(ap);
  size_t len = strlen(line);
  line[len++] = '\n';
  /* One write per line so concurrent threads never interleave mid-line. */
  ssize_t ignored = write(STDERR_FILENO, line, len);
  int fd = extra_fd;
  if (fd >= 0) ignored = write(fd, line + n, len - (size_t)n);
  (void)ignored;
}
