#!/usr/bin/python3
"""Benchmark for issue 3 (prints ratios; not a test).

From a client (Python grpcio over the Unix socket, mTLS, one channel; and
the same loop from a C client, client.c, when the build has it):
RunCell + RunExecutable(/bin/true) + Wait, each cell freed before the next
(outside the timed span; and once more without freeing, where the zygote's
spare init is not ready again and every init is cloned), against
  - `crun run` of a /bin/true bundle (rootfs = the host's /, read-only), in a
    private mount namespace where the hybrid host's cgroup2 is hidden, and
  - the lower bound (lower_bound.c): mkdir cgroup + clone3(same namespaces,
    INTO_CGROUP) + exec /bin/true + wait ("base", the old bound), then with
    each step a default cell now has added to it, done the cheapest way the
    kernel allows: a user namespace (maps written by the parent, cgroup
    delegated), a private root (tmpfs, read-only binds, /proc, /sys, /dev,
    pivot_root), a BPF device filter attached to the cgroup,
measured in the same run; then a few cells from Python and a few crun runs
with a rest before each (a quiet host's case, which the back-to-back loops
hide). Also auraed's RSS idle and with 100 cells, and the processes each
cell adds. Usage: bench/cells/run.py [BUILD_DIR] [N]
"""
import ctypes
import json
import os
import re
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


REST_S, REST_N = 0.2, 10


def bench_aurae_rest(d, n):
    """The Python loop with a rest of REST_S before each cell, as cells
    come on a host that is not running a benchmark: (loop times, RunCell
    times). A migration into a cgroup (the spare's, into the cell's) after
    a quiet spell waits for an RCU grace period (cgroup_threadgroup_rwsem,
    README, fourth round); back to back, the loop above does not see it."""
    times, rc = [], []
    with d.channel() as ch:
        for i in range(n + 1):
            time.sleep(REST_S)
            name = "rest-%d" % i
            t0 = time.perf_counter()
            runtime_call(ch, "RunCell", pb.Cell(name=name), pb.CellStatus)
            t1 = time.perf_counter()
            runtime_call(ch, "RunExecutable", pb.Executable(cell_name=name, name="t",
                                                             args=["/bin/true"]), pb.ExecutableStatus)
            ref = pb.WorkloadRef(kind=pb.WORKLOAD_KIND_EXECUTABLE, cell_name=name, name="t")
            runtime_call(ch, "Wait", pb.WaitRequest(ref=ref), pb.WorkloadStatus)
            t2 = time.perf_counter()
            free(ch, name)
            if i >= 1:
                times.append((t2 - t0) * 1e3)
                rc.append((t1 - t0) * 1e3)
    return times, rc


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


LB_VARIANTS = ("base", "+userns", "+private root", "+device filter", "devload")


def bench_lower_bound(cgroup_parent, n):
    """{variant: [ms]} (cumulative: each variant adds its step to the one
    before; "devload" is the full bound with the BPF program loaded for
    every cell, not part of the bound) and lower_bound's spans (stderr)."""
    tmp = tempfile.mkdtemp(prefix="aurae-lb-")
    try:
        exe = os.path.join(tmp, "lower_bound")
        subprocess.run(["cc", "-O2", "-o", exe, os.path.join(HERE, "lower_bound.c")], check=True)
        p = subprocess.run([exe, cgroup_parent, str(n)], capture_output=True, text=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if p.returncode != 0:
        sys.exit("lower_bound failed: %s" % p.stderr.strip())
    rows = [[float(x) for x in line.split()] for line in p.stdout.splitlines() if line.strip()]
    return {v: [r[i] for r in rows] for i, v in enumerate(LB_VARIANTS)}, p.stderr.rstrip()


def bench_crun(n, rest=0.0, warmup=3):
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
            for i in range(n + warmup):
                time.sleep(rest)
                t0 = time.perf_counter()
                p = subprocess.run(["crun", "run", "-b", bundle, "aurae-bench-%d-%d" % (os.getpid(), i)],
                                   stdin=subprocess.DEVNULL, capture_output=True)
                dt = (time.perf_counter() - t0) * 1e3
                if p.returncode != 0:
                    sys.stderr.write(p.stderr.decode())
                    os._exit(5)
                if i >= warmup:
                    times.append(dt)
            with open(os.path.join(bundle, "times"), "w") as f:
                f.write("\n".join("%f" % t for t in times))
            os._exit(0)
        except Exception as e:  # noqa: BLE001
            sys.stderr.write("crun bench: %s\n" % e)
            os._exit(6)
    _, st = os.waitpid(pid, 0)
    try:
        if st != 0:
            print("crun: failed (status %d)" % st)
            return None
        return [float(x) for x in open(os.path.join(bundle, "times")).read().split()]
    finally:
        shutil.rmtree(bundle, ignore_errors=True)


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
        rest, rest_rc = bench_aurae_rest(d, REST_N)
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
            lbs, lb_spans = bench_lower_bound(root, N)
            for i in range(100):
                free(ch, "c%d" % i)
    finally:
        d.stop()
        shutil.rmtree(work, ignore_errors=True)
    crun = bench_crun(N)
    crun_rest = bench_crun(REST_N, REST_S, 1)
    print("RunCell+RunExecutable(/bin/true)+Wait: %s (n=%d, Python grpcio client)" %
          (stats(aurae), N))
    if aurae_c:
        print("RunCell+RunExecutable(/bin/true)+Wait: %s (n=%d, C client)" % (stats(aurae_c), N))
        print("  %s" % c_calls)
    print("  without Free between cells (no spare init ready: each is cloned): %s" %
          stats(burst))
    lb, lb0 = lbs["+device filter"], lbs["base"]
    med = {v: statistics.median(x) for v, x in lbs.items()}
    print("lower bound, old (mkdir+clone3 ns+exec+wait):          %s" % stats(lb0))
    print("lower bound (+userns, private root, device filter):    %s" % stats(lb))
    direct = re.search(r"^direct: userns (\S+) root (\S+) attach (\S+) loadattach (\S+)$",
                       lb_spans, re.M)
    if direct:
        d = [float(x) for x in direct.groups()]
        print("lower bound: base %.2f ms, +userns %.3f ms, +private root %.3f ms, +device filter "
              "%.3f ms (each step's own time, medians; loading the filter per cell: %.3f ms)" %
              (med["base"], d[0], d[1], d[2], d[3]))
    print("  differences of the totals' medians (with each step's share of the teardown, "
          "noisy): +userns %.2f, +private root %.2f, +device filter %.2f ms" %
          (med["+userns"] - med["base"], med["+private root"] - med["+userns"],
           med["+device filter"] - med["+private root"]))
    print("  lower bound %s" % re.sub(r"\ndirect:.*", "", lb_spans).replace("\n", "\n  "))
    if crun:
        print("crun run /bin/true:                    %s" % stats(crun))
    for label, xs in (("Python client", aurae), ("C client", aurae_c)):
        if not xs:
            continue
        m = statistics.median(xs)
        vs_crun = ("vs crun %.2fx (target <= 0.25x), " % (m / statistics.median(crun))
                   if crun else "")
        print("%s: ratio (medians) %svs lower bound %.2fx (target <= 3x), vs old lower "
              "bound %.2fx" % (label, vs_crun, m / statistics.median(lb), m / statistics.median(lb0)))
    print("with a %.1f s rest before each cell (n=%d, Python client): %s (RunCell %s)" %
          (REST_S, REST_N, stats(rest), stats(rest_rc)))
    if crun_rest:
        print("  crun run /bin/true after the same rest: %s; ratio (medians) %.2fx" %
              (stats(crun_rest), statistics.median(rest) / statistics.median(crun_rest)))
    print("auraed RSS idle: %d KiB; with 100 cells: %d KiB (+%.1f KiB/cell)" %
          (idle, rss100, (rss100 - idle) / 100.0))
    print("processes per cell: %s (the cell init; RSS of one init %d KiB)" %
          (sorted(set(procs)), init_rss))


if __name__ == "__main__":
    main()
