/* Every typed control message's codec behind one signature, for the
 * tables of the unit test (tests/unit/test_ctlmsg.c) and the fuzz target
 * (tests/fuzz/fuzz_ctlmsg.c). Include after cell/ctlmsg.h. */
#pragma once

union any {
  struct ctl_spawn_exe spawn_exe;
  struct ctl_spawn_cell spawn_cell;
  struct ctl_take_spare take_spare;
  struct ctl_query query;
  struct ctl_forget forget;
  struct ctl_host_pid host_pid;
  struct ctl_exit_event exit_event;
  struct ctl_spare_config spare_config;
  struct ctl_spare_ready spare_ready;
  struct ctl_spare_stale spare_stale;
  struct ctl_took_spare took_spare;
  struct ctl_build_spare build_spare;
  struct ctl_error error_reply;
  struct ctl_spawn_reply spawn_reply;
  struct ctl_query_reply query_reply;
};

struct codec {
  uint32_t type;
  int (*decode)(ctl_msg *raw, union any *ret, char *why, size_t size);
  int (*encode)(const union any *m, ctl_out *ret);
  void (*clear)(union any *m);
};

/* One codec, named after its message (`&spawn_exe`). */
#define CODEC(t, type_)                                                                            \
  static int decode_##t(ctl_msg *raw, union any *ret, char *why, size_t size) {                    \
    return ctl_##t##_decode(raw, &ret->t, why, size);                                              \
  }                                                                                                \
  static int encode_##t(const union any *m, ctl_out *ret) { return ctl_##t##_encode(&m->t, ret); } \
  static void clear_##t(union any *m) { ctl_##t##_clear(&m->t); }                                  \
  static const struct codec t = {type_, decode_##t, encode_##t, clear_##t};
CODEC(spawn_exe, CTL_SPAWN_EXE)
CODEC(spawn_cell, CTL_SPAWN_CELL)
CODEC(take_spare, CTL_TAKE_SPARE)
CODEC(query, CTL_QUERY)
CODEC(forget, CTL_FORGET)
CODEC(host_pid, CTL_HOST_PID)
CODEC(exit_event, CTL_EXIT_EVENT)
CODEC(spare_config, CTL_SPARE_CONFIG)
CODEC(spare_ready, CTL_SPARE_READY)
CODEC(spare_stale, CTL_SPARE_STALE)
CODEC(took_spare, CTL_TOOK_SPARE)
CODEC(build_spare, CTL_BUILD_SPARE)
CODEC(error_reply, CTL_REPLY)
CODEC(spawn_reply, CTL_REPLY)
CODEC(query_reply, CTL_REPLY)
#undef CODEC
static int decode_empty(ctl_msg *raw, union any *ret, char *why, size_t size) {
  (void)ret;
  return ctl_empty_reply_decode(raw, why, size);
}
static int encode_empty(const union any *m, ctl_out *ret) {
  (void)m;
  return ctl_empty_reply_encode(ret);
}
static void clear_empty(union any *m) { (void)m; }
static const struct codec empty_reply = {CTL_REPLY, decode_empty, encode_empty, clear_empty};

static const struct codec *const codecs[] __attribute__((unused)) = {
    &spawn_exe,   &spawn_cell,   &take_spare,  &query,       &forget,     &host_pid,
    &exit_event,  &spare_config, &spare_ready, &spare_stale, &took_spare, &build_spare,
    &error_reply, &spawn_reply,  &query_reply, &empty_reply,
};
