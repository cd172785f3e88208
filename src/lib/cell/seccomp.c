/* The default seccomp filter of a cell's executables: allow by default,
 * EPERM for the system calls Docker's default profile denies to a
 * container without extra capabilities, on x86_64 (and its i386 and x32
 * ABIs, so 32-bit programs get the same rules instead of being killed).
 * Most of them already need a capability the cell lacks; the filter
 * removes kernel attack surface a bug there would expose (user
 * namespaces, bpf, keyrings, userfaultfd, perf, io_uring, the new mount
 * API).
 *
 * Built once with libseccomp in the single-threaded cell init, exported
 * as classic BPF into memory, and loaded in each executable's child with
 * prctl alone, which is async-signal-safe. */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cell/harden.h"
#include "cleanup.h"

static const char *const denied[] = {
    /* kernel code and the machine itself */
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "create_module", "get_kernel_syms", "query_module", "reboot", "swapon", "swapoff", "iopl",
    "ioperm", "vm86", "vm86old", "acct", "quotactl", "lookup_dcookie", "uselib", "nfsservctl",
    "_sysctl", "syslog",
    /* clocks are the host's */
    "settimeofday", "stime", "clock_settime", "clock_adjtime", "adjtimex",
    /* file handles bypass the mount namespace (the "shocker" escape) */
    "open_by_handle_at", "name_to_handle_at",
    /* large attack surface with a history of exploits */
    "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
    /* io_uring needs no capability and has been the source of many local
     * privilege escalations; Docker's default profile has denied it since
     * 2023. Its operations also bypass this filter, which only sees
     * system calls. */
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    /* mounts: the cell's mounts are set up by its init */
    "mount", "umount2", "pivot_root", "mount_setattr", "move_mount", "open_tree", "fsopen",
    "fsmount", "fspick", "setns", NULL};

/* New namespaces from inside a cell, above all user namespaces: they hand
 * an unprivileged process capabilities over new kernel interfaces, the
 * most common source of local privilege escalations. */
static const uint64_t ns_flags[] = {CLONE_NEWNS,   CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC,
                                    CLONE_NEWUSER, CLONE_NEWPID,    CLONE_NEWNET};

static int add(scmp_filter_ctx ctx, uint32_t action, const char *name, unsigned n,
               const struct scmp_arg_cmp *cmp) {
  int nr = seccomp_syscall_resolve_name(name);
  if (nr == __NR_SCMP_ERROR) return 0; /* not a system call of these ABIs */
  int r = seccomp_rule_add_array(ctx, action, nr, n, cmp);
  return r == -EDOM ? 0 : r; /* not on every ABI of the filter */
}

static int build_main(scmp_filter_ctx ctx) {
  int r = 0;
#if defined(__x86_64__)
  if ((r = seccomp_arch_add(ctx, SCMP_ARCH_X86)) < 0 && r != -EEXIST) return r;
  if ((r = seccomp_arch_add(ctx, SCMP_ARCH_X32)) < 0 && r != -EEXIST) return r;
#endif
  /* We set no_new_privs ourselves (harden.c) and load the program
   * ourselves. */
  if ((r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0)) < 0) return r;
  /* A binary tree of syscall numbers instead of a list: every syscall
   * walks ~8 comparisons instead of up to ~70, and loading the program
   * (the kernel evaluates it for every syscall number to build its
   * allow cache) takes ~40% less, on every executable's start. */
  if ((r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2)) < 0) return r;
  for (const char *const *n = denied; *n; n++)
    if ((r = add(ctx, SCMP_ACT_ERRNO(EPERM), *n, 0, NULL)) < 0) return r;
  for (size_t i = 0; i < sizeof(ns_flags) / sizeof(ns_flags[0]); i++) {
    struct scmp_arg_cmp cmp = SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i]);
    if ((r = add(ctx, SCMP_ACT_ERRNO(EPERM), "unshare", 1, &cmp)) < 0 ||
        (r = add(ctx, SCMP_ACT_ERRNO(EPERM), "clone", 1, &cmp)) < 0)
      return r;
  }
  /* CLONE_NEWTIME (0x80) is only a flag for unshare: in clone's first
   * argument those bits are the exit signal. */
  struct scmp_arg_cmp newtime = SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWTIME, CLONE_NEWTIME);
  if ((r = add(ctx, SCMP_ACT_ERRNO(EPERM), "unshare", 1, &newtime)) < 0) return r;
  /* clone3 passes its flags in memory, which seccomp cannot read: ENOSYS
   * makes glibc (2.34+) fall back to clone, which is filtered above. */
  return add(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3", 0, NULL);
}

/* libseccomp cannot express "personality except these values" under an
 * allow-by-default action (one comparison per argument, and a rule may not
 * carry the default action), so a hand-written program does, put in front
 * of libseccomp's (merge_persona). Allowed, as in Docker's
 * profile: PER_LINUX, PER_LINUX32, UNAME26 with either, and the query
 * 0xffffffff; refused: ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC,
 * MMAP_PAGE_ZERO... which weaken the process's own hardening. */
#define PERSONA_NR_X86_64 135
#define PERSONA_NR_I386 136
#define X32_BIT 0x40000000u
static const struct sock_filter persona_prog[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 0, 4),
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PERSONA_NR_X86_64, 6, 0),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PERSONA_NR_X86_64 | X32_BIT, 5, 0),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    /* 6: not x86_64 */
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_I386, 0, 10),
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PERSONA_NR_I386, 1, 0),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    /* 10: personality: the kernel reads an unsigned int, the low word of
     * args[0] on a little-endian machine. */
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x0, 5, 0),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x8, 4, 0),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x20000, 3, 0),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x20008, 2, 0),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0xffffffff, 1, 0),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
    /* 17 */
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
};

/* One program instead of two: every filter an executable loads is
 * translated and JIT-compiled by the kernel in each exec'ing child (~0.1
 * ms each here). The persona program goes first and, where it would allow,
 * jumps to the start of the main one instead; its EPERM is returned
 * directly. That is what the kernel makes of the two filters (the
 * stricter result wins, and main allows personality). */
static int merge_persona(struct sock_fprog *main) {
  const size_t np = sizeof(persona_prog) / sizeof(persona_prog[0]);
  if (np + main->len > BPF_MAXINSNS) return -E2BIG;
  struct sock_filter *insns = malloc((np + main->len) * sizeof(*insns));
  if (!insns) return -ENOMEM;
  for (size_t i = 0; i < np; i++) {
    insns[i] = persona_prog[i];
    if (insns[i].code == (BPF_RET | BPF_K) && insns[i].k == SECCOMP_RET_ALLOW)
      insns[i] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JA, (uint32_t)(np - i - 1), 0, 0);
  }
  memcpy(insns + np, main->filter, main->len * sizeof(*insns));
  free(main->filter);
  main->filter = insns;
  main->len = (unsigned short)(np + main->len);
  return 0;
}

/* seccomp_export_bpf writes to an fd (libseccomp 2.5 has no in-memory
 * export): a memfd, read back into the program's buffer. */
static int export_main(scmp_filter_ctx ctx, struct sock_fprog *ret) {
  _cleanup_close_ int fd = memfd_create("aurae-seccomp", MFD_CLOEXEC);
  if (fd < 0) return -errno;
  int r = seccomp_export_bpf(ctx, fd);
  if (r < 0) return r;
  struct stat st;
  if (fstat(fd, &st) < 0) return -errno;
  size_t n = (size_t)st.st_size;
  if (n == 0 || n % sizeof(struct sock_filter) || n / sizeof(struct sock_filter) > BPF_MAXINSNS)
    return -E2BIG;
  struct sock_filter *insns = malloc(n);
  if (!insns) return -ENOMEM;
  if (pread(fd, insns, n, 0) != (ssize_t)n) {
    free(insns);
    return -EIO;
  }
  ret->filter = insns;
  ret->len = (unsigned short)(n / sizeof(struct sock_filter));
  return 0;
}

int cell_seccomp_build(cell_seccomp *ret, char *errbuf, size_t size) {
  *ret = (cell_seccomp){0};
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (!ctx) {
    snprintf(errbuf, size, "seccomp: init: %s", strerror(ENOMEM));
    return -ENOMEM;
  }
  int r = build_main(ctx);
  if (r >= 0) r = export_main(ctx, &ret->main);
  seccomp_release(ctx);
  if (r < 0) {
    snprintf(errbuf, size, "seccomp: build the default filter: %s", strerror(-r));
    return r;
  }
  if ((r = merge_persona(&ret->main)) < 0) {
    cell_seccomp_free(ret);
    snprintf(errbuf, size, "seccomp: build the default filter: %s", strerror(-r));
    return r;
  }
  return 0;
}

int cell_seccomp_load(const cell_seccomp *s) {
  if (!s->main.filter) return 0;
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &s->main) < 0) return -errno;
  return 0;
}

void cell_seccomp_free(cell_seccomp *s) {
  free(s->main.filter);
  *s = (cell_seccomp){0};
}
