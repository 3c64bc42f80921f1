"""Probing through the real daemon: `tcpwatchd run` in the server's namespace, judged from /metrics, the
daemon's log and the server application's own view of its sockets (read inside the owner process).

- verify: a client whose namespace is torn down without FIN and rebuilt (same address) reconnects; its old
  connection is a phantom, proven dead (RST) and counted; the new one, idle, is an idle suspect proven
  alive, its options exactly as before, and it is not counted as a suspect again right after;
- SIGTERM while a probe is in flight puts the options back;
- probe = "off" (the default) touches nothing: no probe metrics, options as before.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.test_daemon import samples, scrape, start
from tests.support.netns import NetNS, stop, veth, wait_until
from tests.support.probe_scene import Server, client

pytestmark = pytest.mark.integration

SERVER, CLIENT = "198.18.1.1", "198.18.1.2"
PORT = 7300
POD = (("container", ""), ("namespace", ""), ("pod", ""), ("process", "pb-server"))


def _config(tmp_path: Path, phantom: str) -> Path:
    path = tmp_path / "tcpwatchd.toml"
    path.write_text(f"[daemon]\npoll_interval_seconds = 0.5\n[detect.phantom]\n{phantom}\n")
    return path


VERIFY = 'idle_seconds = 3\nprobe = "verify"\nprobe_allow = ["process:pb-*"]\nprobe_budget = 3\n'


def _metric(ns: NetNS, name: str, **labels: str) -> float | None:
    """One sample of the daemon's /metrics (None also while it is not serving yet)."""
    key = tuple(sorted({**dict(POD), **labels}.items()))
    try:
        return samples(scrape(ns)).get((name, key))
    except subprocess.CalledProcessError:
        return None


def _stop_daemon(daemon: subprocess.Popen[str]) -> str:
    """SIGTERM (a clean stop restores the probes in flight), then the daemon's log."""
    daemon.send_signal(signal.SIGTERM)
    try:
        _out, err = daemon.communicate(timeout=10)
    finally:
        stop(daemon)
    assert daemon.returncode == 0, err
    return err


def test_verify_proves_a_reborn_peer_dead_and_a_live_one_alive(tmp_path: Path) -> None:
    with NetNS() as srv:
        gone = NetNS().__enter__()
        _, link = veth(srv, SERVER, gone, CLIENT)
        server = Server(srv, SERVER, PORT, "pb-server")
        daemon = start(srv, _config(tmp_path, VERIFY))
        try:
            client(gone, server, CLIENT, 40000)
            old = server.accepted()
            wait_until(
                lambda: _metric(srv, "tcpwatchd_sockets", state="established") == 1,
                timeout=10,
                what="the daemon seeing the first connection",
            )
            gone.run("ip", "link", "del", "dev", link)  # no FIN gets out
            gone.close()
            with NetNS() as back:  # the device rebooted: same address, no memory of the old connection
                veth(srv, SERVER, back, CLIENT)
                client(back, server, CLIENT, 40001)
                new = server.accepted()
                before = server.ask("opts")[new]
                wait_until(
                    lambda: _metric(srv, "tcpwatchd_phantom_probes_total", result="alive") == 1,
                    timeout=15,
                    what="both connections proven",
                )
                got = samples(scrape(srv))
                assert got[("tcpwatchd_phantom_probes_total", tuple(sorted((*POD, ("result", "dead")))))] == 1
                assert got[("tcpwatchd_proven_phantom_connections", POD)] == 1  # the server still holds it
                assert got[("tcpwatchd_reaped_connections_total", POD)] == 0
                # Proven alive: not a suspect again until it has been idle for idle_seconds anew.
                assert got[("tcpwatchd_idle_suspect_connections", POD)] == 0
                assert got[("tcpwatchd_phantom_connections", POD)] == 0
                assert server.ask("opts")[new] == before  # exactly as the application had them
                assert server.ask("recv") == {old: "ECONNRESET", new: "again"}  # the live one never noticed
        finally:
            log = _stop_daemon(daemon)
        assert f"probe dead: pb-server[{server.child.pid}]" in log and "RST" in log, log
        assert "probe alive" in log, log


def test_sigterm_restores_a_probe_in_flight(tmp_path: Path) -> None:
    with NetNS() as srv, NetNS() as cli:
        _, link = veth(srv, SERVER, cli, CLIENT)
        server = Server(srv, SERVER, PORT, "pb-server")
        client(cli, server, CLIENT, 40000)
        peer = server.accepted()
        before = server.ask("opts")[peer]
        cli.run("ip", "link", "set", "dev", link, "down")  # never answers: the probe stays in flight
        slow = VERIFY.replace("probe_budget = 3", "probe_budget = 50\nprobe_interval_seconds = 1")
        daemon = start(srv, _config(tmp_path, slow))
        try:
            wait_until(lambda: server.ask("opts")[peer] != before, timeout=15, what="a keepalive armed on it")
        finally:
            log = _stop_daemon(daemon)
        assert server.ask("opts")[peer] == before, log
        assert "tcpwatchd stopped" in log, log


def test_probe_off_by_default_touches_nothing(tmp_path: Path) -> None:
    with NetNS() as srv, NetNS() as cli:
        veth(srv, SERVER, cli, CLIENT)
        server = Server(srv, SERVER, PORT, "pb-server")
        client(cli, server, CLIENT, 40000)
        peer = server.accepted()
        before = server.ask("opts")[peer]
        daemon = start(srv, _config(tmp_path, "idle_seconds = 1"))
        try:
            wait_until(
                lambda: _metric(srv, "tcpwatchd_idle_suspect_connections") == 1,
                timeout=10,
                what="the idle connection counted as a suspect",
            )
            time.sleep(1.5)  # three more polls in which a prober, were there one, would have armed
            text = scrape(srv)
            assert _metric(srv, "tcpwatchd_idle_suspect_connections") == 1
            assert server.ask("opts")[peer] == before
        finally:
            _stop_daemon(daemon)
        assert "tcpwatchd_phantom_probes" not in text
        assert "tcpwatchd_proven_phantom_connections" not in text
