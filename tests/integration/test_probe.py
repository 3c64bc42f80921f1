"""Probing for real: a keepalive-less server in one namespace, clients on veth links in others.

Each test checks the prober's verdict and the server application's own view of its socket (options and
recv() read inside the owner process, via tests.support.probe_workload).
"""

from __future__ import annotations

import time

import pytest

from tcpwatchd.actions.probe_types import Action, ProbeSettings, Result
from tcpwatchd.actions.prober import Prober
from tcpwatchd.actions.system_ops import SystemOps
from tcpwatchd.allowlist import parse_allowlist
from tcpwatchd.model import ProcessLabels
from tests.support.netns import NetNS, stop, veth
from tests.support.probe_scene import Server, candidates, client, drive, dump_in, resolved, results

SERVER, CLIENT = "198.18.1.1", "198.18.1.2"
PORT = 7200
IDLE = 1.2  # the connection must be idle longer than the armed TCP_KEEPIDLE (1 s) for a probe to go


def _settings(reap: bool = False, allow: str = "process:pb-*", budget: int = 3) -> ProbeSettings:
    return ProbeSettings(reap=reap, allow=parse_allowlist([allow]), budget=budget, reprobe_after_seconds=60)


def _connected(srv: NetNS, name: str = "pb-server") -> tuple[NetNS, str, Server]:
    cli = NetNS().__enter__()
    _, link = veth(srv, SERVER, cli, CLIENT)
    server = Server(srv, SERVER, PORT, name)
    client(cli, server, CLIENT, 40000)
    server.accepted()
    return cli, link, server


@pytest.mark.integration
def test_forgotten_connection_is_dead_and_the_app_gets_econnreset() -> None:
    with NetNS() as srv:
        cli, link, server = _connected(srv)
        try:
            cli.run("ip", "link", "del", "dev", link)  # no FIN gets out
        finally:
            cli.close()
        with NetNS() as back:  # the device rebooted: same address, no memory of the connection
            veth(srv, SERVER, back, CLIENT)
            time.sleep(IDLE)
            events = drive(Prober(_settings(), SystemOps()), srv, candidates(server))
            assert results(events) == [Result.DEAD], events
            dead = resolved(events)[0]
            assert dead.peer == f"{CLIENT}:40000" and "RST" in dead.answered
            assert dead.before is not None and not dead.before.enabled
            assert not [s for s in dump_in(srv) if s.local_port == PORT and s.remote_port == 40000]
            assert server.ask("recv") == {f"{CLIENT}:40000": "ECONNRESET"}


@pytest.mark.integration
@pytest.mark.parametrize("reap", [False, True], ids=["verify", "reap"])
def test_cut_link_is_unreachable_then_restored_or_reaped(reap: bool) -> None:
    with NetNS() as srv:
        cli, link, server = _connected(srv)
        try:
            before = server.ask("opts")
            cli.run("ip", "link", "set", "dev", link, "down")  # powered off: never answers again
            time.sleep(IDLE)
            events = drive(
                Prober(_settings(reap=reap), SystemOps()), srv, candidates(server, superseded=True)
            )
        finally:
            cli.close()
        assert results(events) == [Result.UNREACHABLE], events
        present = [s for s in dump_in(srv) if s.local_port == PORT and s.remote_port == 40000]
        if reap:
            assert [e.action for e in events if e.action is Action.DESTROYED] == [Action.DESTROYED]
            assert not present
            assert server.ask("recv") == {f"{CLIENT}:40000": "ECONNABORTED"}
        else:
            assert len(present) == 1
            assert server.ask("opts") == before  # exactly as the application had them
            assert resolved(events)[0].after == resolved(events)[0].before
            assert server.ask("recv") == {f"{CLIENT}:40000": "again"}


@pytest.mark.integration
def test_live_idle_client_is_alive_and_never_notices_and_allowlist_holds() -> None:
    with NetNS() as srv, NetNS() as cli, NetNS() as cli2:
        veth(srv, SERVER, cli, CLIENT)
        veth(srv, "198.18.2.1", cli2, "198.18.2.2")
        allowed = Server(srv, SERVER, PORT, "pb-allowed")
        denied = Server(srv, "198.18.2.1", PORT + 1, "pb-denied")
        client(cli, allowed, CLIENT, 40000)
        client(cli2, denied, "198.18.2.2", 40001)
        allowed.accepted(), denied.accepted()
        before = {s.name: s.ask("opts") for s in (allowed, denied)}
        time.sleep(IDLE)
        prober = Prober(_settings(allow="process:pb-allowed"), SystemOps())
        pick_a, pick_d = candidates(allowed), candidates(denied)
        events = drive(prober, srv, lambda socks: pick_a(socks) + pick_d(socks))
        assert results(events) == [Result.ALIVE], events
        assert {e.process for e in events} == {"pb-allowed"}
        assert prober.summary().probes_total == {(ProcessLabels("pb-allowed"), Result.ALIVE): 1}
        for s in (allowed, denied):
            assert s.ask("opts") == before[s.name]
            assert set(s.ask("recv").values()) == {"again"}  # no error, no data


@pytest.mark.integration
def test_owner_exiting_mid_probe_is_a_failure_with_a_reason() -> None:
    with NetNS() as srv:
        cli, link, server = _connected(srv)
        try:
            cli.run("ip", "link", "set", "dev", link, "down")
            time.sleep(IDLE)
            prober = Prober(_settings(budget=50), SystemOps())
            pick = candidates(server)
            socks = dump_in(srv)
            armed = prober.step(time.monotonic(), pick(socks), {s.cookie: s for s in socks if s.cookie})
            assert [e.action for e in armed.events] == [Action.ARMED]
            stop(server.child)
            events = drive(prober, srv, pick)
        finally:
            cli.close()
        (failed,) = resolved(events)
        assert failed.result is Result.FAILED
        assert "exited" in failed.reason or "closed the socket" in failed.reason, failed


@pytest.mark.integration
def test_without_cap_sys_ptrace_the_probe_fails_with_the_reason() -> None:
    with NetNS() as srv:
        cli, _link, server = _connected(srv)
        try:
            time.sleep(IDLE)
            out = srv.run(
                "setpriv", "--inh-caps=-sys_ptrace", "--bounding-set=-sys_ptrace", "--",
                *_python("-m", "tests.support.probe_child", str(server.child.pid), server.name, str(PORT)),
                timeout=30,
            )  # fmt: skip
            assert server.ask("opts") == {f"{CLIENT}:40000": "0 7200 75 9"}
        finally:
            cli.close()
        assert "failed" in out.stdout and "CAP_SYS_PTRACE" in out.stdout, (out.stdout, out.stderr)


def _python(*argv: str) -> list[str]:
    import os
    import sys

    from tests.support.netns import REPO

    return ["env", f"PYTHONPATH={REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", sys.executable, *argv]
