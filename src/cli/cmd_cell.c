/* aer commands for cells and executables (issue 3):
 *   aer cell run NAME [limits] [--share NS,...]   aer cell ls|inspect|free ...
 *   aer exec CELL [-n NAME] [-d] [-e K=V]... -- CMD ARGS...
 *   aer ls | aer inspect CELL [EXE] | aer logs CELL EXE [-f]
 *   aer wait CELL [EXE] | aer kill CELL [EXE] [-s SIG] | aer stop CELL [EXE]
 *   aer free CELL [EXE] [-r]
 * An executable is addressed by its cell and its name, two arguments; with
 * the cell alone, wait/kill/stop act on every executable of the cell and of
 * the cells below it (the cells stay until freed). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "runtime.pb-c.h"

#define RT "/aurae.runtime.v0.Runtime/"
#define CALL_TIMEOUT_MS 30000

typedef Aurae__Runtime__V0__ExecutableStatus pb_exe;
typedef Aurae__Runtime__V0__CellStatus pb_cell;

/* "64M" -> 67108864; K, M, G, T are powers of 1024. */
static int parse_size(const char *s, int64_t *ret) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || v < 0) return -EINVAL;
  int shift = 0;
  switch (*end) {
  case '\0': break;
  case 'k':
  case 'K': shift = 10; break;
  case 'm':
  case 'M': shift = 20; break;
  case 'g':
  case 'G': shift = 30; break;
  case 't':
  case 'T': shift = 40; break;
  default: return -EINVAL;
  }
  if (*end && end[1] && !(end[1] == 'i' && end[2] == 'B' && !end[3]) && !(end[1] == 'B' && !end[2]))
    return -EINVAL;
  if (shift && v > (INT64_MAX >> shift)) return -ERANGE;
  *ret = (int64_t)v << shift;
  return 0;
}

static int parse_int(const char *s, int64_t *ret) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || *end) return -EINVAL;
  *ret = v;
  return 0;
}

static const char *exe_state_name(int state) {
  switch (state) {
  case AURAE__RUNTIME__V0__EXECUTABLE_STATE__EXECUTABLE_STATE_RUNNING: return "running";
  case AURAE__RUNTIME__V0__EXECUTABLE_STATE__EXECUTABLE_STATE_EXITED: return "exited";
  case AURAE__RUNTIME__V0__EXECUTABLE_STATE__EXECUTABLE_STATE_KILLED: return "killed";
  default: return "unknown";
  }
}

static void format_time(int64_t ns, char *buf, size_t size) {
  if (!ns) {
    snprintf(buf, size, "-");
    return;
  }
  time_t t = (time_t)(ns / 1000000000);
  struct tm tm;
  localtime_r(&t, &tm);
  strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm);
}

static void print_exe_row(const pb_exe *e, const char *indent) {
  char result[32] = "-";
  if (e->state == AURAE__RUNTIME__V0__EXECUTABLE_STATE__EXECUTABLE_STATE_EXITED)
    snprintf(result, sizeof(result), "exit %d", e->exit_code);
  else if (e->state == AURAE__RUNTIME__V0__EXECUTABLE_STATE__EXECUTABLE_STATE_KILLED)
    snprintf(result, sizeof(result), "signal %d", e->signal);
  char cmd[256] = "";
  size_t off = 0;
  for (size_t i = 0; i < e->n_args && off < sizeof(cmd) - 1; i++)
    off += (size_t)snprintf(cmd + off, sizeof(cmd) - off, "%s%s", i ? " " : "", e->args[i]);
  printf("%s%-20s %-8s %8d %8d %-10s %s\n", indent, e->name, exe_state_name(e->state), e->host_pid,
         e->cell_pid, result, cmd);
}

static void print_exe_detail(const pb_exe *e) {
  char t1[64], t2[64];
  format_time(e->started_at_ns, t1, sizeof(t1));
  format_time(e->ended_at_ns, t2, sizeof(t2));
  printf("executable:  %s/%s\nstate:       %s\n", e->cell_name, e->name, exe_state_name(e->state));
  if (e->state == AURAE__RUNTIME__V0__EXECUTABLE_STATE__EXECUTABLE_STATE_EXITED)
    printf("exit code:   %d\n", e->exit_code);
  if (e->state == AURAE__RUNTIME__V0__EXECUTABLE_STATE__EXECUTABLE_STATE_KILLED)
    printf("signal:      %d (%s)\n", e->signal, strsignal(e->signal));
  printf("host pid:    %d\ncell pid:    %d\nstarted:     %s\nended:       %s\n", e->host_pid,
         e->cell_pid, t1, t2);
  printf("args:       ");
  for (size_t i = 0; i < e->n_args; i++)
    printf(" %s", e->args[i]);
  printf("\n");
  if (e->stdout_dropped_bytes || e->stderr_dropped_bytes)
    printf("dropped:     stdout %" PRIu64 " bytes, stderr %" PRIu64 " bytes\n",
           e->stdout_dropped_bytes, e->stderr_dropped_bytes);
  if (e->output_lost) printf("output:      output before the last auraed restart is lost\n");
}

static void print_cell_detail(const pb_cell *c) {
  char t[64];
  format_time(c->created_at_ns, t, sizeof(t));
  printf("cell:        %s\ninit pid:    %d\ncgroup:      %s\ncreated:     %s\n", c->name,
         c->init_host_pid, c->cgroup_path, t);
  const Aurae__Runtime__V0__CellIsolation *i = c->isolation;
  if (i)
    printf("shares:      %s%s%s%s%s%s%s\n", i->share_pid ? "pid " : "",
           i->share_mount ? "mount " : "", i->share_ipc ? "ipc " : "", i->share_uts ? "uts " : "",
           i->share_network ? "network " : "", i->share_cgroup ? "cgroup " : "",
           i->share_pid || i->share_mount || i->share_ipc || i->share_uts || i->share_network ||
                   i->share_cgroup
               ? ""
               : "nothing (all namespaces are the cell's own)");
  if (i)
    printf("security:    %s\n",
           i->privileged    ? "privileged (every capability, no seccomp, nothing masked)"
           : i->share_mount ? "OCI capabilities without MKNOD, no_new_privs, seccomp; host "
                              "mounts, /dev and /proc (nothing masked)"
                            : "OCI capabilities without MKNOD, no_new_privs, seccomp, minimal "
                              "/dev, read-only host filesystem, auraed's files masked");
  for (size_t k = 0; k < c->n_children; k++)
    printf("child:       %s\n", c->children[k]);
  if (c->n_executables) {
    printf("executables:\n  %-20s %-8s %8s %8s %-10s %s\n", "NAME", "STATE", "PID", "CELLPID",
           "RESULT", "COMMAND");
    for (size_t k = 0; k < c->n_executables; k++)
      print_exe_row(c->executables[k], "  ");
  }
}

/* ------------------------------------------------------------- cell run */

static int parse_share(const char *list, Aurae__Runtime__V0__CellIsolation *iso) {
  char *copy = strdup(list), *save = NULL;
  int r = 0;
  for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    if (!strcmp(t, "pid"))
      iso->share_pid = true;
    else if (!strcmp(t, "mount") || !strcmp(t, "mnt"))
      iso->share_mount = true;
    else if (!strcmp(t, "ipc"))
      iso->share_ipc = true;
    else if (!strcmp(t, "uts"))
      iso->share_uts = true;
    else if (!strcmp(t, "net") || !strcmp(t, "network"))
      iso->share_network = true;
    else if (!strcmp(t, "cgroup"))
      iso->share_cgroup = true;
    else if (!strcmp(t, "user"))
      iso->share_user = true;
    else {
      fprintf(stderr,
              "aer: --share: unknown namespace \"%s\" (user, pid, mount, ipc, uts, net, "
              "cgroup)\n",
              t);
      r = -EINVAL;
    }
  }
  free(copy);
  return r;
}

static void cell_run_usage(FILE *f) {
  fprintf(f, "Usage: aer cell run NAME [OPTIONS]\n"
             "  --cpu-weight N          cpu.weight (1-10000)\n"
             "  --cpu-max QUOTA[/PERIOD] cpu.max in microseconds\n"
             "  --cpuset-cpus LIST      --cpuset-mems LIST\n"
             "  --memory-min SIZE  --memory-low SIZE  --memory-high SIZE  --memory-max SIZE\n"
             "  --memory-swap-max SIZE  (0 or \"none\": no swap)\n"
             "  --pids-max N            --io-weight N\n"
             "  --share NS[,NS...]      share the host's user, pid, mount, ipc, uts, net or\n"
             "                          cgroup namespace (admin only; default: all new)\n"
             "  --mount SRC:DST[:ro]    bind the host path SRC at DST in the cell (admin\n"
             "                          only; repeatable, at most 8; see docs/cells.md)\n"
             "  --privileged            executables keep every capability, no seccomp,\n"
             "                          host /dev, nothing masked (admin only; default:\n"
             "                          OCI capabilities without MKNOD, no_new_privs,\n"
             "                          seccomp, minimal /dev, auraed's files hidden)\n");
}

static int cell_run(aer_ctx *ctx, int argc, char **argv) {
  enum {
    O_CPUW = 256,
    O_CPUMAX,
    O_CPUS,
    O_MEMS,
    O_MMIN,
    O_MLOW,
    O_MHIGH,
    O_MMAX,
    O_SWAP,
    O_PIDS,
    O_IOW,
    O_SHARE,
    O_PRIV,
    O_MOUNT
  };
  static const struct option opts[] = {{"cpu-weight", required_argument, 0, O_CPUW},
                                       {"cpu-max", required_argument, 0, O_CPUMAX},
                                       {"cpuset-cpus", required_argument, 0, O_CPUS},
                                       {"cpuset-mems", required_argument, 0, O_MEMS},
                                       {"memory-min", required_argument, 0, O_MMIN},
                                       {"memory-low", required_argument, 0, O_MLOW},
                                       {"memory-high", required_argument, 0, O_MHIGH},
                                       {"memory-max", required_argument, 0, O_MMAX},
                                       {"memory-swap-max", required_argument, 0, O_SWAP},
                                       {"pids-max", required_argument, 0, O_PIDS},
                                       {"io-weight", required_argument, 0, O_IOW},
                                       {"share", required_argument, 0, O_SHARE},
                                       {"privileged", no_argument, 0, O_PRIV},
                                       {"mount", required_argument, 0, O_MOUNT},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  Aurae__Runtime__V0__Cell req = AURAE__RUNTIME__V0__CELL__INIT;
  Aurae__Runtime__V0__CellResources res = AURAE__RUNTIME__V0__CELL_RESOURCES__INIT;
  Aurae__Runtime__V0__CpuResources cpu = AURAE__RUNTIME__V0__CPU_RESOURCES__INIT;
  Aurae__Runtime__V0__CpusetResources cpuset = AURAE__RUNTIME__V0__CPUSET_RESOURCES__INIT;
  Aurae__Runtime__V0__MemoryResources mem = AURAE__RUNTIME__V0__MEMORY_RESOURCES__INIT;
  Aurae__Runtime__V0__PidsResources pids = AURAE__RUNTIME__V0__PIDS_RESOURCES__INIT;
  Aurae__Runtime__V0__IoResources io = AURAE__RUNTIME__V0__IO_RESOURCES__INIT;
  Aurae__Runtime__V0__CellIsolation iso = AURAE__RUNTIME__V0__CELL_ISOLATION__INIT;
  Aurae__Runtime__V0__Mount mounts[8], *mount_ptrs[8];
  optind = 1;
  int c;
  int64_t v = 0;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    int bad = 0;
    switch (c) {
    case O_CPUW:
      bad = parse_int(optarg, &v);
      cpu.weight = (uint64_t)v;
      res.cpu = &cpu;
      break;
    case O_CPUMAX: {
      char *slash = strchr(optarg, '/');
      if (slash) *slash = '\0';
      bad = parse_int(optarg, &v);
      cpu.max_quota_us = v;
      if (!bad && slash) {
        bad = parse_int(slash + 1, &v);
        cpu.period_us = (uint64_t)v;
      }
      res.cpu = &cpu;
      break;
    }
    case O_CPUS:
      cpuset.cpus = optarg;
      res.cpuset = &cpuset;
      break;
    case O_MEMS:
      cpuset.mems = optarg;
      res.cpuset = &cpuset;
      break;
    case O_MMIN:
      bad = parse_size(optarg, &mem.min);
      res.memory = &mem;
      break;
    case O_MLOW:
      bad = parse_size(optarg, &mem.low);
      res.memory = &mem;
      break;
    case O_MHIGH:
      bad = parse_size(optarg, &mem.high);
      res.memory = &mem;
      break;
    case O_MMAX:
      bad = parse_size(optarg, &mem.max);
      res.memory = &mem;
      break;
    case O_SWAP:
      if (!strcmp(optarg, "none") || !strcmp(optarg, "0"))
        mem.swap_max = -1;
      else
        bad = parse_size(optarg, &mem.swap_max);
      res.memory = &mem;
      break;
    case O_PIDS:
      bad = parse_int(optarg, &pids.max);
      res.pids = &pids;
      break;
    case O_IOW:
      bad = parse_int(optarg, &v);
      io.weight = (uint64_t)v;
      res.io = &io;
      break;
    case O_SHARE:
      if (parse_share(optarg, &iso) < 0) return 1;
      req.isolation = &iso;
      break;
    case O_PRIV:
      iso.privileged = true;
      req.isolation = &iso;
      break;
    case O_MOUNT: {
      /* SRC:DST[:ro]; the paths themselves are checked by auraed. */
      char *dst = strchr(optarg, ':');
      if (!dst || req.n_mounts == 8) {
        fprintf(stderr, "aer: --mount: \"%s\" is not SRC:DST[:ro] (at most 8)\n", optarg);
        return 1;
      }
      *dst++ = '\0';
      char *opt = strchr(dst, ':');
      if (opt) *opt++ = '\0';
      if (opt && strcmp(opt, "ro") && strcmp(opt, "rw")) {
        fprintf(stderr, "aer: --mount: option \"%s\" is neither ro nor rw\n", opt);
        return 1;
      }
      Aurae__Runtime__V0__Mount *m = &mounts[req.n_mounts];
      aurae__runtime__v0__mount__init(m);
      m->source = optarg;
      m->target = dst;
      m->read_only = opt && !strcmp(opt, "ro");
      mount_ptrs[req.n_mounts++] = m;
      req.mounts = mount_ptrs;
      break;
    }
    case 'h': cell_run_usage(stdout); return 0;
    default: cell_run_usage(stderr); return 1;
    }
    if (bad) {
      fprintf(stderr, "aer: bad value \"%s\"\n", optarg);
      return 1;
    }
  }
  if (optind != argc - 1) {
    cell_run_usage(stderr);
    return 1;
  }
  req.name = argv[optind];
  req.resources = &res;
  ProtobufCMessage *resp;
  int r = aer_unary(ctx, RT "RunCell", &req.base, &aurae__runtime__v0__cell_status__descriptor,
                    CALL_TIMEOUT_MS, &resp);
  if (r) return r;
  if (ctx->output == AER_OUTPUT_JSON)
    aer_print_json(resp);
  else
    printf("cell %s running (init pid %d)\n", ((pb_cell *)resp)->name,
           ((pb_cell *)resp)->init_host_pid);
  protobuf_c_message_free_unpacked(resp, NULL);
  return 0;
}

/* ---------------------------------------------------------- lifecycle */

static void set_ref(Aurae__Runtime__V0__WorkloadRef *ref, const char *cell, const char *exe) {
  if (exe) {
    ref->kind = AURAE__RUNTIME__V0__WORKLOAD_KIND__WORKLOAD_KIND_EXECUTABLE;
    ref->cell_name = (char *)cell;
    ref->name = (char *)exe;
  } else {
    ref->kind = AURAE__RUNTIME__V0__WORKLOAD_KIND__WORKLOAD_KIND_CELL;
    ref->name = (char *)cell;
  }
}

static int print_workload(aer_ctx *ctx, ProtobufCMessage *resp) {
  const Aurae__Runtime__V0__WorkloadStatus *w = (const void *)resp;
  if (ctx->output == AER_OUTPUT_JSON)
    aer_print_json(resp);
  else if (w->status_case == AURAE__RUNTIME__V0__WORKLOAD_STATUS__STATUS_EXECUTABLE)
    print_exe_detail(w->executable);
  else if (w->status_case == AURAE__RUNTIME__V0__WORKLOAD_STATUS__STATUS_CELL)
    print_cell_detail(w->cell);
  return 0;
}

/* Exit code of a finished executable, shell style. */
static int exe_exit_code(const pb_exe *e) {
  if (e->state == AURAE__RUNTIME__V0__EXECUTABLE_STATE__EXECUTABLE_STATE_EXITED)
    return e->exit_code;
  if (e->state == AURAE__RUNTIME__V0__EXECUTABLE_STATE__EXECUTABLE_STATE_KILLED)
    return 128 + e->signal;
  return 0;
}

int cmd_ls(aer_ctx *ctx, int argc, char **argv) {
  (void)argv;
  if (argc != 1) {
    fprintf(stderr, "Usage: aer ls\n");
    return 1;
  }
  Aurae__Runtime__V0__ListRequest req = AURAE__RUNTIME__V0__LIST_REQUEST__INIT;
  req.kind = AURAE__RUNTIME__V0__WORKLOAD_KIND__WORKLOAD_KIND_CELL;
  ProtobufCMessage *resp;
  int r = aer_unary(ctx, RT "List", &req.base, &aurae__runtime__v0__list_response__descriptor,
                    CALL_TIMEOUT_MS, &resp);
  if (r) return r;
  const Aurae__Runtime__V0__ListResponse *l = (const void *)resp;
  if (ctx->output == AER_OUTPUT_JSON) {
    aer_print_json(resp);
  } else {
    printf("%-30s %8s %5s %s\n", "CELL", "INIT PID", "EXES", "CHILDREN");
    for (size_t i = 0; i < l->n_cells; i++) {
      const pb_cell *c = l->cells[i];
      /* Indent by depth: the list comes parents first. */
      int depth = 0;
      for (const char *p = c->name; *p; p++)
        depth += *p == '/';
      printf("%*s%-*s %8d %5zu %zu\n", depth * 2, "", 30 - depth * 2, c->name, c->init_host_pid,
             c->n_executables, c->n_children);
      for (size_t k = 0; k < c->n_executables; k++) {
        char indent[32];
        snprintf(indent, sizeof(indent), "%*s- ", depth * 2 + 2, "");
        print_exe_row(c->executables[k], indent);
      }
    }
  }
  protobuf_c_message_free_unpacked(resp, NULL);
  return 0;
}

int cmd_inspect(aer_ctx *ctx, int argc, char **argv) {
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "Usage: aer inspect CELL [EXECUTABLE]\n");
    return 1;
  }
  Aurae__Runtime__V0__WorkloadRef ref = AURAE__RUNTIME__V0__WORKLOAD_REF__INIT;
  set_ref(&ref, argv[1], argc == 3 ? argv[2] : NULL);
  Aurae__Runtime__V0__InspectRequest req = AURAE__RUNTIME__V0__INSPECT_REQUEST__INIT;
  req.ref = &ref;
  ProtobufCMessage *resp;
  int r = aer_unary(ctx, RT "Inspect", &req.base, &aurae__runtime__v0__workload_status__descriptor,
                    CALL_TIMEOUT_MS, &resp);
  if (r) return r;
  print_workload(ctx, resp);
  protobuf_c_message_free_unpacked(resp, NULL);
  return 0;
}

static int wait_exe(aer_ctx *ctx, const char *cell, const char *exe, int64_t timeout_ms,
                    bool quiet) {
  Aurae__Runtime__V0__WorkloadRef ref = AURAE__RUNTIME__V0__WORKLOAD_REF__INIT;
  set_ref(&ref, cell, exe);
  Aurae__Runtime__V0__WaitRequest req = AURAE__RUNTIME__V0__WAIT_REQUEST__INIT;
  req.ref = &ref;
  ProtobufCMessage *resp;
  int r = aer_unary(ctx, RT "Wait", &req.base, &aurae__runtime__v0__workload_status__descriptor,
                    timeout_ms, &resp);
  if (r) return r;
  if (!quiet) print_workload(ctx, resp);
  const Aurae__Runtime__V0__WorkloadStatus *w = (const void *)resp;
  r = w->executable ? exe_exit_code(w->executable) : 0;
  protobuf_c_message_free_unpacked(resp, NULL);
  return r;
}

int cmd_wait(aer_ctx *ctx, int argc, char **argv) {
  int64_t timeout = 0;
  int c;
  static const struct option opts[] = {{"timeout", required_argument, 0, 't'}, {0, 0, 0, 0}};
  optind = 1;
  while ((c = getopt_long(argc, argv, "+t:", opts, NULL)) != -1) {
    if (c != 't' || parse_int(optarg, &timeout) < 0) {
      fprintf(stderr, "Usage: aer wait CELL [EXECUTABLE] [--timeout MS]\n");
      return 1;
    }
  }
  if (argc - optind != 1 && argc - optind != 2) {
    fprintf(stderr, "Usage: aer wait CELL [EXECUTABLE] [--timeout MS]\n");
    return 1;
  }
  return wait_exe(ctx, argv[optind], argc - optind == 2 ? argv[optind + 1] : NULL, timeout, false);
}

int cmd_kill(aer_ctx *ctx, int argc, char **argv) {
  int64_t sig = SIGTERM;
  int c;
  optind = 1;
  while ((c = getopt(argc, argv, "+s:")) != -1) {
    if (c != 's') goto usage;
    if (parse_int(optarg, &sig) < 0) {
      const char *n = optarg;
      if (!strncmp(n, "SIG", 3)) n += 3;
      static const struct {
        const char *name;
        int sig;
      } names[] = {{"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT},
                   {"KILL", SIGKILL}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2},
                   {"TERM", SIGTERM}, {"STOP", SIGSTOP}, {"CONT", SIGCONT}};
      sig = 0;
      for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(n, names[i].name)) sig = names[i].sig;
      if (!sig) goto usage;
    }
  }
  if (argc - optind != 1 && argc - optind != 2) goto usage;
  Aurae__Runtime__V0__WorkloadRef ref = AURAE__RUNTIME__V0__WORKLOAD_REF__INIT;
  set_ref(&ref, argv[optind], argc - optind == 2 ? argv[optind + 1] : NULL);
  Aurae__Runtime__V0__SignalRequest req = AURAE__RUNTIME__V0__SIGNAL_REQUEST__INIT;
  req.ref = &ref;
  req.signal = (int32_t)sig;
  ProtobufCMessage *resp;
  int r = aer_unary(ctx, RT "Signal", &req.base, &aurae__runtime__v0__workload_status__descriptor,
                    CALL_TIMEOUT_MS, &resp);
  if (r) return r;
  if (ctx->output == AER_OUTPUT_JSON) aer_print_json(resp);
  protobuf_c_message_free_unpacked(resp, NULL);
  return 0;
usage:
  fprintf(stderr, "Usage: aer kill [-s SIGNAL] CELL [EXECUTABLE]\n");
  return 1;
}

int cmd_stop(aer_ctx *ctx, int argc, char **argv) {
  int64_t grace = 0;
  int c;
  static const struct option opts[] = {{"grace", required_argument, 0, 'g'}, {0, 0, 0, 0}};
  optind = 1;
  while ((c = getopt_long(argc, argv, "+g:", opts, NULL)) != -1)
    if (c != 'g' || parse_int(optarg, &grace) < 0 || grace < 0) goto usage;
  if (argc - optind != 1 && argc - optind != 2) goto usage;
  Aurae__Runtime__V0__WorkloadRef ref = AURAE__RUNTIME__V0__WORKLOAD_REF__INIT;
  set_ref(&ref, argv[optind], argc - optind == 2 ? argv[optind + 1] : NULL);
  Aurae__Runtime__V0__StopRequest req = AURAE__RUNTIME__V0__STOP_REQUEST__INIT;
  req.ref = &ref;
  req.grace_period_ms = (uint32_t)grace;
  ProtobufCMessage *resp;
  int r = aer_unary(ctx, RT "Stop", &req.base, &aurae__runtime__v0__workload_status__descriptor,
                    (grace ? grace : 10000) + CALL_TIMEOUT_MS, &resp);
  if (r) return r;
  print_workload(ctx, resp);
  protobuf_c_message_free_unpacked(resp, NULL);
  return 0;
usage:
  fprintf(stderr, "Usage: aer stop [--grace MS] CELL [EXECUTABLE]\n");
  return 1;
}

int cmd_free(aer_ctx *ctx, int argc, char **argv) {
  bool recursive = false;
  int c;
  static const struct option opts[] = {{"recursive", no_argument, 0, 'r'}, {0, 0, 0, 0}};
  optind = 1;
  while ((c = getopt_long(argc, argv, "+r", opts, NULL)) != -1) {
    if (c != 'r') goto usage;
    recursive = true;
  }
  if (argc - optind < 1 || argc - optind > 2) goto usage;
  Aurae__Runtime__V0__WorkloadRef ref = AURAE__RUNTIME__V0__WORKLOAD_REF__INIT;
  set_ref(&ref, argv[optind], argc - optind == 2 ? argv[optind + 1] : NULL);
  Aurae__Runtime__V0__FreeRequest req = AURAE__RUNTIME__V0__FREE_REQUEST__INIT;
  req.ref = &ref;
  req.recursive = recursive;
  ProtobufCMessage *resp;
  int r = aer_unary(ctx, RT "Free", &req.base, &aurae__runtime__v0__free_response__descriptor,
                    CALL_TIMEOUT_MS, &resp);
  if (r) return r;
  const Aurae__Runtime__V0__FreeResponse *f = (const void *)resp;
  if (ctx->output == AER_OUTPUT_JSON)
    aer_print_json(resp);
  else
    for (size_t i = 0; i < f->n_freed; i++)
      printf("freed %s\n", f->freed[i]);
  protobuf_c_message_free_unpacked(resp, NULL);
  return 0;
usage:
  fprintf(stderr, "Usage: aer free [-r|--recursive] CELL [EXECUTABLE]\n");
  return 1;
}

/* ----------------------------------------------------------------- logs */

static int stream_logs(aer_ctx *ctx, const char *cell, const char *exe, int stream, bool follow) {
  Aurae__Runtime__V0__WorkloadRef ref = AURAE__RUNTIME__V0__WORKLOAD_REF__INIT;
  set_ref(&ref, cell, exe);
  Aurae__Runtime__V0__LogsRequest req = AURAE__RUNTIME__V0__LOGS_REQUEST__INIT;
  req.ref = &ref;
  req.stream = stream;
  req.follow = follow;
  return aer_stream_logs(ctx, &req);
}

int cmd_logs(aer_ctx *ctx, int argc, char **argv) {
  bool follow = false;
  int stream = AURAE__RUNTIME__V0__LOG_STREAM__LOG_STREAM_ALL;
  static const struct option opts[] = {{"follow", no_argument, 0, 'f'},
                                       {"stdout", no_argument, 0, 'O'},
                                       {"stderr", no_argument, 0, 'E'},
                                       {0, 0, 0, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "+f", opts, NULL)) != -1) {
    if (c == 'f')
      follow = true;
    else if (c == 'O')
      stream = AURAE__RUNTIME__V0__LOG_STREAM__LOG_STREAM_STDOUT;
    else if (c == 'E')
      stream = AURAE__RUNTIME__V0__LOG_STREAM__LOG_STREAM_STDERR;
    else
      goto usage;
  }
  if (argc - optind != 2) goto usage;
  return stream_logs(ctx, argv[optind], argv[optind + 1], stream, follow);
usage:
  fprintf(stderr, "Usage: aer logs [-f|--follow] [--stdout|--stderr] CELL EXECUTABLE\n");
  return 1;
}

/* ----------------------------------------------------------------- exec */

/* A DNS label from the program's base name plus a random suffix. */
static void default_name(const char *prog, char *buf, size_t size) {
  const char *base = strrchr(prog, '/') ? strrchr(prog, '/') + 1 : prog;
  size_t n = 0;
  for (const char *p = base; *p && n < 40; p++) {
    char ch = *p;
    if (ch >= 'A' && ch <= 'Z') ch = (char)(ch - 'A' + 'a');
    if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9'))
      buf[n++] = ch;
    else if (n && buf[n - 1] != '-')
      buf[n++] = '-';
  }
  while (n && buf[n - 1] == '-')
    n--;
  if (!n) buf[n++] = 'x';
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  unsigned rnd = (unsigned)(ts.tv_nsec ^ (getpid() << 16));
  snprintf(buf + n, size - n, "-%06x", rnd & 0xffffff);
}

static void exec_usage(FILE *f) {
  fprintf(f, "Usage: aer exec CELL [OPTIONS] -- COMMAND [ARGS...]\n"
             "  -n, --name NAME     executable name (default: COMMAND-<random>)\n"
             "  -d, --detach        return once started, print the status\n"
             "  -e, --env K=V       environment entry (repeatable; default PATH only)\n"
             "  -w, --cwd DIR       working directory (default /)\n"
             "  -u, --user UID[:GID]\n"
             "  -i, --stdin         send aer's stdin (read to EOF first) as the input\n"
             "      --output-limit SIZE  per-stream capture limit\n"
             "Waits, prints the output and exits with the command's exit code\n"
             "(128+N when killed by signal N).\n");
}

int cmd_exec(aer_ctx *ctx, int argc, char **argv) {
  static const struct option opts[] = {{"name", required_argument, 0, 'n'},
                                       {"detach", no_argument, 0, 'd'},
                                       {"env", required_argument, 0, 'e'},
                                       {"cwd", required_argument, 0, 'w'},
                                       {"user", required_argument, 0, 'u'},
                                       {"stdin", no_argument, 0, 'i'},
                                       {"output-limit", required_argument, 0, 'L'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  Aurae__Runtime__V0__Executable req = AURAE__RUNTIME__V0__EXECUTABLE__INIT;
  Aurae__Runtime__V0__Credentials creds = AURAE__RUNTIME__V0__CREDENTIALS__INIT;
  bool detach = false, read_stdin = false;
  const char *name = NULL;
  char **env = calloc((size_t)argc + 2, sizeof(char *));
  size_t nenv = 0;
  int c, rc = 1;
  int64_t v = 0;
  uint8_t *input = NULL;
  /* CELL may come before or after the options. */
  const char *cell = NULL;
  if (argc > 1 && argv[1][0] != '-') {
    cell = argv[1];
    argv[1] = argv[0];
    argv++;
    argc--;
  }
  optind = 1;
  while ((c = getopt_long(argc, argv, "+n:de:w:u:ih", opts, NULL)) != -1) {
    switch (c) {
    case 'n': name = optarg; break;
    case 'd': detach = true; break;
    case 'e': env[nenv++] = optarg; break;
    case 'w': req.cwd = optarg; break;
    case 'u': {
      unsigned uid, gid;
      int n = sscanf(optarg, "%u:%u", &uid, &gid);
      if (n < 1) goto usage;
      creds.uid = uid;
      creds.gid = n == 2 ? gid : uid;
      req.credentials = &creds;
      break;
    }
    case 'i': read_stdin = true; break;
    case 'L':
      if (parse_size(optarg, &v) < 0) goto usage;
      req.output_limit_bytes = (uint64_t)v;
      break;
    case 'h':
      exec_usage(stdout);
      free(env);
      return 0;
    default: goto usage;
    }
  }
  /* CELL (unless given first), then the command (after "--" or not). */
  if (!cell) {
    if (optind >= argc || !strcmp(argv[optind], "--")) goto usage;
    cell = argv[optind++];
  }
  req.cell_name = (char *)cell;
  if (optind < argc && !strcmp(argv[optind], "--")) optind++;
  if (optind >= argc) goto usage;
  req.args = argv + optind;
  req.n_args = (size_t)(argc - optind);
  bool has_path = false;
  for (size_t i = 0; i < nenv; i++)
    has_path |= !strncmp(env[i], "PATH=", 5);
  if (!has_path) env[nenv++] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  req.env = env;
  req.n_env = nenv;
  char gen[64];
  if (!name) {
    default_name(argv[optind], gen, sizeof(gen));
    name = gen;
  }
  req.name = (char *)name;
  if (read_stdin) {
    size_t cap = 65536, len = 0;
    input = malloc(cap);
    size_t n;
    while (input && (n = fread(input + len, 1, cap - len, stdin)) > 0) {
      len += n;
      if (len == cap) {
        uint8_t *bigger = realloc(input, cap * 2);
        if (!bigger) break;
        input = bigger;
        cap *= 2;
      }
    }
    req.stdin.data = input;
    req.stdin.len = len;
  }
  ProtobufCMessage *resp;
  rc = aer_unary(ctx, RT "RunExecutable", &req.base,
                 &aurae__runtime__v0__executable_status__descriptor, CALL_TIMEOUT_MS, &resp);
  if (rc) goto out;
  const pb_exe *st = (const void *)resp;
  if (detach) {
    if (ctx->output == AER_OUTPUT_JSON)
      aer_print_json(resp);
    else
      printf("%s/%s started (pid %d)\n", st->cell_name, st->name, st->host_pid);
    protobuf_c_message_free_unpacked(resp, NULL);
    rc = 0;
    goto out;
  }
  protobuf_c_message_free_unpacked(resp, NULL);
  /* Like docker run: the output as it comes, then the exit code. The
   * follow stream ends when the process ends. */
  aer_output saved = ctx->output;
  ctx->output = AER_OUTPUT_HUMAN;
  rc = stream_logs(ctx, req.cell_name, name, AURAE__RUNTIME__V0__LOG_STREAM__LOG_STREAM_ALL, true);
  ctx->output = saved;
  if (rc) goto out;
  rc = wait_exe(ctx, req.cell_name, name, 0, ctx->output != AER_OUTPUT_JSON);
out:
  free(input);
  free(env);
  return rc;
usage:
  exec_usage(stderr);
  free(env);
  return 1;
}

/* aer cell run|ls|inspect|free: the cell group, with the top-level
 * commands as aliases. */
int cmd_cell(aer_ctx *ctx, int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    fprintf(argc < 2 ? stderr : stdout,
            "Usage: aer cell run NAME [OPTIONS]   create a cell (see aer cell run --help)\n"
            "       aer cell ls | inspect CELL | free [-r] CELL\n");
    return argc < 2 ? 1 : 0;
  }
  if (!strcmp(argv[1], "run")) return cell_run(ctx, argc - 1, argv + 1);
  if (!strcmp(argv[1], "ls")) return cmd_ls(ctx, argc - 1, argv + 1);
  if (!strcmp(argv[1], "inspect")) return cmd_inspect(ctx, argc - 1, argv + 1);
  if (!strcmp(argv[1], "free")) return cmd_free(ctx, argc - 1, argv + 1);
  fprintf(stderr, "aer: unknown cell command \"%s\"\n", argv[1]);
  return 1;
}
