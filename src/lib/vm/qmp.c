/* QMP parser and client. The client has one reader (the VM's supervisor,
 * or the starting thread before the supervisor exists) and any number of
 * senders: writes are serialized by a mutex, reads are not shared. */
#include "vm/qmp.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "clock.h"
#include "log.h"

void qmp_msg_clear(qmp_msg *m) {
  if (!m) return;
  json_decref(m->root);
  memset(m, 0, sizeof(*m));
  m->id = -1;
}

void qmp_parser_init(qmp_parser *p) { memset(p, 0, sizeof(*p)); }

void qmp_parser_clear(qmp_parser *p) {
  free(p->buf);
  memset(p, 0, sizeof(*p));
}

int qmp_parser_feed(qmp_parser *p, const void *data, size_t size, au_error *err) {
  if (size == 0) return 0;
  /* Callers drain complete lines with qmp_parser_next after each feed, so
   * the buffer is about one partial line; bound it all the same. */
  if (p->len + size > 4 * (size_t)QMP_LINE_MAX) {
    qmp_parser_clear(p);
    return au_error_set(err, -E2BIG, "qmp: more than %u bytes unparsed", 4 * QMP_LINE_MAX);
  }
  if (p->len + size + 1 > p->cap) {
    size_t cap = p->cap ? p->cap : 4096;
    while (cap < p->len + size + 1)
      cap *= 2;
    char *nb = realloc(p->buf, cap);
    if (!nb) return au_error_set(err, -ENOMEM, "qmp: out of memory");
    p->buf = nb;
    p->cap = cap;
  }
  memcpy(p->buf + p->len, data, size);
  p->len += size;
  p->buf[p->len] = '\0';
  /* The unterminated tail is one line in the making. */
  const char *nl = memrchr(p->buf, '\n', p->len);
  size_t tail = nl ? p->len - (size_t)(nl - p->buf) - 1 : p->len;
  if (tail > QMP_LINE_MAX) {
    qmp_parser_clear(p);
    return au_error_set(err, -E2BIG, "qmp: line longer than %u bytes", QMP_LINE_MAX);
  }
  return 0;
}

static int qmp_classify(json_t *root, qmp_msg *m, au_error *err) {
  if (!json_is_object(root))
    return au_error_set(err, -EBADMSG, "qmp: message is not a JSON object");
  m->root = root;
  m->id = -1;
  json_t *id = json_object_get(root, "id");
  if (json_is_integer(id)) m->id = json_integer_value(id);
  json_t *v;
  if ((v = json_object_get(root, "QMP"))) {
    m->type = QMP_MSG_GREETING;
    m->data = v;
  } else if ((v = json_object_get(root, "return"))) {
    m->type = QMP_MSG_RETURN;
    m->data = v;
  } else if ((v = json_object_get(root, "error"))) {
    m->type = QMP_MSG_ERROR;
    m->error_class = json_string_value(json_object_get(v, "class"));
    m->error_desc = json_string_value(json_object_get(v, "desc"));
    if (!m->error_class) m->error_class = "GenericError";
    if (!m->error_desc) m->error_desc = "(no description)";
  } else if ((v = json_object_get(root, "event")) && json_is_string(v)) {
    m->type = QMP_MSG_EVENT;
    m->event = json_string_value(v);
    m->data = json_object_get(root, "data");
  } else {
    m->root = NULL;
    return au_error_set(err, -EBADMSG, "qmp: unknown message kind");
  }
  return 0;
}

int qmp_parser_next(qmp_parser *p, qmp_msg *ret, au_error *err) {
  for (;;) {
    char *nl = p->len ? memchr(p->buf, '\n', p->len) : NULL;
    if (!nl) return 0;
    size_t line_len = (size_t)(nl - p->buf);
    json_error_t jerr;
    json_t *root = NULL;
    /* Skip blank lines (QMP ends lines with \r\n). */
    size_t i = 0;
    while (i < line_len && (p->buf[i] == ' ' || p->buf[i] == '\r' || p->buf[i] == '\t'))
      i++;
    bool blank = i == line_len;
    if (!blank) root = json_loadb(p->buf, line_len, JSON_REJECT_DUPLICATES, &jerr);
    memmove(p->buf, nl + 1, p->len - line_len - 1);
    p->len -= line_len + 1;
    p->buf[p->len] = '\0';
    if (blank) continue;
    if (!root) return au_error_set(err, -EBADMSG, "qmp: bad JSON: %s", jerr.text);
    memset(ret, 0, sizeof(*ret));
    int r = qmp_classify(root, ret, err);
    if (r < 0) {
      json_decref(root);
      return r;
    }
    return 1;
  }
}

char *qmp_format_command(const char *cmd, json_t *args, int64_t id) {
  json_t *o = json_object();
  if (!o) return NULL;
  json_object_set_new(o, "execute", json_string(cmd));
  if (args) json_object_set(o, "arguments", args);
  json_object_set_new(o, "id", json_integer(id));
  char *s = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  if (!s) return NULL;
  size_t n = strlen(s);
  char *line = realloc(s, n + 2);
  if (!line) {
    free(s);
    return NULL;
  }
  line[n] = '\n';
  line[n + 1] = '\0';
  return line;
}

/* ------------------------------------------------------------------ client */

#define QMP_PENDING_MAX 256

struct qmp_client {
  int fd;
  qmp_parser parser;
  pthread_mutex_t write_lock;
  int64_t next_id; /* under write_lock */
  /* Messages read by execute that were not its answer, in order. */
  qmp_msg pending[QMP_PENDING_MAX];
  size_t n_pending;
  bool eof;
};

int qmp_client_fd(const qmp_client *c) { return c ? c->fd : -1; }

void qmp_client_free(qmp_client *c) {
  if (!c) return;
  if (c->fd >= 0) close(c->fd);
  qmp_parser_clear(&c->parser);
  for (size_t i = 0; i < c->n_pending; i++)
    qmp_msg_clear(&c->pending[i]);
  pthread_mutex_destroy(&c->write_lock);
  free(c);
}

static int qmp_write_all(qmp_client *c, const char *s, au_error *err) {
  size_t len = strlen(s), off = 0;
  while (off < len) {
    ssize_t n = send(c->fd, s + off, len - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      struct pollfd pfd = {.fd = c->fd, .events = POLLOUT};
      if (poll(&pfd, 1, 5000) <= 0) return au_error_set(err, -ETIMEDOUT, "qmp: send timed out");
      continue;
    }
    if (n < 0) return au_error_errno(err, -errno, "qmp: send");
    off += (size_t)n;
  }
  return 0;
}

static int qmp_send_locked(qmp_client *c, const char *cmd, json_t *args, int64_t *ret_id,
                           au_error *err) {
  pthread_mutex_lock(&c->write_lock);
  int64_t id = c->next_id++;
  char *line = qmp_format_command(cmd, args, id);
  int r = line ? qmp_write_all(c, line, err) : au_error_set(err, -ENOMEM, "qmp: out of memory");
  pthread_mutex_unlock(&c->write_lock);
  free(line);
  if (r == 0 && ret_id) *ret_id = id;
  return r;
}

int qmp_client_send(qmp_client *c, const char *cmd, json_t *args, au_error *err) {
  return qmp_send_locked(c, cmd, args, NULL, err);
}

/* Reads once (non-blocking fd) into the parser. 0 data or nothing yet,
 * -EPIPE at EOF. */
static int qmp_fill(qmp_client *c, au_error *err) {
  char buf[8192];
  for (;;) {
    ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    if (n < 0) return au_error_errno(err, -errno, "qmp: recv");
    if (n == 0) {
      c->eof = true;
      return au_error_set(err, -EPIPE, "qmp: connection closed by QEMU");
    }
    int r = qmp_parser_feed(&c->parser, buf, (size_t)n, err);
    if (r < 0) return r;
    if ((size_t)n < sizeof(buf)) return 0;
  }
}

/* Next message within the deadline: 1, or -ETIMEDOUT / -EPIPE / ... */
static int qmp_next_blocking(qmp_client *c, qmp_msg *m, int64_t deadline, au_error *err) {
  for (;;) {
    int r = qmp_parser_next(&c->parser, m, err);
    if (r != 0) return r;
    if (c->eof) return au_error_set(err, -EPIPE, "qmp: connection closed by QEMU");
    int64_t left = deadline - monotonic_ms();
    if (left <= 0) return au_error_set(err, -ETIMEDOUT, "qmp: no answer from QEMU");
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    int pr = poll(&pfd, 1, (int)(left > 1000 ? 1000 : left));
    if (pr < 0 && errno != EINTR) return au_error_errno(err, -errno, "qmp: poll");
    if (pr > 0 && (r = qmp_fill(c, err)) < 0) return r;
  }
}

static int qmp_wait_answer(qmp_client *c, int64_t id, json_t **ret_return, int64_t deadline,
                           au_error *err) {
  for (;;) {
    qmp_msg m;
    int r = qmp_next_blocking(c, &m, deadline, err);
    if (r == -EBADMSG) continue; /* one bad line does not end the session */
    if (r < 0) return r;
    if ((m.type == QMP_MSG_RETURN || m.type == QMP_MSG_ERROR) && m.id == id) {
      r = 0;
      if (m.type == QMP_MSG_ERROR) {
        r = au_error_set(err, -EREMOTEIO, "qmp: %s: %s", m.error_class, m.error_desc);
      } else if (ret_return) {
        *ret_return = json_incref(m.data);
      }
      qmp_msg_clear(&m);
      return r;
    }
    if (c->n_pending < QMP_PENDING_MAX)
      c->pending[c->n_pending++] = m;
    else
      qmp_msg_clear(&m); /* a flood of events while we wait: keep the first */
  }
}

int qmp_client_execute(qmp_client *c, const char *cmd, json_t *args, json_t **ret_return,
                       int timeout_ms, au_error *err) {
  int64_t deadline = monotonic_ms() + timeout_ms, id;
  int r = qmp_send_locked(c, cmd, args, &id, err);
  if (r < 0) return r;
  r = qmp_wait_answer(c, id, ret_return, deadline, err);
  if (r < 0) au_error_prefix(err, "%s", cmd);
  return r;
}

int qmp_client_open(int fd, int timeout_ms, qmp_client **ret, au_error *err) {
  qmp_client *c = calloc(1, sizeof(*c));
  if (!c) {
    close(fd);
    return au_error_set(err, -ENOMEM, "qmp: out of memory");
  }
  c->fd = fd;
  c->next_id = 1;
  pthread_mutex_init(&c->write_lock, NULL);
  qmp_parser_init(&c->parser);
  int64_t deadline = monotonic_ms() + timeout_ms;
  qmp_msg m;
  int r;
  do {
    r = qmp_next_blocking(c, &m, deadline, err);
  } while (r == -EBADMSG);
  if (r < 0) goto fail;
  if (m.type != QMP_MSG_GREETING) {
    qmp_msg_clear(&m);
    r = au_error_set(err, -EPROTO, "qmp: expected the greeting first");
    goto fail;
  }
  qmp_msg_clear(&m);
  r = qmp_client_execute(c, "qmp_capabilities", NULL, NULL,
                         (int)(deadline - monotonic_ms() > 0 ? deadline - monotonic_ms() : 1), err);
  if (r < 0) goto fail;
  *ret = c;
  return 0;
fail:
  qmp_client_free(c);
  return r;
}

int qmp_client_read(qmp_client *c, qmp_msg_fn cb, void *userdata, au_error *err) {
  for (size_t i = 0; i < c->n_pending; i++) {
    cb(&c->pending[i], userdata);
    qmp_msg_clear(&c->pending[i]);
  }
  c->n_pending = 0;
  int fr = c->eof ? -EPIPE : qmp_fill(c, err);
  /* Hand out what was parsed even when the peer closed right after. */
  for (;;) {
    qmp_msg m;
    int r = qmp_parser_next(&c->parser, &m, err);
    if (r == -EBADMSG) {
      log_debug("%s", err ? err->msg : "qmp: bad message");
      continue;
    }
    if (r <= 0) break;
    cb(&m, userdata);
    qmp_msg_clear(&m);
  }
  if (fr == -EPIPE) return au_error_set(err, -EPIPE, "qmp: connection closed by QEMU");
  return fr;
}
