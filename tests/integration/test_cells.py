"""Issue 3: cells and executables on cgroup v2 and deny-by-default
namespaces, with the full lifecycle, against a real auraed (as root)."""
import os
import signal
import socket
import stat
import subprocess
import time

import grpc
import pytest

from conftest import runtime_call, runtime_stream, runtime_pb2 as pb

PY = "/usr/bin/python3"
EXE = pb.WORKLOAD_KIND_EXECUTABLE
CELL = pb.WORKLOAD_KIND_CELL


def cgroup2_mount():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, post = line.split(" - ", 1)
            if post.startswith("cgroup2 "):
                return pre.split()[4]
    pytest.skip("no cgroup2 mount")


class Cells:
    """A thin client for the Runtime calls of cells and executables."""

    def __init__(self, daemon, user="admin"):
        self.d = daemon
        self.ch = daemon.channel(user)

    def close(self):
        self.ch.close()

    def call(self, method, req, resp, timeout=30):
        return runtime_call(self.ch, method, req, resp, timeout=timeout)

    def run_cell(self, name, **kw):
        return self.call("RunCell", pb.Cell(name=name, **kw), pb.CellStatus)

    def run(self, cell, name, args, **kw):
        return self.call("RunExecutable",
                         pb.Executable(cell_name=cell, name=name, args=args, **kw),
                         pb.ExecutableStatus)

    def ref(self, cell, name=None):
        if name is None:
            return pb.WorkloadRef(kind=CELL, name=cell)
        return pb.WorkloadRef(kind=EXE, cell_name=cell, name=name)

    def wait(self, cell, name, timeout=30):
        return self.call("Wait", pb.WaitRequest(ref=self.ref(cell, name)), pb.WorkloadStatus,
                         timeout=timeout).executable

    def inspect(self, cell, name=None):
        w = self.call("Inspect", pb.InspectRequest(ref=self.ref(cell, name)), pb.WorkloadStatus)
        return w.cell if name is None else w.executable

    def stop(self, cell, name, grace_ms=0):
        return self.call("Stop", pb.StopRequest(ref=self.ref(cell, name), grace_period_ms=grace_ms),
                         pb.WorkloadStatus).executable

    def signal(self, cell, name, sig):
        return self.call("Signal", pb.SignalRequest(ref=self.ref(cell, name), signal=sig),
                         pb.WorkloadStatus).executable

    def free(self, cell, name=None, recursive=False):
        return self.call("Free", pb.FreeRequest(ref=self.ref(cell, name), recursive=recursive),
                         pb.FreeResponse)

    def list(self):
        return self.call("List", pb.ListRequest(kind=CELL), pb.ListResponse).cells

    def logs(self, cell, name, follow=False, stream=pb.LOG_STREAM_ALL, timeout=30):
        req = pb.LogsRequest(ref=self.ref(cell, name), follow=follow, stream=stream)
        return list(runtime_stream(self.ch, "Logs", req, pb.LogChunk, timeout=timeout))

    def output(self, cell, name, stream=pb.LOG_STREAM_STDOUT):
        return b"".join(c.data for c in self.logs(cell, name, stream=stream)).decode()

    def sh(self, cell, name, script, **kw):
        """Runs a shell script to the end; returns (status, stdout)."""
        self.run(cell, name, ["/bin/sh", "-c", script], **kw)
        st = self.wait(cell, name)
        return st, self.output(cell, name)


@pytest.fixture
def cells(daemon):
    c = Cells(daemon)
    yield c
    # Leave nothing behind, whatever the test did.
    try:
        for cell in c.list():
            if "/" not in cell.name:
                c.free(cell.name, recursive=True)
    finally:
        c.close()


def cgroup_root(status):
    """MOUNT/ROOT of the daemon, from a top-level cell's cgroup path."""
    return os.path.dirname(status.cgroup_path)


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def expect_error(code, fn, *args, **kw):
    with pytest.raises(grpc.RpcError) as e:
        fn(*args, **kw)
    assert e.value.code() == code, e.value.details()
    return e.value.details()


# ------------------------------------------------------------ networking

SERVER = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1)
print("listening", flush=True)
c, _ = s.accept(); print("got", c.recv(100).decode(), flush=True); c.sendall(b"pong")
"""

CLIENT = r"""
import socket, sys
try:
    c = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3)
    c.sendall(b"ping"); print("reply", c.recv(100).decode())
except OSError as e:
    print("error", e.errno); sys.exit(3)
"""


def test_localhost_tcp_within_a_cell_and_not_across_cells(cells):
    port = free_port()
    cells.run_cell("net-a")
    cells.run_cell("net-b")
    cells.run("net-a", "server", [PY, "-c", SERVER, str(port)])
    deadline = time.time() + 10
    while "listening" not in cells.output("net-a", "server"):
        assert time.time() < deadline, "server did not start"
        time.sleep(0.05)
    # Another cell has its own network namespace: nothing listens there.
    cells.run("net-b", "client", [PY, "-c", CLIENT, str(port)])
    st = cells.wait("net-b", "client")
    assert st.exit_code == 3
    assert "error 111" in cells.output("net-b", "client")  # ECONNREFUSED
    # Neither does the host.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    # The sidecar in the same cell reaches it on localhost.
    cells.run("net-a", "client", [PY, "-c", CLIENT, str(port)])
    st = cells.wait("net-a", "client")
    assert st.state == pb.EXECUTABLE_STATE_EXITED and st.exit_code == 0
    assert "reply pong" in cells.output("net-a", "client")
    assert cells.wait("net-a", "server").exit_code == 0
    assert "got ping" in cells.output("net-a", "server")


# ------------------------------------------------------------- isolation

def test_inside_a_cell_pid1_hostname_proc_and_mounts(cells, tmp_path):
    cells.run_cell("iso")
    st, out = cells.sh("iso", "look", "cat /proc/1/comm; hostname; ls /proc | grep -c '^[0-9]'; "
                       "readlink /proc/self/ns/pid; readlink /proc/self/ns/net; "
                       "readlink /proc/self/ns/mnt; readlink /proc/self/ns/ipc; "
                       "readlink /proc/self/ns/uts; readlink /proc/self/ns/cgroup; "
                       "cat /proc/self/cgroup | tail -1; echo $$")
    assert st.exit_code == 0, out
    lines = out.split()
    comm, hostname, nprocs = lines[0], lines[1], int(lines[2])
    assert comm == "aurae-cell-init"      # pid 1 is the cell init
    assert hostname == "iso"              # the leaf name
    # The host's processes are invisible: init, sh, ls, grep at most.
    assert nprocs <= 5, out
    for ns, inside in zip(["pid", "net", "mnt", "ipc", "uts", "cgroup"], lines[3:9]):
        assert inside != os.readlink("/proc/self/ns/" + ns), ns
    # cgroup namespace rooted at the cell: the leaf shows as /_exe.NAME
    assert lines[9] == "0::/_exe.look"
    assert st.host_pid > 0 and st.cell_pid == int(lines[10]) and st.cell_pid != st.host_pid
    # /proc is the cell's own: pid 1 there is not the host's pid 1.
    assert open("/proc/1/comm").read().strip() != "aurae-cell-init"

    # A mount made inside does not appear on the host. Mounting needs
    # CAP_SYS_ADMIN, which only a privileged cell has.
    cells.run_cell("isopriv", isolation=pb.CellIsolation(privileged=True))
    target = tmp_path / "mnt"
    target.mkdir()
    st, out = cells.sh("isopriv", "mount", "mount -t tmpfs aurae-cell-test %s && "
                       "grep -c aurae-cell-test /proc/self/mountinfo" % target)
    assert st.exit_code == 0 and out.strip() == "1", out
    assert "aurae-cell-test" not in open("/proc/self/mountinfo").read()
    assert os.listdir(target) == []


# OCI default capabilities (what Docker shows as CapBnd in a container,
# 0xa80425fb) less CAP_MKNOD: cgroup v2 has no device controller.
DEFAULT_CAPS = 0x00000000a00425fb


def proc_status(text):
    return dict(l.split(":\t", 1) for l in text.splitlines() if ":\t" in l)


def test_a_default_cell_cannot_reach_auraeds_secrets(cells, pki):
    cells.run_cell("safe")
    key = pki.path("ca.key")
    assert open(key, "rb").read()  # readable on the host
    st, out = cells.sh("safe", "key", "cat %s >/dev/null 2>&1 && echo READ; "
                       "ls -A %s; ls -A %s; ls -A %s; echo end" % (
                           key, pki.dir, cells.d.runtime_dir, cells.d.library_dir))
    assert out == "end\n", out
    # the API socket and the config file live in the daemon's workdir
    st, out = cells.sh("safe", "sock", "ls -A %s; cat %s; echo end" % (
        os.path.dirname(cells.d.socket), cells.d.config_path))
    assert out == "end\n", out
    # the OCI masked and read-only paths (/proc/kcore is not in every kernel)
    assert len(open("/proc/timer_list").read()) > 0 and os.listdir("/sys/firmware")
    st, out = cells.sh("safe", "proc", "wc -c </proc/timer_list; ls -A /sys/firmware | wc -l; "
                       "echo 1 > /proc/sys/vm/drop_caches || echo ro-proc-sys; "
                       "ls /sys/class/net; "
                       "awk '$5 ~ \"^/sys\" {print $5, substr($6, 1, 3)}' /proc/self/mountinfo")
    lines = out.splitlines()
    # The cell's own sysfs: its network namespace's links only, none of the
    # host's cgroup hierarchies, and read-only with everything below it.
    assert lines[:4] == ["0", "0", "ro-proc-sys", "lo"], out
    sys_mounts = dict(l.split() for l in lines[4:])
    assert "/sys" in sys_mounts and cgroup2_mount() not in sys_mounts, out
    assert set(sys_mounts.values()) == {"ro,"}, out
    # Sharing the host's network, the host's sysfs, without its cgroups.
    cells.run_cell("safe-net", isolation=pb.CellIsolation(share_network=True))
    st, out = cells.sh("safe-net", "sys", "ls -A /sys/fs/cgroup | wc -l; ls /sys/class/net | wc -l")
    assert out.split()[0] == "0" and int(out.split()[1]) > 1, out


def test_a_default_cell_has_the_oci_capabilities_and_no_new_privs(cells, tmp_path):
    cells.run_cell("caps")
    st, out = cells.sh("caps", "status", "cat /proc/self/status")
    s = proc_status(out)
    for field in ("CapEff", "CapPrm", "CapBnd"):
        assert int(s[field], 16) == DEFAULT_CAPS, (field, s[field])
    assert int(s["CapInh"], 16) == 0 and int(s["CapAmb"], 16) == 0
    assert s["NoNewPrivs"].strip() == "1"
    # no CAP_SYS_ADMIN: mounting fails with EPERM
    target = tmp_path / "mnt"
    target.mkdir()
    st, out = cells.sh("caps", "mount", "unshare -m true 2>&1; "
                       "mount -t tmpfs x %s 2>&1; echo rc=$?" % target)
    assert "Operation not permitted" in out or "permission denied" in out, out
    assert "rc=0" not in out
    assert "x %s" % target not in open("/proc/self/mounts").read()
    # a non-root user keeps nothing, not even the default set
    st, out = cells.sh("caps", "nobody", "cat /proc/self/status",
                       credentials=pb.Credentials(uid=65534, gid=65534))
    s = proc_status(out)
    assert int(s["CapEff"], 16) == 0 and int(s["CapBnd"], 16) == DEFAULT_CAPS
    # nested cells get the same
    cells.run_cell("caps/kid")
    st, out = cells.sh("caps/kid", "status", "cat /proc/self/status; ls -A %s; echo end"
                       % cells.d.runtime_dir)
    assert int(proc_status(out)["CapEff"], 16) == DEFAULT_CAPS
    assert out.endswith("\nend\n")
    assert cells.inspect("caps").isolation.privileged is False


def test_a_privileged_cell_keeps_every_capability(cells):
    st = cells.run_cell("priv", isolation=pb.CellIsolation(privileged=True))
    assert st.isolation.privileged
    mine = proc_status(open("/proc/self/status").read())
    st, out = cells.sh("priv", "status", "cat /proc/self/status")
    s = proc_status(out)
    assert s["CapEff"] == mine["CapEff"] and int(s["CapEff"], 16) & ~DEFAULT_CAPS
    assert s["NoNewPrivs"].strip() == "0"


def test_a_child_cell_is_never_less_confined_than_its_parent(cells):
    outer = cells.run_cell("conf")
    # The default cell's init itself has only the default bounding set (it
    # keeps its own effective capabilities to run the cell).
    init = proc_status(open("/proc/%d/status" % outer.init_host_pid).read())
    assert int(init["CapBnd"], 16) == DEFAULT_CAPS
    # A privileged child is refused, not quietly capped.
    msg = expect_error(grpc.StatusCode.FAILED_PRECONDITION, cells.run_cell, "conf/priv",
                       isolation=pb.CellIsolation(privileged=True))
    assert "isolation.privileged" in msg
    cells.run_cell("conf/kid")
    st, out = cells.sh("conf/kid", "status", "cat /proc/self/status")
    s = proc_status(out)
    assert int(s["CapBnd"], 16) == DEFAULT_CAPS and int(s["CapEff"], 16) == DEFAULT_CAPS
    assert s["NoNewPrivs"].strip() == "1" and s["Seccomp"].strip() == "2"
    cells.free("conf", recursive=True)


def test_shared_mount_namespace_keeps_the_hosts_proc(cells):
    """With share_mount the cell's mounts are the host's: /proc is not
    remounted (that would replace the host's /proc) and nothing is masked,
    so even with its own pid namespace the cell sees the host's processes.
    Capabilities are still reduced."""
    host_mounts = open("/proc/self/mountinfo").read().count("\n")
    cells.run_cell("shm", isolation=pb.CellIsolation(share_mount=True))
    st, out = cells.sh("shm", "look", "cat /proc/1/comm; readlink /proc/self/ns/pid; "
                       "grep CapEff /proc/self/status")
    comm, pidns, capeff = out.split("\n")[:3]
    assert comm == open("/proc/1/comm").read().strip()   # the host's pid 1
    assert pidns != os.readlink("/proc/self/ns/pid")     # yet a new pid namespace
    assert int(capeff.split()[1], 16) == DEFAULT_CAPS
    assert open("/proc/self/mountinfo").read().count("\n") == host_mounts


def test_processes_run_in_the_cells_cgroup(cells):
    status = cells.run_cell("cg")
    ex = cells.run("cg", "sleeper", ["sleep", "30"])
    leaf = os.path.join(status.cgroup_path, "_exe.sleeper")
    assert str(ex.host_pid) in open(os.path.join(leaf, "cgroup.procs")).read().split()
    init_procs = open(os.path.join(status.cgroup_path, "_init", "cgroup.procs")).read().split()
    assert init_procs == [str(status.init_host_pid)]
    # no-internal-processes: the cell's own cgroup holds no process itself
    assert open(os.path.join(status.cgroup_path, "cgroup.procs")).read() == ""
    cells.stop("cg", "sleeper", grace_ms=100)


# ------------------------------------------------- exits, signals, stop

def test_exit_codes_and_signals_are_reported(cells):
    cells.run_cell("exits")
    st, _ = cells.sh("exits", "seven", "exit 7")
    assert st.state == pb.EXECUTABLE_STATE_EXITED and st.exit_code == 7
    assert st.ended_at_ns >= st.started_at_ns > 0
    st, _ = cells.sh("exits", "usr1", "kill -USR1 $$")
    assert st.state == pb.EXECUTABLE_STATE_KILLED and st.signal == signal.SIGUSR1
    cells.run("exits", "sleeper", ["sleep", "30"])
    cells.signal("exits", "sleeper", signal.SIGINT)
    st = cells.wait("exits", "sleeper")
    assert st.state == pb.EXECUTABLE_STATE_KILLED and st.signal == signal.SIGINT
    # signalling something that has ended is refused
    expect_error(grpc.StatusCode.FAILED_PRECONDITION, cells.signal, "exits", "sleeper", 15)


def test_stop_sends_sigterm_then_escalates_to_sigkill(cells):
    cells.run_cell("stops")
    cells.run("stops", "polite", ["sleep", "30"])
    st = cells.stop("stops", "polite", grace_ms=5000)
    assert st.state == pb.EXECUTABLE_STATE_KILLED and st.signal == signal.SIGTERM
    cells.run("stops", "stubborn", ["/bin/sh", "-c", "trap '' TERM; echo ready; "
                                    "while true; do sleep 0.05; done"])
    while "ready" not in cells.output("stops", "stubborn"):
        time.sleep(0.02)
    t0 = time.time()
    st = cells.stop("stops", "stubborn", grace_ms=400)
    took = time.time() - t0
    assert st.state == pb.EXECUTABLE_STATE_KILLED and st.signal == signal.SIGKILL
    assert 0.35 < took < 5, took
    assert not pid_alive(st.host_pid)


def test_orphans_are_reaped_by_the_cell_init(cells):
    cells.run_cell("orphans")
    # The shell exits at once; its background children become orphans of
    # the cell and exit later.
    st, out = cells.sh("orphans", "parent", "sleep 0.3 & sleep 0.3 & echo $!")
    assert st.exit_code == 0
    orphan = int(out.strip())
    st, out = cells.sh("orphans", "ppid", "cat /proc/%d/stat" % orphan)
    assert out.split(") ", 1)[1].split()[1] == "1", out  # reparented to the init
    time.sleep(0.6)
    st, out = cells.sh("orphans", "zombies",
                       "for s in /proc/[0-9]*/stat; do cat $s; echo; done 2>/dev/null")
    states = [l.split(") ", 1)[1][0] for l in out.splitlines() if ") " in l]
    assert states and "Z" not in states, out


# ------------------------------------------------------ lifecycle of a cell

def cell_call(cells, method, req, timeout=30):
    return cells.call(method, req, pb.WorkloadStatus, timeout=timeout).cell


def test_signal_a_cell_reaches_every_running_executable_below_it(cells):
    cells.run_cell("sig")
    cells.run_cell("sig/kid")
    a = cells.run("sig", "a", ["sleep", "30"])
    b = cells.run("sig/kid", "b", ["sleep", "30"])
    cells.sh("sig", "done", "exit 3")
    st = cell_call(cells, "Signal", pb.SignalRequest(ref=cells.ref("sig"), signal=signal.SIGUSR2))
    assert st.name == "sig" and {e.name for e in st.executables} == {"a", "done"}
    for cell, name in (("sig", "a"), ("sig/kid", "b")):
        ex = cells.wait(cell, name)
        assert ex.state == pb.EXECUTABLE_STATE_KILLED and ex.signal == signal.SIGUSR2
    # the exited one kept its result; the cells and their inits stay
    assert cells.inspect("sig", "done").exit_code == 3
    assert pid_alive(cells.inspect("sig").init_host_pid)
    assert not pid_alive(a.host_pid) and not pid_alive(b.host_pid)
    # nothing left to signal: FAILED_PRECONDITION, like a single executable
    msg = expect_error(grpc.StatusCode.FAILED_PRECONDITION, cell_call, cells, "Signal",
                       pb.SignalRequest(ref=cells.ref("sig"), signal=15))
    assert "sig" in msg
    expect_error(grpc.StatusCode.NOT_FOUND, cell_call, cells, "Signal",
                 pb.SignalRequest(ref=cells.ref("nosuch"), signal=15))


def test_stop_a_cell_escalates_and_keeps_the_cell(cells):
    cells.run_cell("stopc")
    cells.run_cell("stopc/kid")
    polite = cells.run("stopc", "polite", ["sleep", "30"])
    cells.run("stopc/kid", "stubborn", ["/bin/sh", "-c", "trap '' TERM; echo ready; "
                                        "sleep 60 & while true; do sleep 0.05; done"])
    while "ready" not in cells.output("stopc/kid", "stubborn"):
        time.sleep(0.02)
    t0 = time.time()
    st = cell_call(cells, "Stop", pb.StopRequest(ref=cells.ref("stopc"), grace_period_ms=400))
    took = time.time() - t0
    assert 0.35 < took < 5, took
    assert st.name == "stopc"
    [p] = st.executables
    assert p.state == pb.EXECUTABLE_STATE_KILLED and p.signal == signal.SIGTERM
    s = cells.inspect("stopc/kid", "stubborn")
    assert s.state == pb.EXECUTABLE_STATE_KILLED and s.signal == signal.SIGKILL
    assert not pid_alive(polite.host_pid) and not pid_alive(s.host_pid)
    # what the stubborn one forked went with its leaf
    kid = cells.inspect("stopc/kid")
    leaf = os.path.join(kid.cgroup_path, "_exe.stubborn", "cgroup.procs")
    assert open(leaf).read() == ""
    # the cells stay and still run executables
    assert pid_alive(kid.init_host_pid)
    assert cells.sh("stopc/kid", "again", "echo still here")[1] == "still here\n"
    # an idle cell stops at once
    t0 = time.time()
    cell_call(cells, "Stop", pb.StopRequest(ref=cells.ref("stopc"), grace_period_ms=5000))
    assert time.time() - t0 < 2


def test_wait_for_a_cell(cells):
    cells.run_cell("waitc")
    cells.run_cell("waitc/kid")
    cells.run("waitc", "short", ["sleep", "0.3"])
    cells.run("waitc/kid", "longer", ["sleep", "0.6"])
    t0 = time.time()
    st = cell_call(cells, "Wait", pb.WaitRequest(ref=cells.ref("waitc")))
    assert 0.5 < time.time() - t0 < 5
    assert [e.state for e in st.executables] == [pb.EXECUTABLE_STATE_EXITED]
    assert cells.inspect("waitc/kid", "longer").state == pb.EXECUTABLE_STATE_EXITED
    # the call's deadline bounds the wait
    cells.run("waitc/kid", "sleeper", ["sleep", "30"])
    t0 = time.time()
    expect_error(grpc.StatusCode.DEADLINE_EXCEEDED, cell_call, cells, "Wait",
                 pb.WaitRequest(ref=cells.ref("waitc")), timeout=0.5)
    assert time.time() - t0 < 3
    expect_error(grpc.StatusCode.NOT_FOUND, cell_call, cells, "Wait",
                 pb.WaitRequest(ref=cells.ref("nosuch")))


def test_logs_of_a_cell_are_refused_with_a_pointer(cells):
    cells.run_cell("logc")
    with pytest.raises(grpc.RpcError) as e:
        cells.logs("logc", None)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "kind EXECUTABLE" in e.value.details()


def test_aer_stop_kill_wait_on_a_cell(daemon):
    assert daemon.aer("cell", "run", "acell").returncode == 0
    for name in ("one", "two"):
        r = daemon.aer("exec", "acell", "-n", name, "-d", "--", "sleep", "30")
        assert r.returncode == 0, r.stderr
    r = daemon.aer("wait", "--timeout", "300", "acell")
    assert r.returncode == 1 + 4 and "DEADLINE_EXCEEDED" in r.stderr, r.stderr
    r = daemon.aer("kill", "-s", "USR1", "acell", "one")
    assert r.returncode == 0, r.stderr
    r = daemon.aer("kill", "-s", "INT", "acell")
    assert r.returncode == 0, r.stderr
    r = daemon.aer("wait", "acell")
    assert r.returncode == 0 and "cell:        acell" in r.stdout, r.stdout + r.stderr
    r = daemon.aer("-o", "json", "inspect", "acell", "two")
    assert '"signal": 2' in r.stdout, r.stdout
    daemon.aer("exec", "acell", "-n", "three", "-d", "--", "sleep", "30")
    r = daemon.aer("stop", "--grace", "300", "acell")
    assert r.returncode == 0 and "cell:        acell" in r.stdout, r.stderr
    r = daemon.aer("-o", "json", "inspect", "acell", "three")
    assert '"signal": 15' in r.stdout, r.stdout
    r = daemon.aer("kill", "acell")
    assert r.returncode == 1 + 9 and "FAILED_PRECONDITION" in r.stderr
    assert daemon.aer("free", "acell").returncode == 0


# ------------------------------------------------------------------ logs

def test_logs_after_exit_per_stream(cells):
    cells.run_cell("logs")
    st, out = cells.sh("logs", "both", "echo out1; echo err1 >&2; echo out2")
    assert out == "out1\nout2\n"
    assert cells.output("logs", "both", pb.LOG_STREAM_STDERR) == "err1\n"
    chunks = cells.logs("logs", "both")
    assert {c.stream for c in chunks} == {pb.LOG_STREAM_STDOUT, pb.LOG_STREAM_STDERR}


def test_logs_follow_ends_when_the_process_ends(cells):
    cells.run_cell("follow")
    cells.run("follow", "ticker", ["/bin/sh", "-c",
                                   "for i in 1 2 3 4 5; do echo tick $i; sleep 0.2; done"])
    t0 = time.time()
    chunks = cells.logs("follow", "ticker", follow=True, timeout=20)
    took = time.time() - t0
    data = b"".join(c.data for c in chunks).decode()
    assert data == "".join("tick %d\n" % i for i in range(1, 6))
    assert 0.5 < took < 5, took
    assert cells.inspect("follow", "ticker").state == pb.EXECUTABLE_STATE_EXITED


def test_stdin_env_cwd(cells):
    cells.run_cell("io")
    st, out = cells.sh("io", "cat", "cat; echo; echo $FOO; pwd",
                       stdin=b"hello input", env=["FOO=bar"], cwd="/tmp")
    assert out == "hello input\nbar\n/tmp\n"


def test_output_cap_drops_oldest_and_counts(cells):
    cells.run_cell("cap")
    st, _ = cells.sh("cap", "big", "head -c 5000 /dev/zero | tr '\\0' a; printf END",
                     output_limit_bytes=1000)
    chunks = cells.logs("cap", "big", stream=pb.LOG_STREAM_STDOUT)
    data = b"".join(c.data for c in chunks)
    assert len(data) == 1000 and data.endswith(b"aEND")
    assert chunks[0].dropped_bytes == 4003
    assert cells.inspect("cap", "big").stdout_dropped_bytes == 4003


# ----------------------------------------------------------------- nesting

def test_nested_cells(cells):
    a = cells.run_cell("outer")
    b = cells.run_cell("outer/inner")
    assert b.cgroup_path == os.path.join(a.cgroup_path, "inner")
    assert "outer/inner" in cells.inspect("outer").children
    cells.run("outer/inner", "sleeper", ["sleep", "30"])
    st, out = cells.sh("outer/inner", "look", "hostname; readlink /proc/self/ns/pid; "
                       "readlink /proc/self/ns/net")
    inner_host, inner_pidns, inner_netns = out.split()
    assert inner_host == "inner"
    st, out = cells.sh("outer", "look", "readlink /proc/self/ns/pid; readlink /proc/self/ns/net; "
                       "grep -l '^sleep' /proc/[0-9]*/comm | wc -l")
    outer_pidns, outer_netns, sleepers = out.split()
    assert inner_pidns != outer_pidns and inner_netns != outer_netns
    # b's pid namespace nests in a's: a sees b's processes, the host's stay hidden
    assert int(sleepers) == 1
    # b's processes are in b's cgroup, below a's
    ex = cells.inspect("outer/inner", "sleeper")
    assert str(ex.host_pid) in open(os.path.join(b.cgroup_path, "_exe.sleeper",
                                                 "cgroup.procs")).read().split()
    # freeing a parent needs the recursive flag
    msg = expect_error(grpc.StatusCode.FAILED_PRECONDITION, cells.free, "outer")
    assert "outer/inner" in msg and "recursive" in msg
    assert os.path.isdir(b.cgroup_path)
    freed = cells.free("outer", recursive=True).freed
    assert list(freed) == ["outer/inner", "outer"]
    assert not os.path.exists(a.cgroup_path)
    assert not pid_alive(ex.host_pid) and not pid_alive(b.init_host_pid)
    expect_error(grpc.StatusCode.NOT_FOUND, cells.inspect, "outer")


def test_child_needs_its_parent(cells):
    msg = expect_error(grpc.StatusCode.NOT_FOUND, cells.run_cell, "nope/child")
    assert "nope" in msg


# ------------------------------------------------------------------ limits

@pytest.mark.parametrize("resources,controller", [
    (pb.CellResources(memory=pb.MemoryResources(max=64 << 20)), "memory"),
    (pb.CellResources(pids=pb.PidsResources(max=10)), "pids"),
    (pb.CellResources(cpu=pb.CpuResources(max_quota_us=50000)), "cpu"),
    (pb.CellResources(cpuset=pb.CpusetResources(cpus="0")), "cpuset"),
    (pb.CellResources(io=pb.IoResources(weight=100)), "io"),
])
def test_limits_without_controller_fail_precondition(cells, resources, controller):
    mount = cgroup2_mount()
    avail = open(os.path.join(mount, "cgroup.controllers")).read().split()
    if controller in avail:
        pytest.skip("this host offers the %s controller" % controller)
    msg = expect_error(grpc.StatusCode.FAILED_PRECONDITION, cells.run_cell, "limited",
                       resources=resources)
    assert '"%s"' % controller in msg and mount in msg, msg
    assert [c.name for c in cells.list()] == []
    probe = cells.run_cell("probe")
    assert not os.path.exists(os.path.join(cgroup_root(probe), "limited"))


def test_bad_resource_values_invalid_argument(cells):
    msg = expect_error(grpc.StatusCode.INVALID_ARGUMENT, cells.run_cell, "w",
                       resources=pb.CellResources(cpu=pb.CpuResources(weight=20000)))
    assert "cpu.weight" in msg


# --------------------------------------------------------------- bad input

def test_bad_input_is_refused_and_leaves_nothing(cells):
    st = cells.run_cell("good")
    root = cgroup_root(st)
    msg = expect_error(grpc.StatusCode.INVALID_ARGUMENT, cells.run_cell, "good/Bad_Part")
    assert "Bad_Part" in msg
    expect_error(grpc.StatusCode.INVALID_ARGUMENT, cells.run_cell, "a//b")
    expect_error(grpc.StatusCode.INVALID_ARGUMENT, cells.run_cell, "-a")
    expect_error(grpc.StatusCode.ALREADY_EXISTS, cells.run_cell, "good")
    msg = expect_error(grpc.StatusCode.NOT_FOUND, cells.run, "missing", "x", ["true"])
    assert "missing" in msg
    expect_error(grpc.StatusCode.INVALID_ARGUMENT, cells.run, "", "x", ["true"])
    expect_error(grpc.StatusCode.INVALID_ARGUMENT, cells.run, "good", "Bad", ["true"])
    msg = expect_error(grpc.StatusCode.INVALID_ARGUMENT, cells.run, "good", "empty", [])
    assert "args" in msg
    msg = expect_error(grpc.StatusCode.INVALID_ARGUMENT, cells.run, "good", "nobin",
                       ["/nonexistent/binary"])
    assert "/nonexistent/binary" in msg and "No such file" in msg
    msg = expect_error(grpc.StatusCode.INVALID_ARGUMENT, cells.run, "good", "bigenv", ["true"],
                       env=["X=" + "a" * 300000])
    assert "env" in msg
    expect_error(grpc.StatusCode.INVALID_ARGUMENT, cells.run, "good", "badenv", ["true"],
                 env=["NOEQUALS"])
    expect_error(grpc.StatusCode.INVALID_ARGUMENT, cells.run, "good", "badcwd", ["true"],
                 cwd="/nonexistent-dir")
    cells.run("good", "dup", ["sleep", "30"])
    expect_error(grpc.StatusCode.ALREADY_EXISTS, cells.run, "good", "dup", ["true"])
    expect_error(grpc.StatusCode.NOT_FOUND, cells.inspect, "good", "nobin")
    expect_error(grpc.StatusCode.NOT_FOUND, cells.free, "missing")
    # Nothing behind: one cell, one executable, one leaf of ours.
    [cell] = cells.list()
    assert [e.name for e in cell.executables] == ["dup"]
    assert sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))
                  and not d.startswith("_")) == ["good"]
    assert sorted(d for d in os.listdir(st.cgroup_path)
                  if os.path.isdir(os.path.join(st.cgroup_path, d))) == ["_exe.dup", "_init"]
    exe_state = os.path.join(cells.d.runtime_dir, "cells", "good", "_exe")
    assert os.listdir(exe_state) == ["dup.json"]


def test_bad_input_strings_with_nul_bytes_or_bad_utf8_are_refused(cells):
    """protobuf-c hands the services C strings: without the wire check,
    "x\\0/../../y" would be validated, and created, as cell "x"."""
    msg = expect_error(grpc.StatusCode.INVALID_ARGUMENT, cells.run_cell, "x\x00/../../y")
    assert msg == "request: field 1 (name) of aurae.runtime.v0.Cell: contains a NUL byte", msg
    assert "x" not in [c.name for c in cells.list()]
    # Python's protobuf never writes invalid UTF-8: send the bytes ourselves.
    raw = cells.ch.unary_unary("/aurae.runtime.v0.Runtime/RunCell",
                               request_serializer=lambda b: b,
                               response_deserializer=pb.CellStatus.FromString)
    msg = expect_error(grpc.StatusCode.INVALID_ARGUMENT, raw, b"\x0a\x03x\xc0\x80", timeout=30)
    assert msg == "request: field 1 (name) of aurae.runtime.v0.Cell: invalid UTF-8", msg
    assert list(cells.list()) == []
    cells.run_cell("nul")
    for field, kw in (("name", dict(name="e\x00x")),
                      ("args", dict(args=["/bin/true", "a\x00b"])),
                      ("cwd", dict(cwd="/\x00/etc")),
                      ("env", dict(env=["A=B\x00C"]))):
        kw = dict(dict(name="e", args=["/bin/true"]), **kw)
        msg = expect_error(grpc.StatusCode.INVALID_ARGUMENT, cells.run, "nul", **kw)
        assert "(%s) of aurae.runtime.v0.Executable: contains a NUL byte" % field in msg, msg
    assert list(cells.inspect("nul").executables) == []
    assert [c.name for c in cells.list()] == ["nul"]


def test_bad_input_credentials_of_minus_one_are_refused(cells):
    """(uid_t)-1 tells setresuid and setresgid to leave an id unchanged:
    accepted, it would run the program as the cell's root."""
    cells.run_cell("creds")
    for field, creds in (("credentials.uid", pb.Credentials(uid=4294967295, gid=1000)),
                         ("credentials.gid", pb.Credentials(uid=1000, gid=4294967295)),
                         ("credentials.supplementary_gids[1]",
                          pb.Credentials(uid=1000, gid=1000,
                                         supplementary_gids=[1001, 4294967295]))):
        name = field.split(".")[1].split("[")[0].replace("_", "-")
        msg = expect_error(grpc.StatusCode.INVALID_ARGUMENT, cells.run, "creds", name,
                           ["/bin/sh", "-c", "id -u; id -g"], credentials=creds)
        assert msg.endswith("%s: 4294967295 is not a valid id" % field), msg
        expect_error(grpc.StatusCode.NOT_FOUND, cells.inspect, "creds", name)
    assert list(cells.inspect("creds").executables) == []
    st, out = cells.sh("creds", "ok", "id -u; id -g",
                       credentials=pb.Credentials(uid=1000, gid=1000))
    assert st.exit_code == 0 and out == "1000\n1000\n", out


def test_read_only_identity_cannot_run(daemon):
    viewer = Cells(daemon, user="viewer")
    try:
        expect_error(grpc.StatusCode.PERMISSION_DENIED, viewer.run_cell, "ro")
        assert len(viewer.list()) == 0
    finally:
        viewer.close()


def test_wait_honours_the_deadline(cells):
    cells.run_cell("slow")
    cells.run("slow", "sleeper", ["sleep", "30"])
    t0 = time.time()
    expect_error(grpc.StatusCode.DEADLINE_EXCEEDED, cells.wait, "slow", "sleeper", timeout=0.5)
    assert time.time() - t0 < 3


def test_free_executable(cells):
    st = cells.run_cell("fx")
    ex = cells.run("fx", "sleeper", ["sleep", "30"])
    assert list(cells.free("fx", "sleeper").freed) == ["fx/sleeper"]
    assert not pid_alive(ex.host_pid)
    assert not os.path.exists(os.path.join(st.cgroup_path, "_exe.sleeper"))
    # the name can be used again
    assert cells.sh("fx", "sleeper", "echo again")[1] == "again\n"


# ----------------------------------------------------------------- restart

def test_auraed_kill9_restart_readopts_workloads(daemon, pki):
    c = Cells(daemon)
    try:
        st = c.run_cell("keep")
        c.run_cell("keep/child")
        sleeper = c.run("keep", "sleeper", ["sleep", "60"])
        c.run("keep/child", "ticker", ["/bin/sh", "-c",
                                       "trap '' TERM; while true; do echo tick; sleep 0.1; done"])
        done, _ = c.sh("keep", "done", "exit 4")
    finally:
        c.close()
    daemon.kill9()
    assert pid_alive(sleeper.host_pid) and pid_alive(st.init_host_pid)
    time.sleep(0.3)
    daemon.stop()
    daemon.start()
    c = Cells(daemon)
    try:
        cells = {x.name: x for x in c.list()}
        assert set(cells) == {"keep", "keep/child"}
        exes = {e.name: e for e in cells["keep"].executables}
        assert exes["sleeper"].state == pb.EXECUTABLE_STATE_RUNNING
        assert exes["sleeper"].host_pid == sleeper.host_pid
        assert exes["done"].state == pb.EXECUTABLE_STATE_EXITED and exes["done"].exit_code == 4
        # Pids survive the restart, of exited executables too (the init
        # keeps them: the state file is written before they are known).
        assert exes["done"].host_pid == done.host_pid > 0
        assert exes["done"].cell_pid == done.cell_pid > 0
        assert exes["sleeper"].cell_pid == sleeper.cell_pid > 0
        assert exes["sleeper"].output_lost
        # output keeps being captured after the restart
        time.sleep(0.3)
        assert "tick" in c.output("keep/child", "ticker")
        st2 = c.stop("keep", "sleeper", grace_ms=1000)
        assert st2.state == pb.EXECUTABLE_STATE_KILLED and st2.signal == signal.SIGTERM
        st3 = c.stop("keep/child", "ticker", grace_ms=200)
        assert st3.signal == signal.SIGKILL
        assert sorted(c.free("keep", recursive=True).freed) == ["keep", "keep/child"]
        assert not os.path.exists(st.cgroup_path)
        assert not pid_alive(sleeper.host_pid)
        assert len(c.list()) == 0
    finally:
        c.close()


def test_sigterm_keeps_workloads_running(daemon):
    c = Cells(daemon)
    try:
        c.run_cell("stay")
        ex = c.run("stay", "sleeper", ["sleep", "60"])
    finally:
        c.close()
    assert daemon.stop() == 0
    assert pid_alive(ex.host_pid)
    daemon.start()
    c = Cells(daemon)
    try:
        assert c.inspect("stay", "sleeper").state == pb.EXECUTABLE_STATE_RUNNING
        c.free("stay")
        assert not pid_alive(ex.host_pid)
    finally:
        c.close()


def test_executables_exiting_during_readoption_are_seen_to_exit(daemon):
    # Exits spread over the restart: one that lands between the init's
    # QUERY reply and auraed's bookkeeping used to be dropped, and its Wait
    # hung. The window is narrow: this checks the adoption path with exits
    # around it, it does not reliably hit the old race.
    c = Cells(daemon)
    n = 12
    try:
        c.run_cell("ex")
        for i in range(n):
            c.run("ex", f"e{i}", ["sleep", f"0.{i + 1:02d}"])
    finally:
        c.close()
    daemon.kill9()
    daemon.stop()
    daemon.start()
    c = Cells(daemon)
    try:
        for i in range(n):
            st = c.wait("ex", f"e{i}", timeout=10)
            assert st.state == pb.EXECUTABLE_STATE_EXITED and st.exit_code == 0
        c.free("ex")
    finally:
        c.close()


def test_a_crash_before_the_state_file_does_not_keep_the_name_taken(daemon):
    # auraed killed after the init started an executable but before it wrote
    # the executable's state file: on restart the stray leaf is killed, and
    # the init must forget the name too, or it stays "already exists".
    c = Cells(daemon)
    try:
        c.run_cell("crashy")
        ex = c.run("crashy", "job", ["sleep", "60"])
    finally:
        c.close()
    daemon.kill9()
    os.unlink(os.path.join(daemon.runtime_dir, "cells", "crashy", "_exe", "job.json"))
    daemon.stop()
    daemon.start()
    c = Cells(daemon)
    try:
        assert not pid_alive(ex.host_pid)
        assert [e.name for e in c.list()[0].executables] == []
        assert c.sh("crashy", "job", "echo again")[1] == "again\n"
        c.free("crashy")
    finally:
        c.close()


# --------------------------------------------------------------------- aer

def test_aer_cell_commands(daemon):
    r = daemon.aer("cell", "run", "cli")
    assert r.returncode == 0, r.stderr
    r = daemon.aer("exec", "cli", "--", "sh", "-c", "echo hi; echo oops >&2; exit 5")
    assert r.returncode == 5 and r.stdout == "hi\n" and "oops" in r.stderr
    r = daemon.aer("exec", "cli", "-n", "bg", "-d", "--", "sleep", "30")
    assert r.returncode == 0 and "cli/bg" in r.stdout
    r = daemon.aer("ls")
    assert "cli" in r.stdout and "bg" in r.stdout and "running" in r.stdout
    r = daemon.aer("-o", "json", "inspect", "cli", "bg")
    assert '"EXECUTABLE_STATE_RUNNING"' in r.stdout
    r = daemon.aer("stop", "--grace", "200", "cli", "bg")
    assert r.returncode == 0 and "signal:      15" in r.stdout
    r = daemon.aer("exec", "cli", "-i", "--", "cat", input="piped\n")
    assert r.stdout == "piped\n"
    r = daemon.aer("inspect", "cli")
    assert "security:    OCI capabilities without MKNOD, no_new_privs, seccomp, minimal /dev" \
        in r.stdout, r.stdout
    r = daemon.aer("cell", "run", "clipriv", "--privileged")
    assert r.returncode == 0, r.stderr
    assert "privileged" in daemon.aer("inspect", "clipriv").stdout
    r = daemon.aer("exec", "clipriv", "--", "grep", "CapEff", "/proc/self/status")
    assert int(r.stdout.split()[1], 16) & ~DEFAULT_CAPS, r.stdout
    assert daemon.aer("free", "clipriv").returncode == 0
    r = daemon.aer("cell", "run", "lim", "--memory-max", "64M")
    if "memory" not in open(os.path.join(cgroup2_mount(), "cgroup.controllers")).read():
        assert r.returncode == 1 + 9 and "FAILED_PRECONDITION" in r.stderr
    r = daemon.aer("exec", "nope", "--", "true")
    assert r.returncode == 1 + 5 and "NOT_FOUND" in r.stderr
    r = daemon.aer("free", "cli")
    assert r.returncode == 0 and "freed cli" in r.stdout


# ------------------------------------------------- hardening: /dev, seccomp

# The OCI default devices, /dev/pts with its ptmx, /dev/shm and the fd links.
CELL_DEV = {"null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm",
            "fd", "stdin", "stdout", "stderr"}

DEV_CHECKS = r"""
import os, stat, sys
with open("/dev/null", "w") as f: f.write("x")
assert len(open("/dev/urandom", "rb").read(16)) == 16
assert open("/dev/zero", "rb").read(4) == bytes(4)
m, s = os.openpty(); print("pty", os.ttyname(s))
open("/dev/shm/x", "w").write("shm"); os.unlink("/dev/shm/x")
try:
    os.mknod(sys.argv[1], stat.S_IFBLK | 0o600, os.makedev(int(sys.argv[2]), int(sys.argv[3])))
    print("mknod ok")
except OSError as e:
    print("mknod errno", e.errno)
"""


def host_disk():
    """A block device of the host with its node in /dev, disks before loops."""
    names = sorted(os.listdir("/sys/block"), key=lambda n: n.startswith(("loop", "ram", "zram")))
    with open("/proc/partitions") as f:
        names += [l.split()[3] for l in f.read().splitlines()[2:] if l.strip()]
    for n in names:
        p = "/dev/" + n
        if os.path.exists(p) and stat.S_ISBLK(os.stat(p).st_mode):
            return p
    return None


def test_a_default_cell_has_a_minimal_dev_and_no_mknod(cells, tmp_path):
    cells.run_cell("devs")
    st, out = cells.sh("devs", "ls", "ls -A /dev; ls -A /dev/pts")
    assert set(out.split()) == CELL_DEV | {"ptmx"}, out  # /dev/pts has only its ptmx
    st, out = cells.sh("devs", "mnt", "cat /proc/self/mountinfo")
    # the last mount on a path is the one seen there (the host's are covered)
    mounts = {pre.split()[4]: post.split()[0] for pre, post in
              (l.split(" - ", 1) for l in out.splitlines())}
    assert mounts["/dev"] == "tmpfs" and mounts["/dev/pts"] == "devpts", out
    assert mounts["/dev/shm"] == "tmpfs", out
    # the host's disk is not there to open...
    disk = host_disk()
    if disk is None:
        print("the host has no block device: not checking that a cell cannot open one")
    else:
        # (this host's own device cgroup may refuse even auraed: no open on
        # the host to compare with, the node must simply not be there)
        st, out = cells.sh("devs", "disk", "head -c 1 %s 2>&1; "
                           "ls %s /dev/kmsg /dev/mem 2>/dev/null; echo end" % (disk, disk))
        assert out == "head: cannot open '%s' for reading: No such file or directory\nend\n" \
            % disk, out
    # ... nor can one be made (no CAP_MKNOD), while the allowed devices work
    rdev = os.stat(disk).st_rdev if disk else os.makedev(8, 0)
    st, out = cells.sh("devs", "use", "%s -c '%s' /tmp/blk %d %d" % (
        PY, DEV_CHECKS, os.major(rdev), os.minor(rdev)))
    assert st.exit_code == 0, cells.output("devs", "use", pb.LOG_STREAM_STDERR)
    assert out == "pty /dev/pts/0\nmknod errno 1\n", out
    # a nested cell builds its /dev from its parent's, which has no disks
    cells.run_cell("devs/kid")
    st, out = cells.sh("devs/kid", "ls", "ls -A /dev; %s -c '%s' /tmp/blk2 8 0" % (
        PY, DEV_CHECKS))
    assert st.exit_code == 0, cells.output("devs/kid", "ls", pb.LOG_STREAM_STDERR)
    assert set(out.split("pty ")[0].split()) == CELL_DEV, out
    assert out.endswith("pty /dev/pts/0\nmknod errno 1\n"), out
    # the host's /dev is untouched
    assert os.path.exists("/dev/kmsg") and (disk is None or os.path.exists(disk))


def test_a_privileged_cell_keeps_the_hosts_dev(cells):
    cells.run_cell("devpriv", isolation=pb.CellIsolation(privileged=True))
    st, out = cells.sh("devpriv", "ls", "ls -A /dev")
    seen = set(out.split())
    assert "kmsg" in seen and seen > CELL_DEV, out
    disk = host_disk()
    if disk:
        assert os.path.basename(disk) in seen


SYSCALLS = r"""
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
def call(nr, *args):
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    return "ok" if r >= 0 else os.strerror(ctypes.get_errno())
# x86_64 system call numbers
print("keyctl", call(250, 0, -3, 0))        # KEYCTL_GET_KEYRING_ID, session keyring
print("add_key", call(248, 0, 0, 0, 0, 0))
print("bpf", call(321, 0, 0, 0))
print("userfaultfd", call(323, 1))          # UFFD_USER_MODE_ONLY
print("personality", call(135, 0x0040000))  # ADDR_NO_RANDOMIZE
print("persona_query", call(135, 0xffffffff))
print("persona_linux", call(135, 0))
print("clone3", call(435, 0, 0))
print("unshare_user", call(272, 0x10000000))
"""


def syscall_results(out):
    return dict(l.split(" ", 1) for l in out.splitlines())


def test_a_default_cell_has_a_seccomp_filter(cells):
    cells.run_cell("sc")
    st, out = cells.sh("sc", "status", "grep -E '^Seccomp' /proc/self/status; "
                       "unshare -U true 2>&1; echo rc=$?")
    assert "Seccomp:\t2\n" in out, out
    assert "Operation not permitted" in out and "rc=1" in out, out
    st, out = cells.sh("sc", "calls", "%s -c '%s'" % (PY, SYSCALLS))
    assert st.exit_code == 0, cells.output("sc", "calls", pb.LOG_STREAM_STDERR)
    r = syscall_results(out)
    for name in ("keyctl", "add_key", "bpf", "userfaultfd", "personality", "unshare_user"):
        assert r[name] == "Operation not permitted", (name, out)
    assert r["clone3"] == "Function not implemented", out
    assert r["persona_query"] == "ok" and r["persona_linux"] == "ok", out
    # ordinary workloads: threads (clone3 falls back to clone), fork and exec,
    # TCP on localhost
    port = free_port()
    script = ("import socket, threading, subprocess\n"
              "s = socket.socket(); s.bind(('127.0.0.1', %d)); s.listen(1)\n"
              "def serve():\n"
              "    c, _ = s.accept(); c.sendall(c.recv(10).upper()); c.close()\n"
              "t = threading.Thread(target=serve); t.start()\n"
              "c = socket.create_connection(('127.0.0.1', %d)); c.sendall(b'ping')\n"
              "print(c.recv(10).decode()); t.join()\n"
              "print(subprocess.run(['sh', '-c', 'echo forked'], capture_output=True)"
              ".stdout.decode().strip())\n" % (port, port))
    st, out = cells.sh("sc", "work", "%s -c \"%s\"" % (PY, script))
    assert st.exit_code == 0 and out == "PING\nforked\n", (
        out, cells.output("sc", "work", pb.LOG_STREAM_STDERR))
    # a nested cell's executables get it too
    cells.run_cell("sc/kid")
    st, out = cells.sh("sc/kid", "status", "grep -E '^Seccomp:' /proc/self/status; "
                       "unshare -U true 2>/dev/null; echo rc=$?")
    assert out == "Seccomp:\t2\nrc=1\n", out


IO_URING = r"""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)  # struct io_uring_params, zeroed
def call(nr, *args):
    r = libc.syscall(ctypes.c_long(nr), *args)
    return ctypes.get_errno() if r < 0 else 0
# x86_64: io_uring_setup(8, params), io_uring_enter(-1, ...), io_uring_register(-1, ...)
print("setup", call(425, ctypes.c_long(8), params))
print("enter", call(426, ctypes.c_long(-1), *[ctypes.c_long(0)] * 5))
print("register", call(427, ctypes.c_long(-1), *[ctypes.c_long(0)] * 3))
"""


def test_a_default_seccomp_filter_denies_io_uring(cells):
    """io_uring has a long record of kernel exploits; Docker's default
    profile has denied it since 2023. A privileged cell has no filter."""
    with open("/proc/sys/kernel/io_uring_disabled") as f:
        disabled = int(f.read())
    cells.run_cell("uring")
    st, out = cells.sh("uring", "calls", "%s -c '%s'" % (PY, IO_URING))
    assert st.exit_code == 0, cells.output("uring", "calls", pb.LOG_STREAM_STDERR)
    assert syscall_results(out) == {"setup": "1", "enter": "1", "register": "1"}, out
    cells.run_cell("uringpriv", isolation=pb.CellIsolation(privileged=True))
    st, out = cells.sh("uringpriv", "calls", "grep -E '^Seccomp:' /proc/self/status; "
                       "%s -c '%s'" % (PY, IO_URING))
    assert st.exit_code == 0, cells.output("uringpriv", "calls", pb.LOG_STREAM_STDERR)
    assert out.startswith("Seccomp:\t0\n"), out
    r = syscall_results(out.split("\n", 1)[1])
    assert r["enter"] != "1" and r["register"] != "1", out  # EBADF, EINVAL: fd -1
    if disabled == 2:
        # io_uring_setup is EPERM from the kernel for everyone; no filter
        # (Seccomp: 0 above) means it is not from seccomp.
        print("kernel.io_uring_disabled=2: io_uring_setup is EPERM from the kernel, "
              "only the absence of a seccomp filter is checked")
    else:
        assert r["setup"] != "1", out


def test_a_privileged_cell_has_no_seccomp_filter(cells):
    cells.run_cell("scpriv", isolation=pb.CellIsolation(privileged=True))
    st, out = cells.sh("scpriv", "status", "grep -E '^Seccomp:' /proc/self/status; "
                       "unshare -U true; echo rc=$?")
    assert out == "Seccomp:\t0\nrc=0\n", out
    st, out = cells.sh("scpriv", "calls", "%s -c '%s'" % (PY, SYSCALLS))
    r = syscall_results(out)
    assert r["clone3"] != "Function not implemented" and r["personality"] == "ok", out


def test_stop_grace_ends_when_the_caller_goes_or_auraed_stops(daemon):
    """A long grace period holds nothing hostage: a caller that gives up ends
    it, and SIGTERM to auraed ends a pending Stop so auraed exits at once."""
    c = Cells(daemon)
    c.run_cell("graceful")
    c.run("graceful", "stubborn", ["/bin/sh", "-c", "trap '' TERM; echo ready; "
                                   "while true; do sleep 0.05; done"])
    while "ready" not in c.output("graceful", "stubborn"):
        time.sleep(0.02)
    req = pb.StopRequest(ref=c.ref("graceful", "stubborn"), grace_period_ms=600000)
    with pytest.raises(grpc.RpcError) as e:
        runtime_call(c.ch, "Stop", req, pb.WorkloadStatus, timeout=1.5)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The cancelled Stop killed nothing: SIGTERM is ignored, so it runs on.
    time.sleep(0.3)
    assert c.inspect("graceful", "stubborn").state == pb.EXECUTABLE_STATE_RUNNING
    pending = c.ch.unary_unary("/aurae.runtime.v0.Runtime/Stop",
                               request_serializer=pb.StopRequest.SerializeToString,
                               response_deserializer=pb.WorkloadStatus.FromString).future(
        req, timeout=120)
    time.sleep(0.5)
    t0 = time.time()
    assert daemon.stop(signal.SIGTERM) == 0
    assert time.time() - t0 < 10
    with pytest.raises(grpc.RpcError):
        pending.result()
    c.close()
    # Workloads outlive auraed; the next one re-adopts and can stop them.
    daemon.start()
    c = Cells(daemon)
    st = c.stop("graceful", "stubborn", grace_ms=200)
    assert st.state == pb.EXECUTABLE_STATE_KILLED and st.signal == signal.SIGKILL
    c.free("graceful")
    c.close()


def test_a_default_cell_cannot_write_the_hosts_filesystem(cells):
    """A cell's root is the host's: by default it is read-only in the cell
    (no rewriting /etc or auraed's own binary), with scratch space in /tmp,
    /var/tmp and /dev/shm; a privileged cell can write."""
    target = "/root/aurae-ro-test-%d" % os.getpid()
    os.makedirs(target, exist_ok=True)
    try:
        cells.run_cell("ro")
        st, out = cells.sh("ro", "writes", (
            "for p in %s/x /etc/aurae-ro-test /usr/aurae-ro-test; do "
            "  if touch $p 2>/dev/null; then echo WROTE $p; else echo refused $p; fi; done; "
            "for p in /tmp /var/tmp /dev/shm; do touch $p/ok-$$ && rm $p/ok-$$ && echo ok $p; done; "
            "echo 100 > /proc/self/oom_score_adj && echo ok proc") % target)
        assert "WROTE" not in out, out
        assert out.count("refused") == 3, out
        for p in ("/tmp", "/var/tmp", "/dev/shm", "proc"):
            assert "ok %s" % p in out, out
        assert not os.path.exists(os.path.join(target, "x"))
        cells.run_cell("rw", isolation=pb.CellIsolation(privileged=True))
        st, out = cells.sh("rw", "writes", "touch %s/x && echo WROTE" % target)
        assert "WROTE" in out and os.path.exists(os.path.join(target, "x"))
    finally:
        subprocess.run(["rm", "-rf", target])
