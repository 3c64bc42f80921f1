"""The redefined reconnect storm on real sockets, with the default rate floor and factor: a 1 s health
checker and a steady keepalive-less client are no storm; a crash-looping client is, whichever side
closes first, although every one of its connections opens and closes between two polls (only the
destroy events show them)."""

from __future__ import annotations

import time

import pytest

from tests.support.detect_pipeline import Poll, Watch, workload
from tests.support.netns import REPO, NetNS, wait_line

pytestmark = pytest.mark.integration
LOOPS = str(REPO / "tests" / "support" / "close_loops.py")
STORM = {"window_seconds": 4, "baseline_seconds": 48, "min_new_connections": 10}


def _storms(polls: list[Poll], port: int) -> list[dict[str, object]]:
    return [f for p in polls for f in p.findings("reconnect_storm") if f["local"] == f"*:{port}"]


def _crash_loop(ns: NetNS, port: int, closer: str) -> None:
    child = ns.spawn("python3", LOOPS, "400", str(port), "1", closer)
    wait_line(child, "DONE", timeout=60)


def test_periodic_clients_are_not_storms_and_a_crash_loop_is_in_both_close_orders() -> None:
    with NetNS() as ns:
        watch = Watch(ns, {"reconnect_storm": STORM})
        workload(
            ns, "server", "--host", "127.0.0.1", "--port", "7300", "--mode", "reject", "--name", "hc-srv"
        )
        workload(
            ns, "server", "--host", "127.0.0.1", "--port", "7301", "--mode", "reject", "--name", "px-srv"
        )
        watch.poll()
        checker = ns.python("-m", "tests.support.periodic_client", "127.0.0.1", "7300", "1", "10")
        proxy = ns.python("-m", "tests.support.periodic_client", "127.0.0.1", "7301", "0.33", "30")
        for child in (checker, proxy):
            wait_line(child, "READY", timeout=20)
        healthy = watch.poll_for(10.5, interval=1.0)
        assert _storms(healthy, 7300) == [] and _storms(healthy, 7301) == []
        opened = healthy[-1].raw["metrics"]["tcpwatchd_connections_opened_total"]
        assert opened.get("hc-srv", 0) >= 9  # every check counted once (each lived well under a poll)

        for port, closer in ((7310, "client"), (7311, "server")):
            before = time.monotonic()
            _crash_loop(ns, port, closer)
            seen = watch.poll()
            [storm] = _storms([seen], port)
            assert (storm["peer"], storm["details"]["reason"]) == ("127.0.0.1", "rate"), closer
            assert storm["details"]["new_connections"] >= 400, closer
            assert time.monotonic() - before < 30
        assert _storms(watch.polls, 7300) == [] and _storms(watch.polls, 7301) == []
