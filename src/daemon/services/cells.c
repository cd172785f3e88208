/* Cells and executables: protobuf <-> src/lib/cell. RunCell/RunExecutable
 * and the lifecycle ops for WORKLOAD_KIND_CELL and _EXECUTABLE. Messages
 * built here are malloc'd all the way down, so they can be freed with
 * protobuf_c_message_free_unpacked (runtime.c does that for List). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cell/cell.h"
#include "log.h"
#include "services.h"

typedef Aurae__Runtime__V0__CellStatus pb_cell_status;
typedef Aurae__Runtime__V0__ExecutableStatus pb_exe_status;

static cell_manager *g_mgr;

static bool not_ready(rpc_call *call) {
  if (g_mgr) return false;
  rpc_call_fail(call, RPC_UNAVAILABLE, "cells are not available (cells_service_init failed)");
  return true;
}

/* ---------------------------------------------------------------- to pb */

static pb_exe_status *exe_to_pb(const exe_info *e) {
  pb_exe_status *s = pb_zalloc(sizeof(*s));
  aurae__runtime__v0__executable_status__init(s);
  s->cell_name = pb_strdup(e->cell);
  s->name = pb_strdup(e->name);
  size_t n = 0;
  while (e->argv && e->argv[n])
    n++;
  s->n_args = n;
  s->args = n ? pb_zalloc(n * sizeof(char *)) : NULL;
  for (size_t i = 0; i < n; i++)
    s->args[i] = pb_strdup(e->argv[i]);
  s->state = e->state == EXE_EXITED ? AURAE__RUNTIME__V0__EXECUTABLE_STATE__EXECUTABLE_STATE_EXITED
             : e->state == EXE_KILLED
                 ? AURAE__RUNTIME__V0__EXECUTABLE_STATE__EXECUTABLE_STATE_KILLED
                 : AURAE__RUNTIME__V0__EXECUTABLE_STATE__EXECUTABLE_STATE_RUNNING;
  s->host_pid = e->host_pid;
  s->cell_pid = e->cell_pid;
  s->exit_code = e->exit_code;
  s->signal = e->signal;
  s->started_at_ns = e->started_ns;
  s->ended_at_ns = e->ended_ns;
  s->stdout_dropped_bytes = e->dropped[0];
  s->stderr_dropped_bytes = e->dropped[1];
  s->output_lost = e->output_lost;
  return s;
}

static Aurae__Runtime__V0__CellResources *res_to_pb(const cell_resources *r) {
  Aurae__Runtime__V0__CellResources *p = pb_zalloc(sizeof(*p));
  aurae__runtime__v0__cell_resources__init(p);
  if (r->cpu_weight || r->cpu_max_quota_us || r->cpu_period_us) {
    p->cpu = pb_zalloc(sizeof(*p->cpu));
    aurae__runtime__v0__cpu_resources__init(p->cpu);
    p->cpu->weight = r->cpu_weight;
    p->cpu->max_quota_us = r->cpu_max_quota_us;
    p->cpu->period_us = r->cpu_period_us;
  }
  if (r->cpuset_cpus[0] || r->cpuset_mems[0]) {
    p->cpuset = pb_zalloc(sizeof(*p->cpuset));
    aurae__runtime__v0__cpuset_resources__init(p->cpuset);
    p->cpuset->cpus = pb_strdup(r->cpuset_cpus);
    p->cpuset->mems = pb_strdup(r->cpuset_mems);
  }
  if (r->memory_min || r->memory_low || r->memory_high || r->memory_max || r->memory_swap_max) {
    p->memory = pb_zalloc(sizeof(*p->memory));
    aurae__runtime__v0__memory_resources__init(p->memory);
    p->memory->min = r->memory_min;
    p->memory->low = r->memory_low;
    p->memory->high = r->memory_high;
    p->memory->max = r->memory_max;
    p->memory->swap_max = r->memory_swap_max;
  }
  if (r->pids_max) {
    p->pids = pb_zalloc(sizeof(*p->pids));
    aurae__runtime__v0__pids_resources__init(p->pids);
    p->pids->max = r->pids_max;
  }
  if (r->io_weight) {
    p->io = pb_zalloc(sizeof(*p->io));
    aurae__runtime__v0__io_resources__init(p->io);
    p->io->weight = r->io_weight;
  }
  return p;
}

static pb_cell_status *cell_to_pb(const cell_info *c) {
  pb_cell_status *s = pb_zalloc(sizeof(*s));
  aurae__runtime__v0__cell_status__init(s);
  s->name = pb_strdup(c->name);
  s->state = AURAE__RUNTIME__V0__CELL_STATE__CELL_STATE_RUNNING;
  s->cgroup_path = pb_strdup(c->cgroup_path);
  s->init_host_pid = c->init_pid;
  s->resources = res_to_pb(&c->resources);
  s->isolation = pb_zalloc(sizeof(*s->isolation));
  aurae__runtime__v0__cell_isolation__init(s->isolation);
  s->isolation->share_pid = !!(c->share & CELL_SHARE_PID);
  s->isolation->share_mount = !!(c->share & CELL_SHARE_MNT);
  s->isolation->share_ipc = !!(c->share & CELL_SHARE_IPC);
  s->isolation->share_uts = !!(c->share & CELL_SHARE_UTS);
  s->isolation->share_network = !!(c->share & CELL_SHARE_NET);
  s->isolation->share_cgroup = !!(c->share & CELL_SHARE_CGROUP);
  s->isolation->privileged = !!(c->share & CELL_PRIVILEGED);
  s->isolation->share_user = !!(c->share & CELL_SHARE_USER);
  s->host_id_base = c->id_base;
  s->n_mounts = c->nbinds;
  s->mounts = c->nbinds ? pb_zalloc(c->nbinds * sizeof(*s->mounts)) : NULL;
  for (size_t i = 0; i < c->nbinds; i++) {
    Aurae__Runtime__V0__Mount *m = s->mounts[i] = pb_zalloc(sizeof(*m));
    aurae__runtime__v0__mount__init(m);
    m->source = pb_strdup(c->binds[i].source);
    m->target = pb_strdup(c->binds[i].target);
    m->read_only = c->binds[i].read_only;
  }
  s->n_executables = c->n_exes;
  s->executables = c->n_exes ? pb_zalloc(c->n_exes * sizeof(*s->executables)) : NULL;
  for (size_t i = 0; i < c->n_exes; i++)
    s->executables[i] = exe_to_pb(&c->exes[i]);
  size_t n = 0;
  while (c->children && c->children[n])
    n++;
  s->n_children = n;
  s->children = n ? pb_zalloc(n * sizeof(char *)) : NULL;
  for (size_t i = 0; i < n; i++)
    s->children[i] = pb_strdup(c->children[i]);
  s->created_at_ns = c->created_ns;
  return s;
}

static void reply_free(rpc_call *call, ProtobufCMessage *msg) {
  rpc_call_reply(call, msg);
  protobuf_c_message_free_unpacked(msg, NULL);
}

static void reply_workload_exe(rpc_call *call, const exe_info *info) {
  Aurae__Runtime__V0__WorkloadStatus *w = pb_zalloc(sizeof(*w));
  aurae__runtime__v0__workload_status__init(w);
  w->status_case = AURAE__RUNTIME__V0__WORKLOAD_STATUS__STATUS_EXECUTABLE;
  w->executable = exe_to_pb(info);
  reply_free(call, &w->base);
}

static void reply_workload_cell(rpc_call *call, const cell_info *info) {
  Aurae__Runtime__V0__WorkloadStatus *w = pb_zalloc(sizeof(*w));
  aurae__runtime__v0__workload_status__init(w);
  w->status_case = AURAE__RUNTIME__V0__WORKLOAD_STATUS__STATUS_CELL;
  w->cell = cell_to_pb(info);
  reply_free(call, &w->base);
}

/* ------------------------------------------------------------- RunCell */

static void res_from_pb(const Aurae__Runtime__V0__CellResources *p, cell_resources *r) {
  memset(r, 0, sizeof(*r));
  if (!p) return;
  if (p->cpu) {
    r->cpu_weight = p->cpu->weight;
    r->cpu_max_quota_us = p->cpu->max_quota_us;
    r->cpu_period_us = p->cpu->period_us;
  }
  if (p->cpuset) {
    /* Over-long lists are cut to a marker the validator rejects. */
    if (p->cpuset->cpus && strlen(p->cpuset->cpus) >= CELL_CPUSET_MAX)
      strcpy(r->cpuset_cpus, "x");
    else if (p->cpuset->cpus)
      strcpy(r->cpuset_cpus, p->cpuset->cpus);
    if (p->cpuset->mems && strlen(p->cpuset->mems) >= CELL_CPUSET_MAX)
      strcpy(r->cpuset_mems, "x");
    else if (p->cpuset->mems)
      strcpy(r->cpuset_mems, p->cpuset->mems);
  }
  if (p->memory) {
    r->memory_min = p->memory->min;
    r->memory_low = p->memory->low;
    r->memory_high = p->memory->high;
    r->memory_max = p->memory->max;
    r->memory_swap_max = p->memory->swap_max;
  }
  if (p->pids) r->pids_max = p->pids->max;
  if (p->io) r->io_weight = p->io->weight;
}

void cells_run_cell(rpc_call *call, const ProtobufCMessage *msg, void *ctx) {
  (void)ctx;
  const Aurae__Runtime__V0__Cell *req = (const void *)msg;
  if (not_ready(call)) return;
  if (req->image && req->image->reference && req->image->reference[0]) {
    rpc_call_fail(call, RPC_UNIMPLEMENTED, "container cells (image %s) are not implemented yet",
                  req->image->reference);
    return;
  }
  cell_spec spec = {.name = req->name};
  res_from_pb(req->resources, &spec.resources);
  const Aurae__Runtime__V0__CellIsolation *iso = req->isolation;
  if (iso) {
    if (iso->share_pid) spec.share |= CELL_SHARE_PID;
    if (iso->share_mount) spec.share |= CELL_SHARE_MNT;
    if (iso->share_ipc) spec.share |= CELL_SHARE_IPC;
    if (iso->share_uts) spec.share |= CELL_SHARE_UTS;
    if (iso->share_network) spec.share |= CELL_SHARE_NET;
    if (iso->share_cgroup) spec.share |= CELL_SHARE_CGROUP;
    if (iso->privileged) spec.share |= CELL_PRIVILEGED;
    if (iso->share_user) spec.share |= CELL_SHARE_USER;
  }
  /* Sharing a host namespace, privileges or host paths are an admin's
   * explicit choice (RunCell needs the admin role already; this keeps it
   * so if the table changes). */
  if ((spec.share || req->n_mounts) && rpc_call_role(call) < RPC_ROLE_ADMIN) {
    rpc_call_fail(call, RPC_PERMISSION_DENIED,
                  "isolation, mounts: sharing host namespaces, privileges or host paths needs "
                  "the admin role");
    return;
  }
  cell_bind binds[CELL_BINDS_MAX];
  if (req->n_mounts > CELL_BINDS_MAX) {
    rpc_call_fail(call, RPC_INVALID_ARGUMENT, "mounts: %zu, at most %d", req->n_mounts,
                  CELL_BINDS_MAX);
    return;
  }
  for (size_t i = 0; i < req->n_mounts; i++)
    binds[i] = (cell_bind){.source = req->mounts[i]->source,
                           .target = req->mounts[i]->target,
                           .read_only = req->mounts[i]->read_only};
  spec.binds = binds;
  spec.nbinds = req->n_mounts;
  au_error err = {0};
  if (cell_create(g_mgr, &spec, &err) < 0) {
    rpc_call_fail_error(call, &err);
    return;
  }
  log_info("cell %s: created by %s", req->name, rpc_call_identity(call));
  cell_info info;
  if (cell_inspect(g_mgr, req->name, &info, &err) < 0) {
    rpc_call_fail_error(call, &err);
    return;
  }
  reply_free(call, &cell_to_pb(&info)->base);
  cell_info_clear(&info);
}

/* ------------------------------------------------------- RunExecutable */

void cells_run_executable(rpc_call *call, const ProtobufCMessage *msg, void *ctx) {
  (void)ctx;
  const Aurae__Runtime__V0__Executable *req = (const void *)msg;
  if (not_ready(call)) return;
  /* protobuf-c arrays are not NULL-terminated. */
  char **argv = calloc(req->n_args + 1, sizeof(char *));
  char **envp = calloc(req->n_env + 1, sizeof(char *));
  if (!argv || !envp) {
    free(argv);
    free(envp);
    rpc_call_fail(call, RPC_RESOURCE_EXHAUSTED, "out of memory");
    return;
  }
  /* protobuf-c leaves empty repeated fields NULL; memcpy must not see it. */
  if (req->n_args) memcpy(argv, req->args, req->n_args * sizeof(char *));
  if (req->n_env) memcpy(envp, req->env, req->n_env * sizeof(char *));
  exe_spec spec = {
      .cell = req->cell_name,
      .name = req->name,
      .argv = argv,
      .envp = envp,
      .cwd = req->cwd && req->cwd[0] ? req->cwd : NULL,
      .stdin_data = req->stdin.data,
      .stdin_len = req->stdin.len,
      .output_limit = (size_t)req->output_limit_bytes,
  };
  if (req->output_limit_bytes > CELL_OUTPUT_MAX) spec.output_limit = CELL_OUTPUT_MAX + 1;
  if (req->credentials) {
    spec.has_creds = true;
    spec.uid = req->credentials->uid;
    spec.gid = req->credentials->gid;
    spec.groups = req->credentials->supplementary_gids;
    spec.ngroups = req->credentials->n_supplementary_gids;
  }
  au_error err = {0};
  exe_info info;
  int r = exe_run(g_mgr, &spec, &info, &err);
  free(argv);
  free(envp);
  if (r < 0) {
    rpc_call_fail_error(call, &err);
    return;
  }
  log_info("executable %s in cell %s: started (pid %d) by %s", req->name, req->cell_name,
           info.host_pid, rpc_call_identity(call));
  reply_free(call, &exe_to_pb(&info)->base);
  exe_info_clear(&info);
}

/* ----------------------------------------------------------- cell ops */

static void cell_inspect_op(rpc_call *call, const Aurae__Runtime__V0__WorkloadRef *ref) {
  if (not_ready(call)) return;
  cell_info info;
  au_error err = {0};
  if (cell_inspect(g_mgr, ref->name, &info, &err) < 0) {
    rpc_call_fail_error(call, &err);
    return;
  }
  reply_workload_cell(call, &info);
  cell_info_clear(&info);
}

static void cell_free_op(rpc_call *call, const Aurae__Runtime__V0__FreeRequest *req) {
  if (not_ready(call)) return;
  char **freed = NULL;
  au_error err = {0};
  if (cell_free(g_mgr, req->ref->name, req->recursive, &freed, &err) < 0) {
    rpc_call_fail_error(call, &err);
    return;
  }
  Aurae__Runtime__V0__FreeResponse resp = AURAE__RUNTIME__V0__FREE_RESPONSE__INIT;
  size_t n = 0;
  while (freed[n])
    n++;
  resp.n_freed = n;
  resp.freed = freed;
  log_info("cell %s: freed by %s (%zu cells)", req->ref->name, rpc_call_identity(call), n);
  rpc_call_reply(call, &resp.base);
  for (size_t i = 0; i < n; i++)
    free(freed[i]);
  free(freed);
}

static bool call_cancelled(void *userdata) { return rpc_call_cancelled(userdata); }

static void cell_wait_op(rpc_call *call, const Aurae__Runtime__V0__WaitRequest *req) {
  if (not_ready(call)) return;
  cell_info info;
  au_error err = {0};
  int64_t left = rpc_call_remaining_ms(call);
  if (cell_wait(g_mgr, req->ref->name, left == INT64_MAX ? -1 : left, call_cancelled, call, &info,
                &err) < 0) {
    rpc_call_fail_error(call, &err);
    return;
  }
  reply_workload_cell(call, &info);
  cell_info_clear(&info);
}

static void cell_signal_op(rpc_call *call, const Aurae__Runtime__V0__SignalRequest *req) {
  if (not_ready(call)) return;
  cell_info info;
  au_error err = {0};
  if (cell_signal(g_mgr, req->ref->name, req->signal, &info, &err) < 0) {
    rpc_call_fail_error(call, &err);
    return;
  }
  log_info("cell %s: signal %d sent by %s", req->ref->name, req->signal, rpc_call_identity(call));
  reply_workload_cell(call, &info);
  cell_info_clear(&info);
}

static void cell_stop_op(rpc_call *call, const Aurae__Runtime__V0__StopRequest *req) {
  if (not_ready(call)) return;
  cell_info info;
  au_error err = {0};
  if (cell_stop(g_mgr, req->ref->name, req->grace_period_ms, call_cancelled, call, &info, &err) <
      0) {
    rpc_call_fail_error(call, &err);
    return;
  }
  log_info("cell %s: executables stopped by %s", req->ref->name, rpc_call_identity(call));
  reply_workload_cell(call, &info);
  cell_info_clear(&info);
}

static void cell_logs_op(rpc_call *call, const Aurae__Runtime__V0__LogsRequest *req) {
  (void)req;
  rpc_call_fail(call, RPC_INVALID_ARGUMENT,
                "ref: logs are per executable; use kind EXECUTABLE with cell_name and name");
}

static int cell_list_op(Aurae__Runtime__V0__ListResponse *out, au_error *err) {
  if (!g_mgr) return 0;
  cell_info *cells;
  size_t n;
  int r = cell_list(g_mgr, &cells, &n, err);
  if (r < 0) return r;
  pb_cell_status **arr = realloc(out->cells, (out->n_cells + n) * sizeof(*arr));
  if (!arr && n) {
    cell_list_free(cells, n);
    return au_error_set(err, -ENOMEM, "out of memory");
  }
  out->cells = arr;
  for (size_t i = 0; i < n; i++)
    out->cells[out->n_cells++] = cell_to_pb(&cells[i]);
  cell_list_free(cells, n);
  return 0;
}

/* ----------------------------------------------------- executable ops */

/* An executable is named by ref.cell_name + ref.name, or by "cell/exe" in
 * ref.name alone. */
static bool exe_ref(rpc_call *call, const Aurae__Runtime__V0__WorkloadRef *ref, char *cell_buf,
                    size_t size, const char **ret_name) {
  if (not_ready(call)) return false;
  if (ref->cell_name && ref->cell_name[0]) {
    snprintf(cell_buf, size, "%s", ref->cell_name);
    *ret_name = ref->name;
    return true;
  }
  const char *slash = ref->name ? strrchr(ref->name, '/') : NULL;
  if (!slash || (size_t)(slash - ref->name) >= size) {
    rpc_call_fail(call, RPC_INVALID_ARGUMENT,
                  "ref.cell_name: required for an executable (or name it \"cell/executable\")");
    return false;
  }
  memcpy(cell_buf, ref->name, (size_t)(slash - ref->name));
  cell_buf[slash - ref->name] = '\0';
  *ret_name = slash + 1;
  return true;
}

#define EXE_REF(ref)                                                                               \
  char cell_name[AU_NAME_MAX + 1];                                                                 \
  const char *exe_name;                                                                            \
  if (!exe_ref(call, (ref), cell_name, sizeof(cell_name), &exe_name)) return;                      \
  au_error err = {0};                                                                              \
  exe_info info;

static void exe_inspect_op(rpc_call *call, const Aurae__Runtime__V0__WorkloadRef *ref) {
  EXE_REF(ref);
  if (exe_inspect(g_mgr, cell_name, exe_name, &info, &err) < 0) {
    rpc_call_fail_error(call, &err);
    return;
  }
  reply_workload_exe(call, &info);
  exe_info_clear(&info);
}

static void exe_wait_op(rpc_call *call, const Aurae__Runtime__V0__WaitRequest *req) {
  EXE_REF(req->ref);
  int64_t left = rpc_call_remaining_ms(call);
  if (exe_wait(g_mgr, cell_name, exe_name, left == INT64_MAX ? -1 : left, call_cancelled, call,
               &info, &err) < 0) {
    rpc_call_fail_error(call, &err);
    return;
  }
  reply_workload_exe(call, &info);
  exe_info_clear(&info);
}

static void exe_signal_op(rpc_call *call, const Aurae__Runtime__V0__SignalRequest *req) {
  EXE_REF(req->ref);
  if (exe_signal(g_mgr, cell_name, exe_name, req->signal, &info, &err) < 0) {
    rpc_call_fail_error(call, &err);
    return;
  }
  reply_workload_exe(call, &info);
  exe_info_clear(&info);
}

static void exe_stop_op(rpc_call *call, const Aurae__Runtime__V0__StopRequest *req) {
  EXE_REF(req->ref);
  if (exe_stop(g_mgr, cell_name, exe_name, req->grace_period_ms, call_cancelled, call, &info,
               &err) < 0) {
    rpc_call_fail_error(call, &err);
    return;
  }
  log_info("executable %s in cell %s: stopped by %s", exe_name, cell_name, rpc_call_identity(call));
  reply_workload_exe(call, &info);
  exe_info_clear(&info);
}

static void exe_free_op(rpc_call *call, const Aurae__Runtime__V0__FreeRequest *req) {
  EXE_REF(req->ref);
  (void)info;
  if (exe_free(g_mgr, cell_name, exe_name, &err) < 0) {
    rpc_call_fail_error(call, &err);
    return;
  }
  Aurae__Runtime__V0__FreeResponse resp = AURAE__RUNTIME__V0__FREE_RESPONSE__INIT;
  char full[AU_NAME_MAX * 2 + 2];
  snprintf(full, sizeof(full), "%s/%s", cell_name, exe_name);
  char *names[] = {full};
  resp.n_freed = 1;
  resp.freed = names;
  rpc_call_reply(call, &resp.base);
}

static int send_chunk(int stream, const void *data, size_t len, uint64_t dropped, void *userdata) {
  Aurae__Runtime__V0__LogChunk chunk = AURAE__RUNTIME__V0__LOG_CHUNK__INIT;
  chunk.stream = stream == CELL_STREAM_STDOUT ? AURAE__RUNTIME__V0__LOG_STREAM__LOG_STREAM_STDOUT
                                              : AURAE__RUNTIME__V0__LOG_STREAM__LOG_STREAM_STDERR;
  chunk.data.data = (uint8_t *)data;
  chunk.data.len = len;
  chunk.dropped_bytes = dropped;
  return rpc_call_send(userdata, &chunk.base) < 0 ? 1 : 0;
}

static void exe_logs_op(rpc_call *call, const Aurae__Runtime__V0__LogsRequest *req) {
  EXE_REF(req->ref);
  (void)info;
  int mask;
  switch (req->stream) {
  case AURAE__RUNTIME__V0__LOG_STREAM__LOG_STREAM_ALL:
    mask = CELL_STREAM_STDOUT | CELL_STREAM_STDERR;
    break;
  case AURAE__RUNTIME__V0__LOG_STREAM__LOG_STREAM_STDOUT: mask = CELL_STREAM_STDOUT; break;
  case AURAE__RUNTIME__V0__LOG_STREAM__LOG_STREAM_STDERR: mask = CELL_STREAM_STDERR; break;
  default:
    rpc_call_fail(call, RPC_INVALID_ARGUMENT, "stream: executables have stdout and stderr only");
    return;
  }
  int r = exe_logs(g_mgr, cell_name, exe_name, mask, req->follow, send_chunk, call_cancelled, call,
                   &err);
  if (r == -ECANCELED)
    rpc_call_finish(call, RPC_CANCELLED, "log stream cancelled");
  else if (r < 0)
    rpc_call_fail_error(call, &err);
  else
    rpc_call_finish(call, RPC_OK, "");
}

/* --------------------------------------------------------------- tables */

static const workload_ops cell_ops = {
    .kind_name = "cell",
    .inspect = cell_inspect_op,
    .wait = cell_wait_op,
    .signal = cell_signal_op,
    .stop = cell_stop_op,
    .free = cell_free_op,
    .logs = cell_logs_op,
    .list = cell_list_op,
};

static const workload_ops exe_ops = {
    .kind_name = "executable",
    .inspect = exe_inspect_op,
    .wait = exe_wait_op,
    .signal = exe_signal_op,
    .stop = exe_stop_op,
    .free = exe_free_op,
    .logs = exe_logs_op,
};

const workload_ops *cells_workload_ops(void) { return &cell_ops; }
const workload_ops *executables_workload_ops(void) { return &exe_ops; }

/* Adds realpath(path) to the list unless it is "/" or already there. */
static void add_mask(char **list, size_t *n, size_t max, const char *path) {
  char *real = realpath(path, NULL);
  if (!real || strcmp(real, "/") == 0 || *n >= max) {
    free(real);
    return;
  }
  for (size_t i = 0; i < *n; i++)
    if (strcmp(list[i], real) == 0) {
      free(real);
      return;
    }
  list[(*n)++] = real;
}

/* What cells must not see: auraed's runtime dir (its sockets, the cell
 * inits' control sockets, state), its library dir, and the directories of
 * its config, PKI and API socket. A file directly below a top-level
 * directory (/etc/auraed.key) is hidden alone: hiding /etc would break
 * every cell. */
static size_t masked_paths(const daemon_ctx *ctx, char **list, size_t max) {
  size_t n = 0;
  add_mask(list, &n, max, ctx->runtime_dir);
  add_mask(list, &n, max, ctx->library_dir);
  for (const char *const *f = ctx->private_files; f && *f; f++) {
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", *f);
    char *slash = strrchr(dir, '/');
    if (!slash)
      snprintf(dir, sizeof(dir), ".");
    else
      *slash = '\0';
    char *real = realpath(dir[0] ? dir : "/", NULL);
    int depth = 0;
    for (const char *p = real; p && *p; p++)
      depth += *p == '/';
    add_mask(list, &n, max, real && depth >= 2 ? real : *f);
    free(real);
  }
  return n;
}

int cells_service_init(const daemon_ctx *ctx, au_error *err) {
  char *masks[16] = {0};
  size_t nmasks = masked_paths(ctx, masks, 15);
  for (size_t i = 0; i < nmasks; i++)
    log_debug("cells: hidden in cells: %s", masks[i]);
  cell_config cfg = {.runtime_dir = ctx->runtime_dir,
                     .self_exe = ctx->self_exe,
                     .no_spare_init = !ctx->cell_spare_init,
                     .id_pool_start = ctx->cell_id_pool_start,
                     .scratch_mb = ctx->cell_scratch_mb,
                     .scratch_inodes = ctx->cell_scratch_inodes,
                     .id_pool_cells = ctx->cell_id_pool_cells,
                     .masked_paths = (const char *const *)masks};
  size_t adopted = 0;
  int r = cell_manager_open(&cfg, &g_mgr, &adopted, err);
  for (size_t i = 0; i < nmasks; i++)
    free(masks[i]);
  if (r < 0) return au_error_prefix(err, "cells");
  log_info("cells: cgroup root %s, %zu cell(s) re-adopted", cell_manager_cgroup_root(g_mgr),
           adopted);
  return 0;
}

void cells_service_shutdown(void) {
  /* Workloads keep running; the next auraed re-adopts them. */
  cell_manager_close(g_mgr);
  g_mgr = NULL;
}
