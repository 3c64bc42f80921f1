"""Phantom connections, built for real: a device that crashes and comes back, several times.

The crashing client lives in a namespace of its own on a veth link (198.18.1.2). Each time, its link
is cut first, then it is killed and its namespace deleted: the FIN its kernel sends on exit never
arrives, so the server keeps an ESTABLISHED connection that will never hear from it again. A new
namespace with the same address then reconnects. Meanwhile a live client keeps talking and another
peer reconnects once, cleanly. Only the abandoned connections may be phantoms; the last reconnection,
quiet and without keepalive but not superseded, is a suspect.
"""

from __future__ import annotations

import time

import pytest

from tests.support.detect_pipeline import Watch, workload
from tests.support.netns import NetNS, stop, veth

IDLE = 1.5
INTERVAL = 0.3
SERVER, CRASHY, LIVE, CLEAN = "198.18.1.1", "198.18.1.2", "198.18.2.2", "198.18.3.2"
CRASHES = 3


def _connect_crashy(srv: NetNS, watch: Watch, round_: int, created: list[NetNS]) -> tuple[NetNS, str]:
    ns = NetNS().__enter__()
    created.append(ns)  # closed by the test whatever happens
    _, link = veth(srv, SERVER, ns, CRASHY)
    # Distinct source ports, so a reconnect never lands on the old connection's 4-tuple.
    port = str(40000 + round_)
    workload(
        ns, "client", SERVER, "7100", "--bind", CRASHY, "--bind-port", port, "--hello", "--name", "ph-crashy"
    )
    watch.poll()
    time.sleep(INTERVAL)
    watch.poll()
    return ns, link


def _crash(ns: NetNS, link: str) -> None:
    ns.run("ip", "link", "del", "dev", link)  # the link goes first: no FIN gets out
    ns.close()  # then the client is killed (by pid) and its namespace deleted


@pytest.mark.integration
def test_only_abandoned_connections_are_phantoms() -> None:
    with NetNS() as srv, NetNS() as live_ns, NetNS() as clean_ns:
        veth(srv, "198.18.2.1", live_ns, LIVE)
        veth(srv, "198.18.3.1", clean_ns, CLEAN)
        watch = Watch(srv, {"phantom": {"idle_seconds": IDLE}})
        workload(srv, "server", "--port", "7100", "--mode", "echo", "--name", "ph-server")
        watch.poll()
        workload(live_ns, "client", "198.18.2.1", "7100", "--talk", "0.2", "--name", "ph-live")
        clean, _ = workload(clean_ns, "client", "198.18.3.1", "7100", "--talk", "0.2", "--name", "ph-clean")
        crash_namespaces: list[NetNS] = []
        try:
            abandoned = set()
            for r in range(CRASHES):
                _crash(*_connect_crashy(srv, watch, r, crash_namespaces))
                abandoned.add(f"{CRASHY}:{40000 + r}")
            stop(clean)  # it exits with a FIN on a working link, and comes back once
            workload(clean_ns, "client", "198.18.3.1", "7100", "--talk", "0.2", "--name", "ph-clean")
            _connect_crashy(srv, watch, CRASHES, crash_namespaces)  # the device is back for good, and quiet
            back_at = time.monotonic()
            polls = watch.poll_for(IDLE + 4 * INTERVAL + 0.5, INTERVAL)
        finally:
            for ns in crash_namespaces:
                ns.close()

        for p in watch.polls:
            assert p.remotes("phantom") <= abandoned  # never a live connection
            assert not any(
                f["peer"] in (LIVE, CLEAN) for f in p.findings("phantom") + p.findings("idle_suspect")
            )
        for p in polls:
            if p.at >= back_at + IDLE + 2 * INTERVAL:
                assert p.remotes("phantom", "ph-server") == abandoned
                assert p.remotes("idle_suspect", "ph-server") == {f"{CRASHY}:{40000 + CRASHES}"}
                assert p.gauge("tcpwatchd_phantom_connections", "ph-server") == CRASHES
                assert p.gauge("tcpwatchd_idle_suspect_connections", "ph-server") == 1
        final = polls[-1]
        assert final.remotes("phantom") == abandoned, "the test never waited long enough to judge"
        assert final.raw["degraded"] == {}
        for f in final.findings("phantom"):
            assert f["details"]["idle_seconds"] >= IDLE and f["details"]["keepalive"] == "off"
        logged = [
            line["fields"]["TCPWATCHD_SOCKET"]
            for line in watch.logged()
            if "new finding: phantom" in line["message"]
        ]
        assert sorted(logged) == sorted(f"{SERVER}:7100 -> {remote}" for remote in abandoned)  # once each
