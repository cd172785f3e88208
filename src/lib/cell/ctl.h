/* The control protocol between auraed and a cell's init, over a
 * SOCK_SEQPACKET Unix socket (runtime_dir/cells/NAME/init.sock). One
 * message is one packet: a fixed header, NUL-terminated strings, and up to
 * CTL_MAX_FDS file descriptors (SCM_RIGHTS). The init is the parent of
 * every executable in its cell, so exit statuses and the read ends of the
 * output pipes survive an auraed restart: the new auraed asks for them.
 *
 * The messages (SPAWN_EXE, SPAWN_CELL, QUERY, FORGET, HOST_PID and
 * EXIT_EVENT with a cell's init; SPARE_CONFIG, SPARE_READY, SPARE_STALE,
 * TAKE_SPARE, TOOK_SPARE and BUILD_SPARE with the zygote, zygote.c; the
 * REPLY of each request, with the request's seq) are defined in one
 * place, ctlmsg.h: each has its struct, its layout, one encoder and one
 * decoder, and nothing else reads or writes these packets' fields. This
 * file is only the framing. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define CTL_MAX_MSG (256 * 1024)
/* ROOT/_spare: the zygote's spare init waits there (zygote.c). Cell names
 * never start with '_'. */
#define CELL_SPARE_CGROUP "_spare"
/* A SPAWN_CELL request carries four fds and one per bind mount (at most
 * CTL_MAX_MOUNTS, ctlmsg.h). */
#define CTL_MAX_FDS 16
#define CTL_NUMS 8
/* Total bytes of argv + env an executable may have (must fit a packet). */
#define CTL_MAX_STRINGS (192 * 1024)

enum ctl_type {
  CTL_SPAWN_EXE = 1,
  CTL_SPAWN_CELL,
  CTL_QUERY,
  CTL_FORGET,
  CTL_REPLY,
  CTL_EXIT_EVENT,
  CTL_HOST_PID,
  CTL_SPARE_CONFIG,
  CTL_SPARE_READY,
  CTL_SPARE_STALE,
  CTL_TAKE_SPARE,
  CTL_TOOK_SPARE,
  CTL_BUILD_SPARE,
};

/* Namespaces a cell init creates (a clear bit shares the parent's). */
enum {
  CELL_NS_PID = 1 << 0,
  CELL_NS_MNT = 1 << 1,
  CELL_NS_IPC = 1 << 2,
  CELL_NS_UTS = 1 << 3,
  CELL_NS_NET = 1 << 4,
  CELL_NS_CGROUP = 1 << 5,
  /* The six above. No bit asks for a user namespace: a non-zero id_base
   * does (ctlmsg.h). */
  CELL_NS_ALL = (1 << 6) - 1,
  /* Not a namespace: the cell's executables keep every capability and may
   * gain privileges (CellIsolation.privileged). */
  CELL_INIT_PRIVILEGED = 1 << 8,
  CELL_INIT_FLAGS = CELL_NS_ALL | CELL_INIT_PRIVILEGED,
};

typedef struct ctl_msg {
  uint32_t type;
  uint32_t seq;
  int32_t error;
  int64_t num[CTL_NUMS];
  size_t nstr;
  char **str; /* pointers into buf */
  char *buf;
  int fds[CTL_MAX_FDS];
  size_t nfds;
  /* SCM_CREDENTIALS pid, translated by the kernel into the receiver's pid
   * namespace (0 when absent; the receiver needs SO_PASSCRED). */
  int32_t cred_pid;
} ctl_msg;

void ctl_msg_init(ctl_msg *m);
/* Frees strings and closes every fd still >= 0 (take one with TAKE_FD). */
void ctl_msg_clear(ctl_msg *m);

/* Sends one packet; never raises SIGPIPE. Returns 0 or -errno (-E2BIG when
 * the strings do not fit). */
int ctl_send(int fd, uint32_t type, uint32_t seq, int32_t error, const int64_t *num, size_t nnum,
             const char *const *str, size_t nstr, const int *fds, size_t nfds);
/* Receives one packet into m (fds arrive O_CLOEXEC) and parses it with
 * ctl_parse. -EPIPE on EOF, -EAGAIN when nothing is there on a
 * non-blocking socket, -EBADMSG when malformed. */
int ctl_recv(int fd, ctl_msg *m);
/* The parsing half of ctl_recv, without I/O: the packet's LEN bytes in
 * BUF (copied) and the NFDS fds that came with it, which it owns from now
 * on (they go into ret, or are closed on failure). -EBADMSG when the
 * packet is malformed: shorter than the header, longer than CTL_MAX_MSG,
 * more than CTL_MAX_FDS fds, a string without its NUL, or bytes after the
 * last string. */
int ctl_parse(const void *buf, size_t len, const int *fds, size_t nfds, ctl_msg *ret);
/* Like ctl_send, with SCM_CREDENTIALS naming process PID (in the sender's
 * pid namespace): the kernel translates it for the receiver, which is how
 * a cell init tells auraed an executable's host pid without a race. */
int ctl_send_pid(int fd, uint32_t type, uint32_t seq, const int64_t *num, size_t nnum,
                 const int *fds, size_t nfds, int32_t pid);
