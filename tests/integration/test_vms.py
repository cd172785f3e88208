"""Virtual machines (issue 4): real QEMU microVMs (TCG here) booting the
Debian guest kernel installed by scripts/setup-guest-kernel.sh, with a test
initramfs built by `aer vm initramfs` around a static busybox."""
import os
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time

import grpc
import pytest

from conftest import RUNTIME, runtime_pb2

KERNEL = "/var/lib/aurae/kernel/vmlinux"
MODULES = "/var/lib/aurae/kernel/modules"
BUSYBOX = shutil.which("busybox") or "/bin/busybox"
VM = runtime_pb2.WORKLOAD_KIND_VIRTUAL_MACHINE

pytestmark = pytest.mark.skipif(
    not (os.path.exists(KERNEL) and shutil.which("qemu-system-x86_64")),
    reason="guest kernel (scripts/setup-guest-kernel.sh) or QEMU missing")

# The guest's /init: loads the modules in load.order, prints the marker with
# its uptime, then does what aurae.mode= on the kernel line says.
INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad
echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad
while read m p; do insmod /lib/modules/$m $p; done < /lib/modules/load.order
for x in $(cat /proc/cmdline); do
  case $x in aurae.mode=*) MODE=${x#aurae.mode=};; aurae.port=*) PORT=${x#aurae.port=};; esac
done
echo "AURAE-TEST-MARKER uptime=$(cut -d' ' -f1 /proc/uptime)"
ip link set lo up; ip link set eth0 up 2>/dev/null
for e in /sys/class/input/event*; do
  grep -q "Power Button" $e/device/name 2>/dev/null && PWR=/dev/input/${e##*/}
done
# aurae.mode=deaf: a guest that ignores the power button.
if [ -n "$PWR" ] && [ "$MODE" != deaf ]; then
  (dd if=$PWR bs=24 count=1 >/dev/null 2>&1; echo "AURAE-POWER-BUTTON"; poweroff -f) &
fi
case "$MODE" in
poweroff) echo "AURAE-SELF-POWEROFF"; poweroff -f;;
net)
  echo "AURAE-ADDR $(ip -6 addr show dev eth0 | grep -o 'fe80::[0-9a-f:]*')"
  i=0
  while [ $i -lt 100 ]; do
    R=$(echo "ping-from-guest" | nc -w 2 fe80::1%eth0 $PORT 2>/dev/null)
    [ -n "$R" ] && break
    sleep 0.1; i=$((i+1))
  done
  echo "AURAE-GUEST-RECEIVED:$R"
  echo "pong-from-guest" > /tmp/reply
  echo "AURAE-LISTENING"
  nc -l -p 7777 < /tmp/reply > /tmp/got
  echo "AURAE-GUEST-GOT:$(cat /tmp/got)"
  ;;
disks)
  # virtio_blk is loaded: devtmpfs has /dev/vd* in probe order.
  for b in /sys/block/vd*; do echo "AURAE-DISK ${b##*/} ro=$(cat $b/ro) sectors=$(cat $b/size)"; done
  echo "AURAE-VDA:$(head -c 40 /dev/vda | tr -dc 'A-Za-z0-9:-')"
  echo "guest-wrote-raw-disk" | dd of=/dev/vdb conv=fsync 2>/dev/null; echo "AURAE-VDB-WRITE rc=$?"
  echo "guest-wrote-qcow2-disk" | dd of=/dev/vdc conv=fsync 2>/dev/null; echo "AURAE-VDC-WRITE rc=$?"
  echo "GUEST-SCRIBBLE" | dd of=/dev/vda conv=fsync 2>/tmp/err; echo "AURAE-VDA-WRITE rc=$? $(cat /tmp/err)"
  sync; echo "AURAE-DISKS-DONE"; poweroff -f;;
nics)
  for e in /sys/class/net/eth*; do echo "AURAE-NIC ${e##*/} $(cat $e/address)"; done
  echo "AURAE-NICS-DONE"; poweroff -f;;
esac
while true; do sleep 60; done
"""


@pytest.fixture(scope="module")
def initramfs(tmp_path_factory, pki):
    d = tmp_path_factory.mktemp("guest")
    init = d / "init"
    init.write_text(INIT)
    out = d / "test.cpio"
    from conftest import AER
    subprocess.run([AER, "vm", "initramfs", str(out), "--init", str(init),
                    "--modules-dir", MODULES, "--file", BUSYBOX + ":bin/busybox"],
                   check=True, capture_output=True)
    return str(out)


@pytest.fixture
def vmd(daemon_factory, initramfs):
    d = daemon_factory()
    images = os.path.join(d.library_dir, "images")
    os.makedirs(images, exist_ok=True)
    shutil.copy(initramfs, os.path.join(images, "test.cpio"))
    d.initrd = os.path.join(images, "test.cpio")
    d.images = images
    d.start()
    yield d
    # Whatever a failed test left: stop and free through the API.
    try:
        with d.channel() as ch:
            for v in list_vms(ch):
                call(ch, "Stop", runtime_pb2.StopRequest(ref=ref(v.name), grace_period_ms=1),
                     runtime_pb2.WorkloadStatus, timeout=30)
                call(ch, "Free", runtime_pb2.FreeRequest(ref=ref(v.name)), runtime_pb2.FreeResponse)
    except grpc.RpcError:
        pass
    # A clean shutdown, and nothing from the sanitizers when the build has
    # them (ASan/LSan/UBSan write to auraed's stderr, i.e. its log).
    rc = d.stop()
    log = d.logs()
    for bad in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
        assert bad not in log, log
    assert rc == 0, "auraed exited with %s on SIGTERM:\n%s" % (rc, log[-4000:])


def call(ch, method, req, resp_type, timeout=60):
    return ch.unary_unary(RUNTIME + method, request_serializer=req.__class__.SerializeToString,
                          response_deserializer=resp_type.FromString)(req, timeout=timeout)


def ref(name):
    return runtime_pb2.WorkloadRef(kind=VM, name=name)


def list_vms(ch):
    return call(ch, "List", runtime_pb2.ListRequest(kind=VM), runtime_pb2.ListResponse).virtual_machines


def run_vm(ch, d, name, mode="idle", nics=1, **kw):
    kw.setdefault("interfaces", [runtime_pb2.NetworkInterface() for _ in range(nics)])
    kw.setdefault("kernel_path", KERNEL)
    req = runtime_pb2.VirtualMachine(
        name=name, vcpus=1, memory_mib=256, initramfs_path=d.initrd,
        kernel_cmdline="quiet aurae.mode=%s aurae.port=%d" % (mode, kw.pop("port", 0)), **kw)
    return call(ch, "RunVirtualMachine", req, runtime_pb2.VirtualMachineStatus)


class Console:
    """Follows a VM's console through the Logs stream in a thread."""

    def __init__(self, ch, name):
        self.text = ""
        self.cond = threading.Condition()
        self.stream = ch.unary_stream(
            RUNTIME + "Logs", request_serializer=runtime_pb2.LogsRequest.SerializeToString,
            response_deserializer=runtime_pb2.LogChunk.FromString)(
                runtime_pb2.LogsRequest(ref=ref(name), stream=runtime_pb2.LOG_STREAM_CONSOLE,
                                        follow=True), timeout=300)
        self.done = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        try:
            for chunk in self.stream:
                with self.cond:
                    self.text += chunk.data.decode(errors="replace")
                    self.cond.notify_all()
        except grpc.RpcError:
            pass
        with self.cond:
            self.done = True
            self.cond.notify_all()

    def wait_for(self, s, timeout=60):
        deadline = time.time() + timeout
        with self.cond:
            while s not in self.text:
                left = deadline - time.time()
                if left <= 0 or self.done and s not in self.text:
                    raise AssertionError("%r not on the console:\n%s" % (s, self.text))
                self.cond.wait(left)
        return self.text

    def cancel(self):
        self.stream.cancel()


def link_exists(name):
    return os.path.exists("/sys/class/net/" + name)


def assert_freed(d, st):
    for t in st.taps:
        assert not link_exists(t.host_name), t.host_name
    if st.cgroup_path:
        assert not os.path.exists(st.cgroup_path)
    assert not os.path.exists(os.path.join(d.runtime_dir, "vms", st.name))


def test_boot_network_stop_free(vmd):
    host = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    with vmd.channel() as ch:
        # The tap must exist before we can bind to fe80::1 on it: listen on
        # the wildcard and check the peer's scope instead.
        host.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        host.bind(("::", 0))
        host.listen(1)
        port = host.getsockname()[1]
        st = run_vm(ch, vmd, "web", mode="net", port=port)
        assert st.state == runtime_pb2.VIRTUAL_MACHINE_STATE_RUNNING
        # auto picks TCG here: no vmx/svm (PVM nested KVM or none).
        assert st.accelerator == runtime_pb2.ACCELERATOR_TCG
        assert "tcg" in st.accelerator_reason
        tap = st.taps[0]
        assert tap.host_name == "au-web-0" and tap.guest_name == "eth0"
        assert tap.host_address == "fe80::1"
        # The host side of the tap: fe80::1/64, DAD off, named after the VM.
        addrs = subprocess.run(["ip", "-6", "addr", "show", "dev", tap.host_name],
                               capture_output=True, text=True).stdout
        assert "fe80::1/64" in addrs
        with open("/proc/sys/net/ipv6/conf/%s/accept_dad" % tap.host_name) as f:
            assert f.read().strip() == "0"
        with open("/sys/class/net/%s/ifalias" % tap.host_name) as f:
            assert "web" in f.read()
        # The VMM: QEMU microvm, sandboxed, in the VM's own cgroup.
        with open("/proc/%d/cmdline" % st.vmm_pid, "rb") as f:
            argv = f.read().split(b"\0")
        assert b"-nodefaults" in argv and b"-no-user-config" in argv and b"-sandbox" in argv
        assert any(a.startswith(b"microvm") for a in argv)
        with open("/proc/%d/cgroup" % st.vmm_pid) as f:
            cg = f.read()
        assert st.cgroup_path and st.cgroup_path.endswith("/web")
        assert "0::" + st.cgroup_path.split("/sys/fs/cgroup/unified", 1)[-1] in cg
        assert os.path.exists(os.path.join(vmd.runtime_dir, "vms", "web", "qmp.sock"))

        con = Console(ch, "web")
        text = con.wait_for("AURAE-TEST-MARKER uptime=")
        # Guest -> host over the tap, to fe80::1%eth0.
        host.settimeout(60)
        conn, peer = host.accept()
        assert peer[0].startswith("fe80::") and peer[3] == socket.if_nametoindex(tap.host_name)
        assert conn.recv(100).strip() == b"ping-from-guest"
        conn.sendall(b"pong-from-host\n")
        conn.close()
        con.wait_for("AURAE-GUEST-RECEIVED:pong-from-host")
        con.wait_for("AURAE-LISTENING")
        # Host -> guest at its EUI-64 link-local address on the tap.
        assert "AURAE-ADDR " + tap.guest_address in con.text
        for _ in range(50):
            try:
                c = socket.create_connection((tap.guest_address + "%" + tap.host_name, 7777), timeout=5)
                break
            except OSError:
                time.sleep(0.1)
        c.sendall(b"ping-from-host\n")
        c.shutdown(socket.SHUT_WR)
        assert c.recv(100).strip() == b"pong-from-guest"
        c.close()
        con.wait_for("AURAE-GUEST-GOT:ping-from-host")

        ls = list_vms(ch)
        assert [v.name for v in ls] == ["web"]

        # Stop: ACPI power button, the guest powers itself off.
        ws = call(ch, "Stop", runtime_pb2.StopRequest(ref=ref("web"), grace_period_ms=20000),
                  runtime_pb2.WorkloadStatus)
        vm = ws.virtual_machine
        assert vm.state == runtime_pb2.VIRTUAL_MACHINE_STATE_STOPPED, vm
        assert "power" in vm.exit_reason and "button" in vm.exit_reason, vm.exit_reason
        con.wait_for("AURAE-POWER-BUTTON")
        fr = call(ch, "Free", runtime_pb2.FreeRequest(ref=ref("web")), runtime_pb2.FreeResponse)
        assert "tap au-web-0" in fr.freed
        assert_freed(vmd, st)
        assert not os.path.exists("/proc/%d" % st.vmm_pid)
        with pytest.raises(grpc.RpcError) as e:
            call(ch, "Inspect", runtime_pb2.InspectRequest(ref=ref("web")), runtime_pb2.WorkloadStatus)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
    host.close()


def test_guest_poweroff_is_stopped_and_aer(vmd):
    r = vmd.aer("vm", "run", "self-off", "--kernel", KERNEL, "--initrd", vmd.initrd, "--net",
                "--memory", "256", "--cmdline", "quiet aurae.mode=poweroff")
    assert r.returncode == 0, r.stderr
    assert "self-off" in r.stdout and "au-self-off-0" in r.stdout
    with vmd.channel() as ch:
        ws = call(ch, "Wait", runtime_pb2.WaitRequest(ref=ref("self-off")), runtime_pb2.WorkloadStatus,
                  timeout=60)
        assert ws.virtual_machine.state == runtime_pb2.VIRTUAL_MACHINE_STATE_STOPPED
        assert ws.virtual_machine.exit_reason == "guest powered off"
    r = vmd.aer("vm", "logs", "self-off")
    assert "AURAE-TEST-MARKER" in r.stdout and "AURAE-SELF-POWEROFF" in r.stdout
    r = vmd.aer("vm", "ls")
    assert "self-off" in r.stdout and "stopped" in r.stdout
    r = vmd.aer("vm", "free", "self-off")
    assert r.returncode == 0 and "freed tap au-self-off-0" in r.stdout
    assert not link_exists("au-self-off-0")


def test_qemu_killed_is_crash(vmd):
    with vmd.channel() as ch:
        st = run_vm(ch, vmd, "victim")
        Console(ch, "victim").wait_for("AURAE-TEST-MARKER")
        os.kill(st.vmm_pid, signal.SIGKILL)
        ws = call(ch, "Wait", runtime_pb2.WaitRequest(ref=ref("victim")), runtime_pb2.WorkloadStatus,
                  timeout=30)
        vm = ws.virtual_machine
        assert vm.state == runtime_pb2.VIRTUAL_MACHINE_STATE_CRASHED
        assert "signal 9" in vm.exit_reason, vm.exit_reason
        # The taps stay until free: the operator decides.
        assert link_exists(st.taps[0].host_name)
        call(ch, "Free", runtime_pb2.FreeRequest(ref=ref("victim")), runtime_pb2.FreeResponse)
        assert_freed(vmd, st)


def expect_code(ch, req, code, text):
    with pytest.raises(grpc.RpcError) as e:
        call(ch, "RunVirtualMachine", req, runtime_pb2.VirtualMachineStatus)
    assert e.value.code() == code, (e.value.code(), e.value.details())
    assert text in e.value.details(), e.value.details()
    return e.value.details()


def test_bad_input_leaves_nothing(vmd):
    def spec(**kw):
        base = dict(name="bad", vcpus=1, memory_mib=128, kernel_path=KERNEL,
                    initramfs_path=vmd.initrd, interfaces=[runtime_pb2.NetworkInterface()])
        base.update(kw)
        return runtime_pb2.VirtualMachine(**base)

    outside = os.path.join(vmd.workdir, "outside.img")
    with open(outside, "wb") as f:
        f.truncate(1 << 20)
    unreadable = os.path.join(vmd.images, "unreadable.img")
    with open(unreadable, "wb") as f:
        f.truncate(1 << 20)
    os.chmod(unreadable, 0)
    INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
    with vmd.channel() as ch:
        expect_code(ch, spec(kernel_path=os.path.join(vmd.images, "nope")), NOT_FOUND, "kernel_path")
        expect_code(ch, spec(memory_mib=0), INVALID, "memory_mib")
        expect_code(ch, spec(vcpus=os.cpu_count() + 1), INVALID, "vcpus")
        expect_code(ch, spec(name="Bad_Name"), INVALID, "name")
        expect_code(ch, spec(disks=[runtime_pb2.Disk(path=outside)]), INVALID, "outside the allowed")
        expect_code(ch, spec(disks=[runtime_pb2.Disk(path="/etc/shadow", read_only=True)]), INVALID,
                    "outside the allowed")
        expect_code(ch, spec(disks=[runtime_pb2.Disk(path=unreadable)]), INVALID, "not readable")
        expect_code(ch, spec(disks=[runtime_pb2.Disk(path=os.path.join(vmd.images, "missing.img"))]),
                    NOT_FOUND, "disks[0]")
        assert not link_exists("au-bad-0")
        assert not os.path.exists(os.path.join(vmd.runtime_dir, "vms", "bad"))
        assert list(list_vms(ch)) == []
        # Duplicate name: the second start fails and leaves the first alone.
        disk = os.path.join(vmd.images, "data.img")
        with open(disk, "wb") as f:
            f.truncate(8 << 20)
        st = run_vm(ch, vmd, "dup", disks=[runtime_pb2.Disk(path=disk)])
        expect_code(ch, spec(name="dup"), grpc.StatusCode.ALREADY_EXISTS, "already exists")
        again = call(ch, "Inspect", runtime_pb2.InspectRequest(ref=ref("dup")), runtime_pb2.WorkloadStatus)
        assert again.virtual_machine.state == runtime_pb2.VIRTUAL_MACHINE_STATE_RUNNING
        assert again.virtual_machine.vmm_pid == st.vmm_pid
        # Free of a running VM is refused.
        with pytest.raises(grpc.RpcError) as e:
            call(ch, "Free", runtime_pb2.FreeRequest(ref=ref("dup")), runtime_pb2.FreeResponse)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_restart_readopts_running_vm(vmd):
    with vmd.channel() as ch:
        st = run_vm(ch, vmd, "keep")
        Console(ch, "keep").wait_for("AURAE-TEST-MARKER")
    assert vmd.stop() == 0
    # auraed is gone; the VM is not.
    assert os.path.exists("/proc/%d" % st.vmm_pid)
    vmd.start()
    with vmd.channel() as ch:
        vm = call(ch, "Inspect", runtime_pb2.InspectRequest(ref=ref("keep")),
                  runtime_pb2.WorkloadStatus).virtual_machine
        assert vm.state == runtime_pb2.VIRTUAL_MACHINE_STATE_RUNNING and vm.adopted
        assert vm.vmm_pid == st.vmm_pid
        ws = call(ch, "Stop", runtime_pb2.StopRequest(ref=ref("keep"), grace_period_ms=20000),
                  runtime_pb2.WorkloadStatus)
        assert ws.virtual_machine.state == runtime_pb2.VIRTUAL_MACHINE_STATE_STOPPED
        call(ch, "Free", runtime_pb2.FreeRequest(ref=ref("keep")), runtime_pb2.FreeResponse)
        assert_freed(vmd, st)


def wait_vm(ch, name, timeout=60):
    return call(ch, "Wait", runtime_pb2.WaitRequest(ref=ref(name)), runtime_pb2.WorkloadStatus,
                timeout=timeout).virtual_machine


def test_disks_raw_ro_rw_and_qcow2(vmd):
    token = "HOSTDATA-%s" % os.urandom(6).hex()
    ro = os.path.join(vmd.images, "ro.img")
    with open(ro, "wb") as f:
        f.write(token.encode() + b"\n")
        f.truncate(1 << 20)
    os.chmod(ro, 0o444)  # a read-only file can be attached read-only
    with open(ro, "rb") as f:
        ro_before = f.read()
    rw = os.path.join(vmd.images, "rw.img")
    with open(rw, "wb") as f:
        f.truncate(2 << 20)
    qcow = os.path.join(vmd.images, "data.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", qcow, "3M"], check=True)
    with vmd.channel() as ch:
        st = run_vm(ch, vmd, "disky", mode="disks", nics=0, disks=[
            runtime_pb2.Disk(path=ro, read_only=True),
            runtime_pb2.Disk(path=rw),
            runtime_pb2.Disk(path=qcow, format=runtime_pb2.DISK_FORMAT_QCOW2)])
        con = Console(ch, "disky")
        text = con.wait_for("AURAE-DISKS-DONE")
        # virtio-blk devices in the order of the request, read-only where asked.
        assert "AURAE-DISK vda ro=1 sectors=2048" in text, text
        assert "AURAE-DISK vdb ro=0 sectors=4096" in text, text
        assert "AURAE-DISK vdc ro=0 sectors=6144" in text, text
        # The guest read what the host wrote, wrote the rw disks, and was
        # refused on the read-only one.
        assert "AURAE-VDA:" + token in text, text
        assert "AURAE-VDB-WRITE rc=0" in text and "AURAE-VDC-WRITE rc=0" in text, text
        line = [l for l in text.splitlines() if "AURAE-VDA-WRITE" in l][0]
        assert "rc=1" in line and "Operation not permitted" in line, line
        vm = wait_vm(ch, "disky")
        assert vm.state == runtime_pb2.VIRTUAL_MACHINE_STATE_STOPPED, vm
        assert vm.exit_reason == "guest powered off", vm.exit_reason
        call(ch, "Free", runtime_pb2.FreeRequest(ref=ref("disky")), runtime_pb2.FreeResponse)
        assert_freed(vmd, st)
    # On the host, after the VM ended: the rw raw disk holds the guest's
    # bytes, the qcow2 one too (read through qemu-img), the ro one is as it was.
    with open(rw, "rb") as f:
        assert f.read(21) == b"guest-wrote-raw-disk\n"
    with open(ro, "rb") as f:
        assert f.read() == ro_before
    out = os.path.join(vmd.workdir, "qcow-flat.raw")
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", qcow, out], check=True)
    with open(out, "rb") as f:
        assert f.read(23) == b"guest-wrote-qcow2-disk\n"
    subprocess.run(["qemu-img", "check", "-q", qcow], check=True)


def test_qcow2_naming_host_files_refused(vmd):
    # A qcow2 image names its backing file by path and QEMU would open it,
    # past the allowed-directory check: such images are refused, as is a
    # raw file declared qcow2.
    secret = os.path.join(vmd.workdir, "secret.raw")  # outside the image dirs
    with open(secret, "wb") as f:
        f.write(b"host secret\n")
        f.truncate(1 << 20)
    overlay = os.path.join(vmd.images, "overlay.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", secret, overlay],
                   check=True)
    raw = os.path.join(vmd.images, "plain.img")
    with open(raw, "wb") as f:
        f.truncate(1 << 20)
    QCOW2 = runtime_pb2.DISK_FORMAT_QCOW2
    with vmd.channel() as ch:
        for disk, text in ((runtime_pb2.Disk(path=overlay, format=QCOW2, read_only=True),
                            "backing file"),
                           (runtime_pb2.Disk(path=raw, format=QCOW2), "not a qcow2 image")):
            req = runtime_pb2.VirtualMachine(name="cow", memory_mib=128, kernel_path=KERNEL,
                                             initramfs_path=vmd.initrd, disks=[disk],
                                             interfaces=[runtime_pb2.NetworkInterface()])
            details = expect_code(ch, req, grpc.StatusCode.INVALID_ARGUMENT, text)
            assert "disks[0]: " + disk.path in details, details
        assert not link_exists("au-cow-0")
        assert not os.path.exists(os.path.join(vmd.runtime_dir, "vms", "cow"))
        assert list(list_vms(ch)) == []


class Bridge:
    """A host bridge of the test's own, removed at the end."""

    def __init__(self, name):
        self.name = name
        subprocess.run(["ip", "link", "del", name], capture_output=True)
        subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        subprocess.run(["ip", "link", "del", self.name], capture_output=True)


def test_bridge(vmd):
    # Named per process: another run of the suite may be on this host.
    brname = "aurtestbr%d" % (os.getpid() % 100000)
    with Bridge(brname) as br, vmd.channel() as ch:
        st = run_vm(ch, vmd, "bridged", interfaces=[runtime_pb2.NetworkInterface(bridge=br.name)])
        tap = st.taps[0].host_name
        assert st.taps[0].bridge == br.name
        # The tap auraed made is enslaved to the operator's bridge.
        master = os.path.realpath("/sys/class/net/%s/master" % tap)
        assert os.path.basename(master) == br.name
        assert os.path.exists("/sys/class/net/%s/brif/%s" % (br.name, tap))
        r = vmd.aer("vm", "inspect", "bridged")
        assert r.returncode == 0 and "bridge " + br.name in r.stdout, (r.stdout, r.stderr)
        call(ch, "Stop", runtime_pb2.StopRequest(ref=ref("bridged"), grace_period_ms=1),
             runtime_pb2.WorkloadStatus)
        call(ch, "Free", runtime_pb2.FreeRequest(ref=ref("bridged")), runtime_pb2.FreeResponse)
        assert_freed(vmd, st)
        # The bridge is the operator's: free leaves it.
        assert link_exists(br.name)
        assert os.listdir("/sys/class/net/%s/brif" % br.name) == []

        # The same through aer, "--net bridge=BR" as two words.
        r = vmd.aer("vm", "run", "bridged2", "--kernel", KERNEL, "--initrd", vmd.initrd,
                    "--memory", "128", "--net", "bridge=" + br.name, "--net",
                    "mac=02:00:00:00:00:42")
        assert r.returncode == 0, r.stderr
        assert "eth0: host tap au-bridged2-0" in r.stdout and "bridge " + br.name in r.stdout
        assert "eth1: host tap au-bridged2-1" in r.stdout and "02:00:00:00:00:42" in r.stdout
        assert os.listdir("/sys/class/net/%s/brif" % br.name) == ["au-bridged2-0"]
        assert vmd.aer("vm", "stop", "-t", "1", "bridged2").returncode == 0
        r = vmd.aer("vm", "free", "bridged2")
        assert r.returncode == 0 and "freed tap au-bridged2-1" in r.stdout, r.stdout
        assert os.listdir("/sys/class/net/%s/brif" % br.name) == []

        # A bridge that does not exist, or a link that is not a bridge: a
        # clear error before anything is made.
        base = dict(name="nobr", memory_mib=128, kernel_path=KERNEL, initramfs_path=vmd.initrd)
        for bridge, code, text in (
                ("aurtestnone", grpc.StatusCode.NOT_FOUND, "bridge aurtestnone does not exist"),
                ("lo", grpc.StatusCode.INVALID_ARGUMENT, "lo is not a bridge")):
            req = runtime_pb2.VirtualMachine(interfaces=[
                runtime_pb2.NetworkInterface(),
                runtime_pb2.NetworkInterface(bridge=bridge)], **base)
            details = expect_code(ch, req, code, text)
            assert "interfaces[1].bridge" in details, details
            assert not link_exists("au-nobr-0") and not link_exists("au-nobr-1")
            assert not os.path.exists(os.path.join(vmd.runtime_dir, "vms", "nobr"))
        assert list(list_vms(ch)) == []
    assert not link_exists(brname)


def test_two_nics_in_order(vmd):
    mac1 = "02:aa:bb:cc:dd:01"
    with vmd.channel() as ch:
        st = run_vm(ch, vmd, "twonics", mode="nics", interfaces=[
            runtime_pb2.NetworkInterface(), runtime_pb2.NetworkInterface(mac=mac1.upper())])
        assert [t.guest_name for t in st.taps] == ["eth0", "eth1"]
        assert [t.host_name for t in st.taps] == ["au-twonics-0", "au-twonics-1"]
        assert st.taps[1].mac == mac1  # normalised to lower case
        assert st.taps[0].mac != mac1 and st.taps[0].mac.startswith("02:")
        for t in st.taps:
            with open("/sys/class/net/%s/ifalias" % t.host_name) as f:
                assert f.read().strip() == "aurae vm twonics " + t.guest_name
        text = Console(ch, "twonics").wait_for("AURAE-NICS-DONE")
        nics = [l.split()[1:] for l in text.splitlines() if l.startswith("AURAE-NIC ")]
        assert nics == [["eth0", st.taps[0].mac], ["eth1", mac1]], text
        assert wait_vm(ch, "twonics").state == runtime_pb2.VIRTUAL_MACHINE_STATE_STOPPED
        fr = call(ch, "Free", runtime_pb2.FreeRequest(ref=ref("twonics")), runtime_pb2.FreeResponse)
        assert "tap au-twonics-0" in fr.freed and "tap au-twonics-1" in fr.freed
        assert_freed(vmd, st)


def test_vmm_that_fails_to_start(vmd):
    # A "kernel" QEMU cannot load: QEMU exits during machine set-up; the
    # error names QEMU's reason and nothing is left behind.
    junk = os.path.join(vmd.images, "junk-kernel")
    with open(junk, "wb") as f:
        f.write(b"not a kernel\n" * 100)
    with vmd.channel() as ch:
        with pytest.raises(grpc.RpcError) as e:
            run_vm(ch, vmd, "junk", kernel_path=junk)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION, e.value.code()
        # QEMU's own words (7.2: "qemu: linux kernel too old to load a ram disk").
        assert "VMM did not start: qemu" in e.value.details(), e.value.details()
        assert "kernel" in e.value.details(), e.value.details()
        assert not link_exists("au-junk-0")
        assert not os.path.exists(os.path.join(vmd.runtime_dir, "vms", "junk"))
        assert list(list_vms(ch)) == []


def test_vm_dead_while_auraed_away_is_crashed(vmd):
    with vmd.channel() as ch:
        st = run_vm(ch, vmd, "orphan")
        Console(ch, "orphan").wait_for("AURAE-TEST-MARKER")
    assert vmd.stop() == 0
    os.kill(st.vmm_pid, signal.SIGKILL)
    for _ in range(100):
        if not os.path.exists("/proc/%d" % st.vmm_pid):
            break
        time.sleep(0.05)
    vmd.start()
    with vmd.channel() as ch:
        vm = call(ch, "Inspect", runtime_pb2.InspectRequest(ref=ref("orphan")),
                  runtime_pb2.WorkloadStatus).virtual_machine
        assert vm.state == runtime_pb2.VIRTUAL_MACHINE_STATE_CRASHED, vm
        assert vm.exit_reason == "VMM exited while auraed was not running", vm.exit_reason
        # Its taps stayed for the operator; free removes them.
        assert link_exists(st.taps[0].host_name)
        call(ch, "Free", runtime_pb2.FreeRequest(ref=ref("orphan")), runtime_pb2.FreeResponse)
        assert_freed(vmd, st)


def test_tap_name_clash_leaves_existing_taps(vmd):
    # Taps someone else made, named as this VM's would be: the start fails
    # with ALREADY_EXISTS and neither tap is touched (creation is exclusive;
    # cleanup deletes only taps the VM created). With both NICs clashing,
    # the old code deleted the second one.
    name = "clash%d" % (os.getpid() % 1000)
    taps = ["au-%s-0" % name, "au-%s-1" % name]
    try:
        with vmd.channel() as ch:
            for existing in (taps, taps[1:]):
                for t in existing:
                    subprocess.run(["ip", "tuntap", "add", "dev", t, "mode", "tap"], check=True)
                req = runtime_pb2.VirtualMachine(
                    name=name, memory_mib=128, kernel_path=KERNEL, initramfs_path=vmd.initrd,
                    interfaces=[runtime_pb2.NetworkInterface(), runtime_pb2.NetworkInterface()])
                details = expect_code(ch, req, grpc.StatusCode.ALREADY_EXISTS,
                                      "tap %s: a link of that name exists" % existing[0])
                assert "interface %d" % taps.index(existing[0]) in details, details
                for t in existing:
                    assert link_exists(t), (t, existing)
                    # Not attached to or described by auraed.
                    with open("/sys/class/net/%s/ifalias" % t) as f:
                        assert f.read().strip() == ""
                # The tap this VM did make (au-NAME-0 in the second round) is gone.
                for t in set(taps) - set(existing):
                    assert not link_exists(t), t
                assert not os.path.exists(os.path.join(vmd.runtime_dir, "vms", name))
                assert list(list_vms(ch)) == []
                for t in existing:
                    subprocess.run(["ip", "link", "del", t], check=True)
    finally:
        for t in taps:
            subprocess.run(["ip", "link", "del", t], capture_output=True)


def test_wait_on_failed_start_returns(vmd):
    # A Wait that finds the name while RunVirtualMachine is still starting
    # the VM, and the start then fails: the Wait returns the failure (state
    # CRASHED, the reason) at once instead of waiting out its deadline.
    junk = os.path.join(vmd.images, "junk-kernel")
    with open(junk, "wb") as f:
        f.write(b"not a kernel\n" * 100)
    waited = None
    with vmd.channel() as ch:
        for attempt in range(20):
            name = "junkwait%d" % attempt
            run_err = []

            def start():
                try:
                    run_vm(ch, vmd, name, kernel_path=junk, nics=4)
                except grpc.RpcError as e:
                    run_err.append(e)

            t = threading.Thread(target=start)
            t.start()
            while waited is None:
                t0 = time.time()
                try:
                    waited = call(ch, "Wait", runtime_pb2.WaitRequest(ref=ref(name)),
                                  runtime_pb2.WorkloadStatus, timeout=20).virtual_machine
                    elapsed = time.time() - t0
                except grpc.RpcError as e:
                    assert e.code() == grpc.StatusCode.NOT_FOUND, (e.code(), e.details())
                    if not t.is_alive():
                        break
            t.join()
            assert run_err and run_err[0].code() == grpc.StatusCode.FAILED_PRECONDITION
            if waited is not None:
                break
        assert waited is not None, "no Wait arrived while the VM was starting"
        assert elapsed < 10, elapsed
        assert waited.state == runtime_pb2.VIRTUAL_MACHINE_STATE_CRASHED, waited
        assert "VMM did not start" in waited.exit_reason, waited.exit_reason
        assert waited.ended_at_ns > 0
        # ...and nothing of it is left.
        assert list(list_vms(ch)) == []
        assert not os.path.exists(os.path.join(vmd.runtime_dir, "vms", waited.name))


def test_stop_grace_bounded_and_cancellable(vmd):
    # A long name: its tap takes the hashed form, still works.
    # (Short enough for the socket paths under pytest's long tmp dirs.)
    name = "grace-longname%d" % (os.getpid() % 100)
    with vmd.channel() as ch:
        st = run_vm(ch, vmd, name, mode="deaf")
        tap = st.taps[0].host_name
        assert len(tap) <= 15 and tap.startswith("au-gra_") and link_exists(tap), tap
        with open("/sys/class/net/%s/ifalias" % tap) as f:
            assert name in f.read()
        Console(ch, name).wait_for("AURAE-TEST-MARKER")
        # More than 10 minutes: refused, and the VM is left alone.
        with pytest.raises(grpc.RpcError) as e:
            call(ch, "Stop", runtime_pb2.StopRequest(ref=ref(name), grace_period_ms=700000),
                 runtime_pb2.WorkloadStatus)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.code()
        assert "grace_period_ms" in e.value.details(), e.value.details()
        vm = call(ch, "Inspect", runtime_pb2.InspectRequest(ref=ref(name)),
                  runtime_pb2.WorkloadStatus).virtual_machine
        assert vm.state == runtime_pb2.VIRTUAL_MACHINE_STATE_RUNNING
        # The guest ignores the power button; the caller gives up first.
        with pytest.raises(grpc.RpcError) as e:
            call(ch, "Stop", runtime_pb2.StopRequest(ref=ref(name), grace_period_ms=600000),
                 runtime_pb2.WorkloadStatus, timeout=2)
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # auraed shutting down ends a long stop's wait: the shutdown is prompt.
    done = []

    def long_stop():
        with vmd.channel() as ch2:
            try:
                call(ch2, "Stop", runtime_pb2.StopRequest(ref=ref(name), grace_period_ms=600000),
                     runtime_pb2.WorkloadStatus, timeout=120)
                done.append("ok")
            except grpc.RpcError as e2:
                done.append(e2.code())

    t = threading.Thread(target=long_stop)
    t.start()
    time.sleep(1.5)
    assert not done, done
    t0 = time.time()
    rc = vmd.stop(timeout=40)
    took = time.time() - t0
    t.join(30)
    assert rc == 0 and took < 10, (rc, took, vmd.logs()[-3000:])
    assert done and done[0] != "ok", done
    # The VM outlives auraed, as always; the next one stops it.
    assert os.path.exists("/proc/%d" % st.vmm_pid)
    vmd.start()
    with vmd.channel() as ch:
        ws = call(ch, "Stop", runtime_pb2.StopRequest(ref=ref(name), grace_period_ms=500),
                  runtime_pb2.WorkloadStatus)
        vm = ws.virtual_machine
        assert vm.state == runtime_pb2.VIRTUAL_MACHINE_STATE_STOPPED, vm
        assert "within 500 ms, VMM quit" in vm.exit_reason, vm.exit_reason
        fr = call(ch, "Free", runtime_pb2.FreeRequest(ref=ref(name)), runtime_pb2.FreeResponse)
        assert "tap " + tap in fr.freed
        assert_freed(vmd, st)


def test_fifo_image_refused_promptly(vmd):
    # open() of a FIFO blocks until a writer comes: a FIFO among the images
    # must be refused at once, not hold a worker forever.
    fifo = os.path.join(vmd.images, "fifo-kernel")
    os.mkfifo(fifo)
    try:
        with vmd.channel() as ch:
            for field, kw in (("kernel_path", dict(kernel_path=fifo)),
                              ("initramfs_path", dict(initramfs_path=fifo)),
                              ("disks[0]", dict(disks=[runtime_pb2.Disk(path=fifo)]))):
                base = dict(name="fifo", memory_mib=128, kernel_path=KERNEL,
                            initramfs_path=vmd.initrd, interfaces=[runtime_pb2.NetworkInterface()])
                base.update(kw)
                t0 = time.time()
                with pytest.raises(grpc.RpcError) as e:
                    call(ch, "RunVirtualMachine", runtime_pb2.VirtualMachine(**base),
                         runtime_pb2.VirtualMachineStatus, timeout=10)
                assert time.time() - t0 < 5
                assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, e.value.code())
                assert field + ": " + fifo + " is not a regular file" in e.value.details(), \
                    e.value.details()
            assert not link_exists("au-fifo-0")
            assert not os.path.exists(os.path.join(vmd.runtime_dir, "vms", "fifo"))
            assert list(list_vms(ch)) == []
    finally:
        # Release a reader stuck in open() (a regression), so auraed can stop.
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
