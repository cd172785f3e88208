/* aer commands for virtual machines (issue 4):
 *   aer vm run NAME --kernel PATH [--initrd PATH] [--disk PATH[,ro][,qcow2]]...
 *              [--net [bridge=BR][,mac=MAC]]... [--vcpus N] [--memory MIB]
 *              [--cmdline ARGS] [--accel auto|kvm|tcg]
 *   aer vm ls | inspect NAME | logs [-f] NAME | wait NAME | stop [-t MS] NAME | free NAME
 *   aer vm initramfs OUT --init FILE [--modules-dir DIR] [--module NAME[:PARAMS]]...
 *              [--file SRC:DEST]...   (local: builds a guest initramfs, no daemon) */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "initramfs/initramfs.h"
#include "runtime.pb-c.h"

#define RT "/aurae.runtime.v0.Runtime/"
#define VM_CALL_TIMEOUT_MS 60000

typedef Aurae__Runtime__V0__VirtualMachineStatus pb_vm;

static const char *state_name(int s) {
  switch (s) {
  case AURAE__RUNTIME__V0__VIRTUAL_MACHINE_STATE__VIRTUAL_MACHINE_STATE_RUNNING: return "running";
  case AURAE__RUNTIME__V0__VIRTUAL_MACHINE_STATE__VIRTUAL_MACHINE_STATE_STOPPED: return "stopped";
  case AURAE__RUNTIME__V0__VIRTUAL_MACHINE_STATE__VIRTUAL_MACHINE_STATE_CRASHED: return "crashed";
  default: return "unknown";
  }
}

static const char *accel_name(int a) {
  return a == AURAE__RUNTIME__V0__ACCELERATOR__ACCELERATOR_KVM   ? "kvm"
         : a == AURAE__RUNTIME__V0__ACCELERATOR__ACCELERATOR_TCG ? "tcg"
                                                                 : "auto";
}

static void print_vm(const pb_vm *v) {
  printf("%s\t%s\tpid %d\t%s\t%u vcpu\t%" PRIu64 " MiB\n", v->name, state_name(v->state),
         v->vmm_pid, accel_name(v->accelerator), v->vcpus, v->memory_mib);
  if (v->accelerator_reason && *v->accelerator_reason)
    printf("  accelerator: %s\n", v->accelerator_reason);
  for (size_t i = 0; i < v->n_taps; i++)
    printf("  %s: host tap %s (%s), mac %s, guest %s%s%s\n", v->taps[i]->guest_name,
           v->taps[i]->host_name, v->taps[i]->host_address, v->taps[i]->mac,
           v->taps[i]->guest_address, *v->taps[i]->bridge ? ", bridge " : "", v->taps[i]->bridge);
  if (v->exit_reason && *v->exit_reason) printf("  exit: %s\n", v->exit_reason);
}

static void print_workload(aer_ctx *ctx, ProtobufCMessage *msg) {
  Aurae__Runtime__V0__WorkloadStatus *ws = (void *)msg;
  if (ctx->output == AER_OUTPUT_JSON)
    aer_print_json(msg);
  else if (ws->virtual_machine)
    print_vm(ws->virtual_machine);
}

static void ref_init(Aurae__Runtime__V0__WorkloadRef *ref, const char *name) {
  aurae__runtime__v0__workload_ref__init(ref);
  ref->kind = AURAE__RUNTIME__V0__WORKLOAD_KIND__WORKLOAD_KIND_VIRTUAL_MACHINE;
  ref->name = (char *)name;
}

/* "--net bridge=BR" as two words means "--net=bridge=BR": getopt only
 * takes an optional argument joined with '='. Returns a copy of argv with
 * such pairs joined; its strings are argv's or malloc'd (net_args_free). */
static bool net_value(const char *s) {
  return strncmp(s, "bridge=", 7) == 0 || strncmp(s, "mac=", 4) == 0;
}

static void net_args_free(char **args, int argc, char **orig, int orig_argc) {
  if (!args) return;
  for (int i = 0; i < argc; i++) {
    bool borrowed = false;
    for (int j = 0; j < orig_argc && !borrowed; j++)
      borrowed = args[i] == orig[j];
    if (!borrowed) free(args[i]);
  }
  free(args);
}

static char **net_args_join(int argc, char **argv, int *ret_argc) {
  char **out = calloc((size_t)argc + 1, sizeof(*out));
  if (!out) return NULL;
  int n = 0;
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--net") == 0 && i + 1 < argc && net_value(argv[i + 1])) {
      if (asprintf(&out[n], "--net=%s", argv[i + 1]) < 0) {
        net_args_free(out, n, argv, argc);
        return NULL;
      }
      n++, i++;
      continue;
    }
    out[n++] = argv[i];
  }
  *ret_argc = n;
  return out;
}

static int vm_run_parsed(aer_ctx *ctx, int argc, char **argv);

static int vm_run_cmd(aer_ctx *ctx, int argc, char **argv) {
  int n = 0;
  char **args = net_args_join(argc, argv, &n);
  if (!args) {
    fprintf(stderr, "aer: out of memory\n");
    return 1;
  }
  int rc = vm_run_parsed(ctx, n, args);
  net_args_free(args, n, argv, argc);
  return rc;
}

static int vm_run_parsed(aer_ctx *ctx, int argc, char **argv) {
  Aurae__Runtime__V0__VirtualMachine req = AURAE__RUNTIME__V0__VIRTUAL_MACHINE__INIT;
  Aurae__Runtime__V0__Disk disks[16], *pdisks[16];
  Aurae__Runtime__V0__NetworkInterface nics[8], *pnics[8];
  char *nic_bufs[8] = {0};
  req.memory_mib = 256;
  static const struct option opts[] = {{"kernel", required_argument, 0, 'k'},
                                       {"initrd", required_argument, 0, 'i'},
                                       {"disk", required_argument, 0, 'd'},
                                       {"net", optional_argument, 0, 'n'},
                                       {"vcpus", required_argument, 0, 'c'},
                                       {"memory", required_argument, 0, 'm'},
                                       {"cmdline", required_argument, 0, 'a'},
                                       {"accel", required_argument, 0, 'A'},
                                       {"console-limit", required_argument, 0, 'L'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  optind = 1;
  int c, rc = 0;
  while ((c = getopt_long(argc, argv, "k:i:d:n::c:m:a:A:L:h", opts, NULL)) != -1) {
    switch (c) {
    case 'h':
      printf("Usage: aer vm run NAME --kernel PATH [OPTIONS]\n"
             "  --kernel PATH           kernel (vmlinux or bzImage) under an allowed image dir\n"
             "  --initrd PATH           initramfs\n"
             "  --disk PATH[,ro][,qcow2] a virtio-blk disk (repeatable, in guest order)\n"
             "  --net [bridge=BR][,mac=MAC]  a NIC: eth0, eth1, ... in order (repeatable)\n"
             "  --vcpus N  --memory MIB (default 256)  --cmdline ARGS\n"
             "  --accel auto|kvm|tcg    (default auto: KVM only where it really works)\n"
             "  --console-limit BYTES   console log kept in memory\n");
      goto out;
    case 'k': req.kernel_path = optarg; break;
    case 'i': req.initramfs_path = optarg; break;
    case 'a': req.kernel_cmdline = optarg; break;
    case 'c': req.vcpus = (uint32_t)strtoul(optarg, NULL, 10); break;
    case 'm': req.memory_mib = strtoull(optarg, NULL, 10); break;
    case 'L': req.console_limit_bytes = strtoull(optarg, NULL, 10); break;
    case 'A':
      if (strcmp(optarg, "kvm") == 0)
        req.accelerator = AURAE__RUNTIME__V0__ACCELERATOR__ACCELERATOR_KVM;
      else if (strcmp(optarg, "tcg") == 0)
        req.accelerator = AURAE__RUNTIME__V0__ACCELERATOR__ACCELERATOR_TCG;
      else if (strcmp(optarg, "auto") == 0)
        req.accelerator = AURAE__RUNTIME__V0__ACCELERATOR__ACCELERATOR_AUTO;
      else {
        fprintf(stderr, "aer vm run: --accel auto|kvm|tcg\n");
        rc = 1;
        goto out;
      }
      break;
    case 'd': {
      if (req.n_disks == 16) {
        fprintf(stderr, "aer vm run: at most 16 disks\n");
        rc = 1;
        goto out;
      }
      Aurae__Runtime__V0__Disk *d = &disks[req.n_disks];
      aurae__runtime__v0__disk__init(d);
      char *opt = strchr(optarg, ',');
      if (opt) *opt++ = '\0';
      d->path = optarg;
      for (char *t = opt ? strtok(opt, ",") : NULL; t; t = strtok(NULL, ",")) {
        if (strcmp(t, "ro") == 0)
          d->read_only = true;
        else if (strcmp(t, "rw") == 0)
          d->read_only = false;
        else if (strcmp(t, "qcow2") == 0)
          d->format = AURAE__RUNTIME__V0__DISK_FORMAT__DISK_FORMAT_QCOW2;
        else if (strcmp(t, "raw") == 0)
          d->format = AURAE__RUNTIME__V0__DISK_FORMAT__DISK_FORMAT_RAW;
        else {
          fprintf(stderr, "aer vm run: --disk PATH[,ro|rw][,raw|qcow2]: unknown %s\n", t);
          rc = 1;
          goto out;
        }
      }
      pdisks[req.n_disks++] = d;
      break;
    }
    case 'n': {
      if (req.n_interfaces == 8) {
        fprintf(stderr, "aer vm run: at most 8 interfaces\n");
        rc = 1;
        goto out;
      }
      Aurae__Runtime__V0__NetworkInterface *n = &nics[req.n_interfaces];
      aurae__runtime__v0__network_interface__init(n);
      if (optarg) {
        char *buf = nic_bufs[req.n_interfaces] = strdup(optarg);
        for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
          if (strncmp(t, "bridge=", 7) == 0)
            n->bridge = t + 7;
          else if (strncmp(t, "mac=", 4) == 0)
            n->mac = t + 4;
          else {
            fprintf(stderr, "aer vm run: --net[=bridge=BR][,mac=MAC]: unknown %s\n", t);
            rc = 1;
            goto out;
          }
        }
      }
      pnics[req.n_interfaces++] = n;
      break;
    }
    default: rc = 1; goto out;
    }
  }
  if (optind != argc - 1 || !req.kernel_path) {
    fprintf(stderr,
            "usage: aer vm run NAME --kernel PATH [--initrd PATH] [--disk PATH[,ro]] "
            "[--net [bridge=BR][,mac=MAC]]... [--vcpus N] [--memory MIB] [--cmdline ARGS]\n");
    rc = 1;
    goto out;
  }
  req.name = argv[optind];
  req.disks = req.n_disks ? pdisks : NULL;
  req.interfaces = req.n_interfaces ? pnics : NULL;
  ProtobufCMessage *resp = NULL;
  rc =
      aer_unary(ctx, RT "RunVirtualMachine", &req.base,
                &aurae__runtime__v0__virtual_machine_status__descriptor, VM_CALL_TIMEOUT_MS, &resp);
  if (rc == 0) {
    if (ctx->output == AER_OUTPUT_JSON)
      aer_print_json(resp);
    else
      print_vm((pb_vm *)resp);
    protobuf_c_message_free_unpacked(resp, NULL);
  }
out:
  for (int i = 0; i < 8; i++)
    free(nic_bufs[i]);
  return rc;
}

static int vm_ls(aer_ctx *ctx) {
  Aurae__Runtime__V0__ListRequest req = AURAE__RUNTIME__V0__LIST_REQUEST__INIT;
  req.kind = AURAE__RUNTIME__V0__WORKLOAD_KIND__WORKLOAD_KIND_VIRTUAL_MACHINE;
  ProtobufCMessage *resp = NULL;
  int rc = aer_unary(ctx, RT "List", &req.base, &aurae__runtime__v0__list_response__descriptor,
                     VM_CALL_TIMEOUT_MS, &resp);
  if (rc) return rc;
  Aurae__Runtime__V0__ListResponse *l = (void *)resp;
  if (ctx->output == AER_OUTPUT_JSON)
    aer_print_json(resp);
  else
    for (size_t i = 0; i < l->n_virtual_machines; i++)
      print_vm(l->virtual_machines[i]);
  protobuf_c_message_free_unpacked(resp, NULL);
  return 0;
}

static int vm_logs_cmd(aer_ctx *ctx, int argc, char **argv) {
  bool follow = false;
  optind = 1;
  int c;
  static const struct option opts[] = {{"follow", no_argument, 0, 'f'}, {0, 0, 0, 0}};
  while ((c = getopt_long(argc, argv, "f", opts, NULL)) != -1) {
    if (c == 'f')
      follow = true;
    else
      return 1;
  }
  if (optind != argc - 1) {
    fprintf(stderr, "usage: aer vm logs [-f] NAME\n");
    return 1;
  }
  Aurae__Runtime__V0__LogsRequest req = AURAE__RUNTIME__V0__LOGS_REQUEST__INIT;
  Aurae__Runtime__V0__WorkloadRef ref;
  ref_init(&ref, argv[optind]);
  req.ref = &ref;
  req.stream = AURAE__RUNTIME__V0__LOG_STREAM__LOG_STREAM_CONSOLE;
  req.follow = follow;
  return aer_stream_logs(ctx, &req);
}

static int vm_simple(aer_ctx *ctx, const char *verb, int argc, char **argv) {
  unsigned grace = 0;
  optind = 1;
  int c;
  static const struct option opts[] = {{"grace", required_argument, 0, 't'}, {0, 0, 0, 0}};
  while ((c = getopt_long(argc, argv, "t:", opts, NULL)) != -1) {
    if (c == 't')
      grace = (unsigned)strtoul(optarg, NULL, 10);
    else
      return 1;
  }
  if (optind != argc - 1) {
    fprintf(stderr, "usage: aer vm %s NAME\n", verb);
    return 1;
  }
  Aurae__Runtime__V0__WorkloadRef ref;
  ref_init(&ref, argv[optind]);
  ProtobufCMessage *resp = NULL;
  int rc;
  if (strcmp(verb, "inspect") == 0) {
    Aurae__Runtime__V0__InspectRequest req = AURAE__RUNTIME__V0__INSPECT_REQUEST__INIT;
    req.ref = &ref;
    rc = aer_unary(ctx, RT "Inspect", &req.base, &aurae__runtime__v0__workload_status__descriptor,
                   VM_CALL_TIMEOUT_MS, &resp);
  } else if (strcmp(verb, "wait") == 0) {
    Aurae__Runtime__V0__WaitRequest req = AURAE__RUNTIME__V0__WAIT_REQUEST__INIT;
    req.ref = &ref;
    rc = aer_unary(ctx, RT "Wait", &req.base, &aurae__runtime__v0__workload_status__descriptor, 0,
                   &resp);
  } else if (strcmp(verb, "stop") == 0) {
    Aurae__Runtime__V0__StopRequest req = AURAE__RUNTIME__V0__STOP_REQUEST__INIT;
    req.ref = &ref;
    req.grace_period_ms = grace;
    rc = aer_unary(ctx, RT "Stop", &req.base, &aurae__runtime__v0__workload_status__descriptor,
                   (int64_t)(grace ? grace : 10000) + 30000, &resp);
  } else {
    Aurae__Runtime__V0__FreeRequest req = AURAE__RUNTIME__V0__FREE_REQUEST__INIT;
    req.ref = &ref;
    rc = aer_unary(ctx, RT "Free", &req.base, &aurae__runtime__v0__free_response__descriptor,
                   VM_CALL_TIMEOUT_MS, &resp);
    if (rc == 0) {
      Aurae__Runtime__V0__FreeResponse *f = (void *)resp;
      if (ctx->output == AER_OUTPUT_JSON)
        aer_print_json(resp);
      else
        for (size_t i = 0; i < f->n_freed; i++)
          printf("freed %s\n", f->freed[i]);
      protobuf_c_message_free_unpacked(resp, NULL);
    }
    return rc;
  }
  if (rc == 0) {
    print_workload(ctx, resp);
    protobuf_c_message_free_unpacked(resp, NULL);
  }
  return rc;
}

static int vm_initramfs_cmd(int argc, char **argv) {
  const char *out = NULL, *init = NULL, *modules_dir = NULL;
  initramfs_module mods[64];
  initramfs_file files[64];
  size_t n_mods = 0, n_files = 0;
  bool default_mods = true;
  static const struct option opts[] = {{"init", required_argument, 0, 'i'},
                                       {"modules-dir", required_argument, 0, 'M'},
                                       {"module", required_argument, 0, 'm'},
                                       {"file", required_argument, 0, 'f'},
                                       {0, 0, 0, 0}};
  optind = 1;
  int c;
  while ((c = getopt_long(argc, argv, "i:M:m:f:", opts, NULL)) != -1) {
    switch (c) {
    case 'i': init = optarg; break;
    case 'M': modules_dir = optarg; break;
    case 'm': {
      if (n_mods == 64) return 1;
      default_mods = false;
      char *colon = strchr(optarg, ':');
      if (colon) *colon++ = '\0';
      mods[n_mods++] = (initramfs_module){optarg, colon};
      break;
    }
    case 'f': {
      if (n_files == 64) return 1;
      char *colon = strchr(optarg, ':');
      if (!colon) {
        fprintf(stderr, "aer vm initramfs: --file SRC:DEST\n");
        return 1;
      }
      *colon++ = '\0';
      files[n_files++] = (initramfs_file){optarg, colon, 0};
      break;
    }
    default: return 1;
    }
  }
  if (optind == argc - 1) out = argv[optind];
  if (!out || !init) {
    fprintf(stderr, "usage: aer vm initramfs OUT --init FILE [--modules-dir DIR] "
                    "[--module NAME[:PARAMS]]... [--file SRC:DEST]...\n"
                    "  --modules-dir without --module adds the microVM set (virtio, virtio_mmio,\n"
                    "  virtio_net napi_tx=0, virtio_blk, button, evdev) and their dependencies\n");
    return 1;
  }
  initramfs_spec spec = {.init = init,
                         .modules_dir = modules_dir,
                         .modules = default_mods ? NULL : mods,
                         .n_modules = n_mods,
                         .files = files,
                         .n_files = n_files};
  au_error err = {0};
  if (initramfs_build(&spec, out, &err) < 0) {
    fprintf(stderr, "aer: %s\n", err.msg);
    return 1;
  }
  return 0;
}

int cmd_vm(aer_ctx *ctx, int argc, char **argv) {
  bool help = argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0);
  if (argc < 2 || help) {
    fprintf(help ? stdout : stderr,
            "usage: aer vm run|ls|inspect|logs|wait|stop|free|initramfs ...\n"
            "       aer vm run --help   (the options of a VM)\n");
    return help ? 0 : 1;
  }
  const char *sub = argv[1];
  argc--, argv++;
  if (strcmp(sub, "run") == 0) return vm_run_cmd(ctx, argc, argv);
  if (strcmp(sub, "ls") == 0 || strcmp(sub, "list") == 0) return vm_ls(ctx);
  if (strcmp(sub, "logs") == 0) return vm_logs_cmd(ctx, argc, argv);
  if (strcmp(sub, "initramfs") == 0) return vm_initramfs_cmd(argc, argv);
  if (strcmp(sub, "inspect") == 0 || strcmp(sub, "wait") == 0 || strcmp(sub, "stop") == 0 ||
      strcmp(sub, "free") == 0)
    return vm_simple(ctx, sub, argc, argv);
  fprintf(stderr, "aer vm: unknown command %s\n", sub);
  return 1;
}
