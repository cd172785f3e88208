#!/usr/bin/python3
"""Benchmark (issue 4): time from the RunVirtualMachine call to the guest's
init marker on the console, against the same QEMU command line started by
hand with the same kernel and initramfs, in the same run; plus QEMU's and
auraed's RSS per VM.

Usage: AURAE_BUILD_DIR=build /usr/bin/python3 bench/vms/bench_vms.py [RUNS]
Needs scripts/setup-guest-kernel.sh to have run. Prints the median ratio
(target <= 1.10)."""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
import conftest  # noqa: E402  (PKI, daemon and generated protos)
from conftest import RUNTIME, Daemon, Pki, runtime_pb2  # noqa: E402

KERNEL = "/var/lib/aurae/kernel/vmlinux"
MODULES = "/var/lib/aurae/kernel/modules"
INIT = """#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox echo "BENCH-MARKER $(/bin/busybox cut -d' ' -f1 /proc/uptime)"
/bin/busybox poweroff -f
"""
MARK = b"BENCH-MARKER"


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def by_hand(argv):
    """The same command line, files by path, console on stdout."""
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    buf = b""
    while MARK not in buf:
        b = p.stdout.read1(4096)
        if not b:
            break
        buf += b
    t = time.monotonic() - t0
    p.wait()
    return t


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    work = tempfile.mkdtemp(prefix="aurae-bench-vms-")
    pki = Pki(os.path.join(work, "pki"))
    d = Daemon(pki, os.path.join(work, "d"), listen_tcp=False)
    images = os.path.join(d.library_dir, "images")
    os.makedirs(images)
    init = os.path.join(work, "init")
    with open(init, "w") as f:
        f.write(INIT)
    initrd = os.path.join(images, "bench.cpio")
    subprocess.run([conftest.AER, "vm", "initramfs", initrd, "--init", init, "--modules-dir",
                    MODULES, "--file", (shutil.which("busybox") or "/bin/busybox") + ":bin/busybox"],
                   check=True)
    d.start()
    ch = d.channel()
    run = ch.unary_unary(RUNTIME + "RunVirtualMachine",
                         request_serializer=runtime_pb2.VirtualMachine.SerializeToString,
                         response_deserializer=runtime_pb2.VirtualMachineStatus.FromString)
    free = ch.unary_unary(RUNTIME + "Free", request_serializer=runtime_pb2.FreeRequest.SerializeToString,
                          response_deserializer=runtime_pb2.FreeResponse.FromString)
    wait = ch.unary_unary(RUNTIME + "Wait", request_serializer=runtime_pb2.WaitRequest.SerializeToString,
                          response_deserializer=runtime_pb2.WorkloadStatus.FromString)
    logs = ch.unary_stream(RUNTIME + "Logs", request_serializer=runtime_pb2.LogsRequest.SerializeToString,
                           response_deserializer=runtime_pb2.LogChunk.FromString)
    ours, hand, qemu_rss, daemon_rss = [], [], [], []
    base_rss = rss_kib(d.proc.pid)
    for i in range(runs):
        name = "bench%d" % i
        ref = runtime_pb2.WorkloadRef(kind=runtime_pb2.WORKLOAD_KIND_VIRTUAL_MACHINE, name=name)
        t0 = time.monotonic()
        st = run(runtime_pb2.VirtualMachine(name=name, vcpus=1, memory_mib=256, kernel_path=KERNEL,
                                            initramfs_path=initrd, kernel_cmdline="quiet"), timeout=60)
        buf = b""
        for chunk in logs(runtime_pb2.LogsRequest(ref=ref, follow=True), timeout=60):
            buf += chunk.data
            if MARK in buf:
                break
        ours.append(time.monotonic() - t0)
        try:
            qemu_rss.append(rss_kib(st.vmm_pid))
        except OSError:
            pass
        daemon_rss.append(rss_kib(d.proc.pid) - base_rss)
        with open("/proc/%d/cmdline" % st.vmm_pid, "rb") as f:
            argv = [a.decode() for a in f.read().split(b"\0") if a]
        wait(runtime_pb2.WaitRequest(ref=ref), timeout=60)
        free(runtime_pb2.FreeRequest(ref=ref), timeout=60)
        # Same options; files by path; console on stdout; no QMP socket.
        hand_argv, skip = [], False
        for j, a in enumerate(argv):
            if skip:
                skip = False
                continue
            if a == "-kernel":
                hand_argv += ["-kernel", KERNEL]; skip = True
            elif a == "-initrd":
                hand_argv += ["-initrd", initrd]; skip = True
            elif a == "-chardev" and "con0" in argv[j + 1]:
                hand_argv += ["-chardev", "stdio,id=con0"]; skip = True
            elif a == "-chardev" and "qmp0" in argv[j + 1]:
                skip = True
            elif a == "-mon":
                skip = True
            else:
                hand_argv.append(a)
        hand_argv[0] = shutil.which("qemu-system-x86_64")
        hand.append(by_hand(hand_argv))
    d.stop()
    mo, mh = statistics.median(ours), statistics.median(hand)
    print("runs: %d (TCG, 1 vCPU, 256 MiB, no NIC)" % runs)
    print("RunVirtualMachine -> init marker: median %.3f s (min %.3f)" % (mo, min(ours)))
    print("same QEMU command by hand        : median %.3f s (min %.3f)" % (mh, min(hand)))
    print("overhead ratio: %.3f (target <= 1.10)" % (mo / mh))
    if qemu_rss:
        print("QEMU RSS per VM: median %d KiB" % statistics.median(qemu_rss))
    print("auraed RSS growth per running VM: median %d KiB" % statistics.median(daemon_rss))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
