"""The issue-13 signals through a real daemon: Prometheus-style scrapes of tcpwatchd itself at 1, 5 and
15 s are never a reconnect storm (a real crash loop on the same port is), and the new detectors' findings
reach `tcpwatchd snapshot --json` (the API document) with their details.

The daemon runs in a private namespace; the scrapers bind 127.0.0.2-4 so that each interval is a peer of
its own, as three Prometheus servers would be.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.netns import NetNS, stop, wait_line, wait_until

pytestmark = pytest.mark.integration
PORT = 9814
WINDOW = 20  # [detect.reconnect_storm] window_seconds: the scrapes run longer than one window


def _daemon(ns: NetNS, cfg: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
    return ns.python("-m", "tcpwatchd", "run", "-c", str(cfg), env=env)


def _get(ns: NetNS, path: str) -> str:
    code = (
        "import sys,urllib.request;sys.stdout.write(urllib.request.urlopen("
        f"'http://127.0.0.1:{PORT}{path}',timeout=5).read().decode())"
    )
    return ns.run(sys.executable, "-c", code, timeout=20).stdout


def _values(text: str, name: str) -> dict[str, float]:
    """process label -> value of one per-process family."""
    return {
        s.labels.get("process", ""): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def _serving(ns: NetNS) -> bool:
    try:
        return "tcpwatchd_build_info" in _get(ns, "/metrics")
    except subprocess.CalledProcessError:
        return False


def _stderr_after_stop(daemon: subprocess.Popen[str]) -> str:
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(timeout=15)
    return daemon.stderr.read() if daemon.stderr else ""


def test_scrapes_at_1_5_and_15_seconds_are_no_storm_and_a_crash_loop_on_the_same_port_is(
    tmp_path: Path,
) -> None:
    cfg = tmp_path / "tcpwatchd.toml"
    cfg.write_text(
        "[daemon]\npoll_interval_seconds = 1\n"
        f"[detect.reconnect_storm]\nwindow_seconds = {WINDOW}\nbaseline_seconds = {2 * WINDOW}\n"
        "min_new_connections = 2\n"  # so the count alone never hides the judgement: every scraper passes it
    )
    with NetNS() as ns:
        daemon = _daemon(ns, cfg)
        try:
            wait_until(lambda: _serving(ns), timeout=30, what="the daemon's metrics")
            scrapers = [
                ns.python(
                    "-m",
                    "tests.support.round_two_workload",
                    "scrape",
                    source,
                    "127.0.0.1",
                    str(PORT),
                    "--every",
                    every,
                    "--seconds",
                    str(WINDOW + 12),
                    "--name",
                    "prometheus",
                )
                for source, every in (("127.0.0.2", "1"), ("127.0.0.3", "5"), ("127.0.0.4", "15"))
            ]
            done = [int(wait_line(s, "DONE", timeout=WINDOW + 40).split()[1]) for s in scrapers]
            assert done[0] >= WINDOW + 8 and done[1] >= 6 and done[2] >= 3, done
            time.sleep(1.5)  # one more poll
            text = _get(ns, "/metrics")
            storms = _values(text, "tcpwatchd_reconnect_storm_peers")
            assert storms and set(storms.values()) == {0.0}, storms
            opened = sum(_values(text, "tcpwatchd_connections_opened_total").values())
            assert opened >= sum(done), (opened, done)  # every scrape was seen, and judged

            # The positive control: a crash loop on the same port, from a fourth address.
            ns.run(sys.executable, "-c", _CRASH_LOOP, timeout=30)
            wait_until(
                lambda: max(_values(_get(ns, "/metrics"), "tcpwatchd_reconnect_storm_peers").values()) >= 1,
                timeout=10,
                what="the crash loop as a storm",
            )
            err = _stderr_after_stop(daemon)
        finally:
            stop(daemon)
    storm_lines = [line for line in err.splitlines() if "reconnect_storm" in line]
    assert storm_lines and all("peer=127.0.0.5" in line for line in storm_lines), storm_lines


_CRASH_LOOP = f"""
import socket
for _ in range(200):
    s = socket.socket()
    s.bind(("127.0.0.5", 0))
    s.connect(("127.0.0.1", {PORT}))
    s.close()
"""


def _d(finding: dict[str, Any], key: str) -> float:
    """A finding's detail as a number (the API document gives every detail as a string)."""
    return float(finding["details"][key])


def _round_two(ns: NetNS, *argv: str) -> None:
    child = ns.python("-m", "tests.support.round_two_workload", *argv)
    wait_line(child, "READY", timeout=20)


def test_the_new_findings_reach_snapshot_json_with_their_details(tmp_path: Path) -> None:
    cfg = tmp_path / "tcpwatchd.toml"
    cfg.write_text(
        "[daemon]\npoll_interval_seconds = 0.5\n"
        "[detect.listen_saturation]\nfor_seconds = 1\n"
        "[detect.fd_exhaustion]\nmax_fill = 0.5\n"
        "[detect.port_exhaustion]\nmax_fill = 0.5\n"
        "[detect.stalled_receive]\nmin_age_seconds = 0.5\n"
    )
    with NetNS() as ns:
        ns.run("sysctl", "-w", "net.ipv4.ip_local_port_range=40000 40200")
        _round_two(ns, "acceptor", "7800", "--backlog", "8", "--stop", "--name", "ls-stuck")
        _round_two(ns, "flood", "127.0.0.1", "7800", "--count", "20", "--name", "ls-client")
        _round_two(ns, "listener", "7801", "--nofile", "256", "--fds", "200", "--name", "fd-full")
        upstream = ns.python(  # reads to EOF, then closes: the hammer closes first and keeps TIME_WAIT
            "-m",
            "tests.support.detect_workload",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            "7802",
            "--mode",
            "close",
            "--name",
            "pe-up",
        )
        wait_line(upstream, "READY", timeout=20)
        _round_two(ns, "hammer", "127.0.0.1", "7802", "--count", "150", "--name", "pe-hammer")
        _round_two(ns, "reader", "7803", "--every", "0", "--name", "sr-stopped")
        sender = ns.python(
            "-m", "tests.support.detect_workload", "send", "127.0.0.1", "7803", "--name", "sr-send"
        )
        wait_line(sender, "READY", timeout=20)
        daemon = _daemon(ns, cfg)
        kinds = {"listen_saturated", "fd_exhaustion", "port_exhaustion", "stalled_receive"}
        try:

            def document() -> dict[str, Any]:
                argv = ("-m", "tcpwatchd", "snapshot", "--json", "-c", str(cfg))
                out = ns.run(sys.executable, *argv, check=False)
                if out.returncode != 0 or "no daemon" in out.stderr:  # not up yet: not a local poll
                    return {"findings": []}
                return dict(json.loads(out.stdout))

            wait_until(
                lambda: kinds <= {f["kind"] for f in document()["findings"]},
                timeout=30,
                interval=0.5,
                what=f"every kind of {sorted(kinds)} in the snapshot",
            )
            doc = document()
            by_kind = {f["kind"]: f for f in doc["findings"]}
            listen = by_kind["listen_saturated"]
            assert (listen["process"], listen["local"]) == ("ls-stuck", "127.0.0.1:7800")
            assert _d(listen, "accept_queue") == 9 and _d(listen, "accept_queue_limit") == 8
            assert _d(listen, "held_seconds") >= 0
            fds = by_kind["fd_exhaustion"]
            assert fds["process"] == "fd-full" and _d(fds, "max_fds") == 256
            assert _d(fds, "open_fds") > 200
            ports = by_kind["port_exhaustion"]
            assert (ports["process"], ports["remote"]) == ("pe-hammer", "127.0.0.1:7802")
            assert _d(ports, "usable_local_ports") == 201
            assert _d(ports, "local_ports_in_use") >= 100
            stalled = by_kind["stalled_receive"]
            assert stalled["process"] == "sr-stopped" and stalled["details"]["reader"] == "stopped"
            counted = {p["process"]: p["findings"] for p in doc["processes"]}
            assert counted["ls-stuck"]["listen_saturated"] == 1 and counted["fd-full"]["fd_exhaustion"] == 1

            only = ns.run(
                sys.executable,
                "-m",
                "tcpwatchd",
                "snapshot",
                "--json",
                "-c",
                str(cfg),
                "--kind",
                "port_exhaustion",
            )
            assert {f["kind"] for f in json.loads(only.stdout)["findings"]} == {"port_exhaustion"}
            assert "port_exhaustion" in _get(ns, "/api/v1/snapshot?kind=port_exhaustion")
            err = _stderr_after_stop(daemon)
        finally:
            stop(daemon)
    assert "Traceback" not in err
    for kind in kinds:  # and each was logged (the journal line)
        assert any(kind in line for line in err.splitlines()), kind
