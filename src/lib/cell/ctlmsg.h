/* Typed control messages (the packets of ctl.h): one struct per message,
 * one encoder that makes the packet, one decoder that checks all of it.
 *
 * Both directions decode untrusted bytes: a cell's init reads requests
 * whose contents come from clients, auraed reads what an init inside a
 * cell sends back. So a decoder checks everything a receiver relies on
 * (the type, the exact number of fds, strings and numbers, every range,
 * every name) before any of it is used, and a receiver never indexes
 * num[], str[] or fds[] of a ctl_msg itself. tests/fuzz/fuzz_ctlmsg.c
 * runs every decoder on arbitrary packets.
 *
 * Sending:   ctl_out o;
 *            r = ctl_query_encode(&(struct ctl_query){.name = n}, &o);
 *            if (r == 0) r = ctl_out_send(sock, seq, &o);
 *            ctl_out_clear(&o);
 * Receiving: ctl_msg raw;  (from ctl_recv)
 *            struct ctl_query q;
 *            r = ctl_query_decode(&raw, &q, why, sizeof(why));
 *            ctl_msg_clear(&raw);
 *            ... use q ...
 *            ctl_query_clear(&q);
 *
 * Ownership. An encoder borrows everything in its struct (strings, fds)
 * until the ctl_out is sent and cleared. A decoder that succeeds takes the
 * whole packet from raw, its buffer and its fds, and leaves raw empty; the
 * struct's strings point into that buffer (struct ctl_store) and stay
 * valid until ctl_<type>_clear, which also closes every fd the struct
 * still holds (take one with TAKE_FD). A decoder that fails leaves raw as
 * it was (ctl_msg_clear closes its fds) and ret empty, with its fds -1,
 * so ctl_<type>_clear is harmless after either outcome. Call
 * ctl_<type>_init before filling a struct to encode: fds start at -1, and
 * an optional fd left at 0 would send stdin.
 *
 * Results. Decoders return 0 or -EBADMSG with why saying what is wrong
 * (why may be NULL); -ENOMEM when they allocate. A decoder of a reply
 * returns the error of an error reply ({errno, message}, see ctl_error)
 * with its message in why, so that a caller passes the cause on; raw->error
 * tells the two apart. Encoders return 0, -EINVAL (a count over its limit,
 * a missing string), -EBADF (a required fd < 0) or -ENOMEM; the checks of
 * contents are the decoder's, done where the bytes are trusted least.
 *
 * Layouts (num slots not named are 0, and a decoder rejects anything
 * else there: an init outlives an auraed upgrade, and a field it does
 * not know must fail loudly, not be ignored):
 *  SPAWN_EXE   num: has_creds uid gid argc envc ngroups
 *              str: name cwd argv... envp... group ids (decimal)...
 *              fds: cgroup stdin out_w err_w out_r err_r [reply socket]
 *  SPAWN_CELL  num: flags id_base scratch_mb scratch_inodes nmounts
 *                   read-only bits (bit i: mount i)
 *              str: name masks... mount targets...
 *              fds: cgroup sync_w leaf_procs listen mount trees...
 *  TAKE_SPARE  str: name  fds: cgroup_procs sync_w leaf_procs listen ctl
 *  QUERY, FORGET  str: name
 *  HOST_PID    num: host_pid  str: name
 *  EXIT_EVENT  num: 0 wstatus end_ns  str: name
 *  SPARE_CONFIG num: flags id_base scratch_mb scratch_inodes
 *              str: masks...  fds: cgroup_root
 *  SPARE_READY num: pid  fds: sock pidfd
 *  SPARE_STALE num: pid
 *  TOOK_SPARE  num: pid next_id_base
 *  BUILD_SPARE num: id_base (0: keep the current one)
 *  REPLY       error reply: error < 0, str: message
 *              spawn reply: num: pid  fds: pidfd  (+ SCM_CREDENTIALS)
 *              query reply: num: running wstatus end_ns cell_pid host_pid
 *                           fds: out_r err_r [pidfd, only while running]
 *              empty reply: nothing (FORGET; a spare's "ready")
 * Not a packet: the sync pipe of a starting init says "ok", or an int32
 * negative errno and then its message (init_fail, wait_ready). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cell/ctl.h"

/* Supplementary groups of an executable (the API's limit too). */
#define CTL_MAX_GROUPS 64
/* argv and envp entries together (exe_ops.c checks the same). */
#define CTL_MAX_ARGS 4096
/* Bind mounts of a cell: each brings an fd, and CTL_MAX_FDS holds them. */
#define CTL_MAX_MOUNTS 8
/* Masked paths of a cell (auraed's config makes at most 16). */
#define CTL_MAX_MASKS 64
/* Ids of a cell's user namespace, from id_base on (DESIGN.md: each cell
 * gets its own 65,536-id range). */
#define CTL_ID_RANGE 65536u
/* uid_t and gid_t are 32 bits; (uid_t)-1 means "unchanged" to setresuid
 * and is no one's id, so an id is below it. */
#define CTL_ID_MAX 4294967294u
/* PID_MAX_LIMIT of a 64-bit kernel: pid_max cannot be set above it. */
#define CTL_PID_MAX (4 * 1024 * 1024)
/* Longest message of an error reply; an encoder cuts a longer one. */
#define CTL_ERROR_MSG_MAX 1024
/* The flags a SPAWN_CELL or SPARE_CONFIG may carry (no bit asks for a
 * user namespace: a non-zero id_base does). */
#define CTL_CELL_FLAGS CELL_INIT_FLAGS

/* A message encoded for ctl_send: the arrays it takes. Its strings are
 * borrowed from the struct that was encoded (or held in own). */
typedef struct ctl_out {
  uint32_t type;
  int32_t error;
  /* > 0: sent as SCM_CREDENTIALS (ctl_send_pid; no strings then). */
  int32_t cred_pid;
  int64_t num[CTL_NUMS];
  const char **str;
  size_t nstr;
  int fds[CTL_MAX_FDS];
  size_t nfds;
  char *own; /* text made by the encoder (group ids, a cut message) */
} ctl_out;

/* Sends o with sequence number seq. ctl_send's results. */
int ctl_out_send(int sock, uint32_t seq, const ctl_out *o);
/* Frees what the encoder allocated; closes nothing. Accepts a ctl_out an
 * encoder failed on. */
void ctl_out_clear(ctl_out *o);

/* The packet a decoded struct's strings point into (taken from raw). */
typedef struct ctl_store {
  char *buf;
  char **str;
  void *extra; /* what the decoder allocated (argv and envp arrays) */
} ctl_store;

/* "SPAWN_EXE", ... for log lines; "UNKNOWN" for a type no message has. */
const char *ctl_type_name(uint32_t type);

/* CTL_SPAWN_EXE, auraed -> a cell's init: start an executable. */
struct ctl_spawn_exe {
  const char *name; /* a DNS label (names.h) */
  const char *cwd;  /* absolute, or "" (and NULL when encoding) for "/" */
  /* argc >= 1 entries, argv[0] not empty; envp entries are KEY=VALUE.
   * Decoded arrays are also NULL-terminated, for execve. */
  char *const *argv;
  size_t argc;
  char *const *envp;
  size_t envc;
  /* Without has_creds the executable keeps the init's ids, and uid, gid
   * and groups are 0 on the wire (the encoder sends them so). */
  bool has_creds;
  uid_t uid;
  gid_t gid;
  gid_t groups[CTL_MAX_GROUPS];
  size_t ngroups;
  int cgroup_fd; /* the executable's leaf cgroup directory */
  int stdin_fd, out_w, err_w, out_r, err_r;
  /* Optional (-1): where the reply goes instead of the control socket. */
  int reply_fd;
  ctl_store store;
};
void ctl_spawn_exe_init(struct ctl_spawn_exe *m);
void ctl_spawn_exe_clear(struct ctl_spawn_exe *m);
int ctl_spawn_exe_encode(const struct ctl_spawn_exe *m, ctl_out *ret);
int ctl_spawn_exe_decode(ctl_msg *raw, struct ctl_spawn_exe *ret, char *why, size_t why_size);

/* A bind mount into a cell: the source travels as a detached mount tree
 * (open_tree). */
struct ctl_mount {
  const char *target; /* absolute in the cell; no "." or ".." parts; not "/" */
  bool read_only;
  int fd;
};

/* CTL_SPAWN_CELL, auraed -> the zygote or a parent cell's init: start a
 * cell's init. */
struct ctl_spawn_cell {
  const char *name; /* a cell path (names.h) */
  unsigned flags;   /* CTL_CELL_FLAGS */
  /* 0: no user namespace. Else the host id of the cell's root: a multiple
   * of CTL_ID_RANGE, at least CTL_ID_RANGE (never the host's ids), whose
   * range ends at CTL_ID_MAX at most. */
  uint32_t id_base;
  /* Size caps of each private tmpfs, 1 or more. */
  uint32_t scratch_mb, scratch_inodes;
  /* Absolute paths, at most CTL_MAX_MASKS; NULL-terminated when decoded. */
  char *const *masks;
  size_t nmasks;
  struct ctl_mount mounts[CTL_MAX_MOUNTS];
  size_t nmounts;
  /* cgroup_fd: the cell's cgroup directory; listen_fd: init.sock, bound
   * and listening (auraed binds it in the cell's state directory). */
  int cgroup_fd, sync_w, leaf_procs, listen_fd;
  ctl_store store;
};
void ctl_spawn_cell_init(struct ctl_spawn_cell *m);
void ctl_spawn_cell_clear(struct ctl_spawn_cell *m);
int ctl_spawn_cell_encode(const struct ctl_spawn_cell *m, ctl_out *ret);
int ctl_spawn_cell_decode(ctl_msg *raw, struct ctl_spawn_cell *ret, char *why, size_t why_size);

/* CTL_TAKE_SPARE, auraed -> the spare init: become this top-level cell's. */
struct ctl_take_spare {
  const char *name; /* a DNS label: spares serve top-level cells only */
  int cgroup_procs; /* the cell cgroup's cgroup.procs, opened by auraed */
  int sync_w;       /* the spare answers here */
  int leaf_procs;   /* the _init leaf's cgroup.procs */
  int listen_fd;    /* init.sock, bound and listening */
  int ctl;          /* its end of auraed's control connection */
  ctl_store store;
};
void ctl_take_spare_init(struct ctl_take_spare *m);
void ctl_take_spare_clear(struct ctl_take_spare *m);
int ctl_take_spare_encode(const struct ctl_take_spare *m, ctl_out *ret);
int ctl_take_spare_decode(ctl_msg *raw, struct ctl_take_spare *ret, char *why, size_t why_size);

/* CTL_QUERY, auraed -> a cell's init: what it knows of an executable. */
struct ctl_query {
  const char *name; /* a DNS label */
  ctl_store store;
};
void ctl_query_init(struct ctl_query *m);
void ctl_query_clear(struct ctl_query *m);
int ctl_query_encode(const struct ctl_query *m, ctl_out *ret);
int ctl_query_decode(ctl_msg *raw, struct ctl_query *ret, char *why, size_t why_size);

/* CTL_FORGET, auraed -> a cell's init: drop an executable (empty reply). */
struct ctl_forget {
  const char *name; /* a DNS label */
  ctl_store store;
};
void ctl_forget_init(struct ctl_forget *m);
void ctl_forget_clear(struct ctl_forget *m);
int ctl_forget_encode(const struct ctl_forget *m, ctl_out *ret);
int ctl_forget_decode(ctl_msg *raw, struct ctl_forget *ret, char *why, size_t why_size);

/* CTL_HOST_PID, auraed -> a cell's init, no reply: an executable's pid on
 * the host, which the init cannot see and keeps for QUERY. */
struct ctl_host_pid {
  const char *name; /* a DNS label */
  pid_t host_pid;   /* 0 (unknown) to CTL_PID_MAX */
  ctl_store store;
};
void ctl_host_pid_init(struct ctl_host_pid *m);
void ctl_host_pid_clear(struct ctl_host_pid *m);
int ctl_host_pid_encode(const struct ctl_host_pid *m, ctl_out *ret);
int ctl_host_pid_decode(ctl_msg *raw, struct ctl_host_pid *ret, char *why, size_t why_size);

/* CTL_EXIT_EVENT, a cell's init -> auraed, seq 0: an executable ended. */
struct ctl_exit_event {
  const char *name; /* a DNS label */
  int wstatus;      /* as waitpid gives it: exited or killed */
  int64_t end_ns;   /* CLOCK_REALTIME, >= 0 */
  ctl_store store;
};
void ctl_exit_event_init(struct ctl_exit_event *m);
void ctl_exit_event_clear(struct ctl_exit_event *m);
int ctl_exit_event_encode(const struct ctl_exit_event *m, ctl_out *ret);
int ctl_exit_event_decode(ctl_msg *raw, struct ctl_exit_event *ret, char *why, size_t why_size);

/* CTL_SPARE_CONFIG, auraed -> the zygote, no reply: how to make spares. */
struct ctl_spare_config {
  unsigned flags;   /* CTL_CELL_FLAGS */
  uint32_t id_base; /* of the next spare; 0: make no spare. As ctl_spawn_cell's */
  uint32_t scratch_mb, scratch_inodes;
  char *const *masks; /* absolute; NULL-terminated when decoded */
  size_t nmasks;
  int cgroup_root; /* the cells' cgroup root directory */
  ctl_store store;
};
void ctl_spare_config_init(struct ctl_spare_config *m);
void ctl_spare_config_clear(struct ctl_spare_config *m);
int ctl_spare_config_encode(const struct ctl_spare_config *m, ctl_out *ret);
int ctl_spare_config_decode(ctl_msg *raw, struct ctl_spare_config *ret, char *why, size_t why_size);

/* CTL_SPARE_READY, the zygote -> auraed: a spare init is ready. */
struct ctl_spare_ready {
  pid_t pid; /* 1 to CTL_PID_MAX */
  int sock, pidfd;
};
void ctl_spare_ready_init(struct ctl_spare_ready *m);
void ctl_spare_ready_clear(struct ctl_spare_ready *m);
int ctl_spare_ready_encode(const struct ctl_spare_ready *m, ctl_out *ret);
int ctl_spare_ready_decode(ctl_msg *raw, struct ctl_spare_ready *ret, char *why, size_t why_size);

/* CTL_SPARE_STALE, the zygote -> auraed: let this spare go unless used. */
struct ctl_spare_stale {
  pid_t pid; /* 1 to CTL_PID_MAX */
};
void ctl_spare_stale_init(struct ctl_spare_stale *m);
void ctl_spare_stale_clear(struct ctl_spare_stale *m);
int ctl_spare_stale_encode(const struct ctl_spare_stale *m, ctl_out *ret);
int ctl_spare_stale_decode(ctl_msg *raw, struct ctl_spare_stale *ret, char *why, size_t why_size);

/* CTL_TOOK_SPARE, auraed -> the zygote, no reply: that spare is a cell's
 * init now; make the next one with next_id_base. */
struct ctl_took_spare {
  pid_t pid;             /* 1 to CTL_PID_MAX */
  uint32_t next_id_base; /* 0 (no user namespace) or a range as id_base */
};
void ctl_took_spare_init(struct ctl_took_spare *m);
void ctl_took_spare_clear(struct ctl_took_spare *m);
int ctl_took_spare_encode(const struct ctl_took_spare *m, ctl_out *ret);
int ctl_took_spare_decode(ctl_msg *raw, struct ctl_took_spare *ret, char *why, size_t why_size);

/* CTL_BUILD_SPARE, auraed -> the zygote, no reply: make the spare now. */
struct ctl_build_spare {
  uint32_t id_base; /* its id range; 0 keeps the current one */
};
void ctl_build_spare_init(struct ctl_build_spare *m);
void ctl_build_spare_clear(struct ctl_build_spare *m);
int ctl_build_spare_encode(const struct ctl_build_spare *m, ctl_out *ret);
int ctl_build_spare_decode(ctl_msg *raw, struct ctl_build_spare *ret, char *why, size_t why_size);

/* An error reply: {errno, message}. error is a negative errno (-4095 to
 * -1) that reaches the client as is (the daemon's errno table maps it);
 * the message says what failed, non-empty, at most CTL_ERROR_MSG_MAX
 * bytes (the encoder cuts a longer one and uses strerror for none). The
 * decoder turns control characters into '?': the message goes into logs
 * and gRPC statuses, and a client's path in it must not forge lines. */
struct ctl_error {
  int error;
  const char *message;
  ctl_store store;
};
void ctl_error_reply_init(struct ctl_error *m);
void ctl_error_reply_clear(struct ctl_error *m);
int ctl_error_reply_encode(const struct ctl_error *m, ctl_out *ret);
int ctl_error_reply_decode(ctl_msg *raw, struct ctl_error *ret, char *why, size_t why_size);

/* The success reply to SPAWN_EXE and SPAWN_CELL: the new process. */
struct ctl_spawn_reply {
  pid_t pid; /* in the replier's pid namespace, 1 to CTL_PID_MAX */
  int pidfd;
  /* Encoding: > 0 sends it as SCM_CREDENTIALS, which the kernel translates
   * into the receiver's pid namespace (a cell init names the executable
   * so). Decoded: what arrived (0 when none, or when the process is not
   * visible to us); the receiver needs SO_PASSCRED. */
  pid_t cred_pid;
};
void ctl_spawn_reply_init(struct ctl_spawn_reply *m);
void ctl_spawn_reply_clear(struct ctl_spawn_reply *m);
int ctl_spawn_reply_encode(const struct ctl_spawn_reply *m, ctl_out *ret);
int ctl_spawn_reply_decode(ctl_msg *raw, struct ctl_spawn_reply *ret, char *why, size_t why_size);

/* The success reply to QUERY. */
struct ctl_query_reply {
  bool running;
  int wstatus;    /* 0 while running, else exited or killed */
  int64_t end_ns; /* 0 while running, else >= 0 */
  pid_t cell_pid; /* 1 to CTL_PID_MAX */
  pid_t host_pid; /* 0 (unknown) to CTL_PID_MAX */
  int out_r, err_r;
  int pidfd; /* optional (-1), and only while running */
};
void ctl_query_reply_init(struct ctl_query_reply *m);
void ctl_query_reply_clear(struct ctl_query_reply *m);
int ctl_query_reply_encode(const struct ctl_query_reply *m, ctl_out *ret);
int ctl_query_reply_decode(ctl_msg *raw, struct ctl_query_reply *ret, char *why, size_t why_size);

/* A success reply without fields (to FORGET; a spare's "ready"). */
int ctl_empty_reply_encode(ctl_out *ret);
int ctl_empty_reply_decode(ctl_msg *raw, char *why, size_t why_size);
