/* The typed control messages (src/lib/cell/ctlmsg.c) and the packet
 * parser under them (ctl_parse, ctl.c): every message goes through a real
 * SOCK_SEQPACKET socketpair, fds included, and every rule of every
 * decoder is broken once. Each test checks that it leaves no fd open. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <cmocka.h>

#include "cell/ctlmsg.h"
#include "cleanup.h"
#include "names.h"

/* fds every test may send: a directory, two pipes, a socketpair, a
 * regular file (as cgroup.procs is), a pidfd, and the test's socketpair. */
static struct {
  int dir, p_r, p_w, q_r, q_w, s0, s1, reg, pidfd;
  int tx, rx; /* the control socketpair: send on tx, receive on rx */
  int open_before;
} F;

static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  int n = 0;
  for (struct dirent *e; (e = readdir(d));)
    n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

static int setup(void **state) {
  (void)state;
  F.open_before = count_fds();
  int p[2], q[2], s[2], c[2];
  assert_int_equal(pipe2(p, O_CLOEXEC), 0);
  assert_int_equal(pipe2(q, O_CLOEXEC), 0);
  assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, s), 0);
  assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, c), 0);
  F.p_r = p[0], F.p_w = p[1], F.q_r = q[0], F.q_w = q[1], F.s0 = s[0], F.s1 = s[1];
  F.tx = c[0], F.rx = c[1];
  int one = 1;
  assert_int_equal(setsockopt(F.rx, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)), 0);
  F.dir = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  F.reg = memfd_create("procs", MFD_CLOEXEC);
  F.pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
  assert_true(F.dir >= 0 && F.reg >= 0 && F.pidfd >= 0);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  int all[] = {F.dir, F.p_r, F.p_w, F.q_r, F.q_w, F.s0, F.s1, F.reg, F.pidfd, F.tx, F.rx};
  for (size_t i = 0; i < ARRAY_SIZE(all); i++)
    close(all[i]);
  /* Whatever a decoder took or a clear missed would still be open. */
  assert_int_equal(count_fds(), F.open_before);
  return 0;
}

static bool same_file(int a, int b) {
  struct stat x, y;
  return a >= 0 && b >= 0 && fstat(a, &x) == 0 && fstat(b, &y) == 0 && x.st_dev == y.st_dev &&
         x.st_ino == y.st_ino;
}

static bool is_closed(int fd) { return fcntl(fd, F_GETFD) < 0 && errno == EBADF; }

/* Sends o (and clears it), receives the packet. */
static void xfer(ctl_out *o, ctl_msg *raw) {
  assert_int_equal(ctl_out_send(F.tx, 42, o), 0);
  ctl_out_clear(o);
  assert_int_equal(ctl_recv(F.rx, raw), 0);
  assert_int_equal(raw->seq, 42);
}

/* Every decoder behind one signature, for the tables below. */
#include "../ctlmsg_codecs.h"

/* Sends o and expects c's decoder to refuse it with WANT in its reason,
 * leaving the packet's fds in raw and none in ret. */
static void reject_(ctl_out *o, const struct codec *c, int want_r, const char *want, int line) {
  ctl_msg raw;
  xfer(o, &raw);
  size_t nfds = raw.nfds;
  union any m;
  char why[512] = "";
  int r = c->decode(&raw, &m, why, sizeof(why));
  if (r != want_r || !strstr(why, want))
    fail_msg("line %d: %d \"%s\", expected %d with \"%s\"", line, r, why, want_r, want);
  assert_int_equal(raw.nfds, nfds);
  for (size_t i = 0; i < nfds; i++)
    assert_true(raw.fds[i] >= 0);
  c->clear(&m); /* harmless: nothing in it */
  ctl_msg_clear(&raw);
}
#define reject(o, c, want) reject_(o, c, -EBADMSG, want, __LINE__)

static void decode_ok(ctl_out *o, const struct codec *c, union any *m) {
  ctl_msg raw;
  xfer(o, &raw);
  char why[512] = "";
  int r = c->decode(&raw, m, why, sizeof(why));
  if (r != 0) fail_msg("decode: %d %s", r, why);
  /* The struct owns all of it now. */
  assert_null(raw.buf);
  assert_int_equal(raw.nfds, 0);
  ctl_msg_clear(&raw);
}

/* ---- ctl_parse ---- */

/* The wire header, as ctl.c lays it out. */
struct hdr {
  uint32_t type, seq;
  int32_t error;
  uint32_t nstr;
  int64_t num[CTL_NUMS];
};

static size_t packet(char *buf, uint32_t type, uint32_t nstr, const char *strings, size_t slen) {
  struct hdr h = {.type = type, .seq = 1, .nstr = nstr};
  memcpy(buf, &h, sizeof(h));
  memcpy(buf + sizeof(h), strings, slen);
  return sizeof(h) + slen;
}

static void test_parse_good(void **state) {
  (void)state;
  char buf[256];
  size_t len = packet(buf, CTL_QUERY, 2, "ab\0c", 5);
  int fds[2] = {dup(F.dir), dup(F.p_r)};
  ctl_msg m;
  assert_int_equal(ctl_parse(buf, len, fds, 2, &m), 0);
  assert_int_equal(m.type, CTL_QUERY);
  assert_int_equal(m.nstr, 2);
  assert_string_equal(m.str[0], "ab");
  assert_string_equal(m.str[1], "c");
  assert_null(m.str[2]);
  assert_int_equal(m.nfds, 2);
  assert_int_equal(m.fds[0], fds[0]);
  ctl_msg_clear(&m);
  assert_true(is_closed(fds[0]) && is_closed(fds[1]));
}

/* Every malformed packet is -EBADMSG, and its fds are closed. */
static void expect_bad(const char *buf, size_t len, size_t nfds) {
  int fds[CTL_MAX_FDS + 2] = {0};
  for (size_t i = 0; i < nfds; i++)
    fds[i] = dup(F.dir);
  ctl_msg m;
  assert_int_equal(ctl_parse(buf, len, fds, nfds, &m), -EBADMSG);
  for (size_t i = 0; i < nfds; i++)
    assert_true(is_closed(fds[i]));
  assert_null(m.buf);
  assert_int_equal(m.nfds, 0);
  ctl_msg_clear(&m);
}

static void test_parse_bad(void **state) {
  (void)state;
  char buf[256];
  size_t len = packet(buf, CTL_QUERY, 2, "ab\0c", 5);
  expect_bad(buf, 0, 1);
  expect_bad(buf, sizeof(struct hdr) - 1, 2); /* a truncated header */
  expect_bad(buf, len - 1, 1);                /* the last string without its NUL */
  buf[len] = 'x';
  expect_bad(buf, len + 1, 0); /* a byte after the strings */
  len = packet(buf, CTL_QUERY, 3, "ab\0c", 5);
  expect_bad(buf, len, 0); /* more strings said than there are */
  len = packet(buf, CTL_QUERY, UINT32_MAX, "ab\0c", 5);
  expect_bad(buf, len, 0);
  len = packet(buf, CTL_QUERY, 0, "", 0);
  expect_bad(buf, len, CTL_MAX_FDS + 1); /* more fds than any message has */
  _cleanup_free_ char *big = calloc(1, CTL_MAX_MSG + 2);
  packet(big, CTL_QUERY, 0, "", 0);
  expect_bad(big, CTL_MAX_MSG + 1, 1); /* oversized */
  /* At the limits: still good. */
  int fds[CTL_MAX_FDS];
  for (size_t i = 0; i < CTL_MAX_FDS; i++)
    fds[i] = dup(F.dir);
  ctl_msg m;
  assert_int_equal(ctl_parse(buf, len, fds, CTL_MAX_FDS, &m), 0);
  assert_int_equal(m.nfds, CTL_MAX_FDS);
  ctl_msg_clear(&m);
  memset(big + sizeof(struct hdr), 'a', CTL_MAX_MSG - sizeof(struct hdr) - 1);
  struct hdr h = {.type = CTL_QUERY, .nstr = 1};
  memcpy(big, &h, sizeof(h));
  assert_int_equal(ctl_parse(big, CTL_MAX_MSG, NULL, 0, &m), 0);
  assert_int_equal(strlen(m.str[0]), CTL_MAX_MSG - sizeof(struct hdr) - 1);
  ctl_msg_clear(&m);
}

/* Garbage: parsed or refused, never a crash; every decoder then refuses
 * or takes it, and nothing stays open. */
static void test_parse_garbage(void **state) {
  (void)state;
  static const struct codec *const all[] = {&spawn_exe,   &spawn_cell,  &take_spare,  &query,
                                            &forget,      &host_pid,    &exit_event,  &spare_config,
                                            &spare_ready, &spare_stale, &took_spare,  &build_spare,
                                            &error_reply, &spawn_reply, &query_reply, &empty_reply};
  unsigned seed = 12345;
  char buf[512];
  for (int round = 0; round < 3000; round++) {
    size_t len = (size_t)rand_r(&seed) % sizeof(buf);
    for (size_t i = 0; i < len; i++)
      buf[i] = (char)(rand_r(&seed) % 4 ? rand_r(&seed) % 4 : rand_r(&seed));
    if (len >= sizeof(struct hdr)) {
      struct hdr h;
      memcpy(&h, buf, sizeof(h));
      h.type %= 16;
      h.nstr %= 8;
      memcpy(buf, &h, sizeof(h));
    }
    size_t nfds = (size_t)rand_r(&seed) % 4;
    for (size_t k = 0; k < ARRAY_SIZE(all); k++) {
      int fds[4] = {0};
      for (size_t i = 0; i < nfds; i++)
        fds[i] = dup(F.p_r);
      ctl_msg m;
      int r = ctl_parse(buf, len, fds, nfds, &m);
      assert_true(r == 0 || r == -EBADMSG);
      if (r < 0) continue;
      union any out;
      char why[128];
      all[k]->decode(&m, &out, why, sizeof(why));
      all[k]->clear(&out);
      ctl_msg_clear(&m);
    }
  }
}

/* ---- SPAWN_EXE ---- */

static char *const ARGV[] = {"/bin/echo", "hello", "", NULL};
static char *const ENVP[] = {"PATH=/bin", "EMPTY=", NULL};

static void spawn_exe_msg(struct ctl_spawn_exe *m) {
  ctl_spawn_exe_init(m);
  m->name = "web-1";
  m->cwd = "/tmp";
  m->argv = ARGV;
  m->argc = 3;
  m->envp = ENVP;
  m->envc = 2;
  m->has_creds = true;
  m->uid = 1000;
  m->gid = 4294967294u;
  m->groups[0] = 0;
  m->groups[1] = 27;
  m->groups[2] = 4294967294u;
  m->ngroups = 3;
  m->cgroup_fd = F.dir;
  m->stdin_fd = F.reg;
  m->out_w = F.p_w;
  m->err_w = F.q_w;
  m->out_r = F.p_r;
  m->err_r = F.q_r;
}

static void spawn_exe_out(ctl_out *o) {
  struct ctl_spawn_exe m;
  spawn_exe_msg(&m);
  assert_int_equal(ctl_spawn_exe_encode(&m, o), 0);
}

static void test_spawn_exe_roundtrip(void **state) {
  (void)state;
  struct ctl_spawn_exe m;
  spawn_exe_msg(&m);
  m.reply_fd = F.s1;
  ctl_out o;
  assert_int_equal(ctl_spawn_exe_encode(&m, &o), 0);
  union any u;
  decode_ok(&o, &spawn_exe, &u);
  struct ctl_spawn_exe *d = &u.spawn_exe;
  assert_string_equal(d->name, "web-1");
  assert_string_equal(d->cwd, "/tmp");
  assert_int_equal(d->argc, 3);
  assert_string_equal(d->argv[0], "/bin/echo");
  assert_string_equal(d->argv[2], "");
  assert_null(d->argv[3]);
  assert_int_equal(d->envc, 2);
  assert_string_equal(d->envp[1], "EMPTY=");
  assert_null(d->envp[2]);
  assert_true(d->has_creds);
  assert_int_equal(d->uid, 1000);
  assert_int_equal(d->gid, 4294967294u);
  assert_int_equal(d->ngroups, 3);
  assert_int_equal(d->groups[1], 27);
  assert_int_equal(d->groups[2], 4294967294u);
  assert_true(same_file(d->cgroup_fd, F.dir));
  assert_true(same_file(d->stdin_fd, F.reg));
  assert_true(same_file(d->out_w, F.p_w));
  assert_true(same_file(d->err_w, F.q_w));
  assert_true(same_file(d->out_r, F.p_r));
  assert_true(same_file(d->err_r, F.q_r));
  assert_true(same_file(d->reply_fd, F.s1));
  ctl_spawn_exe_clear(d);
  assert_int_equal(d->cgroup_fd, -1);

  /* Without credentials, no reply socket, no env, cwd NULL: ids go as 0. */
  spawn_exe_msg(&m);
  m.has_creds = false;
  m.envc = 0;
  m.envp = NULL;
  m.cwd = NULL;
  assert_int_equal(ctl_spawn_exe_encode(&m, &o), 0);
  decode_ok(&o, &spawn_exe, &u);
  assert_false(d->has_creds);
  assert_int_equal(d->uid, 0);
  assert_int_equal(d->ngroups, 0);
  assert_string_equal(d->cwd, "");
  assert_int_equal(d->envc, 0);
  assert_null(d->envp[0]);
  assert_int_equal(d->reply_fd, -1);
  ctl_spawn_exe_clear(d);
}

static void test_spawn_exe_encode_refuses(void **state) {
  (void)state;
  struct ctl_spawn_exe m;
  ctl_out o;
  spawn_exe_msg(&m);
  m.argc = 0;
  assert_int_equal(ctl_spawn_exe_encode(&m, &o), -EINVAL);
  spawn_exe_msg(&m);
  m.ngroups = CTL_MAX_GROUPS + 1;
  assert_int_equal(ctl_spawn_exe_encode(&m, &o), -EINVAL);
  spawn_exe_msg(&m);
  m.err_r = -1;
  assert_int_equal(ctl_spawn_exe_encode(&m, &o), -EBADF);
  spawn_exe_msg(&m);
  m.name = NULL;
  assert_int_equal(ctl_spawn_exe_encode(&m, &o), -EINVAL);
  ctl_out_clear(&o);
}

static void test_spawn_exe_rejects(void **state) {
  (void)state;
  ctl_out o;
  const struct codec *c = &spawn_exe;
  spawn_exe_out(&o);
  o.type = CTL_QUERY;
  reject(&o, c, "got a QUERY");
  spawn_exe_out(&o);
  o.error = -EIO;
  reject(&o, c, "error -5");
  spawn_exe_out(&o);
  o.num[6] = 1;
  reject(&o, c, "num[6]");
  spawn_exe_out(&o);
  o.num[0] = 2;
  reject(&o, c, "has_creds 2");
  spawn_exe_out(&o);
  o.num[1] = 4294967295;
  reject(&o, c, "uid 4294967295");
  spawn_exe_out(&o);
  o.num[1] = -1;
  reject(&o, c, "uid -1");
  spawn_exe_out(&o);
  o.num[2] = 4294967295;
  reject(&o, c, "gid 4294967295");
  spawn_exe_out(&o);
  o.num[3] = 0;
  reject(&o, c, "argc 0");
  spawn_exe_out(&o);
  o.num[3] = -1;
  reject(&o, c, "argc -1");
  spawn_exe_out(&o);
  o.num[4] = -1;
  reject(&o, c, "envc -1");
  spawn_exe_out(&o);
  o.num[5] = -1;
  reject(&o, c, "ngroups -1");
  spawn_exe_out(&o);
  o.num[5] = CTL_MAX_GROUPS + 1;
  reject(&o, c, "ngroups 65");
  spawn_exe_out(&o);
  o.num[3] = CTL_MAX_ARGS;
  reject(&o, c, "envc 2 is out of range 0 to 0");
  spawn_exe_out(&o);
  o.num[3] = 2; /* one string left over */
  reject(&o, c, "10 strings, 9 expected");
  spawn_exe_out(&o);
  o.nfds = 5;
  reject(&o, c, "5 fds, 6 to 7 expected");
  spawn_exe_out(&o);
  o.fds[o.nfds++] = F.s0;
  o.fds[o.nfds++] = F.s1;
  reject(&o, c, "8 fds");
  spawn_exe_out(&o);
  o.fds[0] = F.p_r; /* fds out of order */
  reject(&o, c, "cgroup (fd 0) is not a directory");
  spawn_exe_out(&o);
  o.fds[2] = F.reg;
  reject(&o, c, "out_w (fd 2) is not a pipe");
  spawn_exe_out(&o);
  o.fds[o.nfds++] = F.p_r;
  reject(&o, c, "reply socket (fd 6) is not a socket");
  char long_name[AU_NAME_LABEL_MAX + 2];
  memset(long_name, 'a', sizeof(long_name) - 1);
  long_name[sizeof(long_name) - 1] = '\0';
  const char *const bad_names[] = {"Web", "", "a/b", "-a", "a_b", long_name};
  for (size_t i = 0; i < ARRAY_SIZE(bad_names); i++) {
    spawn_exe_out(&o);
    o.str[0] = bad_names[i];
    reject(&o, c, "executable name");
  }
  spawn_exe_out(&o);
  o.str[1] = "tmp";
  reject(&o, c, "cwd \"tmp\" is not absolute");
  spawn_exe_out(&o);
  o.str[2] = "";
  reject(&o, c, "argv[0] is empty");
  spawn_exe_out(&o);
  o.str[5] = "NOEQUALS";
  reject(&o, c, "envp[0] \"NOEQUALS\" is not KEY=VALUE");
  spawn_exe_out(&o);
  o.str[6] = "=x";
  reject(&o, c, "envp[1]");
  static const char *const bad_ids[] = {"abc", "007", "4294967295", "-1", "", "1 ", "99999999999"};
  for (size_t i = 0; i < ARRAY_SIZE(bad_ids); i++) {
    spawn_exe_out(&o);
    o.str[7] = bad_ids[i];
    reject(&o, c, "group 0");
  }
  spawn_exe_out(&o);
  o.num[0] = 0; /* ids without has_creds */
  reject(&o, c, "without has_creds");
}

/* ---- SPAWN_CELL ---- */

static char *const MASKS[] = {"/run/aurae", "/var/lib/aurae", NULL};

static void spawn_cell_msg(struct ctl_spawn_cell *m) {
  ctl_spawn_cell_init(m);
  m->name = "pod/web";
  m->flags = CELL_NS_ALL;
  m->id_base = 65536 * 3;
  m->scratch_mb = 64;
  m->scratch_inodes = 4096;
  m->masks = MASKS;
  m->nmasks = 2;
  m->mounts[0] = (struct ctl_mount){.target = "/data", .read_only = false, .fd = F.dir};
  m->mounts[1] = (struct ctl_mount){.target = "/etc/app.conf", .read_only = true, .fd = F.reg};
  m->nmounts = 2;
  m->cgroup_fd = F.dir;
  m->sync_w = F.p_w;
  m->leaf_procs = F.reg;
  m->listen_fd = F.s0;
}

static void spawn_cell_out(ctl_out *o) {
  struct ctl_spawn_cell m;
  spawn_cell_msg(&m);
  assert_int_equal(ctl_spawn_cell_encode(&m, o), 0);
}

static void test_spawn_cell_roundtrip(void **state) {
  (void)state;
  struct ctl_spawn_cell m;
  spawn_cell_msg(&m);
  /* Every mount there may be, to fill CTL_MAX_FDS as far as it goes. */
  for (size_t i = 2; i < CTL_MAX_MOUNTS; i++)
    m.mounts[i] = (struct ctl_mount){.target = "/x/y", .read_only = i % 2, .fd = F.p_r};
  m.nmounts = CTL_MAX_MOUNTS;
  ctl_out o;
  assert_int_equal(ctl_spawn_cell_encode(&m, &o), 0);
  union any u;
  decode_ok(&o, &spawn_cell, &u);
  struct ctl_spawn_cell *d = &u.spawn_cell;
  assert_string_equal(d->name, "pod/web");
  assert_int_equal(d->flags, CELL_NS_ALL);
  assert_int_equal(d->id_base, 65536 * 3);
  assert_int_equal(d->scratch_mb, 64);
  assert_int_equal(d->scratch_inodes, 4096);
  assert_int_equal(d->nmasks, 2);
  assert_string_equal(d->masks[1], "/var/lib/aurae");
  assert_null(d->masks[2]);
  assert_int_equal(d->nmounts, CTL_MAX_MOUNTS);
  assert_string_equal(d->mounts[0].target, "/data");
  assert_false(d->mounts[0].read_only);
  assert_true(same_file(d->mounts[0].fd, F.dir));
  assert_string_equal(d->mounts[1].target, "/etc/app.conf");
  assert_true(d->mounts[1].read_only);
  assert_true(same_file(d->mounts[1].fd, F.reg));
  assert_true(d->mounts[7].read_only);
  assert_false(d->mounts[6].read_only);
  assert_true(same_file(d->mounts[7].fd, F.p_r));
  assert_true(same_file(d->cgroup_fd, F.dir));
  assert_true(same_file(d->sync_w, F.p_w));
  assert_true(same_file(d->leaf_procs, F.reg));
  assert_true(same_file(d->listen_fd, F.s0));
  ctl_spawn_cell_clear(d);

  /* Today's request: no user namespace, no mounts, no masks. */
  spawn_cell_msg(&m);
  m.flags = CELL_NS_PID | CELL_INIT_PRIVILEGED;
  m.id_base = 0;
  m.nmounts = 0;
  m.nmasks = 0;
  m.name = "web";
  assert_int_equal(ctl_spawn_cell_encode(&m, &o), 0);
  decode_ok(&o, &spawn_cell, &u);
  assert_int_equal(d->flags, CELL_NS_PID | CELL_INIT_PRIVILEGED);
  assert_int_equal(d->nmounts, 0);
  assert_int_equal(d->nmasks, 0);
  assert_null(d->masks[0]);
  ctl_spawn_cell_clear(d);

  /* The highest range there is. */
  spawn_cell_msg(&m);
  m.id_base = 4294901760u - 65536;
  assert_int_equal(ctl_spawn_cell_encode(&m, &o), 0);
  decode_ok(&o, &spawn_cell, &u);
  assert_int_equal(d->id_base, 4294901760u - 65536);
  ctl_spawn_cell_clear(d);
}

static void test_spawn_cell_rejects(void **state) {
  (void)state;
  const struct codec *c = &spawn_cell;
  ctl_out o;
  struct ctl_spawn_cell m;
  spawn_cell_msg(&m);
  m.nmounts = CTL_MAX_MOUNTS + 1;
  assert_int_equal(ctl_spawn_cell_encode(&m, &o), -EINVAL);
  spawn_cell_msg(&m);
  m.mounts[1].fd = -1;
  assert_int_equal(ctl_spawn_cell_encode(&m, &o), -EBADF);

  spawn_cell_out(&o);
  o.num[0] |= 1 << 6;
  reject(&o, c, "flags 0x7f has bits other than 0x13f");
  spawn_cell_out(&o);
  o.num[0] = -1;
  reject(&o, c, "flags");
  spawn_cell_out(&o);
  o.num[1] = 65536 * 3 + 1; /* not a range's start */
  reject(&o, c, "id_base 196609 is not a multiple of 65536");
  spawn_cell_out(&o);
  o.num[1] = 65535; /* the first range is the host's */
  reject(&o, c, "id_base 65535 is not a multiple");
  spawn_cell_out(&o);
  o.num[2] = 0;
  reject(&o, c, "scratch_mb 0 is out of range");
  spawn_cell_out(&o);
  o.num[1] = 4294967295;
  reject(&o, c, "id_base 4294967295");
  spawn_cell_out(&o);
  o.num[1] = 4294901760; /* its range would reach (uid_t)-1 */
  reject(&o, c, "id_base 4294901760 is out of range");
  spawn_cell_out(&o);
  o.num[2] = -1;
  reject(&o, c, "scratch_mb -1");
  spawn_cell_out(&o);
  o.num[3] = 4294967296;
  reject(&o, c, "scratch_inodes 4294967296");
  spawn_cell_out(&o);
  o.num[4] = CTL_MAX_MOUNTS + 1;
  reject(&o, c, "nmounts 9");
  spawn_cell_out(&o);
  o.num[4] = -1;
  reject(&o, c, "nmounts -1");
  spawn_cell_out(&o);
  o.num[5] = 1 << 2; /* read-only bit of a third mount of two */
  reject(&o, c, "read-only bits 4");
  spawn_cell_out(&o);
  o.num[6] = 1;
  reject(&o, c, "num[6]");
  spawn_cell_out(&o);
  o.nfds--; /* a mount without its fd */
  reject(&o, c, "5 fds, 6 expected");
  spawn_cell_out(&o);
  o.num[4] = 1; /* fds of two mounts for one */
  o.num[5] = 0;
  reject(&o, c, "6 fds, 5 expected");
  spawn_cell_out(&o);
  o.fds[1] = F.reg;
  reject(&o, c, "sync_w (fd 1) is not a pipe");
  spawn_cell_out(&o);
  o.fds[2] = F.dir;
  reject(&o, c, "leaf_procs (fd 2) is not a file");
  spawn_cell_out(&o);
  o.fds[0] = F.reg;
  reject(&o, c, "cgroup (fd 0) is not a directory");
  spawn_cell_out(&o);
  o.fds[3] = F.p_w;
  reject(&o, c, "listen (fd 3) is not a socket");
  static const char *const bad_targets[] = {"data", "/", "/a/../b", "/a//b", "/a/", "/./a", "/.."};
  for (size_t i = 0; i < ARRAY_SIZE(bad_targets); i++) {
    spawn_cell_out(&o);
    o.str[3] = bad_targets[i]; /* name, two masks, then the targets */
    reject(&o, c, "mount target");
  }
  static const char *const bad_names[] = {"Web", "_spare", "a//b", "/a", "a/", ""};
  for (size_t i = 0; i < ARRAY_SIZE(bad_names); i++) {
    spawn_cell_out(&o);
    o.str[0] = bad_names[i];
    reject(&o, c, "cell name");
  }
  spawn_cell_out(&o);
  o.str[2] = "proc/kcore";
  reject(&o, c, "masked path \"proc/kcore\" is not absolute");
  spawn_cell_out(&o);
  o.nstr = 2; /* two mounts, two strings */
  reject(&o, c, "2 strings, at least 3 expected");

  /* Too many masks. */
  static char *many[CTL_MAX_MASKS + 1];
  for (size_t i = 0; i < ARRAY_SIZE(many); i++)
    many[i] = "/m";
  spawn_cell_msg(&m);
  m.masks = many;
  m.nmasks = CTL_MAX_MASKS + 1;
  assert_int_equal(ctl_spawn_cell_encode(&m, &o), -EINVAL);
  m.nmasks = CTL_MAX_MASKS;
  assert_int_equal(ctl_spawn_cell_encode(&m, &o), 0);
  /* The decoder counts them too: send one more with ctl_send. */
  const char *s[3 + 2 + CTL_MAX_MASKS + 1];
  memcpy(s, o.str, o.nstr * sizeof(char *));
  s[o.nstr] = "/m";
  assert_int_equal(
      ctl_send(F.tx, CTL_SPAWN_CELL, 1, 0, o.num, CTL_NUMS, s, o.nstr + 1, o.fds, o.nfds), 0);
  ctl_out_clear(&o);
  ctl_msg raw;
  assert_int_equal(ctl_recv(F.rx, &raw), 0);
  union any u;
  char why[256];
  assert_int_equal(ctl_spawn_cell_decode(&raw, &u.spawn_cell, why, sizeof(why)), -EBADMSG);
  assert_non_null(strstr(why, "65 masked paths"));
  ctl_msg_clear(&raw);
}

/* ---- TAKE_SPARE ---- */

static void take_spare_out(ctl_out *o) {
  struct ctl_take_spare m;
  ctl_take_spare_init(&m);
  m.name = "web";
  m.cgroup_procs = F.reg;
  m.sync_w = F.p_w;
  m.leaf_procs = F.reg;
  m.listen_fd = F.s0;
  m.ctl = F.s1;
  assert_int_equal(ctl_take_spare_encode(&m, o), 0);
}

static void test_take_spare(void **state) {
  (void)state;
  ctl_out o;
  union any u;
  take_spare_out(&o);
  decode_ok(&o, &take_spare, &u);
  struct ctl_take_spare *d = &u.take_spare;
  assert_string_equal(d->name, "web");
  assert_true(same_file(d->cgroup_procs, F.reg));
  assert_true(same_file(d->sync_w, F.p_w));
  assert_true(same_file(d->leaf_procs, F.reg));
  assert_true(same_file(d->listen_fd, F.s0));
  assert_true(same_file(d->ctl, F.s1));
  ctl_take_spare_clear(d);

  const struct codec *c = &take_spare;
  struct ctl_take_spare m;
  ctl_take_spare_init(&m);
  m.name = "web";
  assert_int_equal(ctl_take_spare_encode(&m, &o), -EBADF);
  take_spare_out(&o);
  o.nfds = 4;
  reject(&o, c, "4 fds, 5 expected");
  take_spare_out(&o);
  o.str[0] = "pod/web"; /* spares serve top-level cells only */
  reject(&o, c, "cell name");
  take_spare_out(&o);
  o.fds[0] = F.dir; /* the cgroup directory, as before cgroup.procs */
  reject(&o, c, "cgroup_procs (fd 0) is not a file");
  take_spare_out(&o);
  o.fds[4] = F.p_r;
  reject(&o, c, "ctl (fd 4) is not a socket");
  take_spare_out(&o);
  o.num[0] = 1;
  reject(&o, c, "num[0]");
}

/* ---- QUERY, FORGET, HOST_PID, EXIT_EVENT ---- */

static void test_named(void **state) {
  (void)state;
  ctl_out o;
  union any u;
  assert_int_equal(ctl_query_encode(&(struct ctl_query){.name = "job"}, &o), 0);
  decode_ok(&o, &query, &u);
  assert_string_equal(u.query.name, "job");
  ctl_query_clear(&u.query);
  assert_null(u.query.name);
  assert_int_equal(ctl_forget_encode(&(struct ctl_forget){.name = "job"}, &o), 0);
  decode_ok(&o, &forget, &u);
  assert_string_equal(u.forget.name, "job");
  ctl_forget_clear(&u.forget);
  assert_int_equal(ctl_query_encode(&(struct ctl_query){.name = NULL}, &o), -EINVAL);

  assert_int_equal(ctl_query_encode(&(struct ctl_query){.name = "Job"}, &o), 0);
  reject(&o, &query, "executable name");
  assert_int_equal(ctl_forget_encode(&(struct ctl_forget){.name = "a/b"}, &o), 0);
  reject(&o, &forget, "executable name");
  assert_int_equal(ctl_forget_encode(&(struct ctl_forget){.name = "job"}, &o), 0);
  o.fds[o.nfds++] = F.dir;
  reject(&o, &forget, "1 fds, 0 expected");
  assert_int_equal(ctl_query_encode(&(struct ctl_query){.name = "job"}, &o), 0);
  o.nstr = 0;
  reject(&o, &query, "0 strings, 1 expected");
  assert_int_equal(ctl_query_encode(&(struct ctl_query){.name = "job"}, &o), 0);
  reject(&o, &forget, "got a QUERY");

  assert_int_equal(ctl_host_pid_encode(&(struct ctl_host_pid){.name = "job", .host_pid = 4321}, &o),
                   0);
  decode_ok(&o, &host_pid, &u);
  assert_string_equal(u.host_pid.name, "job");
  assert_int_equal(u.host_pid.host_pid, 4321);
  ctl_host_pid_clear(&u.host_pid);
  assert_int_equal(ctl_host_pid_encode(&(struct ctl_host_pid){.name = "job", .host_pid = -1}, &o),
                   0);
  reject(&o, &host_pid, "host_pid -1");
  assert_int_equal(
      ctl_host_pid_encode(&(struct ctl_host_pid){.name = "job", .host_pid = CTL_PID_MAX + 1}, &o),
      0);
  reject(&o, &host_pid, "host_pid 4194305");
  assert_int_equal(ctl_host_pid_encode(&(struct ctl_host_pid){.name = "job"}, &o), 0);
  o.num[1] = 7;
  reject(&o, &host_pid, "num[1]");

  struct ctl_exit_event ev = {.name = "job", .wstatus = 3 << 8, .end_ns = 1700000000000000000};
  assert_int_equal(ctl_exit_event_encode(&ev, &o), 0);
  decode_ok(&o, &exit_event, &u);
  assert_string_equal(u.exit_event.name, "job");
  assert_int_equal(u.exit_event.wstatus, 3 << 8);
  assert_int_equal(u.exit_event.end_ns, 1700000000000000000);
  ctl_exit_event_clear(&u.exit_event);
  ev.wstatus = 9 | 0x80; /* killed, core dumped */
  assert_int_equal(ctl_exit_event_encode(&ev, &o), 0);
  decode_ok(&o, &exit_event, &u);
  assert_int_equal(u.exit_event.wstatus, 0x89);
  ctl_exit_event_clear(&u.exit_event);
  static const int bad_status[] = {0x137f /* stopped */,
                                   0xffff /* continued */,
                                   0x10000,
                                   -1,
                                   0x0141 /* signal 65 */,
                                   0x0109 /* signal and code */};
  for (size_t i = 0; i < ARRAY_SIZE(bad_status); i++) {
    ev.wstatus = bad_status[i];
    assert_int_equal(ctl_exit_event_encode(&ev, &o), 0);
    reject(&o, &exit_event, "is no exit status");
  }
  ev.wstatus = 0;
  ev.end_ns = -1;
  assert_int_equal(ctl_exit_event_encode(&ev, &o), 0);
  reject(&o, &exit_event, "end_ns -1");
  ev.end_ns = 0;
  assert_int_equal(ctl_exit_event_encode(&ev, &o), 0);
  o.num[0] = 1; /* the reserved slot */
  reject(&o, &exit_event, "num[0]");
}

/* ---- The zygote's messages ---- */

static void test_spare_config(void **state) {
  (void)state;
  struct ctl_spare_config m;
  ctl_spare_config_init(&m);
  m.flags = CELL_NS_ALL;
  m.id_base = 65536 * 2;
  m.scratch_mb = 4294967295u;
  m.scratch_inodes = 1;
  m.masks = MASKS;
  m.nmasks = 2;
  m.cgroup_root = F.dir;
  ctl_out o;
  union any u;
  assert_int_equal(ctl_spare_config_encode(&m, &o), 0);
  decode_ok(&o, &spare_config, &u);
  struct ctl_spare_config *d = &u.spare_config;
  assert_int_equal(d->flags, CELL_NS_ALL);
  assert_int_equal(d->id_base, 65536 * 2);
  assert_int_equal(d->scratch_mb, 4294967295u);
  assert_int_equal(d->scratch_inodes, 1);
  assert_int_equal(d->nmasks, 2);
  assert_string_equal(d->masks[0], "/run/aurae");
  assert_null(d->masks[2]);
  assert_true(same_file(d->cgroup_root, F.dir));
  ctl_spare_config_clear(d);

  const struct codec *c = &spare_config;
  assert_int_equal(ctl_spare_config_encode(&m, &o), 0);
  o.nfds = 0;
  reject(&o, c, "0 fds, 1 expected");
  assert_int_equal(ctl_spare_config_encode(&m, &o), 0);
  o.fds[0] = F.reg;
  reject(&o, c, "cgroup_root (fd 0) is not a directory");
  assert_int_equal(ctl_spare_config_encode(&m, &o), 0);
  o.num[1] = 100000;
  reject(&o, c, "id_base 100000 is not a multiple of 65536");
  assert_int_equal(ctl_spare_config_encode(&m, &o), 0);
  o.num[0] = 1 << 9;
  reject(&o, c, "flags 0x200");
  assert_int_equal(ctl_spare_config_encode(&m, &o), 0);
  o.num[4] = 1;
  reject(&o, c, "num[4]");
  assert_int_equal(ctl_spare_config_encode(&m, &o), 0);
  o.str[1] = "relative";
  reject(&o, c, "masked path \"relative\"");
  m.cgroup_root = -1;
  assert_int_equal(ctl_spare_config_encode(&m, &o), -EBADF);
}

static void test_spare_notices(void **state) {
  (void)state;
  ctl_out o;
  union any u;
  struct ctl_spare_ready r;
  ctl_spare_ready_init(&r);
  r.pid = 77;
  r.sock = F.s0;
  r.pidfd = F.pidfd;
  assert_int_equal(ctl_spare_ready_encode(&r, &o), 0);
  decode_ok(&o, &spare_ready, &u);
  assert_int_equal(u.spare_ready.pid, 77);
  assert_true(same_file(u.spare_ready.sock, F.s0));
  assert_true(same_file(u.spare_ready.pidfd, F.pidfd));
  ctl_spare_ready_clear(&u.spare_ready);
  assert_int_equal(ctl_spare_ready_encode(&r, &o), 0);
  o.num[0] = 0;
  reject(&o, &spare_ready, "pid 0");
  assert_int_equal(ctl_spare_ready_encode(&r, &o), 0);
  o.nfds = 1;
  reject(&o, &spare_ready, "1 fds, 2 expected");
  assert_int_equal(ctl_spare_ready_encode(&r, &o), 0);
  o.fds[0] = F.p_r;
  reject(&o, &spare_ready, "sock (fd 0) is not a socket");
  r.pidfd = -1;
  assert_int_equal(ctl_spare_ready_encode(&r, &o), -EBADF);

  assert_int_equal(ctl_spare_stale_encode(&(struct ctl_spare_stale){.pid = 77}, &o), 0);
  decode_ok(&o, &spare_stale, &u);
  assert_int_equal(u.spare_stale.pid, 77);
  assert_int_equal(ctl_spare_stale_encode(&(struct ctl_spare_stale){.pid = 0}, &o), 0);
  reject(&o, &spare_stale, "pid 0");
  assert_int_equal(ctl_spare_stale_encode(&(struct ctl_spare_stale){.pid = 1}, &o), 0);
  o.num[1] = 1;
  reject(&o, &spare_stale, "num[1]");
  assert_int_equal(ctl_spare_stale_encode(&(struct ctl_spare_stale){.pid = 1}, &o), 0);
  reject(&o, &spare_ready, "got a SPARE_STALE");

  struct ctl_took_spare t = {.pid = 77, .next_id_base = 131072};
  assert_int_equal(ctl_took_spare_encode(&t, &o), 0);
  decode_ok(&o, &took_spare, &u);
  assert_int_equal(u.took_spare.pid, 77);
  assert_int_equal(u.took_spare.next_id_base, 131072);
  t.next_id_base = 0;
  assert_int_equal(ctl_took_spare_encode(&t, &o), 0);
  decode_ok(&o, &took_spare, &u);
  assert_int_equal(u.took_spare.next_id_base, 0);
  t.next_id_base = 4294967295u;
  assert_int_equal(ctl_took_spare_encode(&t, &o), 0);
  reject(&o, &took_spare, "next_id_base 4294967295");
  assert_int_equal(ctl_took_spare_encode(&t, &o), 0);
  o.num[1] = -65536;
  reject(&o, &took_spare, "next_id_base -65536");
  t = (struct ctl_took_spare){.pid = -3};
  assert_int_equal(ctl_took_spare_encode(&t, &o), 0);
  reject(&o, &took_spare, "pid -3");

  assert_int_equal(ctl_build_spare_encode(&(struct ctl_build_spare){0}, &o), 0);
  decode_ok(&o, &build_spare, &u);
  assert_int_equal(u.build_spare.id_base, 0);
  assert_int_equal(ctl_build_spare_encode(&(struct ctl_build_spare){.id_base = 65536 * 5}, &o), 0);
  decode_ok(&o, &build_spare, &u);
  assert_int_equal(u.build_spare.id_base, 65536 * 5);
  assert_int_equal(ctl_build_spare_encode(&(struct ctl_build_spare){.id_base = 12345}, &o), 0);
  reject(&o, &build_spare, "id_base 12345 is not a multiple");
  assert_int_equal(ctl_build_spare_encode(&(struct ctl_build_spare){0}, &o), 0);
  o.num[7] = 1;
  reject(&o, &build_spare, "num[7]");
  assert_int_equal(ctl_build_spare_encode(&(struct ctl_build_spare){0}, &o), 0);
  o.fds[o.nfds++] = F.dir;
  reject(&o, &build_spare, "1 fds, 0 expected");
  const char *s[] = {"x"};
  assert_int_equal(ctl_send(F.tx, CTL_BUILD_SPARE, 0, 0, NULL, 0, s, 1, NULL, 0), 0);
  ctl_msg raw;
  assert_int_equal(ctl_recv(F.rx, &raw), 0);
  assert_int_equal(ctl_build_spare_decode(&raw, &u.build_spare, NULL, 0), -EBADMSG);
  ctl_msg_clear(&raw);
}

/* ---- Replies ---- */

static void test_error_reply(void **state) {
  (void)state;
  ctl_out o;
  union any u;
  struct ctl_error e = {.error = -ENOENT, .message = "execute \"x\":\nNo such file"};
  assert_int_equal(ctl_error_reply_encode(&e, &o), 0);
  decode_ok(&o, &error_reply, &u);
  assert_int_equal(u.error_reply.error, -ENOENT);
  /* A newline a client put in a path does not reach a log as one. */
  assert_string_equal(u.error_reply.message, "execute \"x\":?No such file");
  ctl_error_reply_clear(&u.error_reply);

  /* No message: strerror's. */
  e = (struct ctl_error){.error = -EACCES};
  assert_int_equal(ctl_error_reply_encode(&e, &o), 0);
  decode_ok(&o, &error_reply, &u);
  assert_string_equal(u.error_reply.message, strerror(EACCES));
  ctl_error_reply_clear(&u.error_reply);

  /* A long one is cut, before a UTF-8 sequence. */
  char big[CTL_ERROR_MSG_MAX + 8];
  memset(big, 'a', sizeof(big));
  memcpy(big + CTL_ERROR_MSG_MAX - 1, "\xc3\xa9", 2); /* é across the limit */
  big[sizeof(big) - 1] = '\0';
  e = (struct ctl_error){.error = -EIO, .message = big};
  assert_int_equal(ctl_error_reply_encode(&e, &o), 0);
  decode_ok(&o, &error_reply, &u);
  assert_int_equal(strlen(u.error_reply.message), CTL_ERROR_MSG_MAX - 1);
  ctl_error_reply_clear(&u.error_reply);

  e = (struct ctl_error){.error = 0, .message = "x"};
  assert_int_equal(ctl_error_reply_encode(&e, &o), -EINVAL);
  e.error = -4096;
  assert_int_equal(ctl_error_reply_encode(&e, &o), -EINVAL);

  const struct codec *c = &error_reply;
  e = (struct ctl_error){.error = -EPERM, .message = "no"};
  assert_int_equal(ctl_error_reply_encode(&e, &o), 0);
  o.error = -5000;
  reject(&o, c, "error -5000 is no negative errno");
  assert_int_equal(ctl_error_reply_encode(&e, &o), 0);
  o.error = 3;
  reject(&o, c, "error 3");
  assert_int_equal(ctl_error_reply_encode(&e, &o), 0);
  o.error = 0;
  reject(&o, c, "error 0");
  assert_int_equal(ctl_error_reply_encode(&e, &o), 0);
  o.str[0] = "";
  reject(&o, c, "empty message");
  assert_int_equal(ctl_error_reply_encode(&e, &o), 0);
  o.nstr = 0;
  reject(&o, c, "0 strings, 1 expected");
  assert_int_equal(ctl_error_reply_encode(&e, &o), 0);
  o.fds[o.nfds++] = F.p_r;
  reject(&o, c, "1 fds, 0 expected");
  assert_int_equal(ctl_error_reply_encode(&e, &o), 0);
  o.num[0] = 1;
  reject(&o, c, "num[0]");
  memset(big, 'b', sizeof(big));
  big[CTL_ERROR_MSG_MAX + 1] = '\0';
  assert_int_equal(ctl_error_reply_encode(&e, &o), 0);
  o.str[0] = big;
  reject(&o, c, "message of 1025 bytes");
}

static void test_spawn_reply(void **state) {
  (void)state;
  ctl_out o;
  union any u;
  struct ctl_spawn_reply r;
  ctl_spawn_reply_init(&r);
  r.pid = 2;
  r.pidfd = F.pidfd;
  r.cred_pid = getpid();
  assert_int_equal(ctl_spawn_reply_encode(&r, &o), 0);
  decode_ok(&o, &spawn_reply, &u);
  assert_int_equal(u.spawn_reply.pid, 2);
  assert_int_equal(u.spawn_reply.cred_pid, getpid()); /* translated by the kernel */
  assert_true(same_file(u.spawn_reply.pidfd, F.pidfd));
  ctl_spawn_reply_clear(&u.spawn_reply);

  const struct codec *c = &spawn_reply;
  assert_int_equal(ctl_spawn_reply_encode(&r, &o), 0);
  o.num[0] = 0;
  reject(&o, c, "pid 0");
  assert_int_equal(ctl_spawn_reply_encode(&r, &o), 0);
  o.nfds = 0;
  reject(&o, c, "0 fds, 1 expected");
  assert_int_equal(ctl_spawn_reply_encode(&r, &o), 0);
  o.fds[o.nfds++] = F.dir;
  reject(&o, c, "2 fds, 1 expected");
  assert_int_equal(ctl_spawn_reply_encode(&r, &o), 0);
  o.type = CTL_SPAWN_EXE;
  reject(&o, c, "got a SPAWN_EXE");
  r.pidfd = -1;
  assert_int_equal(ctl_spawn_reply_encode(&r, &o), -EBADF);

  /* An error reply: its errno and message, not -EBADMSG. */
  struct ctl_error e = {.error = -ENOEXEC, .message = "execute \"/x\": Exec format error"};
  assert_int_equal(ctl_error_reply_encode(&e, &o), 0);
  reject_(&o, c, -ENOEXEC, "execute \"/x\": Exec format error", __LINE__);
  assert_int_equal(ctl_error_reply_encode(&e, &o), 0);
  o.error = -100000; /* a malformed error reply is malformed */
  reject(&o, c, "error -100000");
  assert_int_equal(ctl_error_reply_encode(&e, &o), 0);
  reject_(&o, &query_reply, -ENOEXEC, "Exec format error", __LINE__);
  assert_int_equal(ctl_error_reply_encode(&e, &o), 0);
  reject_(&o, &empty_reply, -ENOEXEC, "Exec format error", __LINE__);
}

static void query_reply_msg(struct ctl_query_reply *m) {
  ctl_query_reply_init(m);
  m->running = true;
  m->cell_pid = 5;
  m->host_pid = 12345;
  m->out_r = F.p_r;
  m->err_r = F.q_r;
  m->pidfd = F.pidfd;
}

static void test_query_reply(void **state) {
  (void)state;
  ctl_out o;
  union any u;
  struct ctl_query_reply m;
  query_reply_msg(&m);
  assert_int_equal(ctl_query_reply_encode(&m, &o), 0);
  decode_ok(&o, &query_reply, &u);
  struct ctl_query_reply *d = &u.query_reply;
  assert_true(d->running);
  assert_int_equal(d->cell_pid, 5);
  assert_int_equal(d->host_pid, 12345);
  assert_true(same_file(d->out_r, F.p_r));
  assert_true(same_file(d->err_r, F.q_r));
  assert_true(same_file(d->pidfd, F.pidfd));
  ctl_query_reply_clear(d);

  /* Running, its pidfd not given (optional). */
  m.pidfd = -1;
  assert_int_equal(ctl_query_reply_encode(&m, &o), 0);
  decode_ok(&o, &query_reply, &u);
  assert_int_equal(d->pidfd, -1);
  ctl_query_reply_clear(d);

  /* Ended: its pidfd is not sent even when the struct has one. */
  query_reply_msg(&m);
  m.running = false;
  m.wstatus = 1 << 8;
  m.end_ns = 99;
  m.host_pid = 0;
  assert_int_equal(ctl_query_reply_encode(&m, &o), 0);
  decode_ok(&o, &query_reply, &u);
  assert_false(d->running);
  assert_int_equal(d->wstatus, 1 << 8);
  assert_int_equal(d->end_ns, 99);
  assert_int_equal(d->host_pid, 0);
  assert_int_equal(d->pidfd, -1);
  ctl_query_reply_clear(d);

  const struct codec *c = &query_reply;
  assert_int_equal(ctl_query_reply_encode(&m, &o), 0);
  o.fds[o.nfds++] = F.pidfd; /* a pidfd of an ended process */
  reject(&o, c, "3 fds, 2 expected");
  assert_int_equal(ctl_query_reply_encode(&m, &o), 0);
  o.num[1] = 0x137f;
  reject(&o, c, "wstatus 0x137f of an ended process");
  query_reply_msg(&m);
  assert_int_equal(ctl_query_reply_encode(&m, &o), 0);
  o.num[1] = 1 << 8;
  reject(&o, c, "of a running process");
  assert_int_equal(ctl_query_reply_encode(&m, &o), 0);
  o.num[2] = 5;
  reject(&o, c, "end_ns 5 is out of range 0 to 0");
  assert_int_equal(ctl_query_reply_encode(&m, &o), 0);
  o.num[0] = 2;
  reject(&o, c, "running 2");
  assert_int_equal(ctl_query_reply_encode(&m, &o), 0);
  o.num[3] = 0;
  reject(&o, c, "cell_pid 0");
  assert_int_equal(ctl_query_reply_encode(&m, &o), 0);
  o.num[4] = -1;
  reject(&o, c, "host_pid -1");
  assert_int_equal(ctl_query_reply_encode(&m, &o), 0);
  o.fds[0] = F.s0; /* an init handing auraed a socket to read as output */
  reject(&o, c, "out_r (fd 0) is not a pipe");
  assert_int_equal(ctl_query_reply_encode(&m, &o), 0);
  o.nfds = 1;
  reject(&o, c, "1 fds, 2 to 3 expected");
  m.err_r = -1;
  assert_int_equal(ctl_query_reply_encode(&m, &o), -EBADF);
}

static void test_empty_reply(void **state) {
  (void)state;
  ctl_out o;
  union any u;
  assert_int_equal(ctl_empty_reply_encode(&o), 0);
  decode_ok(&o, &empty_reply, &u);
  assert_int_equal(ctl_empty_reply_encode(&o), 0);
  o.num[0] = 1;
  reject(&o, &empty_reply, "num[0]");
  assert_int_equal(ctl_empty_reply_encode(&o), 0);
  o.fds[o.nfds++] = F.dir;
  reject(&o, &empty_reply, "1 fds");
  assert_int_equal(ctl_empty_reply_encode(&o), 0);
  o.type = CTL_FORGET;
  reject(&o, &empty_reply, "got a FORGET");
}

static void test_type_names(void **state) {
  (void)state;
  assert_string_equal(ctl_type_name(CTL_SPAWN_EXE), "SPAWN_EXE");
  assert_string_equal(ctl_type_name(CTL_BUILD_SPARE), "BUILD_SPARE");
  assert_string_equal(ctl_type_name(0), "UNKNOWN");
  assert_string_equal(ctl_type_name(99), "UNKNOWN");
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_parse_good),
      T(test_parse_bad),
      T(test_parse_garbage),
      T(test_spawn_exe_roundtrip),
      T(test_spawn_exe_encode_refuses),
      T(test_spawn_exe_rejects),
      T(test_spawn_cell_roundtrip),
      T(test_spawn_cell_rejects),
      T(test_take_spare),
      T(test_named),
      T(test_spare_config),
      T(test_spare_notices),
      T(test_error_reply),
      T(test_spawn_reply),
      T(test_query_reply),
      T(test_empty_reply),
      T(test_type_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
