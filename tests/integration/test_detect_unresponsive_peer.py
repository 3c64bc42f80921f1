"""Unresponsive peer, built for real: the receiver's link goes down in the middle of a transfer.

up-sender writes without pause to a sink across a veth link (198.18.5.2); the link is taken down while
it writes, so its segments go unacknowledged and the kernel retransmits with exponential backoff from
the 200 ms minimum RTO (3 retransmissions take about 1.4 s). up-healthy writes just as hard to a sink
that keeps reading, and is never flagged. tcp_retries2 keeps its default (15): 924.6 s to give up.
"""

from __future__ import annotations

import pytest

from tests.support.detect_pipeline import Poll, Watch, workload
from tests.support.netns import NetNS, veth

MIN_RETRANSMITS = 3
INTERVAL = 0.3


@pytest.mark.integration
def test_a_sender_whose_peer_vanished_is_flagged_a_busy_healthy_one_is_not() -> None:
    with NetNS() as ns, NetNS() as peer_ns:
        _, peer_link = veth(ns, "198.18.5.1", peer_ns, "198.18.5.2")
        watch = Watch(ns, {"unresponsive_peer": {"min_retransmits": MIN_RETRANSMITS}})
        workload(peer_ns, "server", "--port", "7500", "--mode", "drain", "--name", "up-sink")
        workload(
            ns, "server", "--host", "127.0.0.1", "--port", "7501", "--mode", "drain", "--name", "up-sink"
        )
        _, port = workload(ns, "send", "198.18.5.2", "7500", "--name", "up-sender")
        workload(ns, "send", "127.0.0.1", "7501", "--name", "up-healthy")
        before = watch.poll_for(3 * INTERVAL, INTERVAL)
        assert not any(p.findings("unresponsive_peer") for p in before)

        peer_ns.run("ip", "link", "set", "dev", peer_link, "down")  # the peer vanishes mid-transfer

        def flagged(p: Poll) -> bool:
            return bool(p.findings("unresponsive_peer", "up-sender"))

        p = watch.poll_until(flagged, timeout=15, interval=INTERVAL, what="the sender retransmitting")
        [f] = p.findings("unresponsive_peer")
        assert (f["local"], f["remote"]) == (f"198.18.5.1:{port}", "198.18.5.2:7500")
        assert f["details"]["retransmits"] >= MIN_RETRANSMITS
        assert f["details"]["kernel_gives_up_after_seconds"] == pytest.approx(924.6)
        assert 900 < f["details"]["kernel_gives_up_in_seconds"] < 924.6
        assert p.gauge("tcpwatchd_unresponsive_peer_connections", "up-sender") == 1
        assert p.gauge("tcpwatchd_unresponsive_peer_connections", "up-healthy") == 0
        assert not any(q.findings("unresponsive_peer", "up-healthy") for q in watch.polls)
        [line] = [x for x in watch.logged() if x["fields"].get("TCPWATCHD_FINDING") == "unresponsive_peer"]
        assert line["fields"]["TCPWATCHD_PEER"] == "198.18.5.2"
