"""Issue 2: auraed serves over mutual TLS only, authorizes per method,
enforces limits, guards its socket, and shuts down cleanly."""
import os
import signal
import subprocess
import threading
import time

import grpc
import pytest

from conftest import (AER, AURAED, Daemon, health_call, health_pb2, runtime_call,
                      runtime_pb2, runtime_stream)

SERVING = health_pb2.HealthCheckResponse.SERVING


def test_health_serving_over_unix_socket(daemon):
    assert daemon.health(tcp=False) == SERVING


def test_health_serving_over_tcp_ipv6_loopback(daemon):
    assert daemon.health(tcp=True) == SERVING


def test_unix_socket_mode_is_0600(daemon):
    assert os.stat(daemon.socket).st_mode & 0o777 == 0o600


@pytest.mark.parametrize("tcp", [False, True])
def test_plaintext_client_rejected(daemon, tcp):
    with grpc.insecure_channel(daemon.target(tcp)) as ch:
        with pytest.raises(grpc.RpcError) as e:
            health_call(ch, timeout=3)
    assert e.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert daemon.health() == SERVING


def _wait_for_log(daemon, needle, timeout=5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if needle in daemon.logs():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("tcp", [False, True])
def test_client_without_certificate_rejected(daemon, pki, tcp):
    with daemon.channel(tcp=tcp, credentials=pki.credentials(with_cert=False)) as ch:
        with pytest.raises(grpc.RpcError) as e:
            health_call(ch, timeout=3)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    # Rejected handshakes are only visible through gRPC's log; auraed routes
    # it into its own.
    assert _wait_for_log(daemon, "tls: rejected connection"), daemon.logs()


def test_client_certificate_from_another_ca_rejected(daemon, other_pki):
    # The other CA's client cert, trusting our CA for the server side.
    import grpc as g
    creds = g.ssl_channel_credentials(
        root_certificates=daemon.pki.read("ca.crt"),
        private_key=other_pki.read("client-admin.key"),
        certificate_chain=other_pki.read("client-admin.crt"))
    with daemon.channel(credentials=creds) as ch:
        with pytest.raises(grpc.RpcError) as e:
            health_call(ch, timeout=3)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert daemon.health() == SERVING


def test_read_only_identity(daemon, pki):
    with daemon.channel("viewer") as ch:
        assert health_call(ch).status == SERVING
        # Read-only calls are allowed.
        runtime_call(ch, "List", runtime_pb2.ListRequest(), runtime_pb2.ListResponse)
        v = runtime_call(ch, "Version", runtime_pb2.VersionRequest(), runtime_pb2.VersionResponse)
        assert v.peer_identity == pki.spiffe("viewer")
        assert v.peer_role == "read-only"
        # A mutating call is denied, with the reason.
        with pytest.raises(grpc.RpcError) as e:
            runtime_call(ch, "RunCell", runtime_pb2.Cell(name="x"), runtime_pb2.CellStatus)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert pki.spiffe("viewer") in e.value.details()
    logs = daemon.logs()
    assert "RunCell by %s: PERMISSION_DENIED" % pki.spiffe("viewer") in logs, logs


def test_identity_without_role_denied_everything(daemon, pki):
    with daemon.channel("stranger") as ch:
        with pytest.raises(grpc.RpcError) as e:
            health_call(ch)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert pki.spiffe("stranger") in e.value.details()


def test_admin_identity_and_version(daemon, pki):
    with daemon.channel("admin", tcp=True) as ch:
        v = runtime_call(ch, "Version", runtime_pb2.VersionRequest(), runtime_pb2.VersionResponse)
    assert v.peer_role == "admin"
    assert v.peer_identity == pki.spiffe("admin")
    assert v.spiffe_id.startswith("spiffe://%s/auraed/" % pki.trust_domain)
    assert v.version


def test_oversized_message_resource_exhausted(daemon):
    big = runtime_pb2.Executable(cell_name="a", name="b", args=["x" * (5 << 20)])
    with daemon.channel() as ch:
        with pytest.raises(grpc.RpcError) as e:
            runtime_call(ch, "RunExecutable", big, runtime_pb2.ExecutableStatus)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert health_call(ch).status == SERVING
    assert daemon.proc.poll() is None


def test_unknown_method_unimplemented(daemon):
    with daemon.channel() as ch:
        stub = ch.unary_unary("/aurae.runtime.v0.Runtime/NoSuchMethod")
        with pytest.raises(grpc.RpcError) as e:
            stub(b"", timeout=5)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "NoSuchMethod" in e.value.details()


def test_not_yet_implemented_call_names_what_is_missing(daemon):
    with daemon.channel() as ch:
        with pytest.raises(grpc.RpcError) as e:
            runtime_call(ch, "RunPod", runtime_pb2.Pod(name="p"), runtime_pb2.PodStatus)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "pods" in e.value.details()


def test_garbage_request_invalid_argument(daemon):
    with daemon.channel() as ch:
        stub = ch.unary_unary("/aurae.runtime.v0.Runtime/List")
        with pytest.raises(grpc.RpcError) as e:
            stub(b"\xff\xff\xff\xff", timeout=5)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert daemon.health() == SERVING


def test_second_daemon_on_same_socket_fails_and_first_keeps_serving(daemon, pki, tmp_path):
    second = Daemon(pki, str(tmp_path / "second"), listen_tcp=False,
                    extra_config={"socket": daemon.socket})
    second.start(wait=False)
    rc = second.proc.wait(timeout=10)
    second.stop()
    assert rc != 0
    assert "another auraed" in second.logs() and daemon.socket in second.logs()
    assert os.path.exists(daemon.socket)
    assert daemon.health() == SERVING


def test_second_daemon_on_same_tcp_port_fails(daemon, pki, tmp_path):
    second = Daemon(pki, str(tmp_path / "second"), listen_tcp=False,
                    extra_config={"listen": ["[::1]:%d" % daemon.port]})
    second.start(wait=False)
    rc = second.proc.wait(timeout=10)
    second.stop()
    # A clean failure (exit 1), not an abort, and nothing left behind.
    assert rc == 1, second.logs()
    assert "listen on [::1]:%d" % daemon.port in second.logs()
    assert not os.path.exists(second.socket)
    assert daemon.health(tcp=True) == SERVING


def test_second_daemon_on_same_runtime_dir_fails(daemon, pki, tmp_path):
    """Workloads live in the runtime dir: a second daemon on another socket
    must not supervise them too."""
    second = Daemon(pki, str(tmp_path / "second"), listen_tcp=False,
                    extra_config={"runtime_dir": daemon.runtime_dir})
    second.start(wait=False)
    rc = second.proc.wait(timeout=10)
    second.stop()
    assert rc == 1
    assert "another auraed (pid %d) uses the runtime dir %s" % (
        daemon.proc.pid, daemon.runtime_dir) in second.logs(), second.logs()
    assert daemon.health() == SERVING


def test_socket_in_a_directory_others_can_write_is_refused(pki, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    d = Daemon(pki, str(tmp_path / "d"), listen_tcp=False,
               extra_config={"socket": str(shared / "aurae.sock")})
    d.start(wait=False)
    rc = d.proc.wait(timeout=10)
    d.stop()
    assert rc == 1
    assert "writable by group or others" in d.logs()
    assert not os.path.exists(shared / "aurae.sock")


def test_sigterm_exits_zero_and_removes_socket(daemon):
    start = time.time()
    rc = daemon.stop(signal.SIGTERM)
    assert rc == 0, daemon.logs()
    assert time.time() - start < 5
    assert not os.path.exists(daemon.socket)


def test_sigterm_ends_health_watch_with_not_serving(daemon):
    seen = []
    done = threading.Event()

    def watch():
        with daemon.channel() as ch:
            stub = ch.unary_stream(
                "/grpc.health.v1.Health/Watch",
                request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                response_deserializer=health_pb2.HealthCheckResponse.FromString)
            try:
                for r in stub(health_pb2.HealthCheckRequest(), timeout=20):
                    seen.append(r.status)
            except grpc.RpcError:
                pass
        done.set()

    t = threading.Thread(target=watch)
    t.start()
    deadline = time.time() + 5
    while not seen and time.time() < deadline:
        time.sleep(0.02)
    assert seen == [SERVING]
    assert daemon.stop(signal.SIGTERM) == 0
    assert done.wait(10)
    assert seen[-1] == health_pb2.HealthCheckResponse.NOT_SERVING


def test_bad_config_names_the_key(pki, tmp_path):
    d = Daemon(pki, str(tmp_path / "bad"), extra_config={"limits": {"max_mesage_bytes": 5}})
    d.start(wait=False)
    rc = d.proc.wait(timeout=10)
    d.stop()
    assert rc == 2
    assert "limits.max_mesage_bytes: unknown key" in d.logs()


def test_aer_health_and_exit_codes(daemon):
    r = daemon.aer("health")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "SERVING"
    r = daemon.aer("-o", "json", "health")
    assert r.returncode == 0 and '"status": "SERVING"' in r.stdout
    r = daemon.aer("health", "no.such.Service")
    assert r.returncode == 1 + 5  # NOT_FOUND
    assert "NOT_FOUND" in r.stderr
    r = daemon.aer("version", user="viewer")
    assert r.returncode == 0 and "read-only" in r.stdout


def test_aer_reports_unreachable_daemon(pki, tmp_path):
    r = subprocess.run([AER, "--socket", str(tmp_path / "nothing.sock"),
                        "--ca-crt", pki.path("ca.crt"),
                        "--client-crt", pki.path("client-admin.crt"),
                        "--client-key", pki.path("client-admin.key"), "health"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 + 14  # UNAVAILABLE
    assert "UNAVAILABLE" in r.stderr


def test_stalled_tls_handshake_is_closed(daemon_factory):
    """A peer that connects and never speaks TLS is dropped after the
    configured handshake timeout, not held forever."""
    import socket as s
    d = daemon_factory(extra_config={"limits": {"handshake_timeout_ms": 500}}).start()
    conn = s.create_connection(("::1", d.port))
    conn.settimeout(10)
    start = time.time()
    try:
        data = conn.recv(1)
    except ConnectionResetError:
        data = b""
    elapsed = time.time() - start
    conn.close()
    assert data == b""
    assert elapsed < 5, elapsed
    assert d.health() == SERVING


def test_ipv6_link_local_listener_with_scope(pki, tmp_path):
    """--listen [fe80::1%IFACE]:PORT works: auraed and aer run in a network
    namespace of the test's own with a veth interface carrying fe80::1."""
    ns = "aurae-test-%d" % os.getpid()
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        def in_ns(*cmd, **kw):
            return subprocess.run(["ip", "netns", "exec", ns] + list(cmd), **kw)
        in_ns("ip", "link", "set", "lo", "up", check=True)
        # A veth pair (no dummy module on every kernel); both ends stay in
        # the namespace.
        in_ns("ip", "link", "add", "dum0", "type", "veth", "peer", "name", "dum1", check=True)
        in_ns("sysctl", "-qw", "net.ipv6.conf.dum0.accept_dad=0", check=True)
        in_ns("ip", "link", "set", "dum1", "up", check=True)
        in_ns("ip", "link", "set", "dum0", "up", check=True)
        in_ns("ip", "addr", "add", "fe80::1/64", "dev", "dum0", "nodad", check=True)
        d = Daemon(pki, str(tmp_path / "ll"), listen_tcp=False,
                   extra_config={"socket": "", "listen": ["[fe80::1%dum0]:8443"]})
        d.args = ["ip", "netns", "exec", ns] + d.args
        d.start(wait=False)
        try:
            ok = None
            deadline = time.time() + 15
            while time.time() < deadline:
                ok = in_ns(AER, "--socket", "[fe80::1%dum0]:8443",
                           "--ca-crt", pki.path("ca.crt"),
                           "--client-crt", pki.path("client-admin.crt"),
                           "--client-key", pki.path("client-admin.key"), "health",
                           capture_output=True, text=True, timeout=30)
                if ok.returncode == 0:
                    break
                time.sleep(0.1)
            assert ok.returncode == 0, ok.stderr + d.logs()
            assert ok.stdout.strip() == "SERVING"
            assert "[fe80::1%dum0]:8443" in d.logs()
        finally:
            assert d.stop() == 0
    finally:
        subprocess.run(["ip", "netns", "del", ns])


def test_max_concurrent_streams_per_connection(daemon_factory):
    """With max_concurrent_streams=1, a second call on the same connection
    waits until the first stream ends."""
    d = daemon_factory(extra_config={"limits": {"max_concurrent_streams": 1}}).start()
    with d.channel() as ch:
        watch = ch.unary_stream(
            "/grpc.health.v1.Health/Watch",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString)
        stream = watch(health_pb2.HealthCheckRequest(), timeout=30)
        assert next(stream).status == SERVING
        with pytest.raises(grpc.RpcError) as e:
            health_call(ch, timeout=1)
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        stream.cancel()
        deadline = time.time() + 5
        while True:
            try:
                assert health_call(ch, timeout=2).status == SERVING
                break
            except grpc.RpcError:
                if time.time() > deadline:
                    raise


def test_idle_connection_is_closed(daemon_factory, pki):
    """A TLS + HTTP/2 connection with no calls is closed after the idle
    timeout (GOAWAY, then EOF)."""
    import socket as s
    import ssl
    d = daemon_factory(extra_config={"limits": {"idle_timeout_ms": 1000}}).start()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki.path("ca.crt"))
    ctx.load_cert_chain(pki.path("client-admin.crt"), pki.path("client-admin.key"))
    ctx.set_alpn_protocols(["h2"])
    raw = s.create_connection(("::1", d.port))
    conn = ctx.wrap_socket(raw, server_hostname="localhost")
    # HTTP/2 client preface and an empty SETTINGS frame.
    conn.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
    conn.settimeout(10)
    start = time.time()
    received = b""
    while True:
        try:
            chunk = conn.recv(4096)
        except (ConnectionResetError, ssl.SSLError):
            break
        if not chunk:
            break
        received += chunk
    elapsed = time.time() - start
    conn.close()
    assert 0.5 < elapsed < 8, elapsed
    # A GOAWAY frame (type 0x7) came before the close.
    frame_types, off = [], 0
    while off + 9 <= len(received):
        length = int.from_bytes(received[off:off + 3], "big")
        frame_types.append(received[off + 3])
        off += 9 + length
    assert 0x7 in frame_types, frame_types


def test_aer_refuses_a_server_that_is_not_an_auraed(pki, tmp_path):
    """A certificate of the same CA that is not an auraed's (here a spawned
    instance's) cannot pose as the daemon to aer; --server-id pins one."""
    inst = tmp_path / "inst"
    subprocess.run([AER, "pki", "instance", "evil", "--dir", pki.dir, "--out", str(inst)],
                   check=True, capture_output=True)
    d = Daemon(pki, str(tmp_path / "d"), listen_tcp=False)
    d.args += ["--server-crt", str(inst / "instance-evil.crt"),
               "--server-key", str(inst / "instance-evil.key")]
    d.start(wait=False)
    try:
        deadline = time.time() + 10
        while not os.path.exists(d.socket) and time.time() < deadline:
            time.sleep(0.05)
        r = d.aer("health")
        assert r.returncode != 0
        assert "spiffe://%s/instance/evil, not an auraed identity" % pki.trust_domain in r.stderr
    finally:
        d.stop()
    ok = Daemon(pki, str(tmp_path / "ok"), listen_tcp=False).start()
    try:
        assert ok.aer("health").returncode == 0
        r = ok.aer("--server-id", "spiffe://%s/auraed/other-host" % pki.trust_domain, "health")
        assert r.returncode != 0 and "not spiffe://%s/auraed/other-host" % pki.trust_domain in r.stderr
        mine = runtime_call(ok.channel(), "Version", runtime_pb2.VersionRequest(),
                            runtime_pb2.VersionResponse).spiffe_id
        assert ok.aer("--server-id", mine, "health").returncode == 0
    finally:
        ok.stop()


def test_stop_grace_period_is_bounded(daemon):
    ref = runtime_pb2.WorkloadRef(kind=runtime_pb2.WORKLOAD_KIND_CELL, name="any")
    with daemon.channel() as ch:
        with pytest.raises(grpc.RpcError) as e:
            runtime_call(ch, "Stop", runtime_pb2.StopRequest(ref=ref, grace_period_ms=600001),
                         runtime_pb2.WorkloadStatus)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "grace_period_ms" in e.value.details()


def _forge_client_cert(pki, tmp_path, name, cn, uris):
    """A client certificate signed by the test CA, made with the openssl CLI
    (not aer pki), with the given CN and URI SANs."""
    key, csr, crt, ext = (str(tmp_path / (name + s)) for s in (".key", ".csr", ".crt", ".ext"))
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-out", key], check=True, capture_output=True)
    subject = "/CN=" + cn.replace("/", "\\/")
    subprocess.run(["openssl", "req", "-new", "-key", key, "-subj", subject, "-out", csr],
                   check=True, capture_output=True)
    with open(ext, "w") as f:
        f.write("extendedKeyUsage=clientAuth\n")
        if uris:
            f.write("subjectAltName=" + ",".join("URI:" + u for u in uris) + "\n")
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", pki.path("ca.crt"),
                    "-CAkey", pki.path("ca.key"), "-CAcreateserial", "-days", "1",
                    "-extfile", ext, "-out", crt], check=True, capture_output=True)
    with open(key, "rb") as k, open(crt, "rb") as c:
        return grpc.ssl_channel_credentials(root_certificates=pki.read("ca.crt"),
                                            private_key=k.read(), certificate_chain=c.read())


def test_a_common_name_cannot_pass_for_a_spiffe_id(daemon_factory, pki, tmp_path):
    admin = pki.spiffe("admin")
    d = daemon_factory(extra_config={"authorization": {
        "admin": [admin], "read_only": ["cn:ops"]}}).start()
    no_uri = _forge_client_cert(pki, tmp_path, "no-uri", admin, [])
    two_uris = _forge_client_cert(pki, tmp_path, "two-uris", admin,
                                  [admin, pki.spiffe("other")])
    for creds in (no_uri, two_uris):
        with d.channel(credentials=creds) as ch:
            with pytest.raises(grpc.RpcError) as e:
                runtime_call(ch, "Version", runtime_pb2.VersionRequest(),
                             runtime_pb2.VersionResponse)
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # A certificate without URI SANs is named "cn:NAME".
    ops = _forge_client_cert(pki, tmp_path, "ops", "ops", [])
    with d.channel(credentials=ops) as ch:
        v = runtime_call(ch, "Version", runtime_pb2.VersionRequest(), runtime_pb2.VersionResponse)
    assert (v.peer_identity, v.peer_role) == ("cn:ops", "read-only")


def test_a_burst_of_streams_gets_enough_workers(daemon):
    """Six streams opened at once on a fresh daemon (two idle workers) are
    all answered, and a unary call still goes through."""
    with daemon.channel() as ch:
        watch = ch.unary_stream(
            "/grpc.health.v1.Health/Watch",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString)
        streams = [watch(health_pb2.HealthCheckRequest(), timeout=20) for _ in range(6)]
        assert [next(s).status for s in streams] == [SERVING] * 6
        assert health_call(ch, timeout=3).status == SERVING
        for s in streams:
            s.cancel()


def test_long_calls_are_capped_and_unary_calls_still_served(daemon_factory):
    """Streams and waits cannot take every worker: past the cap they get
    RESOURCE_EXHAUSTED, and unary calls keep being served."""
    d = daemon_factory(extra_config={"limits": {"max_concurrent_streams": 1000}}).start()
    cap = 128
    with d.channel() as ch:
        watch = ch.unary_stream(
            "/grpc.health.v1.Health/Watch",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString)
        streams = [watch(health_pb2.HealthCheckRequest(), timeout=60) for _ in range(cap)]
        assert all(next(s).status == SERVING for s in streams)
        extra = watch(health_pb2.HealthCheckRequest(), timeout=10)
        with pytest.raises(grpc.RpcError) as e:
            next(extra)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert health_call(ch, timeout=5).status == SERVING
        for s in streams:
            s.cancel()


def test_unknown_fields_are_refused_before_decoding(daemon):
    with daemon.channel() as ch:
        stub = ch.unary_unary("/aurae.runtime.v0.Runtime/List")
        # field 9, varint: unknown to ListRequest
        with pytest.raises(grpc.RpcError) as e:
            stub(b"\x48\x01", timeout=5)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "field 9 of aurae.runtime.v0.ListRequest is unknown" in e.value.details()
        # Unknown fields nested in a known message are refused too.
        run_cell = ch.unary_unary("/aurae.runtime.v0.Runtime/RunCell")
        with pytest.raises(grpc.RpcError) as e:
            run_cell(b"\x12\x02\x70\x01", timeout=5)  # Cell.resources{ field 14 }
        assert "of aurae.runtime.v0.CellResources is unknown" in e.value.details()
        # 4 MiB of two-byte unknown fields: refused at once, no blow-up.
        rss_before = _rss_kb(daemon.proc.pid)
        with pytest.raises(grpc.RpcError) as e:
            health = ch.unary_unary("/grpc.health.v1.Health/Check")
            health(b"\x10\x01" * ((4 << 20) // 2 - 64), timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert _rss_kb(daemon.proc.pid) - rss_before < 64 * 1024
        assert health_call(ch).status == SERVING


def _rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
