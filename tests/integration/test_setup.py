"""The README's first command (scripts/setup.sh) makes a PKI, a daemon
config and a client config, and starts auraed in daemon mode; `aer health`
then works with nothing but the default client config (~/.aurae/config)."""
import os
import signal
import subprocess
import time

from conftest import AER, REPO


def test_setup_then_aer_health_with_default_config(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ,
               HOME=str(home),
               AURAE_ETC=str(tmp_path / "etc"),
               AURAE_RUN=str(tmp_path / "run"),
               AURAE_LIB=str(tmp_path / "lib"),
               AURAE_BIN=str(tmp_path / "bin"),
               AURAE_LOG=str(tmp_path / "auraed.log"))
    # Reuse the tree's build (the apt and build steps are what CI's own
    # set-up already ran) and skip the guest kernel download.
    r = subprocess.run([os.path.join(REPO, "scripts", "setup.sh"), "--skip-apt", "--skip-build",
                        "--skip-kernel"], env=env, capture_output=True, text=True, timeout=120)
    pidfile = tmp_path / "run" / "auraed.pid"
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.strip().endswith("SERVING")
        key = tmp_path / "etc" / "pki" / "client-admin.key"
        assert os.stat(key).st_mode & 0o777 == 0o600
        assert os.stat(home / ".aurae" / "config").st_mode & 0o777 == 0o600
        # The daemon returned only once serving, so this cannot race.
        h = subprocess.run([AER, "health"], env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
                           capture_output=True, text=True, timeout=30)
        assert h.returncode == 0, h.stderr
        assert h.stdout.strip() == "SERVING"
        # Running set-up again keeps the PKI and the running daemon.
        ca_before = (tmp_path / "etc" / "pki" / "ca.crt").read_bytes()
        r2 = subprocess.run([os.path.join(REPO, "scripts", "setup.sh"), "--skip-apt",
                             "--skip-build", "--skip-kernel"], env=env, capture_output=True,
                            text=True, timeout=120)
        assert r2.returncode == 0, r2.stdout + r2.stderr
        assert "already serving" in r2.stdout
        assert (tmp_path / "etc" / "pki" / "ca.crt").read_bytes() == ca_before
    finally:
        if pidfile.exists():
            pid = int(pidfile.read_text())
            os.kill(pid, signal.SIGTERM)
            deadline = time.time() + 10
            while time.time() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
    assert not (tmp_path / "run" / "aurae.sock").exists()
