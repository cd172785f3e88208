/* libFuzzer target: the control packets a cell's init reads from auraed
 * and auraed reads from an init (src/lib/cell/ctl.c, ctlmsg.c). The input
 * is the packet and the fds that came with it:
 *   byte 0       the number of fds (modulo CTL_MAX_FDS + 2, so that one
 *                too many is tried too)
 *   next N bytes what each fd is: /dev/null, a directory, a pipe, a
 *                socket, a regular file (the decoders check fd kinds, and
 *                /dev/null alone would stop them at the first fd)
 *   the rest     the packet, as ctl_recv would have received it.
 * Each input goes through ctl_parse, then through every decoder in turn on
 * a fresh parse (once as it is, then with its type set to the decoder's,
 * so that each decoder's checks past the type are reached). What a
 * decoder accepts is encoded again, sent over a socketpair and must
 * decode again. Every fd handed over must be closed at the end: a leak
 * aborts. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cell/ctlmsg.h"

#include "../ctlmsg_codecs.h"

/* The fds a message may come with; -1 when the system runs out. */
static int make_fd(uint8_t kind) {
  int p[2];
  switch (kind % 5) {
  case 0: return open("/dev/null", O_RDWR | O_CLOEXEC);
  case 1: return open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  case 2:
    if (pipe2(p, O_CLOEXEC) < 0) return -1;
    close(p[1]);
    return p[0];
  case 3:
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, p) < 0) return -1;
    close(p[1]);
    return p[0];
  default: return memfd_create("fuzz", MFD_CLOEXEC);
  }
}

static void expect_closed(const int *fds, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (fds[i] >= 0 && fcntl(fds[i], F_GETFD) >= 0) {
      fprintf(stderr, "fd %d was left open\n", fds[i]);
      abort();
    }
}

static int sock[2] = {-1, -1};

/* What the decoder took, encoded again, must decode again. */
static void reencode(const struct codec *c, const union any *m) {
  ctl_out o;
  if (c->encode(m, &o) < 0) {
    fprintf(stderr, "%s: decoded, but the encoder refuses it\n", ctl_type_name(c->type));
    abort();
  }
  int r = ctl_out_send(sock[0], 1, &o);
  ctl_out_clear(&o);
  if (r < 0) abort();
  ctl_msg raw;
  if (ctl_recv(sock[1], &raw) < 0) abort();
  int got[CTL_MAX_FDS];
  size_t ngot = raw.nfds;
  memcpy(got, raw.fds, sizeof(got));
  union any again;
  char why[512];
  if (c->decode(&raw, &again, why, sizeof(why)) < 0) {
    fprintf(stderr, "%s: encoded again, refused: %s\n", ctl_type_name(c->type), why);
    abort();
  }
  c->clear(&again);
  ctl_msg_clear(&raw);
  expect_closed(got, ngot);
}

static void run(const uint8_t *pkt, size_t len, const uint8_t *kinds, size_t nfds,
                const struct codec *c, bool force_type) {
  int fds[CTL_MAX_FDS + 2];
  for (size_t i = 0; i < nfds; i++)
    fds[i] = make_fd(kinds[i]);
  ctl_msg raw;
  int r = ctl_parse(pkt, len, fds, nfds, &raw);
  if (r == 0) {
    if (force_type) raw.type = c->type;
    union any m;
    char why[512];
    if (c->decode(&raw, &m, why, sizeof(why)) == 0) reencode(c, &m);
    c->clear(&m);
    ctl_msg_clear(&raw);
  } else if (r != -EBADMSG && r != -ENOMEM) {
    abort();
  }
  expect_closed(fds, nfds);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (sock[0] < 0) {
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sock) < 0) abort();
    int sz = CTL_MAX_MSG * 2;
    setsockopt(sock[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    setsockopt(sock[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
  }
  if (size < 1) return 0;
  size_t nfds = data[0] % (CTL_MAX_FDS + 2);
  if (size < 1 + nfds) return 0;
  const uint8_t *kinds = data + 1, *pkt = data + 1 + nfds;
  size_t len = size - 1 - nfds;
  for (size_t k = 0; k < sizeof(codecs) / sizeof(codecs[0]); k++) {
    run(pkt, len, kinds, nfds, codecs[k], false);
    run(pkt, len, kinds, nfds, codecs[k], true);
  }
  return 0;
}
