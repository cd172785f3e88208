/* Pure parts of the VM module: the qcow2 header check that keeps images
 * from naming host files, tap names, MACs, the kernel command line, and
 * the QEMU command line's device order and disk flags. The real QEMU is
 * exercised by tests/integration/test_vms.py. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "vm/vm.h"
#include "vm/vm_internal.h"
#include "vm/vmm.h"

static void put_be32(unsigned char *p, uint32_t v) {
  for (int i = 3; i >= 0; i--, v >>= 8)
    p[i] = (unsigned char)v;
}

static void put_be64(unsigned char *p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8)
    p[i] = (unsigned char)v;
}

/* A memfd holding a qcow2 header of the given version, backing file
 * offset and incompatible features; len bytes of it. */
static int qcow2_fd(uint32_t version, uint64_t backing, uint64_t incompat, size_t len) {
  unsigned char h[512] = {'Q', 'F', 'I', 0xfb};
  put_be32(h + 4, version);
  put_be64(h + 8, backing);
  put_be32(h + 20, 16); /* cluster_bits */
  put_be64(h + 72, incompat);
  put_be32(h + 100, 104); /* header_length */
  int fd = memfd_create("qcow2", MFD_CLOEXEC);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, h, len), (ssize_t)len);
  return fd;
}

static int check(int fd, au_error *err) {
  int r = vm_check_qcow2(fd, "disks[0]", "/img", err);
  close(fd);
  return r;
}

static void test_qcow2_check(void **state) {
  (void)state;
  au_error err = {0};
  assert_int_equal(check(qcow2_fd(3, 0, 0, 512), &err), 0);
  assert_int_equal(check(qcow2_fd(2, 0, 0, 72), &err), 0);
  /* The dirty bit is harmless; the external data file bit is not. */
  assert_int_equal(check(qcow2_fd(3, 0, 1, 512), &err), 0);
  assert_int_equal(check(qcow2_fd(3, 0, 1u << 2, 512), &err), -EINVAL);
  assert_non_null(strstr(err.msg, "external data file"));
  assert_int_equal(check(qcow2_fd(3, 0x200, 0, 512), &err), -EINVAL);
  assert_non_null(strstr(err.msg, "disks[0]: /img has a backing file"));
  assert_int_equal(check(qcow2_fd(2, 0x200, 0, 512), &err), -EINVAL);
  assert_int_equal(check(qcow2_fd(1, 0, 0, 512), &err), -EINVAL);
  assert_non_null(strstr(err.msg, "version 1"));
  /* Truncated header, wrong magic, empty file. */
  assert_int_equal(check(qcow2_fd(3, 0, 0, 40), &err), -EINVAL);
  assert_non_null(strstr(err.msg, "not a qcow2 image"));
  int fd = qcow2_fd(3, 0, 0, 512);
  assert_int_equal(pwrite(fd, "QFI\xfa", 4, 0), 4);
  assert_int_equal(check(fd, &err), -EINVAL);
  fd = memfd_create("empty", MFD_CLOEXEC);
  assert_int_equal(check(fd, &err), -EINVAL);
}

static void test_names_and_macs(void **state) {
  (void)state;
  char tap[16], mac[18];
  vm_tap_name("web", 0, tap);
  assert_string_equal(tap, "au-web-0");
  vm_tap_name("twonics", 1, tap);
  assert_string_equal(tap, "au-twonics-1");
  /* Too long for "au-<name>-<n>": prefix + hash, still <= 15 and distinct. */
  char a[16], b[16];
  vm_tap_name("webserver-production-1", 0, a);
  vm_tap_name("webserver-production-2", 0, b);
  assert_true(strlen(a) <= 15 && strlen(b) <= 15);
  assert_string_not_equal(a, b);
  assert_memory_equal(a, "au-webser", 9);

  char m0[18], m1[18];
  vm_default_mac("web", 0, m0);
  vm_default_mac("web", 1, m1);
  assert_int_equal(strlen(m0), 17);
  assert_memory_equal(m0, "02:", 3); /* locally administered unicast */
  assert_memory_equal(m0, m1, 14);   /* same VM, index in the last byte */
  assert_string_equal(m1 + 15, "01");
  vm_default_mac("web", 0, mac);
  assert_string_equal(mac, m0); /* stable */
  vm_default_mac("db", 0, mac);
  assert_string_not_equal(mac, m0);
}

static void test_cmdline(void **state) {
  (void)state;
  char *c = NULL;
  au_error err = {0};
  assert_int_equal(vm_build_cmdline(NULL, 2100000, &c, &err), 0);
  assert_non_null(strstr(c, "console=ttyS0 tsc_early_khz=2100000"));
  assert_non_null(strstr(c, " quiet"));
  free(c);
  assert_int_equal(vm_build_cmdline("aurae.mode=x", 0, &c, &err), 0);
  assert_null(strstr(c, "tsc_early_khz"));
  assert_non_null(strstr(c, " aurae.mode=x"));
  assert_null(strstr(c, "quiet"));
  free(c);
  assert_int_equal(vm_build_cmdline("a\nb", 0, &c, &err), -EINVAL);
  char *big = malloc(VM_CMDLINE_MAX + 1);
  memset(big, 'x', VM_CMDLINE_MAX);
  big[VM_CMDLINE_MAX] = '\0';
  assert_int_equal(vm_build_cmdline(big, 0, &c, &err), -EINVAL);
  free(big);
}

static int argv_index(char **argv, const char *s, int from) {
  for (int i = from; argv[i]; i++)
    if (strcmp(argv[i], s) == 0) return i;
  return -1;
}

static void test_qemu_argv(void **state) {
  (void)state;
  vm_disk disks[] = {{"/i/ro.img", true, false}, {"/i/rw.qcow2", false, true}};
  vm_nic nics[] = {{NULL, NULL}, {"02:00:00:00:00:42", "br0"}};
  vm_spec s = {.name = "a,b",
               .vcpus = 2,
               .memory_mib = 256,
               .kernel = "/k",
               .disks = disks,
               .n_disks = 2,
               .nics = nics,
               .n_nics = 2};
  char macs[2][18] = {"02:11:22:33:44:00", "02:00:00:00:00:42"};
  int disk_fds[] = {10, 11}, tap_fds[] = {20, 21};
  vmm_launch l = {.spec = &s,
                  .accel = VM_ACCEL_TCG,
                  .tsc_khz = 1000,
                  .cmdline = "console=ttyS0",
                  .kernel_fd = 3,
                  .initrd_fd = -1,
                  .disk_fds = disk_fds,
                  .tap_fds = tap_fds,
                  .macs = macs,
                  .console_listen_fd = 5,
                  .control_listen_fd = 6};
  char **argv = NULL;
  au_error err = {0};
  assert_int_equal(vmm_qemu_microvm.build_argv(&l, "/usr/bin/qemu", &argv, &err), 0);
  assert_string_equal(argv[0], "/usr/bin/qemu");
  assert_true(argv_index(argv, "-nodefaults", 0) > 0);
  assert_true(argv_index(argv, "-no-user-config", 0) > 0);
  assert_int_equal(argv_index(argv, "-initrd", 0), -1);
  /* A ',' in a value is doubled for QEMU's option parser. */
  assert_true(argv_index(argv, "guest=a,,b,process=aurae-vm-a,,b,debug-threads=on", 0) > 0);
  /* NICs in order, with their fds and MACs; then disks in order. */
  int n0 = argv_index(argv, "tap,id=net0,fd=20", 0);
  int n1 = argv_index(argv, "tap,id=net1,fd=21", 0);
  int d0 = argv_index(argv, "if=none,id=disk0,file=/dev/fd/10,format=raw,readonly=on", 0);
  int d1 = argv_index(argv, "if=none,id=disk1,file=/dev/fd/11,format=qcow2,readonly=off", 0);
  assert_true(n0 > 0 && n1 > n0 && d0 > n1 && d1 > d0);
  assert_string_equal(argv[n0 + 2],
                      "virtio-net-device,netdev=net0,mac=02:11:22:33:44:00,status=off");
  assert_string_equal(argv[n1 + 2],
                      "virtio-net-device,netdev=net1,mac=02:00:00:00:00:42,status=off");
  assert_string_equal(argv[d0 + 2], "virtio-blk-device,drive=disk0");
  assert_string_equal(argv[d1 + 2], "virtio-blk-device,drive=disk1");
  for (char **p = argv; *p; p++)
    free(*p);
  free(argv);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_qcow2_check),
      cmocka_unit_test(test_names_and_macs),
      cmocka_unit_test(test_cmdline),
      cmocka_unit_test(test_qemu_argv),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
