#include "cell/ctl.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cleanup.h"

struct wire_hdr {
  uint32_t type;
  uint32_t seq;
  int32_t error;
  uint32_t nstr;
  int64_t num[CTL_NUMS];
};

void ctl_msg_init(ctl_msg *m) {
  memset(m, 0, sizeof(*m));
  for (size_t i = 0; i < CTL_MAX_FDS; i++)
    m->fds[i] = -1;
}

void ctl_msg_clear(ctl_msg *m) {
  free(m->str);
  free(m->buf);
  for (size_t i = 0; i < CTL_MAX_FDS; i++)
    if (m->fds[i] >= 0) close(m->fds[i]);
  ctl_msg_init(m);
}

static int send_impl(int fd, uint32_t type, uint32_t seq, int32_t error, const int64_t *num,
                     size_t nnum, const char *const *str, size_t nstr, const int *fds, size_t nfds,
                     int32_t cred_pid) {
  size_t total = sizeof(struct wire_hdr);
  for (size_t i = 0; i < nstr; i++)
    total += strlen(str[i]) + 1;
  if (total > CTL_MAX_MSG) return -E2BIG;
  if (nfds > CTL_MAX_FDS || nnum > CTL_NUMS) return -EINVAL;
  _cleanup_free_ char *buf = malloc(total);
  if (!buf) return -ENOMEM;
  struct wire_hdr h = {.type = type, .seq = seq, .error = error, .nstr = (uint32_t)nstr};
  for (size_t i = 0; i < nnum; i++)
    h.num[i] = num[i];
  memcpy(buf, &h, sizeof(h));
  size_t off = sizeof(h);
  for (size_t i = 0; i < nstr; i++) {
    size_t l = strlen(str[i]) + 1;
    memcpy(buf + off, str[i], l);
    off += l;
  }
  struct iovec iov = {.iov_base = buf, .iov_len = total};
  union {
    char buf[CMSG_SPACE(sizeof(int) * CTL_MAX_FDS) + CMSG_SPACE(sizeof(struct ucred))];
    struct cmsghdr align;
  } ctrl;
  memset(&ctrl, 0, sizeof(ctrl));
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctrl.buf};
  size_t clen = 0;
  /* fds of -1 are skipped: the receiver gets them in order, and the
   * message's meaning says which are optional (only trailing ones). */
  int sendfds[CTL_MAX_FDS];
  size_t n = 0;
  for (size_t i = 0; i < nfds; i++)
    if (fds[i] >= 0) sendfds[n++] = fds[i];
  if (n) {
    struct cmsghdr *c = (struct cmsghdr *)(ctrl.buf + clen);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * n);
    memcpy(CMSG_DATA(c), sendfds, sizeof(int) * n);
    clen += CMSG_SPACE(sizeof(int) * n);
  }
  if (cred_pid > 0) {
    struct cmsghdr *c = (struct cmsghdr *)(ctrl.buf + clen);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_CREDENTIALS;
    c->cmsg_len = CMSG_LEN(sizeof(struct ucred));
    struct ucred cred = {.pid = cred_pid, .uid = getuid(), .gid = getgid()};
    memcpy(CMSG_DATA(c), &cred, sizeof(cred));
    clen += CMSG_SPACE(sizeof(struct ucred));
  }
  if (clen)
    mh.msg_controllen = clen;
  else
    mh.msg_control = NULL;
  for (;;) {
    ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL);
    if (w >= 0) return 0;
    if (errno != EINTR) return -errno;
  }
}

int ctl_send(int fd, uint32_t type, uint32_t seq, int32_t error, const int64_t *num, size_t nnum,
             const char *const *str, size_t nstr, const int *fds, size_t nfds) {
  return send_impl(fd, type, seq, error, num, nnum, str, nstr, fds, nfds, 0);
}

int ctl_send_pid(int fd, uint32_t type, uint32_t seq, const int64_t *num, size_t nnum,
                 const int *fds, size_t nfds, int32_t pid) {
  return send_impl(fd, type, seq, 0, num, nnum, NULL, 0, fds, nfds, pid);
}

/* Parses a packet in buf, which has room for len + 1 bytes and becomes
 * m's (the strings point into it). Owns buf and fds whatever happens. */
static int parse_owned(char *buf, size_t len, const int *fds, size_t nfds, ctl_msg *m) {
  ctl_msg_init(m);
  m->buf = buf;
  /* More fds than any message has would be dropped silently by a receiver
   * that kept the first CTL_MAX_FDS: the packet is malformed instead. */
  bool bad = nfds > CTL_MAX_FDS || len < sizeof(struct wire_hdr) || len > CTL_MAX_MSG;
  for (size_t i = 0; i < nfds; i++) {
    if (!bad)
      m->fds[m->nfds++] = fds[i];
    else if (fds[i] >= 0)
      close(fds[i]);
  }
  if (bad) {
    ctl_msg_clear(m);
    return -EBADMSG;
  }
  struct wire_hdr h;
  memcpy(&h, buf, sizeof(h));
  m->type = h.type;
  m->seq = h.seq;
  m->error = h.error;
  memcpy(m->num, h.num, sizeof(h.num));
  /* The terminator makes a final string without its NUL fail the memchr
   * below, not run past the packet. */
  buf[len] = '\0';
  char *p = buf + sizeof(h), *end = buf + len;
  if (h.nstr > (size_t)(end - p)) {
    ctl_msg_clear(m);
    return -EBADMSG;
  }
  m->str = calloc((size_t)h.nstr + 1, sizeof(char *));
  if (!m->str) {
    ctl_msg_clear(m);
    return -ENOMEM;
  }
  for (uint32_t i = 0; i < h.nstr; i++) {
    char *nul = memchr(p, '\0', (size_t)(end - p));
    if (!nul) {
      ctl_msg_clear(m);
      return -EBADMSG;
    }
    m->str[i] = p;
    p = nul + 1;
  }
  /* A sender writes exactly the header and the strings: bytes after them
   * mean the counts are not what the sender meant. */
  if (p != end) {
    ctl_msg_clear(m);
    return -EBADMSG;
  }
  m->nstr = h.nstr;
  return 0;
}

int ctl_parse(const void *buf, size_t len, const int *fds, size_t nfds, ctl_msg *ret) {
  char *copy = len <= CTL_MAX_MSG ? malloc(len + 1) : NULL;
  if (!copy) {
    ctl_msg_init(ret);
    for (size_t i = 0; i < nfds; i++)
      if (fds[i] >= 0) close(fds[i]);
    return len <= CTL_MAX_MSG ? -ENOMEM : -EBADMSG;
  }
  if (len) memcpy(copy, buf, len);
  return parse_owned(copy, len, fds, nfds, ret);
}

/* Room for more SCM_RIGHTS fds than a message may carry, so that a packet
 * with too many arrives whole and ctl_parse rejects it (a truncated one
 * would say MSG_CTRUNC, with the fds beyond the room dropped). */
#define RECV_FDS_ROOM (2 * CTL_MAX_FDS)

int ctl_recv(int fd, ctl_msg *m) {
  ctl_msg_init(m);
  _cleanup_free_ char *buf = malloc(CTL_MAX_MSG + 1);
  if (!buf) return -ENOMEM;
  struct iovec iov = {.iov_base = buf, .iov_len = CTL_MAX_MSG};
  union {
    char buf[CMSG_SPACE(sizeof(int) * RECV_FDS_ROOM) + CMSG_SPACE(sizeof(struct ucred))];
    struct cmsghdr align;
  } ctrl;
  struct msghdr mh = {.msg_iov = &iov,
                      .msg_iovlen = 1,
                      .msg_control = ctrl.buf,
                      .msg_controllen = sizeof(ctrl.buf)};
  ssize_t r;
  do
    r = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
  while (r < 0 && errno == EINTR);
  if (r < 0) return -errno;
  int fds[sizeof(ctrl.buf) / sizeof(int)];
  size_t nfds = 0;
  int32_t cred_pid = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
      struct ucred cred;
      memcpy(&cred, CMSG_DATA(c), sizeof(cred));
      cred_pid = cred.pid;
      continue;
    }
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < n && nfds < ARRAY_SIZE(fds); i++)
      memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
  }
  if (r == 0 || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
    for (size_t i = 0; i < nfds; i++)
      close(fds[i]);
    return r == 0 ? -EPIPE : -EBADMSG;
  }
  int p = parse_owned(TAKE_PTR(buf), (size_t)r, fds, nfds, m);
  if (p == 0) m->cred_pid = cred_pid;
  return p;
}
