"""User namespaces, the private root and bind mounts of cells (docs/cells.md),
through what the kernel shows inside and on the host."""
import os
import stat
import tempfile

import grpc
import pytest

from conftest import runtime_pb2 as pb
from test_cells import Cells, expect_error, cells  # noqa: F401 (fixture)

POOL_START = 1879048192
IDS = 65536


def uid_map(cells, cell, name="map"):
    st, out = cells.sh(cell, name, "cat /proc/self/uid_map /proc/self/gid_map")
    assert st.exit_code == 0, out
    lines = [l.split() for l in out.splitlines()]
    assert len(lines) == 2, out
    return [tuple(int(x) for x in l) for l in lines]


def test_each_top_level_cell_has_its_own_range_and_nested_cells_share_it(cells):
    a = cells.run_cell("ua")
    b = cells.run_cell("ub")
    ma, mb = uid_map(cells, "ua"), uid_map(cells, "ub")
    for m, st in ((ma, a), (mb, b)):
        inside, base, count = m[0]
        assert (inside, count) == (0, IDS) and m[1] == m[0]
        assert base >= POOL_START and (base - POOL_START) % IDS == 0
        assert st.host_id_base == base
    assert ma[0][1] != mb[0][1]
    # The init itself runs as the range's root on the host.
    with open("/proc/%d/status" % a.init_host_pid) as f:
        uids = [l for l in f if l.startswith("Uid:")][0].split()[1:]
    assert set(int(u) for u in uids) == {ma[0][1]}
    kid = cells.run_cell("ua/kid")
    assert kid.host_id_base == a.host_id_base
    assert uid_map(cells, "ua/kid") == ma
    # The host sees a file made as root in the cell as the range's root.
    st, out = cells.sh("ua", "touch", "touch /tmp/mine; sleep 30 & echo $!")
    ex = cells.run("ua", "hold", ["/bin/sleep", "30"])
    path = "/proc/%d/root/tmp/mine" % ex.host_pid
    assert os.stat(path).st_uid == a.host_id_base
    assert not os.path.exists("/tmp/mine")


def test_credentials_are_ids_inside_the_range(cells):
    cells.run_cell("cr")
    st, out = cells.sh("cr", "ok", "id -u; id -g", credentials=pb.Credentials(uid=1000, gid=1000))
    assert out.split() == ["1000", "1000"]
    for creds, field in ((pb.Credentials(uid=70000, gid=0), "credentials.uid"),
                         (pb.Credentials(uid=0, gid=65536), "credentials.gid"),
                         (pb.Credentials(uid=0, gid=0, supplementary_gids=[5, 99999]),
                          "credentials.supplementary_gids[1]")):
        msg = expect_error(grpc.StatusCode.INVALID_ARGUMENT, cells.run, "cr", "bad", ["/bin/true"],
                           credentials=creds)
        assert field in msg and "outside the cell's ids" in msg, msg
    assert [e.name for e in cells.inspect("cr").executables] == ["ok"]


def test_privileged_and_share_user_cells_keep_the_hosts_ids(cells):
    for name, iso in (("hp", pb.CellIsolation(privileged=True)),
                      ("hs", pb.CellIsolation(share_user=True))):
        st = cells.run_cell(name, isolation=iso)
        assert st.host_id_base == 0
        assert uid_map(cells, name) == [(0, 0, 4294967295)] * 2
    assert cells.inspect("hs").isolation.share_user
    # A nested cell shares its parent's ids, host ids included.
    kid = cells.run_cell("hp/kid")
    assert kid.host_id_base == 0
    # A privileged child of a default cell is refused, not quietly capped.
    cells.run_cell("dflt")
    msg = expect_error(grpc.StatusCode.FAILED_PRECONDITION, cells.run_cell, "dflt/priv",
                       isolation=pb.CellIsolation(privileged=True))
    assert "privileged" in msg
    assert "dflt/priv" not in [c.name for c in cells.list()]


def test_the_pool_runs_out_clearly_and_ranges_come_back(daemon_factory):
    d = daemon_factory(extra_config={"cell_id_pool": {"start": POOL_START, "cells": 2}}).start()
    c = Cells(d)
    try:
        got = [c.run_cell("p%d" % i).host_id_base for i in range(2)]
        assert len(set(got)) == 2
        msg = expect_error(grpc.StatusCode.RESOURCE_EXHAUSTED, c.run_cell, "p2")
        assert "cell_id_pool" in msg
        assert "p2" not in [x.name for x in c.list()]
        c.free("p0")
        assert c.run_cell("p2").host_id_base == got[0]
    finally:
        for x in c.list():
            if "/" not in x.name:
                c.free(x.name, recursive=True)
        c.close()


def test_ranges_survive_a_restart(daemon):
    c = Cells(daemon)
    try:
        a = c.run_cell("keep").host_id_base
        daemon.kill9()
        daemon.start()
        c.close()
        c = Cells(daemon)
        assert c.inspect("keep").host_id_base == a
        b = c.run_cell("fresh").host_id_base
        assert b != a
        assert uid_map(c, "keep")[0][1] == a
    finally:
        for x in c.list():
            c.free(x.name, recursive=True)
        c.close()


def test_scratch_space_is_capped(daemon_factory):
    d = daemon_factory(extra_config={"cell_scratch_mb": 8, "cell_scratch_inodes": 500}).start()
    c = Cells(d)
    try:
        c.run_cell("cap")
        st, out = c.sh("cap", "fill", "dd if=/dev/zero of=/tmp/big bs=1M count=20 2>&1; "
                       "echo size=$(stat -c %s /tmp/big); "
                       "i=0; while [ $i -lt 1000 ] && touch /var/tmp/f$i 2>/dev/null; do "
                       "i=$((i+1)); done; echo files=$i; "
                       "grep -E ' /(tmp|var/tmp|run|dev/shm) ' /proc/self/mounts")
        assert "No space left on device" in out, out
        assert int(out.split("size=")[1].split()[0]) <= 8 << 20, out
        files = int(out.split("files=")[1].split()[0])
        assert 400 < files < 500, out
        for mnt in ("/tmp", "/var/tmp", "/run", "/dev/shm"):
            line = [l for l in out.splitlines() if (" %s " % mnt) in l]
            assert line and "size=8192k" in line[0] and "nr_inodes=500" in line[0], (mnt, out)
    finally:
        c.free("cap")
        c.close()


def test_bind_mounts(cells, tmp_path):
    src = tmp_path / "data"
    src.mkdir()
    (src / "hello").write_text("hi\n")
    os.chmod(tmp_path, 0o755)
    os.chmod(src, 0o777)
    f = tmp_path / "one.txt"
    f.write_text("file\n")
    os.chmod(f, 0o644)
    cells.run_cell("bm", mounts=[pb.Mount(source=str(src), target="/srv/data"),
                                 pb.Mount(source=str(f), target="/opt/one.txt", read_only=True),
                                 pb.Mount(source=str(src), target="/data/ro", read_only=True)])
    st, out = cells.sh("bm", "look", "cat /srv/data/hello /opt/one.txt; "
                       "echo new > /srv/data/from-cell && echo rw-ok; "
                       "echo x > /data/ro/nope 2>/dev/null || echo ro-refused; "
                       "grep -E ' /(srv/data|opt/one.txt|data/ro) ' /proc/self/mounts")
    assert st.exit_code == 0, out
    assert out.startswith("hi\nfile\nrw-ok\nro-refused\n"), out
    opts = {l.split()[1]: l.split()[3].split(",") for l in out.splitlines()[4:]}
    for target, ro in (("/srv/data", False), ("/opt/one.txt", True), ("/data/ro", True)):
        assert "nosuid" in opts[target] and "nodev" in opts[target], opts
        assert ("ro" in opts[target]) == ro, opts
    # Written by the cell's root: owned on the host by the range's root.
    made = src / "from-cell"
    assert made.read_text() == "new\n"
    assert os.stat(made).st_uid == cells.inspect("bm").host_id_base
    status = cells.inspect("bm")
    assert [(m.source, m.target, m.read_only) for m in status.mounts] == [
        (str(src), "/srv/data", False), (str(f), "/opt/one.txt", True),
        (str(src), "/data/ro", True)]


def test_bad_bind_mounts_are_refused_and_leave_nothing(cells, tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    cases = [
        (pb.Mount(source=str(link), target="/x"), grpc.StatusCode.INVALID_ARGUMENT, "symlinks"),
        (pb.Mount(source=str(real) + "/../real", target="/x"),
         grpc.StatusCode.INVALID_ARGUMENT, "mounts[0].source"),
        (pb.Mount(source="relative", target="/x"), grpc.StatusCode.INVALID_ARGUMENT,
         "mounts[0].source"),
        (pb.Mount(source=str(real), target="/proc/x"), grpc.StatusCode.INVALID_ARGUMENT,
         "under /proc"),
        (pb.Mount(source=str(real), target="/"), grpc.StatusCode.INVALID_ARGUMENT,
         "mounts[0].target"),
        (pb.Mount(source=str(real), target="/a/../b"), grpc.StatusCode.INVALID_ARGUMENT,
         "mounts[0].target"),
        (pb.Mount(source=cells.d.runtime_dir, target="/x"), grpc.StatusCode.PERMISSION_DENIED,
         "auraed's own files"),
        # auraed's files below the source, and the same files spelled otherwise
        (pb.Mount(source=cells.d.workdir, target="/x"), grpc.StatusCode.PERMISSION_DENIED,
         "auraed's own files"),
        (pb.Mount(source=cells.d.runtime_dir.replace("/run", "//run"), target="/x"),
         grpc.StatusCode.INVALID_ARGUMENT, "mounts[0].source"),
        (pb.Mount(source="/", target="/x"), grpc.StatusCode.INVALID_ARGUMENT, "other than /"),
        (pb.Mount(source=str(real), target="//dev/shm"), grpc.StatusCode.INVALID_ARGUMENT,
         "mounts[0].target"),
        (pb.Mount(source=str(real), target="/x/"), grpc.StatusCode.INVALID_ARGUMENT,
         "mounts[0].target"),
        (pb.Mount(source=str(tmp_path / "missing"), target="/x"), grpc.StatusCode.NOT_FOUND,
         "mounts[0].source"),
        # under a read-only bind, a missing target cannot be made
        (pb.Mount(source=str(real), target="/usr/aurae-nope"),
         grpc.StatusCode.FAILED_PRECONDITION, "usr/aurae-nope"),
    ]
    for m, code, words in cases:
        msg = expect_error(code, cells.run_cell, "badm", mounts=[m])
        assert words in msg, (m, msg)
        assert "badm" not in [c.name for c in cells.list()]
    msg = expect_error(grpc.StatusCode.INVALID_ARGUMENT, cells.run_cell, "badm",
                       mounts=[pb.Mount(source=str(real), target="/x")] * 2)
    assert "given twice" in msg
    # A read-only identity may not bind host paths.
    viewer = Cells(cells.d, user="viewer")
    try:
        expect_error(grpc.StatusCode.PERMISSION_DENIED, viewer.run_cell, "badm",
                     mounts=[pb.Mount(source=str(real), target="/x")])
    finally:
        viewer.close()
    assert os.listdir(real) == []


def test_aer_binds_host_paths_and_shares_the_user_namespace(daemon, tmp_path):
    src = tmp_path / "share"
    src.mkdir()
    (src / "f").write_text("from the host\n")
    os.chmod(tmp_path, 0o755)
    r = daemon.aer("cell", "run", "am", "--mount", "%s:/srv/share:ro" % src)
    assert r.returncode == 0, r.stderr
    r = daemon.aer("exec", "am", "--", "/bin/sh", "-c",
                   "cat /srv/share/f; touch /srv/share/x 2>/dev/null || echo ro")
    assert r.returncode == 0 and r.stdout == "from the host\nro\n", (r.stdout, r.stderr)
    r = daemon.aer("cell", "run", "au", "--share", "user")
    assert r.returncode == 0, r.stderr
    r = daemon.aer("exec", "au", "--", "/bin/cat", "/proc/self/uid_map")
    assert r.stdout.split() == ["0", "0", "4294967295"], r.stdout
    r = daemon.aer("cell", "run", "bad", "--mount", "nocolon")
    assert r.returncode == 1 and "SRC:DST" in r.stderr
    for name in ("am", "au"):
        daemon.aer("free", name, check=True)


def test_a_moved_pool_keeps_the_ranges_of_adopted_cells(daemon_factory):
    """The pool moved in the config across a restart: a live cell's range
    is inside the new pool at another place, and no new cell gets it."""
    import json
    d = daemon_factory(extra_config={"cell_id_pool": {"start": POOL_START, "cells": 2}}).start()
    c = Cells(d)
    try:
        kept = [c.run_cell("old%d" % i).host_id_base for i in range(2)]
        d.kill9()
        d.stop()
        with open(d.config_path) as f:
            conf = json.load(f)
        conf["cell_id_pool"] = {"start": POOL_START - 2 * IDS, "cells": 4}
        with open(d.config_path, "w") as f:
            json.dump(conf, f)
        d.start()
        c.close()
        c = Cells(d)
        assert sorted(x.host_id_base for x in c.list()) == sorted(kept)
        new = [c.run_cell("new%d" % i).host_id_base for i in range(2)]
        assert sorted(new) == [POOL_START - 2 * IDS, POOL_START - IDS]
        expect_error(grpc.StatusCode.RESOURCE_EXHAUSTED, c.run_cell, "new2")
    finally:
        for x in c.list():
            if "/" not in x.name:
                c.free(x.name, recursive=True)
        c.close()
