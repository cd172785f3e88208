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
  assert_memory_equal(a, "au-web_", 7);
  assert_int_equal(strlen(a), 15);

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

static int cmp_name(const void *a, const void *b) { return strcmp(a, b); }

/* Many VMs sharing a long prefix: each long name gets its own tap name (the
 * old 16-bit hash collided for ~300 of them with even odds). */
static void test_tap_names_distinct(void **state) {
  (void)state;
  enum { N = 20000 };
  char(*names)[16] = calloc(N, 16);
  assert_non_null(names);
  for (unsigned i = 0; i < N; i++) {
    char vmname[64];
    snprintf(vmname, sizeof(vmname), "webserver-production-%u", i);
    vm_tap_name(vmname, 0, names[i]);
    assert_true(strlen(names[i]) <= 15);
  }
  qsort(names, N, 16, cmp_name);
  for (unsigned i = 1; i < N; i++)
    assert_string_not_equal(names[i - 1], names[i]);
  /* Same VM, another NIC: differs in the last character only. */
  char a[16], b[16];
  vm_tap_name("webserver-production-1", 0, a);
  vm_tap_name("webserver-production-1", 7, b);
  assert_memory_equal(a, b, 14);
  assert_int_equal(b[14], '7');
  free(names);
}

/* A long form can never equal a short form: every short form is
 * "au-<DNS label>-<n>" (no '_'), every long form has a '_'. Checked over
 * all VM names of the alphabet up to the boundary lengths, and for the
 * old scheme's clash: "abcdef1234" (short, 10 chars) against long names
 * starting with "abcdef". */
static void test_tap_long_never_short(void **state) {
  (void)state;
  char tap[16], vmname[64];
  for (size_t len = 1; len <= 20; len++) {
    for (unsigned seed = 0; seed < 200; seed++) {
      /* Labels of [a-z0-9-], never starting or ending with a dash. */
      for (size_t i = 0; i < len; i++)
        vmname[i] = "abcdefghijklmnopqrstuvwxyz0123456789-"[(seed * 7 + i * 13 + len) %
                                                            (i == 0 || i == len - 1 ? 36 : 37)];
      vmname[len] = '\0';
      for (unsigned idx = 0; idx < VM_NICS_MAX; idx++) {
        vm_tap_name(vmname, idx, tap);
        assert_true(strlen(tap) <= 15);
        if (len <= 10) {
          char want[80];
          snprintf(want, sizeof(want), "au-%s-%u", vmname, idx);
          assert_string_equal(tap, want);
          assert_null(strchr(tap, '_'));
        } else {
          assert_non_null(strchr(tap, '_'));
          assert_memory_equal(tap, "au-", 3);
          assert_memory_equal(tap + 3, vmname, 3);
        }
      }
    }
  }
  char shortform[16];
  vm_tap_name("abcdef1234", 0, shortform);
  assert_string_equal(shortform, "au-abcdef1234-0");
  for (unsigned i = 0; i < 100000; i++) {
    snprintf(vmname, sizeof(vmname), "abcdef-long-%u", i);
    vm_tap_name(vmname, 0, tap);
    assert_string_not_equal(tap, shortform);
  }
}

static void test_mac_valid(void **state) {
  (void)state;
  assert_true(vm_mac_valid("02:00:00:00:00:01"));
  assert_true(vm_mac_valid("02:AA:bb:Cc:dD:ff"));
  assert_true(vm_mac_valid("00:11:22:33:44:55"));
  /* sscanf("%2x") took signs and blanks: all of these passed before. */
  assert_false(vm_mac_valid("02:-1:-1:-1:-1:-1"));
  assert_false(vm_mac_valid("02:+1:00:00:00:00"));
  assert_false(vm_mac_valid("02: 1:00:00:00:00"));
  assert_false(vm_mac_valid("02:0x:00:00:00:00"));
  /* Shape. */
  assert_false(vm_mac_valid(""));
  assert_false(vm_mac_valid(NULL));
  assert_false(vm_mac_valid("02:00:00:00:00"));
  assert_false(vm_mac_valid("02:00:00:00:00:011"));
  assert_false(vm_mac_valid("02-00-00-00-00-01"));
  assert_false(vm_mac_valid("0200:00:00:00:01:"));
  assert_false(vm_mac_valid("02:00:00:00:00:0g"));
  /* Multicast (low bit of the first octet), broadcast included. */
  assert_false(vm_mac_valid("01:00:5e:00:00:01"));
  assert_false(vm_mac_valid("03:00:00:00:00:01"));
  assert_false(vm_mac_valid("ff:ff:ff:ff:ff:ff"));
  /* The derived default MACs are valid. */
  char mac[18];
  vm_default_mac("web", 3, mac);
  assert_true(vm_mac_valid(mac));
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
      cmocka_unit_test(test_qcow2_check),        cmocka_unit_test(test_names_and_macs),
      cmocka_unit_test(test_tap_names_distinct), cmocka_unit_test(test_tap_long_never_short),
      cmocka_unit_test(test_mac_valid),          cmocka_unit_test(test_cmdline),
      cmocka_unit_test(test_qemu_argv),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
