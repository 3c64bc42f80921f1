"""Reconnect storm, built for real: one peer connects again and again, another reconnects once.

The server rejects (accepts and closes at once, before the client closes), so each connection leaves a
TIME_WAIT socket on the server's port, as a crash-looping client hitting a refusing service does. (A
connection the client closes first between two polls leaves its TIME_WAIT on the client's host: the
server's side is gone within a round trip, and no poller can see it.) The stormer is 127.0.0.1 and
the calm peer ::1, both on one dual-stack port: the peer is an address, whatever family carried it.
"""

from __future__ import annotations

import pytest

from tests.support.detect_pipeline import Watch, workload
from tests.support.netns import NetNS

WINDOW = 3.0
MIN_NEW = 8
INTERVAL = 0.3


@pytest.mark.integration
def test_a_storming_peer_is_flagged_and_a_single_reconnect_is_not() -> None:
    with NetNS() as ns:
        watch = Watch(
            ns,
            {
                "reconnect_storm": {
                    "window_seconds": WINDOW,
                    "min_new_connections": MIN_NEW,
                    "min_baseline_per_second": 0.1,
                }
            },
        )
        workload(ns, "server", "--host", "::", "--port", "7200", "--mode", "reject", "--name", "st-server")
        first = watch.poll()  # tcpwatchd's start: what is open now is not "new"
        assert first.gauge("tcpwatchd_reconnect_storm_peers", "st-server") == 0
        workload(ns, "client", "127.0.0.1", "7200", "--count", "12", "--wait-close", "--name", "st-storm")
        for _ in range(2):  # one peer that reconnects once
            workload(ns, "client", "::1", "7200", "--count", "1", "--wait-close", "--name", "st-calm")
        seen = watch.poll()  # all openings happened since the last poll: detected on the next one

        [storm] = seen.findings("reconnect_storm")
        assert (storm["process"], storm["peer"], storm["local"], storm["remote"]) == (
            "st-server",
            "127.0.0.1",
            "*:7200",
            "127.0.0.1:*",
        )
        assert storm["details"]["new_connections"] == 12
        assert seen.gauge("tcpwatchd_reconnect_storm_peers", "st-server") == 1
        # Counted as opened: the server's 12 + 2 (TIME_WAIT, no owner) and the clients' sides if seen.
        assert sum(seen.raw["metrics"]["tcpwatchd_connections_opened_total"].values()) >= 14
        # The peer address goes to the log, never into a label.
        [line] = [x for x in seen.logged if x["fields"].get("TCPWATCHD_FINDING") == "reconnect_storm"]
        assert line["fields"]["TCPWATCHD_PEER"] == "127.0.0.1"
        assert all("127.0.0.1" not in label for m in seen.raw["metrics"].values() for label in m)

        # Once the window has passed without new connections, the storm is over.
        calm = watch.poll_until(
            lambda p: p.at - seen.at > WINDOW + 2 * INTERVAL,
            timeout=WINDOW + 10,
            interval=INTERVAL,
            what="the end",
        )
        assert calm.findings("reconnect_storm") == []
        assert calm.gauge("tcpwatchd_reconnect_storm_peers", "st-server") == 0
        for p in watch.polls:
            assert not any(f["peer"] == "::1" for f in p.findings("reconnect_storm"))
