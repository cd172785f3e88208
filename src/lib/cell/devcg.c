/* The device filter of a cell (devcg.h): a BPF_PROG_TYPE_CGROUP_DEVICE
 * program written as raw instructions, so that auraed needs neither
 * libbpf nor a BPF compiler. The kernel runs it on every open and mknod
 * of a device node by a process in the cgroup (devcgroup_check_permission,
 * which runs the cgroup2 programs even on a hybrid host whose cgroup2
 * hierarchy has no controller enabled) and allows the access only when it
 * returns 1. */
#include <errno.h>
#include <linux/bpf.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cell/devcg.h"
#include "cleanup.h"

/* A rule's minor that matches any minor of its majors. */
#define ANY_MINOR UINT32_MAX

/* What a cell may open, read and write: the OCI default devices
 * (runtime-spec config-linux.md), all of them character devices. The
 * numbers are those of the kernel's Documentation/admin-guide/devices.txt.
 * One line a device: the program is built from this table. */
static const struct devcg_rule {
  uint32_t major_first, major_last, minor;
} allowed[] = {
    {1, 1, 3},             /* /dev/null */
    {1, 1, 5},             /* /dev/zero */
    {1, 1, 7},             /* /dev/full */
    {1, 1, 8},             /* /dev/random */
    {1, 1, 9},             /* /dev/urandom */
    {5, 5, 0},             /* /dev/tty */
    {5, 5, 2},             /* /dev/ptmx */
    {136, 143, ANY_MINOR}, /* /dev/pts/N, the Unix98 pty slaves */
};

/* The registers the program keeps the request in. r1 holds the context
 * (struct bpf_cgroup_dev_ctx) on entry; r0 is the verdict. */
enum { R_VERDICT = BPF_REG_0, R_CTX = BPF_REG_1, R_ACCESS, R_TYPE, R_MAJOR, R_MINOR };

/* Jump targets that are only known once the whole program is laid out. */
enum { TO_NONE, TO_NEXT_RULE, TO_DENY, TO_ALLOW };

/* The prologue, up to four instructions a rule, then deny and allow (two
 * each). */
#define PROLOGUE_INSNS 8
#define MAX_INSNS (PROLOGUE_INSNS + 4 * ARRAY_SIZE(allowed) + 4)

static struct bpf_insn insn(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
  return (struct bpf_insn){.code = code, .dst_reg = dst, .src_reg = src, .off = off, .imm = imm};
}

static struct bpf_insn load_ctx_u32(uint8_t dst, size_t field) {
  return insn(BPF_LDX | BPF_MEM | BPF_W, dst, R_CTX, (int16_t)field, 0);
}

static struct bpf_insn jump_imm(uint8_t op, uint8_t reg, uint32_t imm) {
  return insn(BPF_JMP | op | BPF_K, reg, 0, 0, (int32_t)imm);
}

/* Builds the program into INSNS (MAX_INSNS long) and returns its length.
 * The checks that hold whatever the table says come first: only
 * character devices, and only read and write (so never mknod, which
 * would let a cell make a node of any device wherever it can write);
 * then one block of tests a rule, which jumps to allow on a match and
 * falls through to the next rule otherwise; the last falls into deny. */
static size_t build_program(struct bpf_insn *insns) {
  uint8_t to[MAX_INSNS] = {0};
  size_t n = 0;

  insns[n++] = load_ctx_u32(R_ACCESS, offsetof(struct bpf_cgroup_dev_ctx, access_type));
  insns[n++] = insn(BPF_ALU64 | BPF_MOV | BPF_X, R_TYPE, R_ACCESS, 0, 0);
  insns[n++] = insn(BPF_ALU64 | BPF_AND | BPF_K, R_TYPE, 0, 0, 0xffff);
  insns[n++] = insn(BPF_ALU64 | BPF_RSH | BPF_K, R_ACCESS, 0, 0, 16);
  to[n] = TO_DENY;
  insns[n++] = jump_imm(BPF_JNE, R_TYPE, BPF_DEVCG_DEV_CHAR);
  to[n] = TO_DENY;
  insns[n++] = jump_imm(BPF_JSET, R_ACCESS, ~(uint32_t)(BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE));
  insns[n++] = load_ctx_u32(R_MAJOR, offsetof(struct bpf_cgroup_dev_ctx, major));
  insns[n++] = load_ctx_u32(R_MINOR, offsetof(struct bpf_cgroup_dev_ctx, minor));

  for (size_t i = 0; i < ARRAY_SIZE(allowed); i++) {
    const struct devcg_rule *rule = &allowed[i];
    size_t first = n;
    if (rule->major_first == rule->major_last) {
      to[n] = TO_NEXT_RULE;
      insns[n++] = jump_imm(BPF_JNE, R_MAJOR, rule->major_first);
    } else {
      to[n] = TO_NEXT_RULE;
      insns[n++] = jump_imm(BPF_JLT, R_MAJOR, rule->major_first);
      to[n] = TO_NEXT_RULE;
      insns[n++] = jump_imm(BPF_JGT, R_MAJOR, rule->major_last);
    }
    if (rule->minor != ANY_MINOR) {
      to[n] = TO_NEXT_RULE;
      insns[n++] = jump_imm(BPF_JNE, R_MINOR, rule->minor);
    }
    to[n] = TO_ALLOW;
    insns[n++] = insn(BPF_JMP | BPF_JA, 0, 0, 0, 0);
    /* A jump's offset counts from the instruction after it. */
    for (size_t j = first; j < n; j++)
      if (to[j] == TO_NEXT_RULE) {
        insns[j].off = (int16_t)(n - j - 1);
        to[j] = TO_NONE;
      }
  }

  size_t deny = n;
  insns[n++] = insn(BPF_ALU64 | BPF_MOV | BPF_K, R_VERDICT, 0, 0, 0);
  insns[n++] = insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
  size_t allow = n;
  insns[n++] = insn(BPF_ALU64 | BPF_MOV | BPF_K, R_VERDICT, 0, 0, 1);
  insns[n++] = insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
  for (size_t j = 0; j < n; j++) {
    if (to[j] == TO_DENY) insns[j].off = (int16_t)(deny - j - 1);
    if (to[j] == TO_ALLOW) insns[j].off = (int16_t)(allow - j - 1);
  }
  return n;
}

static long sys_bpf(int cmd, union bpf_attr *attr) {
  return syscall(SYS_bpf, cmd, attr, sizeof(*attr));
}

/* The verifier's log ends with the reason it refused a program, then a
 * line of statistics ("processed N insns ..."): the last line that is not
 * the statistics is enough for an error message. */
static const char *verifier_reason(char *log) {
  for (;;) {
    size_t n = strlen(log);
    while (n > 0 && (log[n - 1] == '\n' || log[n - 1] == ' '))
      log[--n] = '\0';
    char *nl = strrchr(log, '\n');
    char *line = nl ? nl + 1 : log;
    if (strncmp(line, "processed ", 10) != 0 || line == log) return line;
    *line = '\0';
  }
}

/* BPF_PROG_LOAD. Without a log first: the verifier writes one only when
 * asked, and a program this small never needs it. On failure, a second
 * load with a log says why, but its errno is not the one to report: a log
 * that overflows its buffer turns the failure into ENOSPC. */
int cell_devices_load(au_error *err) {
  struct bpf_insn insns[MAX_INSNS];
  size_t n = build_program(insns);
  static const char license[] = "GPL";
  union bpf_attr attr;
  memset(&attr, 0, sizeof(attr));
  attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
  attr.insns = (uint64_t)(uintptr_t)insns;
  attr.insn_cnt = (uint32_t)n;
  attr.license = (uint64_t)(uintptr_t)license;
  /* What bpftool prog shows beside the program (at most 15 characters). */
  memcpy(attr.prog_name, "aurae_devices", sizeof("aurae_devices"));
  int fd = (int)sys_bpf(BPF_PROG_LOAD, &attr);
  if (fd >= 0) return fd;
  int e = errno;

  enum { LOG_SIZE = 16384 };
  _cleanup_free_ char *log = calloc(1, LOG_SIZE);
  if (log) {
    attr.log_level = 1;
    attr.log_size = LOG_SIZE;
    attr.log_buf = (uint64_t)(uintptr_t)log;
    fd = (int)sys_bpf(BPF_PROG_LOAD, &attr);
    /* It may load the second time (a transient failure such as ENOMEM). */
    if (fd >= 0) return fd;
    log[LOG_SIZE - 1] = '\0';
    const char *why = verifier_reason(log);
    if (*why) return au_error_set(err, -e, "load device filter: %s (%s)", strerror(e), why);
  }
  return au_error_errno(err, -e, "load device filter");
}

int cell_devices_attach(int cgroup_dir_fd, int prog, au_error *err) {
  union bpf_attr attr;
  memset(&attr, 0, sizeof(attr));
  attr.target_fd = (uint32_t)cgroup_dir_fd;
  attr.attach_bpf_fd = (uint32_t)prog;
  attr.attach_type = BPF_CGROUP_DEVICE;
  /* Several programs on one cgroup and below it, all of which must allow:
   * a nested cell attaches its own to its cgroup, inside its parent's,
   * and can only narrow what its parent allows. */
  attr.attach_flags = BPF_F_ALLOW_MULTI;
  if (sys_bpf(BPF_PROG_ATTACH, &attr) < 0)
    return au_error_errno(err, -errno, "attach device filter");
  /* The cgroup holds a reference to the program from here on: closing the
   * loader's fd does not detach it, and rmdir of the cgroup drops it. */
  return 0;
}
