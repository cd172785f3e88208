/* Pure and host-probing helpers of the VM module: accelerator detection,
 * tap names, MACs, the kernel command line. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cleanup.h"
#include "vm/vm.h"
#include "vm/vm_internal.h"

void vm_fmt(char *buf, size_t size, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, size, fmt, ap);
  va_end(ap);
}

const char *vm_accel_name(vm_accel a) {
  switch (a) {
  case VM_ACCEL_KVM: return "kvm";
  case VM_ACCEL_TCG: return "tcg";
  default: return "auto";
  }
}

const char *vm_state_name(vm_state s) {
  switch (s) {
  case VM_STATE_RUNNING: return "running";
  case VM_STATE_STOPPED: return "stopped";
  case VM_STATE_CRASHED: return "crashed";
  default: return "starting";
  }
}

static bool cpuinfo_has_flag(const char *flag) {
  _cleanup_fclose_ FILE *f = fopen("/proc/cpuinfo", "re");
  if (!f) return false;
  char line[8192];
  size_t n = strlen(flag);
  while (fgets(line, sizeof(line), f)) {
    if (strncmp(line, "flags", 5) != 0) continue;
    for (char *p = strstr(line, flag); p; p = strstr(p + 1, flag))
      if (p[-1] == ' ' && (p[n] == ' ' || p[n] == '\n' || p[n] == '\0')) return true;
    return false; /* the first CPU's flags decide */
  }
  return false;
}

bool vm_kvm_usable(char *reason, size_t size) {
  char dummy[8];
  if (!reason) reason = dummy, size = sizeof(dummy);
  if (!cpuinfo_has_flag("vmx") && !cpuinfo_has_flag("svm")) {
    snprintf(reason, size,
             "no vmx/svm flag in /proc/cpuinfo (no hardware "
             "virtualization; a paravirtual nested KVM hangs ordinary guests)");
    return false;
  }
  _cleanup_close_ int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    snprintf(reason, size, "/dev/kvm: %s", strerror(errno));
    return false;
  }
  int v = ioctl(fd, KVM_GET_API_VERSION, 0);
  if (v != KVM_API_VERSION) {
    snprintf(reason, size, "/dev/kvm: API version %d, want %d", v, KVM_API_VERSION);
    return false;
  }
  _cleanup_close_ int vmfd = ioctl(fd, KVM_CREATE_VM, 0);
  if (vmfd < 0) {
    snprintf(reason, size, "/dev/kvm: KVM_CREATE_VM: %s", strerror(errno));
    return false;
  }
  snprintf(reason, size, "hardware virtualization and /dev/kvm work");
  return true;
}

int vm_accel_resolve(vm_accel want, vm_accel *ret, char *reason, size_t size, au_error *err) {
  if (want == VM_ACCEL_TCG) {
    snprintf(reason, size, "tcg requested");
    *ret = VM_ACCEL_TCG;
    return 0;
  }
  if (want != VM_ACCEL_AUTO && want != VM_ACCEL_KVM)
    return au_error_set(err, -EINVAL, "accelerator: unknown value %d", (int)want);
  char why[128];
  bool kvm = vm_kvm_usable(why, sizeof(why));
  if (want == VM_ACCEL_KVM && !kvm)
    return au_error_set(err, -EOPNOTSUPP, "accelerator kvm is not usable here: %s", why);
  *ret = kvm ? VM_ACCEL_KVM : VM_ACCEL_TCG;
  snprintf(reason, size, "%s%s", kvm ? "" : "auto picked tcg: ", why);
  return 0;
}

/* FNV-1a, for short stable names derived from a VM name. */
static uint32_t fnv1a(const char *s) {
  uint32_t h = 2166136261u;
  for (; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 16777619u;
  }
  return h;
}

static uint64_t fnv1a64(const char *s) {
  uint64_t h = 14695981039346656037ull;
  for (; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 1099511628211ull;
  }
  return h;
}

void vm_tap_name(const char *vm_name, unsigned index, char buf[16]) {
  /* "au-<name>-<n>" names the VM outright when it fits in IFNAMSIZ - 1.
   * Longer names become "au-<first 3>_<7 base-32 digits of a 64-bit hash
   * of the whole name><n>" ("au-web_k3v9q0a0"): 35 bits of hash, so VMs
   * sharing a prefix collide only by chance of 2^-35 per pair, and the '_'
   * (which a DNS-label VM name cannot contain) keeps a long form from ever
   * equalling the short form of another VM. The tap's ifalias holds the
   * full VM name. A collision that happens anyway fails the start cleanly:
   * net_tap_create is exclusive. */
  int n = snprintf(buf, 16, "au-%s-%u", vm_name, index);
  if (n > 0 && n <= 15) return;
  static const char digits[] = "0123456789abcdefghijklmnopqrstuv";
  uint64_t h = fnv1a64(vm_name);
  char hash[8];
  for (int i = 0; i < 7; i++, h >>= 5)
    hash[i] = digits[h & 31];
  hash[7] = '\0';
  snprintf(buf, 16, "au-%.3s_%s%u", vm_name, hash, index % 10);
}

static bool hex_digit(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool vm_mac_valid(const char *mac) {
  /* Exactly "xx:xx:xx:xx:xx:xx" in hex digits: sscanf's %2x would also
   * take signs and blanks ("02:-1:-1:-1:-1:-1"). */
  if (!mac || strlen(mac) != 17) return false;
  for (int i = 0; i < 17; i++) {
    if (i % 3 == 2 ? mac[i] != ':' : !hex_digit(mac[i])) return false;
  }
  /* The low bit of the first octet marks a group (multicast) address,
   * which a NIC cannot own. */
  unsigned first = (unsigned)strtoul((char[]){mac[0], mac[1], '\0'}, NULL, 16);
  return !(first & 1);
}

void vm_default_mac(const char *vm_name, unsigned index, char buf[18]) {
  uint32_t h = fnv1a(vm_name);
  /* 0x02: locally administered, unicast. */
  snprintf(buf, 18, "02:%02x:%02x:%02x:%02x:%02x", (h >> 24) & 0xff, (h >> 16) & 0xff,
           (h >> 8) & 0xff, h & 0xff, index & 0xff);
}

static uint64_t be_u64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | p[i];
  return v;
}

int vm_check_qcow2(int fd, const char *field, const char *path, au_error *err) {
  /* The header fields we read: magic, version, backing_file_offset (8),
   * backing_file_size (16), incompatible_features (72, version 3). */
  unsigned char h[104];
  ssize_t n = pread(fd, h, sizeof(h), 0);
  if (n < 0) return au_error_errno(err, -errno, "%s: read %s", field, path);
  if (n < 72 || memcmp(h, "QFI\xfb", 4) != 0)
    return au_error_set(err, -EINVAL, "%s: %s is not a qcow2 image", field, path);
  uint32_t version = (uint32_t)h[4] << 24 | (uint32_t)h[5] << 16 | (uint32_t)h[6] << 8 | h[7];
  if (version != 2 && version != 3)
    return au_error_set(err, -EINVAL, "%s: %s: qcow2 version %u is not supported", field, path,
                        version);
  if (be_u64(h + 8) != 0)
    return au_error_set(err, -EINVAL,
                        "%s: %s has a backing file; images that name other "
                        "host files are not allowed (flatten it with qemu-img convert)",
                        field, path);
  /* Bit 2: an external data file, also named by path. */
  if (version == 3 && n >= 80 && (be_u64(h + 72) & (1u << 2)))
    return au_error_set(err, -EINVAL,
                        "%s: %s uses an external data file; images that name "
                        "other host files are not allowed",
                        field, path);
  return 0;
}

int vm_build_cmdline(const char *user, unsigned tsc_khz, char **ret, au_error *err) {
  /* tsc_early_khz: the machine has no PIT (pit=off), so the guest cannot
   * calibrate the TSC and hangs without it. 8250.nr_uarts=1: probing the
   * three absent UARTs costs time under TCG. panic=-1: a panicking guest
   * resets, and -no-reboot turns that into a reported exit. pci=off: the
   * machine has no PCI bus. */
  char base[256];
  if (tsc_khz)
    snprintf(base, sizeof(base),
             "console=ttyS0 tsc_early_khz=%u tsc=reliable "
             "8250.nr_uarts=1 cryptomgr.notests panic=-1 pci=off",
             tsc_khz);
  else
    snprintf(base, sizeof(base),
             "console=ttyS0 8250.nr_uarts=1 cryptomgr.notests "
             "panic=-1 pci=off");
  const char *extra = user && *user ? user : "quiet";
  if (strlen(base) + 1 + strlen(extra) >= VM_CMDLINE_MAX)
    return au_error_set(err, -EINVAL,
                        "kernel_cmdline: longer than %d bytes with the "
                        "base settings",
                        VM_CMDLINE_MAX);
  for (const char *p = extra; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f)
      return au_error_set(err, -EINVAL, "kernel_cmdline: control character");
  if (asprintf(ret, "%s %s", base, extra) < 0) return au_error_set(err, -ENOMEM, "out of memory");
  return 0;
}
