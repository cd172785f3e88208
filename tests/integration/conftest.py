"""Fixtures for the integration suites: a real PKI made by `aer pki`, real
auraed processes, and an independent gRPC client (Debian's python3-grpcio)
speaking real mutual TLS.

Environment:
  AURAE_BUILD_DIR  meson build directory (default: <repo>/build)
"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import grpc
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("AURAE_BUILD_DIR", os.path.join(REPO, "build"))
AURAED = os.path.join(BUILD, "src", "daemon", "auraed")
AER = os.path.join(BUILD, "src", "cli", "aer")
TRUST_DOMAIN = "test.aurae"
RUNTIME = "/aurae.runtime.v0.Runtime/"
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def _generate_protos():
    """Compile the repo's protos for Python so the client is built from the
    same API definition as the daemon, not from a hand-written copy."""
    out = tempfile.mkdtemp(prefix="aurae-pb-")
    for d, name in (("aurae/runtime/v0", "runtime"), ("grpc/health/v1", "health")):
        subprocess.run(
            ["protoc", "--proto_path=" + os.path.join(REPO, "api", d),
             "--python_out=" + out, name + ".proto"],
            check=True)
    sys.path.insert(0, out)


_generate_protos()
import health_pb2  # noqa: E402
import runtime_pb2  # noqa: E402


def free_port():
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        s.bind(("::1", 0))
        return s.getsockname()[1]


class Pki:
    """A CA, a server certificate and client certificates from `aer pki`."""

    def __init__(self, directory, trust_domain=TRUST_DOMAIN, clients=("admin", "viewer", "stranger")):
        self.dir = directory
        self.trust_domain = trust_domain
        args = [AER, "pki", "init", "--dir", directory, "--trust-domain", trust_domain]
        for c in clients:
            args += ["--client", c]
        subprocess.run(args, check=True, capture_output=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def read(self, name):
        with open(self.path(name), "rb") as f:
            return f.read()

    def spiffe(self, user):
        return "spiffe://%s/user/%s" % (self.trust_domain, user)

    def credentials(self, user="admin", with_cert=True):
        root = self.read("ca.crt")
        if not with_cert:
            return grpc.ssl_channel_credentials(root_certificates=root)
        return grpc.ssl_channel_credentials(
            root_certificates=root,
            private_key=self.read("client-%s.key" % user),
            certificate_chain=self.read("client-%s.crt" % user))


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return Pki(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture(scope="session")
def other_pki(tmp_path_factory):
    """A second, unrelated CA with its own `admin` client."""
    return Pki(str(tmp_path_factory.mktemp("other-pki")), clients=("admin",))


class Daemon:
    """One real auraed with its own socket, runtime and library dirs."""

    def __init__(self, pki, workdir, listen_tcp=True, extra_config=None, extra_args=()):
        self.pki = pki
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.socket = os.path.join(workdir, "aurae.sock")
        self.runtime_dir = os.path.join(workdir, "run")
        self.library_dir = os.path.join(workdir, "lib")
        self.port = free_port() if listen_tcp else None
        self.config_path = os.path.join(workdir, "auraed.conf")
        self.log_path = os.path.join(workdir, "auraed.log")
        config = {
            "socket": self.socket,
            "runtime_dir": self.runtime_dir,
            "library_dir": self.library_dir,
            "ca_crt": pki.path("ca.crt"),
            "server_crt": pki.path("server.crt"),
            "server_key": pki.path("server.key"),
            "authorization": {
                "admin": [pki.spiffe("admin")],
                "read_only": [pki.spiffe("viewer")],
            },
        }
        if listen_tcp:
            config["listen"] = ["[::1]:%d" % self.port]
        if extra_config:
            config.update(extra_config)
        with open(self.config_path, "w") as f:
            json.dump(config, f)
        self.args = [AURAED, "--config", self.config_path, "-v"] + list(extra_args)
        self.proc = None

    def start(self, wait=True):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_serving()
        return self

    def wait_serving(self, timeout=15):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("auraed exited with %d:\n%s" % (self.proc.returncode, self.logs()))
            try:
                if self.health() == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError as e:
                last = e
            time.sleep(0.05)
        raise RuntimeError("auraed not serving after %ss (%s):\n%s" % (timeout, last, self.logs()))

    def logs(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def target(self, tcp=False):
        return "ipv6:[::1]:%d" % self.port if tcp else "unix:" + self.socket

    def channel(self, user="admin", tcp=False, credentials=None):
        creds = credentials or self.pki.credentials(user)
        return grpc.secure_channel(
            self.target(tcp), creds,
            options=(("grpc.ssl_target_name_override", "localhost"),
                     ("grpc.max_send_message_length", 64 << 20)))

    def health(self, user="admin", tcp=False, timeout=5):
        with self.channel(user, tcp) as ch:
            return health_call(ch, timeout=timeout).status

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()
            self.log = None
        return self.proc.returncode if self.proc else None

    def kill9(self):
        """auraed dies as in a crash: no shutdown, its workloads stay."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def aer(self, *args, user="admin", check=False, timeout=60, input=None):
        """Runs aer against this daemon with flags (no config file)."""
        cmd = [AER, "--socket", self.socket, "--ca-crt", self.pki.path("ca.crt"),
               "--client-crt", self.pki.path("client-%s.crt" % user),
               "--client-key", self.pki.path("client-%s.key" % user)] + list(args)
        return subprocess.run(cmd, capture_output=True, text=True, check=check,
                              timeout=timeout, input=input)


@pytest.fixture
def daemon_factory(pki, tmp_path):
    started = []

    def make(**kwargs):
        d = Daemon(pki, str(tmp_path / ("d%d" % len(started))), **kwargs)
        started.append(d)
        return d

    yield make
    problems = []
    for d in started:
        still_running = d.proc is not None and d.proc.poll() is None
        rc = d.stop()
        log = d.logs() if os.path.exists(d.log_path) else ""
        # Sanitizer builds (CI's second pass) report into auraed's log.
        for bad in SANITIZER_MARKERS:
            if bad in log:
                problems.append("%s in %s:\n%s" % (bad, d.log_path, log[-6000:]))
        if still_running and rc != 0:
            problems.append("auraed exited %s on SIGTERM:\n%s" % (rc, log[-4000:]))
    assert not problems, "\n".join(problems)


@pytest.fixture
def daemon(daemon_factory):
    return daemon_factory().start()


def health_call(channel, service="", timeout=5):
    stub = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString)
    return stub(health_pb2.HealthCheckRequest(service=service), timeout=timeout)


def runtime_call(channel, method, request, response_type, timeout=30):
    """A unary Runtime call, e.g. runtime_call(ch, "RunCell", Cell(...), CellStatus)."""
    stub = channel.unary_unary(
        RUNTIME + method,
        request_serializer=type(request).SerializeToString,
        response_deserializer=response_type.FromString)
    return stub(request, timeout=timeout)


def runtime_stream(channel, method, request, response_type, timeout=30):
    stub = channel.unary_stream(
        RUNTIME + method,
        request_serializer=type(request).SerializeToString,
        response_deserializer=response_type.FromString)
    return stub(request, timeout=timeout)
