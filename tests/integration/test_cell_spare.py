"""Issue 3: the zygote's spare cell init (src/lib/cell/zygote.c). A RunCell
with the default isolation takes an init prepared ahead of time in
ROOT/_spare; any other cell, or a daemon with "cell_spare_init": false,
clones its init on request. Either way a cell must look the same from
inside and from the host, and the spare must never outlive its daemon."""
import contextlib
import os
import signal
import subprocess
import threading
import time

from conftest import runtime_pb2 as pb
from test_cells import Cells, pid_alive


def cgroup_root(cells):
    """MOUNT/ROOT of the daemon, from a throwaway top-level cell."""
    st = cells.run_cell("rootprobe")
    cells.free("rootprobe")
    return os.path.dirname(st.cgroup_path)


def spare_pids(root):
    try:
        with open(os.path.join(root, "_spare", "cgroup.procs")) as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def wait_spare_ready(root, not_pid=None, timeout=15):
    """The spare's pid once it has finished preparing: its epoll fd is the
    last thing it makes before it tells the zygote it is ready."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        pids = [p for p in spare_pids(root) if p != not_pid]
        if len(pids) == 1:
            try:
                fds = os.listdir("/proc/%d/fd" % pids[0])
                links = [os.readlink("/proc/%d/fd/%s" % (pids[0], fd)) for fd in fds]
            except (FileNotFoundError, ProcessLookupError):
                links = []
            if "anon_inode:[eventpoll]" in links:
                time.sleep(0.2)  # its "ready" reaches the zygote
                return pids[0]
        time.sleep(0.02)
    raise AssertionError("no ready spare init in %s/_spare: %s" % (root, spare_pids(root)))


@contextlib.contextmanager
def cells_with_spare(daemon):
    """A client, the daemon's cgroup root and its ready spare's pid."""
    c = Cells(daemon)
    try:
        root = cgroup_root(c)
        yield c, root, wait_spare_ready(root)
    finally:
        c.close()


def zygote_pid(daemon):
    return int(subprocess.run(["pgrep", "-P", str(daemon.proc.pid), "-x", "aurae-zygote"],
                              capture_output=True, text=True, check=True).stdout.split()[0])


def wait_gone(pid, timeout=5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not os.path.exists("/proc/%d" % pid):
            return True
        time.sleep(0.02)
    return False


def v2_cgroup(pid):
    with open("/proc/%d/cgroup" % pid) as f:
        for line in f:
            if line.startswith("0::"):
                return line[3:].strip()
    return None


# Everything a default cell promises, seen from inside: pid 1 is the init,
# the host's processes are invisible, hostname and cgroup namespace are the
# cell's, the root is read-only, /dev is minimal, lo is up, the executable
# has the default capabilities with no_new_privs and a seccomp filter.
INSIDE = ("cat /proc/1/comm; hostname; ls /proc | grep -c '^[0-9]'; "
          "tail -1 /proc/self/cgroup; "
          "touch /etc/aurae-spare-test 2>/dev/null && echo rw || echo ro; "
          "ls /dev | tr '\\n' ' '; echo; "
          "grep -c ' lo$' /proc/net/if_inet6; "
          "grep -E '^(CapBnd|NoNewPrivs|Seccomp):' /proc/self/status | tr -s '\\t ' ' '; "
          "for ns in pid net mnt ipc uts cgroup; do readlink /proc/self/ns/$ns; done; "
          "cut -d' ' -f41 /proc/self/stat /proc/1/stat")


def check_default_cell(c, cell):
    st, out = c.sh(cell, "look", INSIDE)
    assert st.exit_code == 0, out
    lines = out.splitlines()
    assert lines[0] == "aurae-cell-init"
    assert lines[1] == cell.split("/")[-1]
    assert int(lines[2]) <= 5, out
    assert lines[3] == "0::/_exe.look"
    assert lines[4] == "ro"
    dev = set(lines[5].split())
    assert {"null", "zero", "urandom", "pts", "shm"} <= dev and "sda" not in dev, lines[5]
    assert lines[6] == "1", "lo is not up (::1 missing)"
    status = dict(line.split(": ", 1) for line in lines[7:10])
    assert int(status["CapBnd"], 16) == 0x00000000a00425fb
    assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2"
    for ns, inside in zip(["pid", "net", "mnt", "ipc", "uts", "cgroup"], lines[10:16]):
        assert inside != os.readlink("/proc/self/ns/" + ns), ns
    # The init and the workload run at the normal scheduling policy.
    assert lines[16:18] == ["0", "0"], lines[16:18]
    # ps names the init by its cell, not as the zygote it was cloned from.
    with open("/proc/%d/cmdline" % c.inspect(cell).init_host_pid, "rb") as f:
        cmdline = f.read().replace(b"\0", b" ").decode()
    assert "--zygote" not in cmdline and cell in cmdline, cmdline
    c.free(cell, "look")


def test_a_default_cell_takes_the_ready_spare(daemon):
    with cells_with_spare(daemon) as (c, root, spare):
        assert v2_cgroup(spare).endswith("/_spare")
        st = c.run_cell("sp")
        assert st.init_host_pid == spare
        assert "cell sp: init pid %d from the spare" % spare in daemon.logs()
        # It moved into the cell's _init leaf.
        assert v2_cgroup(spare).endswith("/sp/_init"), v2_cgroup(spare)
        assert os.path.exists("/proc/%d" % spare) and pid_alive(spare)
        check_default_cell(c, "sp")
        # Its executables run in the cell's own cgroup.
        ex = c.run("sp", "sleeper", ["sleep", "30"])
        assert v2_cgroup(ex.host_pid).endswith("/sp/_exe.sleeper")
        # The zygote made the next one.
        nxt = wait_spare_ready(root, not_pid=spare)
        assert nxt != spare and spare_pids(root) == [nxt]
        # Free kills it and it is reaped (by the zygote: it is its child).
        c.free("sp")
        assert wait_gone(spare), "the used spare was not reaped"
        assert not pid_alive(ex.host_pid)
        assert not os.path.exists(st.cgroup_path)
        # A nested cell is cloned by its parent's init; the spare stays.
        c.run_cell("outer")
        outer = wait_spare_ready(root)
        c.run_cell("outer/inner")
        assert spare_pids(root) == [outer]
        check_default_cell(c, "outer/inner")
        c.free("outer", recursive=True)


def test_cells_that_do_not_fit_the_spare_clone_their_init(daemon):
    with cells_with_spare(daemon) as (c, root, spare):
        for name, iso in [("shares", pb.CellIsolation(share_ipc=True)),
                          ("priv", pb.CellIsolation(privileged=True))]:
            st = c.run_cell(name, isolation=iso)
            assert st.init_host_pid != spare
            assert "cell %s: init pid %d cloned by the zygote" % (name, st.init_host_pid) \
                in daemon.logs()
        assert spare_pids(root) == [spare]
        st, out = c.sh("shares", "ipc", "readlink /proc/self/ns/ipc")
        assert out.strip() == os.readlink("/proc/self/ns/ipc")
        st, out = c.sh("priv", "caps", "grep CapBnd /proc/self/status")
        assert int(out.split()[1], 16) != 0x00000000a00425fb, out
        c.free("shares")
        c.free("priv")


def test_without_a_spare_default_cells_are_the_same(daemon_factory):
    d = daemon_factory(extra_config={"cell_spare_init": False}).start()
    c = Cells(d)
    try:
        root = cgroup_root(c)
        assert not os.path.exists(os.path.join(root, "_spare"))
        st = c.run_cell("nospare")
        assert "cell nospare: init pid %d cloned by the zygote" % st.init_host_pid in d.logs()
        check_default_cell(c, "nospare")
        c.free("nospare")
        assert not os.path.exists(st.cgroup_path)
    finally:
        c.close()


def test_a_spare_killed_from_outside_is_replaced(daemon):
    with cells_with_spare(daemon) as (c, root, spare):
        os.kill(spare, signal.SIGKILL)
        # Whichever way its init is made now, the cell works.
        st = c.run_cell("after")
        assert st.init_host_pid != spare
        check_default_cell(c, "after")
        assert wait_gone(spare), "the killed spare was not reaped"
        nxt = wait_spare_ready(root, not_pid=spare)
        st = c.run_cell("again")
        assert st.init_host_pid == nxt
        c.free("after")
        c.free("again")


def test_a_spare_that_dies_as_it_is_handed_a_cell_is_replaced_by_a_clone(daemon):
    with cells_with_spare(daemon) as (c, root, spare):
        # Stopped, it cannot answer the cell it is handed; killed then, it
        # dies without a word, exactly as if killed during the hand-off.
        os.kill(spare, signal.SIGSTOP)
        result = {}
        t = threading.Thread(target=lambda: result.update(st=c.run_cell("handoff")))
        t.start()
        deadline = time.time() + 10
        while "cell handoff: init pid %d from the spare" % spare not in daemon.logs():
            assert time.time() < deadline, daemon.logs()[-2000:]
            time.sleep(0.01)
        os.kill(spare, signal.SIGKILL)
        t.join(15)
        assert result["st"].init_host_pid not in (0, spare)
        assert "cell handoff: the spare init died before it was ready; cloning one" \
            in daemon.logs()
        check_default_cell(c, "handoff")
        c.free("handoff")
        assert wait_gone(spare)


def test_the_spare_never_outlives_its_daemon(daemon):
    c = Cells(daemon)
    try:
        root = cgroup_root(c)
        first = wait_spare_ready(root)
        assert c.run_cell("stays").init_host_pid == first
        used = wait_spare_ready(root, not_pid=first)
        assert c.run_cell("stays2").init_host_pid == used
        unused = wait_spare_ready(root, not_pid=used)
    finally:
        c.close()
    # SIGTERM: the unused spare and its cgroup go; the cells' inits stay.
    assert daemon.stop() == 0
    assert wait_gone(unused)
    assert not os.path.exists(os.path.join(root, "_spare"))
    assert pid_alive(first) and pid_alive(used)
    daemon.start()
    c = Cells(daemon)
    try:
        assert {x.name for x in c.list()} == {"stays", "stays2"}
        fresh = wait_spare_ready(root)
    finally:
        c.close()
    # kill -9: the zygote sees EOF and takes the spare with it.
    daemon.kill9()
    assert wait_gone(fresh), "the spare outlived a killed auraed"
    assert spare_pids(root) == []
    daemon.stop()
    daemon.start()
    c = Cells(daemon)
    try:
        again = wait_spare_ready(root)
        assert again != fresh
        # The cell whose init was a spare is re-adopted and freed like any.
        assert c.inspect("stays2").init_host_pid == used
        c.free("stays")
        c.free("stays2")
        assert wait_gone(used) or not pid_alive(used)
    finally:
        c.close()


def test_a_spare_follows_the_hosts_mounts(daemon_factory, tmp_path):
    """A spare's mount namespace is a copy taken when it was made: a change
    of the host's mounts replaces it, so the next cell sees the mount and
    an unmounted file system is not held by an idle spare. auraed runs in a
    mount namespace of its own here, which stands in for the host's."""
    d = daemon_factory()
    d.args = ["unshare", "--mount", "--propagation", "private", "--"] + d.args
    d.start()
    # Under /usr, which a default cell's private root binds from the host.
    target = "/usr/local/share/aurae-late-%s" % os.path.basename(tmp_path)
    os.mkdir(target)
    c = Cells(d)
    try:
        root = cgroup_root(c)
        before = wait_spare_ready(root)
        nsenter = ["nsenter", "-t", str(d.proc.pid), "-m"]
        subprocess.run(nsenter + ["mount", "-t", "tmpfs", "aurae-late-mount", target],
                       check=True)
        after = wait_spare_ready(root, not_pid=before)
        assert wait_gone(before)
        assert "aurae-late-mount" in open("/proc/%d/mountinfo" % after).read()
        st = c.run_cell("late")
        assert st.init_host_pid == after
        _, out = c.sh("late", "look", "grep -c aurae-late-mount /proc/self/mountinfo")
        assert int(out) >= 1
        holding = wait_spare_ready(root, not_pid=after)
        subprocess.run(nsenter + ["umount", target], check=True)
        fresh = wait_spare_ready(root, not_pid=holding)
        assert wait_gone(holding)
        assert "aurae-late-mount" not in open("/proc/%d/mountinfo" % fresh).read()
        c.free("late")
    finally:
        c.close()
        os.rmdir(target)


def test_the_zygote_is_started_again_when_it_dies(daemon):
    with cells_with_spare(daemon) as (c, root, spare):
        os.kill(zygote_pid(daemon), signal.SIGKILL)
        assert wait_gone(spare), "the unused spare outlived its zygote"
        # Cells still start (an exec'ed init) while there is no zygote ...
        c.run_cell("nozygote")
        check_default_cell(c, "nozygote")
        # ... and a second later the zygote is back, with a spare.
        time.sleep(1.1)
        c.run_cell("again")
        back = wait_spare_ready(root)
        assert c.run_cell("spare-again").init_host_pid == back
        for name in ("nozygote", "again", "spare-again"):
            c.free(name)


def socket_flags(pid):
    """O_NONBLOCK of each socket the process holds, sorted."""
    flags = []
    for fd in os.listdir("/proc/%d/fd" % pid):
        if not os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:"):
            continue
        with open("/proc/%d/fdinfo/%s" % (pid, fd)) as f:
            bits = int(f.read().split("flags:")[1].split()[0], 8)
        flags.append(bool(bits & os.O_NONBLOCK))
    return sorted(flags)


def test_spare_and_cloned_inits_hold_the_same_sockets(daemon):
    """The control connection of a spare-made init comes with its cell;
    it must block like an accepted one, or a full socket drops exit
    events."""
    c = Cells(daemon)
    try:
        root = cgroup_root(c)
        spare = wait_spare_ready(root)
        assert c.run_cell("from-spare").init_host_pid == spare
        # At once: the next spare is made only after a Free or 20 ms.
        cloned = c.run_cell("cloned").init_host_pid
        assert "cell cloned: init pid %d cloned by the zygote" % cloned in daemon.logs()
        # init.sock (non-blocking, like every listener) and auraed's
        # connection (blocking).
        assert socket_flags(spare) == socket_flags(cloned) == [False, True]
        c.free("from-spare")
        c.free("cloned")
    finally:
        c.close()


def test_a_killed_zygote_leaves_no_spare_cgroup_at_shutdown(daemon):
    c = Cells(daemon)
    try:
        root = cgroup_root(c)
        spare = wait_spare_ready(root)
    finally:
        c.close()
    os.kill(zygote_pid(daemon), signal.SIGKILL)
    assert wait_gone(spare)
    assert daemon.stop() == 0
    assert not os.path.exists(os.path.join(root, "_spare"))
    assert not os.path.exists(root)


def test_a_restart_right_after_runcell_keeps_a_spare_made_cell(daemon):
    """auraed binds a cell's init.sock before it hands the cell to the
    spare, so a restart right after RunCell's answer finds the init
    listening: kill -9 at once, and the cell is still there."""
    c = Cells(daemon)
    try:
        root = cgroup_root(c)
        spare = wait_spare_ready(root)
        assert c.run_cell("quick").init_host_pid == spare
        daemon.kill9()
    finally:
        c.close()
    daemon.stop()
    daemon.start()
    c = Cells(daemon)
    try:
        assert [x.name for x in c.list()] == ["quick"]
        assert c.sh("quick", "hi", "echo hi")[1] == "hi\n"
        c.free("quick")
        assert wait_gone(spare) or not pid_alive(spare)
    finally:
        c.close()
