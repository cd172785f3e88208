#!/usr/bin/python3
"""Benchmark for issue 3 (prints ratios; not a test).

From a client (Python grpcio over the Unix socket, mTLS, one channel; and
the same loop from a C client, client.c, when the build has it):
RunCell + RunExecutable(/bin/true) + Wait, each cell freed before the next
(outside the timed span; and once more without freeing, where the zygote's
spare init is not ready again and every init is cloned), against
  - `crun run` of a /bin/true bundle (rootfs = the host's /, read-only), in a
    private mount namespace where the hybrid host's cgroup2 is hidden, and
  - the lower bound: mkdir cgroup + clone3(same namespaces, INTO_CGROUP) +
    exec /bin/true + wait (lower_bound.c),
measured in the same run. Also auraed's RSS idle and with 100 cells, and the
processes each cell adds. Usage: bench/cells/run.py [BUILD_DIR] [N]
"""
import ctypes
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BUILD = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "build")
N = int(sys.argv[2]) if len(sys.argv) > 2 else 50
os.environ["AURAE_BUILD_DIR"] = BUILD
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
from conftest import Daemon, Pki, runtime_call, runtime_pb2 as pb  # noqa: E402


def rss_kb(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def stats(xs):
    return "min %.2f ms, median %.2f ms" % (min(xs), statistics.median(xs))


def run_true(ch, name):
    """The timed part: RunCell + RunExecutable(/bin/true) + Wait, in ms."""
    t0 = time.perf_counter()
    runtime_call(ch, "RunCell", pb.Cell(name=name), pb.CellStatus)
    runtime_call(ch, "RunExecutable", pb.Executable(cell_name=name, name="t",
                                                     args=["/bin/true"]), pb.ExecutableStatus)
    ref = pb.WorkloadRef(kind=pb.WORKLOAD_KIND_EXECUTABLE, cell_name=name, name="t")
    st = runtime_call(ch, "Wait", pb.WaitRequest(ref=ref), pb.WorkloadStatus)
    dt = (time.perf_counter() - t0) * 1e3
    assert st.executable.exit_code == 0
    return dt


def free(ch, name):
    runtime_call(ch, "Free", pb.FreeRequest(ref=pb.WorkloadRef(
        kind=pb.WORKLOAD_KIND_CELL, name=name)), pb.FreeResponse)


def bench_aurae(d, n):
    times = []
    with d.channel() as ch:
        for i in range(n + 3):
            dt = run_true(ch, "bench-%d" % i)
            free(ch, "bench-%d" % i)
            if i >= 3:  # warm-up
                times.append(dt)
    return times


def bench_aurae_burst(d, n):
    """The same three calls for n cells back to back, none freed in
    between: after the first, the zygote's spare is not ready again (it is
    made when a cell is freed or after 20 ms of rest), so this is the cost
    of cloning each init on request."""
    with d.channel() as ch:
        times = [run_true(ch, "burst-%d" % i) for i in range(n)]
        for i in range(n):
            free(ch, "burst-%d" % i)
    return times[1:]


def bench_aurae_c(d, pki, n):
    """The same loop from the C client (client.c, built by meson), or None."""
    exe = os.path.join(BUILD, "bench", "cells", "bench-cells-client")
    if not os.path.exists(exe):
        return None, ""
    p = subprocess.run([exe, d.socket, pki.path("ca.crt"), pki.path("client-admin.crt"),
                        pki.path("client-admin.key"), str(n)], capture_output=True, text=True)
    if p.returncode != 0:
        print("C client failed: %s" % p.stderr.strip())
        return None, ""
    return [float(x) for x in p.stdout.split()], p.stderr.strip()


def bench_lower_bound(cgroup_parent, n):
    exe = os.path.join(tempfile.mkdtemp(prefix="aurae-lb-"), "lower_bound")
    subprocess.run(["cc", "-O2", "-o", exe, os.path.join(HERE, "lower_bound.c")], check=True)
    out = subprocess.run([exe, cgroup_parent, str(n)], check=True, capture_output=True,
                         text=True).stdout
    return [float(x) for x in out.split()]


def bench_crun(n):
    if not shutil.which("crun"):
        return None
    bundle = tempfile.mkdtemp(prefix="aurae-crun-")
    subprocess.run(["crun", "spec"], cwd=bundle, check=True)
    spec = json.load(open(os.path.join(bundle, "config.json")))
    # A minimal rootfs: /bin/true and the libraries it needs.
    rootfs = os.path.join(bundle, "rootfs")
    for f in ["/bin/true"] + [l.split("=>")[-1].split()[0] for l in subprocess.run(
            ["ldd", "/bin/true"], capture_output=True, text=True).stdout.splitlines()
            if "/" in l]:
        dst = os.path.join(rootfs, f.lstrip("/"))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(f, dst)
    for d in ("proc", "dev", "sys", "tmp"):
        os.makedirs(os.path.join(rootfs, d), exist_ok=True)
    spec["root"] = {"path": "rootfs", "readonly": True}
    spec["process"]["args"] = ["/bin/true"]
    spec["process"]["terminal"] = False
    json.dump(spec, open(os.path.join(bundle, "config.json"), "w"))
    # crun in a private mount namespace where the hybrid host's cgroup2
    # root (cgroup.controllers) is hidden, see DESIGN.md.
    libc = ctypes.CDLL(None, use_errno=True)
    pid = os.fork()
    if pid == 0:
        try:
            if libc.unshare(0x00020000) != 0:  # CLONE_NEWNS
                os._exit(3)
            libc.mount(None, b"/", None, 0x4000 | 0x40000, None)  # MS_REC|MS_PRIVATE
            r = libc.mount(b"tmpfs", b"/sys/fs/cgroup/unified", b"tmpfs", 0, None)
            if r != 0:
                os._exit(4)
            times = []
            for i in range(n + 3):
                t0 = time.perf_counter()
                p = subprocess.run(["crun", "run", "-b", bundle, "aurae-bench-%d-%d" % (os.getpid(), i)],
                                   stdin=subprocess.DEVNULL, capture_output=True)
                dt = (time.perf_counter() - t0) * 1e3
                if p.returncode != 0:
                    sys.stderr.write(p.stderr.decode())
                    os._exit(5)
                if i >= 3:
                    times.append(dt)
            with open(os.path.join(bundle, "times"), "w") as f:
                f.write("\n".join("%f" % t for t in times))
            os._exit(0)
        except Exception as e:  # noqa: BLE001
            sys.stderr.write("crun bench: %s\n" % e)
            os._exit(6)
    _, st = os.waitpid(pid, 0)
    if st != 0:
        print("crun: failed (status %d)" % st)
        return None
    return [float(x) for x in open(os.path.join(bundle, "times")).read().split()]


def main():
    work = tempfile.mkdtemp(prefix="aurae-bench-")
    pki = Pki(os.path.join(work, "pki"), clients=("admin",))
    d = Daemon(pki, os.path.join(work, "d"), listen_tcp=False)
    d.args = [a for a in d.args if a != "-v"]
    d.start()
    try:
        time.sleep(0.5)
        idle = rss_kb(d.proc.pid)
        aurae = bench_aurae(d, N)
        aurae_c, c_calls = bench_aurae_c(d, pki, N)
        burst = bench_aurae_burst(d, N)
        with d.channel() as ch:
            st = runtime_call(ch, "RunCell", pb.Cell(name="probe"), pb.CellStatus)
            root = os.path.dirname(st.cgroup_path)
            for i in range(100):
                runtime_call(ch, "RunCell", pb.Cell(name="c%d" % i), pb.CellStatus)
            time.sleep(0.3)
            rss100 = rss_kb(d.proc.pid)
            procs = []
            for i in range(100):
                cg = os.path.join(root, "c%d" % i)
                n = 0
                for dirpath, _, files in os.walk(cg):
                    if "cgroup.procs" in files:
                        n += len(open(os.path.join(dirpath, "cgroup.procs")).read().split())
                procs.append(n)
            init_rss = rss_kb(st.init_host_pid)
            free(ch, "probe")
            lb = bench_lower_bound(root, N)
            for i in range(100):
                free(ch, "c%d" % i)
    finally:
        d.stop()
        shutil.rmtree(work, ignore_errors=True)
    crun = bench_crun(N)
    print("RunCell+RunExecutable(/bin/true)+Wait: %s (n=%d, Python grpcio client)" %
          (stats(aurae), N))
    if aurae_c:
        print("RunCell+RunExecutable(/bin/true)+Wait: %s (n=%d, C client)" % (stats(aurae_c), N))
        print("  %s" % c_calls)
    print("  without Free between cells (no spare init ready: each is cloned): %s" %
          stats(burst))
    print("lower bound (mkdir+clone3 ns+exec+wait): %s" % stats(lb))
    if crun:
        print("crun run /bin/true:                    %s" % stats(crun))
        print("ratio vs crun (median):        %.2fx (target <= 0.25x)" %
              (statistics.median(aurae) / statistics.median(crun)))
    print("ratio vs lower bound (median): %.2fx (target <= 3x)" %
          (statistics.median(aurae) / statistics.median(lb)))
    if aurae_c:
        if crun:
            print("C client: ratio vs crun %.2fx, vs lower bound %.2fx" %
                  (statistics.median(aurae_c) / statistics.median(crun),
                   statistics.median(aurae_c) / statistics.median(lb)))
        else:
            print("C client: ratio vs lower bound %.2fx" %
                  (statistics.median(aurae_c) / statistics.median(lb)))
    print("auraed RSS idle: %d KiB; with 100 cells: %d KiB (+%.1f KiB/cell)" %
          (idle, rss100, (rss100 - idle) / 100.0))
    print("processes per cell: %s (the cell init; RSS of one init %d KiB)" %
          (sorted(set(procs)), init_rss))


if __name__ == "__main__":
    main()
