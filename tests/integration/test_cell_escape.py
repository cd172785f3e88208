"""Escapes from a DEFAULT cell (no opt-ins) by a root workload, each written
as the attack: a hostile program inside the workload, or a hostile client.

Every test here is the attack that worked against auraed before the cell got
its own user namespace and a private root (DESIGN.md, "The isolation model of
a cell"); it fails while the attack works and passes once it no longer does.

Nothing here relies on a host file being visible in the cell (a fixed cell
sees none of the host's /tmp, where pytest's tmp_path lives): hostile
programs travel as the executable's stdin (python3 -) or as arguments, and
results come back through the executable's output and exit status. Secrets
are never printed, only their SHA-256, compared on the host.
"""
import errno
import glob
import hashlib
import os
import secrets
import shutil
import socket
import stat
import subprocess
import threading
import time

import grpc
import pytest

from conftest import Daemon, runtime_pb2 as pb
from test_cells import Cells, cells, proc_status, expect_error, DEFAULT_CAPS  # noqa: F401

PY = "/usr/bin/python3"
REFUSED = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION)
# Where the user-namespace pool of auraed starts, and the size of a cell's range.
USERNS_BASE, USERNS_SIZE = 1879048192, 65536


def rand():
    return secrets.token_hex(6)


def start_py(cells, cell, name, script, args=(), **kw):
    """Starts a python program in the cell, fed to `python3 -` on stdin."""
    return cells.run(cell, name, [PY, "-"] + [str(a) for a in args],
                     stdin=script.encode(), **kw)


def run_py(cells, cell, name, script, args=(), timeout=60, **kw):
    """Runs a python program in the cell to its end: (status, stdout)."""
    start_py(cells, cell, name, script, args, **kw)
    st = cells.wait(cell, name, timeout=timeout)
    return st, cells.output(cell, name)


def stderr_of(cells, cell, name):
    return cells.output(cell, name, pb.LOG_STREAM_STDERR)


def wait_for_output(cells, cell, name, text, timeout=15):
    deadline = time.time() + timeout
    while True:
        out = cells.output(cell, name)
        if text in out:
            return out
        st = cells.inspect(cell, name)
        assert st.state == pb.EXECUTABLE_STATE_RUNNING and time.time() < deadline, (
            "no %r from %s/%s: %r %r" % (text, cell, name, out, stderr_of(cells, cell, name)))
        time.sleep(0.05)


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture
def marker(cells):
    """A host file with random content inside auraed's runtime dir: masked in
    a cell today, absent from a cell's private root after the fix. Reading
    its content from a cell is proof of reaching the host's filesystem."""
    path = os.path.join(cells.d.runtime_dir, "escape-marker-" + rand())
    content = "aurae-escape-marker-" + secrets.token_hex(16)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, content.encode())
    finally:
        os.close(fd)
    try:
        yield path, content
    finally:
        os.unlink(path)


# ------------------------------------------ 1. the executable's start window

# Scans every other process of the cell for (i) a directory fd that leads
# out of the cell (a host cgroup dir, or "../"*20 up to the host's root and
# down to the marker) and (ii) a writable /proc/PID/mem of something that is
# not yet the executed program (the init's vfork child shares the init's
# memory: writing it is code execution in the fully capable init).
WINDOW_HUNTER = r"""
import os, sys, time
marker_rel, secs = sys.argv[1], float(sys.argv[2])
me = os.getpid()
up = "../" * 20
attempts = 0
pids = set()
seen = set()
def report(line):
    if line not in seen:
        seen.add(line)
        print(line, flush=True)
def exe_of(p):
    try:
        return os.readlink("/proc/%s/exe" % p)
    except OSError:
        return None
deadline = time.time() + secs
while time.time() < deadline:
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) == me:
            continue
        pids.add(p)
        for n in range(65):
            attempts += 1
            try:
                fd = os.open("/proc/%s/fd/%d" % (p, n), os.O_RDONLY | os.O_DIRECTORY)
            except OSError:
                continue
            try:
                try:
                    names = os.listdir(fd)
                except OSError:
                    names = []
                if "cgroup.procs" in names:
                    report("ESCAPED fd cgroup dir: pid %s fd %d" % (p, n))
                try:
                    m = os.open(up + marker_rel, os.O_RDONLY, dir_fd=fd)
                    data = os.read(m, 4096).decode(errors="replace")
                    os.close(m)
                    report("ESCAPED fd marker: pid %s fd %d read %r" % (p, n, data))
                except OSError:
                    pass
            finally:
                os.close(fd)
        attempts += 1
        try:
            m = os.open("/proc/%s/mem" % p, os.O_RDWR)
        except OSError:
            continue
        # Opened after the exec, it is the program's own memory (a process
        # of the same user in the same cell: allowed). Still not the program
        # after the open: the open reached the pre-exec (init's) memory.
        exe = exe_of(p)
        os.close(m)
        if exe is not None and not exe.endswith("/true"):
            report("ESCAPED mem %s (%s)" % (p, exe))
print("pids", len(pids))
print("attempts", attempts, flush=True)
"""


@pytest.mark.parametrize("cell", ["hunt", "hunt/kid"])
def test_no_host_fd_or_memory_in_the_executable_start_window(cells, marker, cell):
    """Proves: while a cell's init starts executables, another root workload
    in the same cell cannot reach the starting process through /proc: not its
    fds (the host cgroup dir fd it holds until execve, from which "../"
    leads to the host's real root, past every mask) and not its memory
    (before execve it is the init's vfork child, sharing the memory of the
    init, which holds every capability). The init and its children must be
    non-dumpable until execve, with no host fd inherited past setup.
    Fails today: the hunter opens the leaf's cgroup dir fd and reads the
    marker in auraed's runtime dir through it, and opens /proc/PID/mem."""
    path, content = marker
    cells.run_cell("hunt")
    if cell != "hunt":
        cells.run_cell(cell)
    secs = 20
    start_py(cells, cell, "hunter", WINDOW_HUNTER, [path.lstrip("/"), secs])
    started, i = 0, 0
    deadline = time.time() + secs
    while time.time() < deadline:
        name = "t%d" % i
        i += 1
        cells.run(cell, name, ["/bin/true"])
        cells.wait(cell, name)
        cells.free(cell, name)
        started += 1
    st = cells.wait(cell, "hunter", timeout=60)
    out = cells.output(cell, "hunter")
    assert st.state == pb.EXECUTABLE_STATE_EXITED and st.exit_code == 0, (
        out, stderr_of(cells, cell, "hunter"))
    assert started > 0
    escaped = [l for l in out.splitlines() if l.startswith("ESCAPED")]
    assert not escaped and content not in out, (
        "a root workload reached the starting executable (%d started):\n%s"
        % (started, "\n".join(escaped[:20])))
    stats = dict(l.split(" ", 1) for l in out.splitlines() if " " in l)
    assert int(stats["attempts"]) > 0 and int(stats["pids"]) >= 2, out


# ------------------------------------------------ 2. cwd through /proc/self

def test_cwd_through_proc_self_fd_never_reaches_the_host(cells, marker):
    """Proves: a client-given cwd is resolved inside the cell, never through
    an fd the init holds: cwd=/proc/self/fd/N (N being the host cgroup dir
    fd the starting process holds when it chdirs) must not make the
    workload's cwd a host directory from which "../" reaches the host's
    root and the marker in auraed's (masked) runtime dir. Either the call
    is refused or the marker stays unread.
    Fails today: for the cgroup dir fd's number, the chdir succeeds and
    `cat ../../..<marker>` prints the marker. (The /proc/1/cwd and
    /proc/self/root variants are refused today: ptrace access to the init
    is denied, and the cell's root is its own.)"""
    path, content = marker
    rel = path.lstrip("/")
    cells.run_cell("cwd")
    script = "cat %s%s 2>/dev/null && echo ESCAPED; ls .. >/dev/null 2>&1" % ("../" * 16, rel)
    cwds = ["/proc/self/fd/%d" % n for n in range(41)]
    cwds += ["/proc/1/cwd/../../..", "/proc/1/root/../../..", "/proc/self/cwd/../../..",
             "/proc/self/root/../../..", "/proc/1/fd/3/../../.."]
    escapes, ran = [], 0
    for i, cwd in enumerate(cwds):
        name = "c%d" % i
        try:
            cells.run("cwd", name, ["/bin/sh", "-c", script], cwd=cwd)
        except grpc.RpcError as e:
            assert e.code() in REFUSED + (grpc.StatusCode.NOT_FOUND,), (cwd, e.details())
            continue
        ran += 1
        cells.wait("cwd", name)
        out = cells.output("cwd", name)
        if "ESCAPED" in out or content in out:
            escapes.append("%s: %r" % (cwd, out))
    assert not escapes, "cwd led out of the cell (%d ran):\n%s" % (ran, "\n".join(escapes))


# ------------------------------------------------- 3. the cell's /tmp is not the host's

SOCK_SERVER = r"""
import os, socket, sys
path, secs = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path); os.chmod(path, 0o777); s.listen(1); s.settimeout(secs)
print("listening", flush=True)
try:
    c, _ = s.accept()
    c.settimeout(2)
    print("got", c.recv(100).decode(), flush=True)
except OSError as e:
    print("nothing", e, flush=True)
"""

SOCK_CLIENT = r"""
import socket, sys
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
c.settimeout(3)
try:
    c.connect(sys.argv[1]); c.sendall(sys.argv[2].encode()); print("connected")
except OSError as e:
    print("error", e.errno)
"""


def test_a_setuid_binary_planted_in_the_cells_tmp_gives_host_users_nothing(cells):
    """Proves: a cell's /tmp is private (and nosuid): (a) a setuid-root shell
    that root in a cell plants in its /tmp is no way to root for an
    unprivileged host user; (b) root in a cell cannot rewrite a root-only
    script in the host's /tmp; (c) two cells cannot talk through a Unix
    socket in /tmp.
    Fails today: /tmp in a cell is the host's /tmp, writable, suid allowed:
    nobody on the host runs the planted shell with euid 0, the cell
    rewrites the host's script, and cell B reaches cell A's socket."""
    tag = rand()
    plant = "/tmp/aurae-plant-" + tag
    rootonly = "/tmp/aurae-rootonly-" + tag
    script = os.path.join(rootonly, "run.sh")
    sock = "/tmp/aurae-sock-" + tag
    original = "#!/bin/sh\necho original\n"
    os.mkdir(rootonly, 0o700)
    os.chmod(rootonly, 0o700)
    try:
        with open(script, "w") as f:
            f.write(original)
        os.chmod(script, 0o755)
        cells.run_cell("plant")
        st, out = cells.sh("plant", "plant", (
            "cp /bin/sh {p} && chown 0:0 {p} && chmod 4755 {p} && echo planted; "
            "printf '#!/bin/sh\\necho evil\\n' > {s} 2>/dev/null && echo rewrote; "
            "touch {d}/evil 2>/dev/null && echo added").format(p=plant, s=script, d=rootonly))
        problems = []
        # (a) the host's view of the plant
        if os.path.lexists(plant):
            def nobody():
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            r = subprocess.run([plant, "-p", "-c", "id -u; grep ^Uid /proc/self/status"],
                               preexec_fn=nobody, capture_output=True, text=True, timeout=10)
            lines = r.stdout.splitlines()
            euid = lines[0].strip() if lines else ""
            uids = [l.split()[1:] for l in lines if l.startswith("Uid:")]
            if euid == "0" or (uids and uids[0][1] == "0"):
                problems.append("uid 65534 ran the cell's planted %s with euid 0: %r"
                                % (plant, r.stdout))
        # (b) the host's root-only script
        with open(script) as f:
            now = f.read()
        if now != original:
            problems.append("the cell rewrote the host's %s: %r" % (script, now))
        if sorted(os.listdir(rootonly)) != ["run.sh"]:
            problems.append("the cell added to the host's %s: %s"
                            % (rootonly, sorted(os.listdir(rootonly))))
        # (c) cell A listens on /tmp/aurae-sock-*, cell B connects
        cells.run_cell("sock-a")
        cells.run_cell("sock-b")
        start_py(cells, "sock-a", "server", SOCK_SERVER, [sock, 5])
        wait_for_output(cells, "sock-a", "server", "listening")
        st, client = run_py(cells, "sock-b", "client", SOCK_CLIENT, [sock, "hello-" + tag])
        cells.wait("sock-a", "server", timeout=20)
        server = cells.output("sock-a", "server")
        if "connected" in client or "got" in server:
            problems.append("cell B reached cell A's %s: client %r, server %r"
                            % (sock, client, server))
        else:
            assert client.split() and client.split()[0] == "error", client
            assert int(client.split()[1]) in (errno.ENOENT, errno.ECONNREFUSED), client
        assert not problems, "\n".join(problems)
    finally:
        for p in (plant, sock):
            if os.path.lexists(p):
                os.unlink(p)
        shutil.rmtree(rootonly, ignore_errors=True)


# ------------------------------------------------------- 4. host secrets

READ_FILES = r"""
import hashlib, os, sys
for p in sys.argv[1:]:
    if p.startswith("dir:"):
        try:
            print(p, "LIST", len(os.listdir(p[4:])))
        except OSError as e:
            print(p, "ERR", e.errno)
        continue
    try:
        with open(p, "rb") as f:
            data = f.read()
        print(p, "READ", len(data), hashlib.sha256(data).hexdigest())
    except OSError as e:
        print(p, "ERR", e.errno)
"""


def leaks(out, files):
    """What a READ_FILES run shows of the host: a file read with the host's
    content (an empty or different stub is fine), a directory with entries."""
    found = []
    for line in out.splitlines():
        f = line.split()
        if f[1] == "READ" and int(f[2]) > 0 and files.get(f[0]) == f[3]:
            found.append("read %s (%s bytes, the host's content)" % (f[0], f[2]))
        elif f[1] == "LIST" and int(f[2]) > 0:
            found.append("listed %s (%s entries)" % (f[0][4:], f[2]))
    return found


def test_host_secrets_are_not_readable(cells, other_pki, pki, tmp_path):
    """Proves: root in a default cell reads none of the host's secrets:
    /etc/shadow and /etc/gshadow (masked or unreadable), /root and /home
    (absent or empty), a root-only file in /root, the host operator's
    client config and auraed keys (/root/.aurae/config, /etc/aurae/pki/*.key),
    and the admin and CA keys of another auraed running on the host (its PKI
    under pytest's /tmp, which this cell's auraed does not mask).
    Only SHA-256 digests leave the cell; the host compares them.
    Fails today: the cell's root is the host's, and root in it has
    CAP_DAC_OVERRIDE over host-owned files."""
    secret = "/root/aurae-secret-" + rand()
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    other = Daemon(other_pki, str(tmp_path / "other"))
    try:
        os.write(fd, secrets.token_hex(32).encode())
        os.close(fd)
        fd = -1
        other.start()
        files = [secret, "/etc/shadow", "/etc/gshadow",
                 other_pki.path("client-admin.key"), other_pki.path("ca.key"),
                 pki.path("client-admin.key"), pki.path("ca.key")]
        files += [p for p in ["/root/.aurae/config"] + sorted(glob.glob("/etc/aurae/pki/*.key"))
                  if os.path.isfile(p)]
        digests = {p: sha256_of(p) for p in files}
        cells.run_cell("secrets")
        st, out = run_py(cells, "secrets", "read", READ_FILES,
                         files + ["dir:/root", "dir:/home"])
        assert st.exit_code == 0, stderr_of(cells, "secrets", "read")
        assert len(out.splitlines()) == len(files) + 2, out
        found = leaks(out, digests)
        assert not found, "a default cell reads the host's secrets:\n" + "\n".join(found)
    finally:
        if fd >= 0:
            os.close(fd)
        os.unlink(secret)
        other.stop()


# ------------------------------------------------- 5. host Unix sockets

SOCK_CONNECT = r"""
import socket, sys
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
c.settimeout(3)
try:
    c.connect(sys.argv[1]); c.sendall(b"from-the-cell"); print("connected")
except OSError as e:
    print("error", e.errno)
"""


def test_host_unix_sockets_are_unreachable(cells):
    """Proves: a host service's Unix socket (0600, under /run) is out of
    reach of root in a default cell: the cell's /run is its own.
    Fails today: the cell sees the host's /run read-only, but connect(2)
    on a socket needs no writable mount, and root in the cell has
    CAP_DAC_OVERRIDE: it connects and the host service receives its data."""
    d = "/run/aurae-test-" + rand()
    path = os.path.join(d, "s")
    os.mkdir(d, 0o700)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    got, stop = [], threading.Event()

    def serve():
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with c:
                c.settimeout(2)
                try:
                    got.append(c.recv(100))
                except OSError as e:
                    got.append(repr(e).encode())

    t = threading.Thread(target=serve, daemon=True)
    try:
        srv.bind(path)
        os.chmod(path, 0o600)
        srv.listen(4)
        srv.settimeout(0.2)
        t.start()
        cells.run_cell("hostsock")
        st, out = run_py(cells, "hostsock", "connect", SOCK_CONNECT, [path])
        time.sleep(0.5)
        stop.set()
        t.join(5)
        assert "connected" not in out and not got, (
            "the cell reached the host's %s: cell %r, host received %r" % (path, out, got))
        assert out.split()[0] == "error", (out, stderr_of(cells, "hostsock", "connect"))
    finally:
        stop.set()
        srv.close()
        if t.is_alive():
            t.join(5)
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------- 6. device nodes outside /dev

OPEN_DEVICES = r"""
import os, sys
for p in sys.argv[1:]:
    try:
        fd = os.open(p, os.O_WRONLY)
    except OSError as e:
        print(p, "errno", e.errno)
        continue
    try:
        os.write(fd, b"aurae-test\n")
        print(p, "WROTE")
    except OSError as e:
        print(p, "opened-write-errno", e.errno)
    finally:
        os.close(fd)
"""


def test_device_nodes_outside_dev_cannot_be_opened(cells):
    """Proves: a device node on a host path a cell can see (/usr/local/lib,
    /etc: both bound read-only nodev in a fixed cell) cannot be opened by
    root in the cell: here /dev/kmsg's 1:11, whose write reaches the host
    kernel log (with nodev: EACCES; a device cgroup program: EPERM).
    Fails today: the cell's root is the host's without nodev and cgroup v2
    filters no device without a BPF program: the write to 1:11 succeeds
    (a line "aurae-test" lands in the host's kernel log)."""
    tag = rand()
    nodes = ["/usr/local/lib/aurae-test-kmsg-" + tag, "/etc/aurae-test-kmsg-" + tag]
    try:
        for n in nodes:
            os.mknod(n, stat.S_IFCHR | 0o600, os.makedev(1, 11))
        cells.run_cell("devs")
        st, out = run_py(cells, "devs", "open", OPEN_DEVICES, nodes)
        assert st.exit_code == 0, stderr_of(cells, "devs", "open")
        results = dict(l.split(" ", 1) for l in out.splitlines())
        assert set(results) == set(nodes), out
        opened = [n for n, r in results.items() if not r.startswith("errno")]
        assert not opened, "root in a default cell opened the host's device 1:11 for " \
            "writing at %s: %s" % (opened, out)
        for n, r in results.items():
            assert int(r.split()[1]) in (errno.EACCES, errno.EPERM, errno.ENOENT), (n, r)
    finally:
        for n in nodes:
            if os.path.lexists(n):
                os.unlink(n)


# ----------------------------------------- 7. a child is never less confined

CONFINEMENT = r"""
import ctypes, subprocess
print(open("/proc/self/status").read())
r = subprocess.run(["unshare", "-U", "-r", "true"], capture_output=True)
print("unshare-rc", r.returncode)
libc = ctypes.CDLL(None, use_errno=True)
print("unshare-py", "ok" if libc.unshare(0x10000000) == 0 else ctypes.get_errno())
"""


def confinement_gaps(cells, cell):
    st, out = run_py(cells, cell, "conf", CONFINEMENT)
    assert st.exit_code == 0, stderr_of(cells, cell, "conf")
    s = proc_status(out)
    lines = dict(l.split(" ", 1) for l in out.splitlines() if l.startswith("unshare-"))
    gaps = []
    if s["NoNewPrivs"].strip() != "1":
        gaps.append("NoNewPrivs %s" % s["NoNewPrivs"].strip())
    if s["Seccomp"].strip() != "2":
        gaps.append("Seccomp %s" % s["Seccomp"].strip())
    if int(s["CapBnd"], 16) != DEFAULT_CAPS:
        gaps.append("CapBnd %s" % s["CapBnd"].strip())
    if lines["unshare-rc"].strip() == "0":
        gaps.append("`unshare -U -r true` worked")
    if lines["unshare-py"].strip() == "ok":
        gaps.append("unshare(CLONE_NEWUSER) worked")
    return ["%s: %s" % (cell, g) for g in gaps]


def test_a_child_of_a_default_cell_is_never_less_confined(cells):
    """Proves: inside a default cell, no child cell is less confined than
    its parent on any axis: a privileged child is refused, or its
    executables still have no_new_privs, the seccomp filter, the default
    bounding set and cannot create a user namespace; a default child the same.
    Fails today: a privileged child of a default cell keeps the default
    bounding set but runs with NoNewPrivs 0, Seccomp 0, and creates user
    namespaces (a fresh set of capabilities over new kernel interfaces)."""
    cells.run_cell("p")
    gaps = []
    try:
        cells.run_cell("p/k", isolation=pb.CellIsolation(privileged=True))
    except grpc.RpcError as e:
        assert e.code() in (grpc.StatusCode.FAILED_PRECONDITION,
                            grpc.StatusCode.PERMISSION_DENIED), e.details()
    else:
        gaps += confinement_gaps(cells, "p/k")
    cells.run_cell("p/d")
    gaps += confinement_gaps(cells, "p/d")
    gaps += confinement_gaps(cells, "p")
    assert not gaps, "less confined than a default cell:\n" + "\n".join(gaps)


# ----------------------------------------------- 8. scratch space, io_uring

SCRATCH = r"""
import os, sys
d, big, nfiles, mib = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
files = 0
try:
    os.mkdir(d)
    for i in range(nfiles):
        fd = os.open(os.path.join(d, "%s-%05d" % (os.path.basename(d), i)),
                     os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, b"x")
        os.close(fd)
        files += 1
except OSError as e:
    print("files-stopped", e.errno)
written = 0
buf = bytes(1 << 20)
try:
    fd = os.open(big, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for i in range(mib):
            written += os.write(fd, buf)
        os.fsync(fd)
    finally:
        os.close(fd)
except OSError as e:
    print("bytes-stopped", e.errno)
print("files", files)
print("bytes", written)
"""


def host_tmp_leftovers(tag):
    """Entries of the host's /tmp, at its top level or one below, whose name
    carries the tag."""
    found = []
    for e in os.listdir("/tmp"):
        p = os.path.join("/tmp", e)
        if tag in e:
            found.append(p)
        elif os.path.isdir(p) and not os.path.islink(p):
            try:
                found += [os.path.join(p, x) for x in os.listdir(p) if tag in x]
            except OSError:
                pass
    return found


def test_scratch_space_is_bounded_and_freed_with_the_cell(cells):
    """Proves: what a default cell writes to its /tmp lands in its own
    (size-capped) tmpfs, not on the host's root filesystem, and goes with
    the cell: after Free, no host /tmp entry holds the cell's 20,000 files
    or its 200 MiB file (while it runs: the write stopped short of 200 MiB,
    or the host's /tmp does not hold them either).
    Fails today: the cell's /tmp is the host's: all 20,000 files and the
    200 MiB land in the host's /tmp and stay there after Free."""
    tag = rand()
    d, big = "/tmp/aurae-scratch-" + tag, "/tmp/big-" + tag
    nfiles, mib = 20000, 200
    try:
        cells.run_cell("scratch")
        st, out = run_py(cells, "scratch", "fill", SCRATCH, [d, big, nfiles, mib], timeout=120)
        assert st.exit_code == 0, stderr_of(cells, "scratch", "fill")
        stats = dict(l.split(" ", 1) for l in out.splitlines())
        files, written = int(stats["files"]), int(stats["bytes"])
        during = host_tmp_leftovers(tag)
        cells.free("scratch", recursive=True)
        after = host_tmp_leftovers(tag)
        assert written < mib << 20 or not during, (
            "the cell wrote %d files and %d bytes, unbounded, to the host's /tmp: %s"
            % (files, written, during))
        assert not after, ("after Free the host's /tmp still holds the cell's scratch "
                           "(%d files, %d bytes): %s" % (files, written, after))
    finally:
        shutil.rmtree(d, ignore_errors=True)
        if os.path.lexists(big):
            os.unlink(big)


IO_URING = r"""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)
r = libc.syscall(ctypes.c_long(425), ctypes.c_long(1), params)
print("ok" if r >= 0 else "errno %d" % ctypes.get_errno())
"""


def test_io_uring_is_refused_in_a_default_cell(cells):
    """Proves: io_uring_setup (425) fails with EPERM in a default cell:
    io_uring bypasses the seccomp filter for every operation it queues and
    has been a steady source of kernel escapes (Docker's default profile
    denies it since 25.0). Fails today: the filter allows it (prints ok)."""
    cells.run_cell("uring")
    st, out = run_py(cells, "uring", "setup", IO_URING)
    assert st.exit_code == 0, stderr_of(cells, "uring", "setup")
    assert out.strip() == "errno %d" % errno.EPERM, "io_uring_setup in a default cell: " + out


# ------------------------------------ 9. client input that means "unchanged"

def test_credentials_that_mean_unchanged_are_refused(cells):
    """Proves: a hostile client cannot slip past the credential and name
    checks with values that C reads differently: uid or gid 4294967295 is
    (uid_t)-1, which setresuid/setresgid take as "leave unchanged", i.e.
    root; a NUL in a name cuts the C string ("x\\0/../../y" is "x").
    Either refused (INVALID_ARGUMENT/FAILED_PRECONDITION) or, if run, not
    as root; the NUL names refused with nothing created.
    Fails today: uid 4294967295 runs `id -u` as 0, gid 4294967295 as gid 0,
    and RunCell("x\\0/../../y") creates a cell "x"."""
    cells.run_cell("creds")
    problems = []
    for i, (creds, cmd) in enumerate([(pb.Credentials(uid=4294967295, gid=65534), "id -u"),
                                      (pb.Credentials(uid=4294967295), "id -u"),
                                      (pb.Credentials(uid=65534, gid=4294967295), "id -g")]):
        name = "c%d" % i
        try:
            st, out = cells.sh("creds", name, cmd, credentials=creds)
        except grpc.RpcError as e:
            assert e.code() in REFUSED, e.details()
            continue
        if out.strip() == "0":
            problems.append("uid %d gid %d: `%s` printed 0" % (creds.uid, creds.gid, cmd))
    bad = "x\x00/../../y"
    try:
        cells.run_cell(bad)
        problems.append("RunCell(%r) succeeded" % bad)
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.INVALID_ARGUMENT:
            problems.append("RunCell(%r): %s %s" % (bad, e.code(), e.details()))
    try:
        cells.run("creds", "e\x00/../y", ["/bin/true"])
        problems.append("RunExecutable(name='e\\x00/../y') succeeded")
    except grpc.RpcError as e:
        if e.code() not in REFUSED:
            problems.append("RunExecutable(name='e\\x00/../y'): %s" % e.code())
    names = sorted(c.name for c in cells.list())
    if names != ["creds"]:
        problems.append("cells listed: %s" % names)
    exes = [e.name for c in cells.list() for e in c.executables if e.name.startswith("e")]
    if exes:
        problems.append("executables listed: %s" % exes)
    assert not problems, "\n".join(problems)


# --------------------------------------- 10. the user namespace of a cell

IDENTITY = r"""
import os, sys, time
f = sys.argv[1]
print("uid_map", open("/proc/self/uid_map").read().strip().replace("\n", "|"))
print("gid_map", open("/proc/self/gid_map").read().strip().replace("\n", "|"))
open(f, "w").write("mine")
print("ready", flush=True)
time.sleep(40)
"""

# Device nodes bound into /dev (OCI defaults) and devpts may lack nodev.
DEV_MOUNTS = {"/dev/" + n for n in ("null", "zero", "full", "random", "urandom", "tty", "pts")}


def id_range(line):
    fields = line.split()
    assert len(fields) == 3, "not one mapping line: %r" % line
    inside, outside, count = map(int, fields)
    return inside, outside, count


def test_user_namespace_of_a_default_cell(cells):
    """Proves: root in a default cell is not root on the host: each cell has
    a user namespace mapping 0..65535 onto its own host range B..B+65535
    (B = 1879048192 + k*65536, disjoint between cells); a file it creates in
    its /tmp is owned by host uid B and exists neither in the host's /tmp
    nor in another cell's; every mount in it is nosuid, and nodev but for
    the /dev node binds and /dev/pts (a /dev/null bound over a path as a
    mask is a deliberate null device, not checked); /etc/shadow, /root, /home show nothing.
    Fails today (expected): no user namespace, uid_map is the identity
    "0 0 4294967295"."""
    tag = rand()
    ranges, files = {}, {}
    for c in ("ua", "ub"):
        cells.run_cell(c)
        files[c] = "/tmp/aurae-owned-%s-%s" % (tag, c)
        start_py(cells, c, "id", IDENTITY, [files[c]])
    try:
        for c in ("ua", "ub"):
            out = wait_for_output(cells, c, "id", "ready")
            lines = dict(l.split(" ", 1) for l in out.splitlines() if " " in l)
            uid, gid = id_range(lines["uid_map"]), id_range(lines["gid_map"])
            assert uid[0] == 0 and uid[1] != 0 and uid[2] == USERNS_SIZE, (
                "%s: uid_map %r: root in the cell is host uid %d" % (c, lines["uid_map"], uid[1]))
            assert gid == uid, (c, lines)
            assert uid[1] >= USERNS_BASE and (uid[1] - USERNS_BASE) % USERNS_SIZE == 0, uid
            ranges[c] = uid[1]
        assert abs(ranges["ua"] - ranges["ub"]) >= USERNS_SIZE, ranges
        for c, other in (("ua", "ub"), ("ub", "ua")):
            pid = cells.inspect(c, "id").host_pid
            other_pid = cells.inspect(other, "id").host_pid
            inside = os.stat("/proc/%d/root%s" % (pid, files[c]))
            assert inside.st_uid == ranges[c] and inside.st_gid == ranges[c], (
                c, inside.st_uid, inside.st_gid)
            assert not os.path.lexists(files[c]), "%s's file is in the host's /tmp" % c
            assert not os.path.lexists("/proc/%d/root%s" % (other_pid, files[c])), (
                "%s's file is in %s's /tmp" % (c, other))
        st, out = cells.sh("ua", "mounts", "cat /proc/self/mountinfo")
        bad = []
        for line in out.splitlines():
            pre = line.split(" - ", 1)[0].split()
            root, point, opts = pre[3], pre[4], pre[5].split(",")
            if root == "/null":
                continue  # a mask: /dev/null bound over a path (/proc/kcore...)
            if "nosuid" not in opts:
                bad.append("%s without nosuid" % point)
            if "nodev" not in opts and point not in DEV_MOUNTS:
                bad.append("%s without nodev" % point)
        assert not bad, "mounts of a default cell:\n" + "\n".join(bad)
        digests = {p: sha256_of(p) for p in ("/etc/shadow", "/etc/gshadow")}
        st, out = run_py(cells, "ua", "secrets", READ_FILES,
                         list(digests) + ["dir:/root", "dir:/home"])
        found = leaks(out, digests)
        assert not found, "\n".join(found)
    finally:
        # first end the writers: a file may still appear after a failure
        for c in ("ua", "ub"):
            try:
                cells.free(c, recursive=True)
            except grpc.RpcError:
                pass
        for f in files.values():
            if os.path.lexists(f):
                os.unlink(f)
