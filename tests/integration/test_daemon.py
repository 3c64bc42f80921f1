"""The daemon as a process: start, scrape /metrics, systemd notify + watchdog, SIGHUP, SIGTERM.

It runs inside a private network namespace, so its port and the sockets it counts are its own.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tcpwatchd.sources.names import decode_name
from tests.support.netns import REPO, NetNS, stop, wait_line, wait_until

pytestmark = pytest.mark.integration

PORT = 9814
OWN_NS = (("namespace", ""), ("netns", ""), ("pod", ""))  # tcpwatchd's own network namespace
HOSTILE = b'ev"il\\n\nx\xff'  # quotes, backslash, newline, invalid UTF-8


def config(tmp_path: Path, body: str = "") -> Path:
    path = tmp_path / "tcpwatchd.toml"
    path.write_text('[daemon]\npoll_interval_seconds = 0.5\n[sysctl]\nmode = "audit"\n' + body)
    return path


def scrape(ns: NetNS, port: int = PORT) -> str:
    code = f"import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:{port}/metrics',timeout=5).read().decode())"
    return ns.run(sys.executable, "-c", code, timeout=20).stdout


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


class NotifyListener:
    """A fake $NOTIFY_SOCKET: a thread records every datagram the daemon sends, as systemd would."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._done.is_set():
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue

    def saw(self, field: str) -> bool:
        return any(field in m.split("\n") for m in list(self.messages))

    def close(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def ns() -> Iterator[NetNS]:
    with NetNS() as n:
        yield n


def start(ns: NetNS, cfg: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    full = dict(os.environ)
    full.pop("NOTIFY_SOCKET", None)
    full.pop("JOURNAL_STREAM", None)
    full.update(env or {})
    return ns.python("-m", "tcpwatchd", "run", "-c", str(cfg), env=full)


def test_daemon_lifecycle(ns: NetNS, tmp_path: Path) -> None:
    notify = NotifyListener(tmp_path / "notify.sock")
    cfg = config(tmp_path)
    server = ns.python(str(REPO / "tests/support/hostile_name.py"), HOSTILE.hex())
    wait_line(server, "READY")
    daemon = start(ns, cfg, {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1000000"})
    try:
        wait_until(lambda: notify.saw("READY=1"), timeout=30, what="READY=1")
        wait_until(lambda: notify.saw("WATCHDOG=1"), timeout=10, what="a watchdog ping")
        assert any(m.startswith("STATUS=") or "\nSTATUS=" in m for m in notify.messages)

        text = scrape(ns)
        got = samples(text)  # parsing proves the exposition is valid despite the hostile name
        assert got[("tcpwatchd_build_info", (("version", "0.1.0"),))] == 1
        hostile_comm = decode_name(HOSTILE)  # escaped once, injectively (sources/names.py)
        no_pod = (("container", ""), ("namespace", ""), ("pod", ""))
        assert got[("tcpwatchd_sockets", (*no_pod, ("process", hostile_comm), ("state", "listen")))] == 1
        # The daemon's own metrics listener, under the interpreter's name.
        assert any(
            n == "tcpwatchd_sockets"
            and ("state", "listen") in ls
            and dict(ls)["process"].startswith("python")
            for (n, ls) in got
        )
        assert got[("tcpwatchd_source_success", (("source", "sockdiag"),))] == 1
        assert ("tcpwatchd_kernel_tcp_aborts_total", (*OWN_NS, ("reason", "on_close"))) in got
        assert got[("tcpwatchd_poll_duration_seconds_count", ())] >= 1
        assert abs(got[("tcpwatchd_last_poll_timestamp_seconds", ())] - time.time()) < 30
        assert ("tcpwatchd_sysctl_compliant", (("name", "net.ipv4.tcp_keepalive_time"), *OWN_NS)) in got

        # A bad config on SIGHUP is refused; the daemon keeps running on the old one.
        cfg.write_text("[daemon]\npoll_interval_seconds = -5\n")
        daemon.send_signal(signal.SIGHUP)
        time.sleep(1.5)
        assert daemon.poll() is None
        assert samples(scrape(ns))[("tcpwatchd_build_info", (("version", "0.1.0"),))] == 1

        # A good one is applied: here, the metrics move to another port.
        cfg.write_text(
            '[daemon]\npoll_interval_seconds = 0.5\n[exporter]\nport = 9815\n[sysctl]\nmode = "off"\n'
        )
        daemon.send_signal(signal.SIGHUP)
        wait_until(lambda: _serves(ns, 9815), timeout=15, what="the new port")
        compliant = ("tcpwatchd_sysctl_compliant", (("name", "net.ipv4.tcp_keepalive_time"), *OWN_NS))
        wait_until(lambda: compliant not in samples(scrape(ns, 9815)), timeout=10, what="sysctl mode off")

        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=15) == 0
        assert notify.saw("STOPPING=1")
        err = daemon.stderr.read() if daemon.stderr else ""
        assert "reload refused" in err and "daemon.poll_interval_seconds" in err
        assert "reloaded config" in err
        assert "Traceback" not in err
    finally:
        stop(daemon)
        notify.close()


def _serves(ns: NetNS, port: int) -> bool:
    try:
        return "tcpwatchd_build_info" in scrape(ns, port)
    except subprocess.CalledProcessError:
        return False


def test_sigint_stops_cleanly_without_systemd(ns: NetNS, tmp_path: Path) -> None:
    daemon = start(ns, config(tmp_path))
    try:
        wait_until(lambda: _serves(ns, PORT), timeout=30, what="metrics")
        daemon.send_signal(signal.SIGINT)
        assert daemon.wait(timeout=15) == 0
    finally:
        stop(daemon)


def test_invalid_config_never_starts(ns: NetNS, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[exporter]\nlisten_address = "0.0.0.0; rm -rf /"\n[detect.phantom]\nidle_seconds = -1\n')
    proc = ns.run(sys.executable, "-m", "tcpwatchd", "run", "-c", str(bad), check=False, timeout=30)
    assert proc.returncode != 0
    assert "exporter.listen_address" in proc.stderr and "detect.phantom.idle_seconds" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_port_in_use_is_a_clear_error(ns: NetNS, tmp_path: Path) -> None:
    blocker = ns.python(
        "-c",
        "import socket,time;s=socket.socket();"
        f"s.bind(('127.0.0.1',{PORT}));s.listen();print('READY',flush=True);time.sleep(60)",
    )
    wait_line(blocker, "READY")
    proc = ns.run(
        sys.executable, "-m", "tcpwatchd", "run", "-c", str(config(tmp_path)), check=False, timeout=30
    )
    assert proc.returncode == 1
    assert "cannot serve metrics on 127.0.0.1:9814" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_enforce_mode_reapplies_drift_in_its_namespace(ns: NetNS, tmp_path: Path) -> None:
    """The daemon writes the policy at start and again when something changes it behind its back."""
    key = "net.ipv4.tcp_keepalive_time"
    compliant = ("tcpwatchd_sysctl_compliant", (("name", key), *OWN_NS))
    value = ("tcpwatchd_sysctl_value", (("name", key), *OWN_NS))
    assert ns.run("sysctl", "-n", key).stdout.strip() == "7200"  # a fresh namespace has the kernel default
    cfg = tmp_path / "enforce.toml"
    cfg.write_text(
        '[daemon]\npoll_interval_seconds = 0.5\n[sysctl]\nmode = "enforce"\n'
        f'[sysctl.desired]\n"{key}" = 600\n'
    )
    daemon = start(ns, cfg)
    try:
        wait_until(lambda: _serves(ns, PORT), timeout=30, what="metrics")
        wait_until(lambda: samples(scrape(ns)).get(compliant) == 1, timeout=10, what="compliance")
        assert ns.run("sysctl", "-n", key).stdout.strip() == "600"
        ns.run("sysctl", "-w", f"{key}=7300")  # someone else changes it
        wait_until(
            lambda: ns.run("sysctl", "-n", key).stdout.strip() == "600", timeout=10, what="re-enforcement"
        )
        got = samples(scrape(ns))
        assert got[compliant] == 1 and got[value] == 600
        assert got[("tcpwatchd_sysctl_writes_total", (("name", key), *OWN_NS))] == 2
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=15) == 0
        err = daemon.stderr.read() if daemon.stderr else ""
        assert "7300" in err and "600" in err  # every write is logged with the old and the new value
    finally:
        stop(daemon)
