"""CLOSE_WAIT leak, built for real: clients close, one server never does, the other closes promptly."""

from __future__ import annotations

import time

import pytest

from tests.support.detect_pipeline import Watch, closing_clients, tell, workload
from tests.support.netns import NetNS

MIN_AGE = 1.0
INTERVAL = 0.25


@pytest.mark.integration
def test_a_server_that_never_closes_is_flagged_one_that_closes_promptly_is_not() -> None:
    with NetNS() as ns:
        watch = Watch(ns, {"close_wait": {"min_age_seconds": MIN_AGE}})
        leaky, _ = workload(
            ns, "server", "--host", "127.0.0.1", "--port", "7001", "--mode", "hold", "--name", "cw-leaky"
        )
        workload(
            ns, "server", "--host", "127.0.0.1", "--port", "7002", "--mode", "close", "--name", "cw-prompt"
        )
        watch.poll()
        for port in ("7001", "7002"):
            closing_clients(ns, port)
        closed_at = time.monotonic()  # the clients' FINs are out: the leak starts now
        polls = watch.poll_for(MIN_AGE + 4 * INTERVAL + 1.0, INTERVAL)

        for p in polls:
            assert p.findings("close_wait", "cw-prompt") == []
            age = p.at - closed_at
            if age < MIN_AGE:  # a finding can never come early
                assert p.findings("close_wait") == []
            if age >= MIN_AGE + 2 * INTERVAL:  # ... nor later than two polls after the threshold
                assert len(p.findings("close_wait", "cw-leaky")) == 3
                assert p.gauge("tcpwatchd_close_wait_leaked_sockets", "cw-leaky") == 3
                assert p.gauge("tcpwatchd_close_wait_leaked_sockets", "cw-prompt") == 0  # it still listens
        last = polls[-1]
        assert (
            last.gauge("tcpwatchd_close_wait_oldest_age_seconds", "cw-leaky") or 0
        ) >= MIN_AGE + 2 * INTERVAL
        assert {f["local"] for f in last.findings("close_wait")} == {"127.0.0.1:7001"}

        # Each leak is logged exactly once, however many polls saw it.
        logged = [line for line in watch.logged() if line["fields"].get("TCPWATCHD_FINDING") == "close_wait"]
        assert len(logged) == 3
        assert {line["fields"]["TCPWATCHD_PROCESS"] for line in logged} == {"cw-leaky"}
        assert all(
            line["fields"]["TCPWATCHD_SOCKET"].startswith("127.0.0.1:7001 -> 127.0.0.1:") for line in logged
        )

        # The application finally closes: the finding goes and the gauge returns to 0.
        tell(leaky, "close", "CLOSED")
        after = watch.poll()
        assert after.findings("close_wait") == []
        assert after.gauge("tcpwatchd_close_wait_leaked_sockets", "cw-leaky") == 0
