"""Stalled receive, built for real: a server that never reads next to one that drains.

sr-stalled never reads what sr-client sent; sr-drain reads everything; sr-eof reads the data but not
the client's FIN, which leaves 1 in the kernel's receive-queue figure (the FIN's sequence number) and
no data: it must not count. When sr-stalled finally closes with data unread, Linux sends RST instead
of FIN, and TcpExt TCPAbortOnClose counts it.
"""

from __future__ import annotations

import time

import pytest

from tests.support.detect_pipeline import Watch, tell, workload
from tests.support.netns import NetNS, stop

MIN_AGE = 1.0
INTERVAL = 0.25


@pytest.mark.integration
def test_a_receiver_that_never_reads_is_flagged_one_that_drains_is_not() -> None:
    with NetNS() as ns:
        watch = Watch(ns, {"stalled_receive": {"min_age_seconds": MIN_AGE}})
        stalled, _ = workload(
            ns, "server", "--host", "127.0.0.1", "--port", "7400", "--mode", "hold", "--name", "sr-stalled"
        )
        workload(
            ns, "server", "--host", "127.0.0.1", "--port", "7401", "--mode", "drain", "--name", "sr-drain"
        )
        workload(
            ns, "server", "--host", "127.0.0.1", "--port", "7402", "--mode", "readonce", "--name", "sr-eof"
        )
        watch.poll()
        _, port = workload(ns, "client", "127.0.0.1", "7400", "--send", "1000", "--name", "sr-client")
        workload(ns, "client", "127.0.0.1", "7401", "--send", "1000", "--name", "sr-client")
        eof_client, _ = workload(ns, "client", "127.0.0.1", "7402", "--send", "100", "--name", "sr-client")
        sent_at = time.monotonic()
        time.sleep(0.2)  # let sr-eof read its data ...
        stop(eof_client)  # ... before the FIN it will never read
        polls = watch.poll_for(MIN_AGE + 4 * INTERVAL + 0.5, INTERVAL)

        for p in polls:
            assert p.findings("stalled_receive", "sr-drain") == []
            assert p.findings("stalled_receive", "sr-eof") == []
            if p.at - sent_at < MIN_AGE:
                assert p.findings("stalled_receive") == []
            if p.at - sent_at >= MIN_AGE + 2 * INTERVAL:
                [f] = p.findings("stalled_receive")
                assert (f["process"], f["remote"], f["details"]["unread_bytes"]) == (
                    "sr-stalled",
                    f"127.0.0.1:{port}",
                    1000,
                )
                assert p.gauge("tcpwatchd_stalled_receive_connections", "sr-stalled") == 1
                assert p.gauge("tcpwatchd_stalled_receive_connections", "sr-eof") == 0
        [eof_socket] = [s for s in polls[-1].sockets("sr-eof") if s["state"] == "close_wait"]
        assert eof_socket["rqueue"] == 1  # the look-alike is real: the kernel shows 1, for the FIN

        aborts = polls[-1].raw["counters"].get("TcpExt.TCPAbortOnClose", 0)
        tell(stalled, "close", "CLOSED")
        after = watch.poll()
        assert after.findings("stalled_receive") == []
        assert after.raw["counters"]["TcpExt.TCPAbortOnClose"] == aborts + 1
