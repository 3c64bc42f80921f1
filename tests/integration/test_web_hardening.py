"""The daemon's HTTP side as a process: it survives slow clients under a pids limit, and serves TLS with
client certificates and basic auth (scraped with curl and with Python's ssl client).

Runs inside a private network namespace: every connection is on its loopback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import bcrypt
import pytest

from tests.integration.test_daemon import PORT, config, samples, scrape, start
from tests.support.netns import REPO, NetNS, stop, wait_line, wait_until
from tests.support.pidlimit import PidsLimit, why_no_pids_cgroup
from tests.support.tlscerts import Certs, make_certs

pytestmark = pytest.mark.integration

PASSWORD = "correct horse"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
URL = f"https://127.0.0.1:{PORT}/metrics"


def threads(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


def last_poll(ns: NetNS) -> float:
    """End of the last successful poll (0 before the first one)."""
    return samples(scrape(ns)).get(("tcpwatchd_last_poll_timestamp_seconds", ()), 0.0)


def test_slow_clients_under_a_pids_limit_neither_crash_nor_blind_the_daemon(tmp_path: Path) -> None:
    reason = why_no_pids_cgroup()
    if reason:
        pytest.fail(reason) if os.environ.get("CI") == "true" else pytest.skip(reason)
    with NetNS() as ns, PidsLimit(64) as limit:
        daemon = start(ns, config(tmp_path))
        limit.add(daemon.pid)
        wait_until(lambda: _serves(ns) and last_poll(ns) > 0, timeout=30, what="a first poll")
        attack = ns.python(str(REPO / "tests/support/slow_clients.py"), str(PORT), "600", "60")
        try:
            assert "uid=65534" in wait_line(attack, "READY", timeout=60)
            before = last_poll(ns)
            peak = 0
            for _ in range(8):  # 8 rounds of 1 s: every scrape answers within its own 5 s timeout
                time.sleep(1)
                assert daemon.poll() is None, daemon.stderr.read() if daemon.stderr else ""
                t0 = time.monotonic()
                got = samples(scrape(ns))
                assert time.monotonic() - t0 < 5
                peak = max(peak, threads(daemon.pid))
            assert got[("tcpwatchd_last_poll_timestamp_seconds", ())] > before + 3  # polls went on
            assert got[("tcpwatchd_poll_errors_total", (("stage", "poll"),))] == 0
            assert peak <= 12, f"{peak} threads"
            assert _held(daemon.pid) >= 100  # the attack really held connections open
        finally:
            stop(attack)
            stop(daemon)


def _held(pid: int) -> int:
    """Sockets the daemon holds (its listener, netlink, and the attacker's connections)."""
    return sum(
        1 for fd in os.listdir(f"/proc/{pid}/fd") if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    )


def _serves(ns: NetNS) -> bool:
    try:
        return "tcpwatchd_build_info" in scrape(ns)
    except subprocess.CalledProcessError:
        return False


def web_config(path: Path, certs: Certs, client_auth: str = "NoClientCert") -> Path:
    ca = f"  client_ca_file: {certs.ca}\n" if client_auth != "NoClientCert" else ""
    path.write_text(
        f"tls_server_config:\n  cert_file: {certs.server_cert}\n  key_file: {certs.server_key}\n"
        f"  client_auth_type: {client_auth}\n{ca}"
        "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"
        f"basic_auth_users:\n  prometheus: {HASH}\n"
    )
    return path


def curl(ns: NetNS, certs: Certs, *extra: str) -> subprocess.CompletedProcess[str]:
    return ns.run(
        "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", "--cacert", str(certs.ca),
        *extra, URL, check=False, timeout=30,
    )  # fmt: skip


PY_CLIENT = """
import base64, socket, ssl, sys
ca, cert, key, user = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=ca)
if cert != "-":
    ctx.load_cert_chain(cert, key)
auth = base64.b64encode(user.encode()).decode()
try:
    with socket.create_connection(("127.0.0.1", int(sys.argv[5])), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(f"GET /metrics HTTP/1.1\\r\\nAuthorization: Basic {auth}\\r\\n\\r\\n".encode())
            print(s.recv(100).split(b"\\r\\n")[0].decode(), s.version())
except (ssl.SSLError, ConnectionError) as e:
    print("TLS-ERROR", type(e).__name__, e)
"""


def py_scrape(ns: NetNS, certs: Certs, user: str, cert: Path | None = None, key: Path | None = None) -> str:
    args = (str(certs.ca), str(cert or "-"), str(key or "-"), user, str(PORT))
    return ns.run(sys.executable, "-c", PY_CLIENT, *args, timeout=30).stdout.strip()


def test_tls_basic_auth_and_client_certificates(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs")
    web = web_config(tmp_path / "web.yml", certs)
    cfg = config(tmp_path, f'[exporter]\nweb_config_file = "{web}"\n')
    good = f"prometheus:{PASSWORD}"
    with NetNS() as ns:
        daemon = start(ns, cfg)
        try:
            wait_until(lambda: curl(ns, certs, "-u", good).stdout == "200", timeout=30, what="HTTPS")
            assert curl(ns, certs, "-u", "prometheus:wrong").stdout == "401"
            assert curl(ns, certs).stdout == "401"
            headers = ns.run("curl", "-sSI", "--cacert", str(certs.ca), "-u", good, URL, timeout=30).stdout
            assert "x-content-type-options: nosniff" in headers.lower()
            plain = ns.run("curl", "-sS", "--max-time", "5", f"http://127.0.0.1:{PORT}/metrics", check=False)
            assert "tcpwatchd_build_info" not in plain.stdout  # no plain HTTP on a TLS listener
            assert py_scrape(ns, certs, good).startswith("HTTP/1.1 200 OK TLSv1.")
            assert py_scrape(ns, certs, "prometheus:nope").startswith("HTTP/1.1 401")

            # Reload: now a client certificate signed by our CA is required as well.
            web_config(tmp_path / "web.yml", certs, "RequireAndVerifyClientCert")
            daemon.send_signal(signal.SIGHUP)
            wait_until(lambda: curl(ns, certs, "-u", good).returncode != 0, timeout=15, what="mTLS")
            client = ("--cert", str(certs.client_cert), "--key", str(certs.client_key), "-u", good)
            assert curl(ns, certs, *client).stdout == "200"
            rogue = ("--cert", str(certs.rogue_cert), "--key", str(certs.rogue_key), "-u", good)
            assert curl(ns, certs, *rogue).returncode != 0
            assert py_scrape(ns, certs, good).startswith("TLS-ERROR")
            assert py_scrape(ns, certs, good, certs.client_cert, certs.client_key).startswith("HTTP/1.1 200")

            # A broken web config on reload is refused: the running one stays.
            (tmp_path / "web.yml").write_text("basic_auth_users:\n  prometheus: plaintext\n")
            daemon.send_signal(signal.SIGHUP)
            time.sleep(1.5)
            assert curl(ns, certs, *client).stdout == "200"
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=15) == 0
            err = daemon.stderr.read() if daemon.stderr else ""
            assert "serving metrics on https://127.0.0.1:9814/metrics, basic auth" in err
            assert "reload refused" in err and "not a bcrypt hash" in err
            assert "plaintext" not in err and "Traceback" not in err
        finally:
            stop(daemon)


def test_plain_http_on_the_network_warns(tmp_path: Path) -> None:
    cfg = config(tmp_path, '[exporter]\nlisten_address = "0.0.0.0"\n')
    with NetNS() as ns:
        daemon = start(ns, cfg)
        try:
            wait_until(lambda: _serves(ns), timeout=30, what="metrics")
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=15) == 0
            assert "plain HTTP on 0.0.0.0:9814, reachable from the network" in (daemon.stderr.read() or "")
        finally:
            stop(daemon)


@pytest.mark.parametrize("kind", ["fifo", "devzero", "deep", "bool_port"])
def test_a_hostile_config_on_sighup_is_refused_and_the_daemon_goes_on(tmp_path: Path, kind: str) -> None:
    cfg = config(tmp_path)
    with NetNS() as ns:
        daemon = start(ns, cfg)
        try:
            wait_until(lambda: _serves(ns), timeout=30, what="metrics")
            cfg.unlink()
            if kind == "fifo":
                os.mkfifo(cfg)
            elif kind == "devzero":
                cfg.symlink_to("/dev/zero")
            elif kind == "deep":
                cfg.write_text("x = " + "[" * 50_000 + "]" * 50_000 + "\n")
            else:
                cfg.write_text("[exporter]\nport = true\n")
            before = last_poll(ns)
            daemon.send_signal(signal.SIGHUP)
            wait_until(lambda: last_poll(ns) > before + 1, timeout=15, what="polls after the reload")
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=15) == 0
            err = daemon.stderr.read() if daemon.stderr else ""
            assert "reload refused" in err and "Traceback" not in err
        finally:
            stop(daemon)


def test_a_poll_that_cannot_start_its_thread_fails_alone_and_is_counted(tmp_path: Path) -> None:
    """pids.max at the daemon's own task count: the poll's sock_diag helper thread cannot start
    (RuntimeError). The poll fails, is counted, the daemon and its listener go on; polls resume after."""
    reason = why_no_pids_cgroup()
    if reason:
        pytest.fail(reason) if os.environ.get("CI") == "true" else pytest.skip(reason)
    errors = ("tcpwatchd_poll_errors_total", (("stage", "poll"),))
    cfg = config(tmp_path)
    cfg.write_text(cfg.read_text().replace("[daemon]\n", '[daemon]\nsource = "sockdiag"\n'))
    # One namespace: other namespaces' reads lengthen the poll, and a transient helper thread counted in
    # pids.current would leave room for the next poll's thread.
    cfg.write_text(cfg.read_text() + '[namespaces]\nwatch = "own"\n')
    with NetNS() as ns, PidsLimit(4096) as limit:
        daemon = start(ns, cfg)
        limit.add(daemon.pid)
        try:
            wait_until(lambda: _serves(ns), timeout=30, what="metrics")
            assert samples(scrape(ns))[errors] == 0
            (limit.path / "pids.max").write_text((limit.path / "pids.current").read_text().strip())
            wait_until(lambda: samples(scrape(ns))[errors] >= 3, timeout=15, what="failed polls counted")
            assert daemon.poll() is None
            (limit.path / "pids.max").write_text("max")
            before = last_poll(ns)
            wait_until(lambda: last_poll(ns) > before, timeout=15, what="polls to resume")
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=15) == 0
            err = daemon.stderr.read() if daemon.stderr else ""
            assert err.count("poll failed (poll): RuntimeError") == 1  # once per streak
            assert "polls work again after" in err and "Traceback" not in err
        finally:
            stop(daemon)
