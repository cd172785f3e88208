/* Leveled logging to stderr (and, as pid 1, to /dev/kmsg). The library only
 * logs at debug; the daemon logs once where it decides. Thread-safe. */
#pragma once

enum au_log_level { AU_LOG_ERROR = 0, AU_LOG_WARN, AU_LOG_INFO, AU_LOG_DEBUG };

void au_log_set_level(enum au_log_level level);
enum au_log_level au_log_get_level(void);
/* Also copy every line to this fd (e.g. /dev/kmsg as pid 1); -1 disables. */
void au_log_set_extra_fd(int fd);
void au_log(enum au_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) au_log(AU_LOG_ERROR, __VA_ARGS__)
#define log_warn(...) au_log(AU_LOG_WARN, __VA_ARGS__)
#define log_info(...) au_log(AU_LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
  do {                                                                                             \
    if (au_log_get_level() >= AU_LOG_DEBUG) au_log(AU_LOG_DEBUG, __VA_ARGS__);                     \
  } while (0)
