"""Per-service overrides and ignore lists on real sockets: the same CLOSE_WAIT leak in two services is a
finding under the strict rule only, and an ignored port is left out of detection but not of the counts."""

from __future__ import annotations

import pytest

from tests.support.detect_pipeline import Watch, closing_clients, workload
from tests.support.netns import NetNS

pytestmark = pytest.mark.integration

INTERVAL = 0.25
STRICT = {
    "name": "strict",
    "match": {"process": "cw-strict*"},
    "detect": {"close_wait": {"min_age_seconds": 0.5}},
}


def _leak(ns: NetNS, port: str, name: str) -> None:
    workload(ns, "server", "--host", "127.0.0.1", "--port", port, "--mode", "hold", "--name", name)
    closing_clients(ns, port)


def test_the_same_leak_is_a_finding_only_where_the_rule_says_so() -> None:
    with NetNS() as ns:
        watch = Watch(
            ns,
            {"close_wait": {"min_age_seconds": 300}},
            override=[STRICT],
            ignore={"local_ports": [7003]},
        )
        _leak(ns, "7001", "cw-strict")
        _leak(ns, "7002", "cw-lenient")
        _leak(ns, "7003", "cw-strict-mon")  # matches the rule, but its port is ignored
        last = watch.poll_until(
            lambda p: len(p.findings("close_wait", "cw-strict")) == 3, 15, INTERVAL, "the strict leak"
        )
        for _ in range(4):  # and it stays that way, poll after poll
            last = watch.poll()
            assert {f["local"] for f in last.findings("close_wait")} == {"127.0.0.1:7001"}
            assert {f["rule"] for f in last.findings("close_wait")} == {"strict"}
            assert last.gauge("tcpwatchd_close_wait_leaked_sockets", "cw-strict") == 3
            assert (last.gauge("tcpwatchd_close_wait_leaked_sockets", "cw-lenient") or 0) == 0
            assert (last.gauge("tcpwatchd_close_wait_leaked_sockets", "cw-strict-mon") or 0) == 0
        # Ignored for detection, still counted by state.
        mon = [s for s in last.sockets("cw-strict-mon") if s["state"] == "close_wait"]
        assert len(mon) == 3
        logged = [line for line in watch.logged() if line["fields"].get("TCPWATCHD_FINDING") == "close_wait"]
        assert logged and all(line["fields"]["TCPWATCHD_RULE"] == "strict" for line in logged)
