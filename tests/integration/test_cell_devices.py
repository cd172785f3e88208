"""The device filter of a cell (src/lib/cell/devcg.c): a BPF_CGROUP_DEVICE
program on the cgroup of every cell that is not privileged, which lets a
process there open only the OCI default character devices and never
mknod. A cell's minimal /dev already hides the host's nodes from its own
processes, so these tests attack from the other side: a host process,
with the host's /dev, its root and CAP_MKNOD, moves itself into a cell's
cgroup and tries. Only the kernel's check of the cgroup's programs can
stop it there."""
import ctypes
import os
import stat
import subprocess

import pytest

from conftest import runtime_pb2 as pb
from test_cells import PY, cells, cgroup2_mount  # noqa: F401 (cells: a fixture)

PRIVILEGED = pb.CellIsolation(privileged=True)

# Run with /usr/bin/python3 on the host: ARGV[1] is a cgroup.procs to join
# first ("-": stay where it is), ARGV[2] a path for mknod, ARGV[3] a block
# device to open ("-": none). One line an attempt: its name, then "ok" or
# the errno's name.
PROBE = r"""
import errno, os, stat, sys
procs, node, disk = sys.argv[1:4]
if procs != "-":
    fd = os.open(procs, os.O_WRONLY)
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
print("cgroup", [l[3:] for l in open("/proc/self/cgroup").read().splitlines()
                 if l.startswith("0::")][0])

def attempt(what, fn):
    try:
        fn()
        print(what, "ok")
    except OSError as e:
        print(what, errno.errorcode[e.errno])

def kmsg():
    os.close(os.open("/dev/kmsg", os.O_WRONLY | os.O_CLOEXEC))   # char 1:11

def null():
    fd = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)           # char 1:3
    try:
        assert os.write(fd, b"x") == 1 and os.read(fd, 1) == b""
    finally:
        os.close(fd)

def pty():
    m, s = os.openpty()          # /dev/ptmx (5:2), then /dev/pts/N (136+:N)
    os.close(m)
    os.close(s)

def mknod():
    os.mknod(node, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    os.unlink(node)

def block():
    os.close(os.open(disk, os.O_RDONLY | os.O_CLOEXEC))

attempt("kmsg", kmsg)
attempt("null", null)
attempt("pty", pty)
attempt("mknod", mknod)
if disk != "-":
    attempt("block", block)
"""

CONFINED = {"kmsg": "EPERM", "null": "ok", "pty": "ok", "mknod": "EPERM", "block": "EPERM"}


def probe(tmp_path, leaf=None, disk=None):
    """Runs PROBE on the host, in LEAF (a cgroup directory) if given."""
    r = subprocess.run([PY, "-c", PROBE, os.path.join(leaf, "cgroup.procs") if leaf else "-",
                        str(tmp_path / "node"), disk or "-"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    out = dict(l.split(" ", 1) for l in r.stdout.splitlines())
    where = out.pop("cgroup")
    if leaf:
        # the attack ran where it meant to: in the cell's cgroup
        assert where == "/" + os.path.relpath(leaf, cgroup2_mount()), r.stdout
    return out


def openable_block_device():
    """A block device of the host that the host may open for reading (its
    own device cgroup or LSM may refuse even root some disks), disks
    before loops; None if there is none."""
    names = sorted(os.listdir("/sys/block"), key=lambda n: n.startswith(("loop", "ram", "zram")))
    for n in names:
        p = "/dev/" + n
        try:
            if not stat.S_ISBLK(os.stat(p).st_mode):
                continue
            os.close(os.open(p, os.O_RDONLY | os.O_CLOEXEC))
            return p
        except OSError:
            continue
    return None


class Host:
    """What the probe may do on the host, outside any cell."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.disk = openable_block_device()
        self.allowed = probe(tmp_path, disk=self.disk)

    def probe(self, leaf=None):
        return probe(self.tmp_path, leaf, self.disk)

    def expected(self, confined):
        return {k: (CONFINED[k] if confined else "ok") for k in self.allowed}


@pytest.fixture
def host(tmp_path):
    """The host, where the probe must be able to do everything: otherwise
    there is nothing for a cell's filter to take away."""
    h = Host(tmp_path)
    if set(h.allowed.values()) != {"ok"}:
        pytest.skip("the host itself refuses some device access here: %s" % h.allowed)
    if not h.disk:
        print("no block device the host may open: not checking that a cell cannot")
    return h


def sleeper_leaf(cells, cell, status):
    """Starts a long sleep in CELL; its executable's leaf cgroup."""
    cells.run(cell, "sleeper", ["sleep", "300"])
    leaf = os.path.join(status.cgroup_path, "_exe.sleeper")
    assert os.path.isdir(leaf)
    return leaf


# ------------------------------------------------------- BPF_PROG_QUERY

BPF_PROG_QUERY = 16
BPF_CGROUP_DEVICE = 6
BPF_F_QUERY_EFFECTIVE = 1
BPF_F_ALLOW_MULTI = 2
SYS_bpf = 321  # x86_64


class BpfQuery(ctypes.Structure):
    """The BPF_PROG_QUERY member of union bpf_attr (<linux/bpf.h>)."""
    _fields_ = [("target_fd", ctypes.c_uint32), ("attach_type", ctypes.c_uint32),
                ("query_flags", ctypes.c_uint32), ("attach_flags", ctypes.c_uint32),
                ("prog_ids", ctypes.c_uint64), ("prog_cnt", ctypes.c_uint32),
                ("_pad", ctypes.c_uint32), ("prog_attach_flags", ctypes.c_uint64),
                ("link_ids", ctypes.c_uint64), ("link_attach_flags", ctypes.c_uint64),
                ("revision", ctypes.c_uint64)]


def device_programs(cgroup_dir, effective=False):
    """(count, attach flags) of the BPF_CGROUP_DEVICE programs attached to
    CGROUP_DIR itself, or with EFFECTIVE, of those that run for it (its
    own and its ancestors')."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        q = BpfQuery(target_fd=fd, attach_type=BPF_CGROUP_DEVICE,
                     query_flags=BPF_F_QUERY_EFFECTIVE if effective else 0)
        r = libc.syscall(ctypes.c_long(SYS_bpf), ctypes.c_long(BPF_PROG_QUERY),
                         ctypes.byref(q), ctypes.c_long(ctypes.sizeof(q)))
        if r < 0:
            e = ctypes.get_errno()
            raise OSError(e, "BPF_PROG_QUERY %s: %s" % (cgroup_dir, os.strerror(e)))
        return q.prog_cnt, q.attach_flags
    finally:
        os.close(fd)


# ------------------------------------------------------------- the tests

def test_a_host_process_in_a_default_cells_cgroup_cannot_open_kmsg_or_mknod(cells, host,
                                                                            tmp_path):
    st = cells.run_cell("devcg")
    leaf = sleeper_leaf(cells, "devcg", st)
    assert host.probe(leaf) == host.expected(confined=True)
    assert not (tmp_path / "node").exists()
    # the same process outside the cell's cgroup still can
    assert host.probe() == host.allowed


def test_a_privileged_cell_has_no_device_filter(cells, host, tmp_path):
    st = cells.run_cell("devcgpriv", isolation=PRIVILEGED)
    leaf = sleeper_leaf(cells, "devcgpriv", st)
    assert host.probe(leaf) == host.expected(confined=False)


# (A privileged child of a default cell is refused: test_cells.py.)
@pytest.mark.parametrize("parent_privileged,child_privileged", [
    (False, False),  # both filters run: every program on the way up must allow
    (True, False),   # the child's own filter alone
], ids=["default-in-default", "default-in-privileged"])
def test_a_nested_cell_is_filtered_unless_it_and_its_parents_are_privileged(
        cells, host, tmp_path, parent_privileged, child_privileged):
    cells.run_cell("up", isolation=pb.CellIsolation(privileged=parent_privileged))
    st = cells.run_cell("up/kid", isolation=pb.CellIsolation(privileged=child_privileged))
    leaf = sleeper_leaf(cells, "up/kid", st)
    assert host.probe(leaf) == host.expected(confined=True)
    assert device_programs(st.cgroup_path)[0] == (0 if child_privileged else 1)


def test_bpf_prog_query_sees_one_program_on_a_default_cell_and_none_on_a_privileged_one(cells):
    plain = cells.run_cell("q")
    priv = cells.run_cell("qpriv", isolation=PRIVILEGED)
    kid = cells.run_cell("q/kid")
    root = os.path.dirname(plain.cgroup_path)
    above = device_programs(root, effective=True)[0]  # whatever the host put above auraed
    assert device_programs(plain.cgroup_path) == (1, BPF_F_ALLOW_MULTI)
    assert device_programs(priv.cgroup_path)[0] == 0
    assert device_programs(priv.cgroup_path, effective=True)[0] == above
    # a nested cell attaches its own below its parent's, and both run
    assert device_programs(kid.cgroup_path) == (1, BPF_F_ALLOW_MULTI)
    assert device_programs(kid.cgroup_path, effective=True)[0] == above + 2
    # the cell's init runs under it too
    assert device_programs(os.path.join(plain.cgroup_path, "_init"), effective=True)[0] == above + 1
    # freeing the cell removes its cgroup and with it the program
    cells.free("q", recursive=True)
    assert not os.path.exists(plain.cgroup_path)
