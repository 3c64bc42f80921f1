"""The issue-13 detectors on real sockets, each beside the healthy look-alike it must not flag.

Every scenario runs in namespaces of its own (loopback, or veth hosts in 198.18.0.0/15), polled by the
real pipeline (tests/support/detect_driver.py); the workloads are tests/support/round_two_workload.py
and tests/support/detect_workload.py.
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from tests.support.detect_pipeline import Poll, Watch, workload
from tests.support.netns import NetNS, veth, wait_line

pytestmark = pytest.mark.integration


def _start(ns: NetNS, *argv: str) -> str:
    """Start a round_two_workload child; returns the rest of its READY line."""
    child = ns.python("-m", "tests.support.round_two_workload", *argv)
    return wait_line(child, "READY", timeout=20)[len("READY") :].strip()


def _socket(p: Poll, process: str, local: str) -> dict[str, Any]:
    [sock] = [s for s in p.sockets(process) if s["local"] == local and s["state"] != "listen"]
    return sock


def test_a_listener_that_stopped_accepting_saturates_and_a_busy_one_does_not() -> None:
    hold = 1.5
    with NetNS() as ns:
        watch = Watch(ns, {"listen_saturation": {"min_fill": 0.8, "for_seconds": hold}})
        _start(ns, "acceptor", "7700", "--backlog", "8", "--stop", "--name", "ls-stuck")
        _start(ns, "acceptor", "7701", "--backlog", "8", "--name", "ls-busy")
        _start(ns, "acceptor", "7702", "--backlog", "8", "--stop", "--name", "ls-behind")
        watch.poll()
        _start(ns, "flood", "127.0.0.1", "7701", "--count", "40", "--name", "ls-client")
        _start(ns, "flood", "127.0.0.1", "7702", "--count", "7", "--name", "ls-client")  # 7 of 8: never full
        _start(ns, "flood", "127.0.0.1", "7700", "--count", "40", "--name", "ls-client")
        flooded = time.monotonic()
        polls = watch.poll_for(hold + 1.5, 0.3)

        # The stuck one: its queue is over its limit (the kernel admits backlog + 1) and overflows rose,
        # so it is flagged at once; once it has stayed full for `hold`, in every poll (between two
        # bursts of overflows, the clients' SYN retransmissions, it may lapse before that).
        first = polls[0]
        assert first.raw["counters"]["TcpExt.ListenOverflows"] > 0
        assert first.findings("listen_saturated", "ls-stuck") != []
        for p in polls:
            if p is not first and p.at - flooded < hold + 0.4:
                continue
            [f] = p.findings("listen_saturated", "ls-stuck")
            assert (f["local"], f["details"]["accept_queue"], f["details"]["accept_queue_limit"]) == (
                "127.0.0.1:7700",
                9,
                8,
            )
            assert p.gauge("tcpwatchd_listen_saturated_listeners", "ls-stuck") == 1
        for p in polls:
            assert p.findings("listen_saturated", "ls-busy") == []
            assert p.gauge("tcpwatchd_listen_saturated_listeners", "ls-busy") == 0
            assert p.gauge("tcpwatchd_listen_queue_limit", "ls-busy") == 8
        assert (
            first.findings("listen_saturated", "ls-stuck")[0]["details"]["listen_overflows_since_last_poll"]
            > 0
        )

        # The one behind (7 of 8, no overflow of its own) only once it has stayed so for `hold` seconds.
        for p in polls:
            behind = p.findings("listen_saturated", "ls-behind")
            if p.at - flooded < hold:
                assert behind == []
            elif p.at - flooded > hold + 0.4:  # the queue filled within 0.1 s of `flooded`
                [f] = behind
                assert f["details"]["accept_queue"] == 7 and f["age_seconds"] >= hold
        logged = {x["fields"].get("TCPWATCHD_PROCESS") for x in watch.logged()}
        assert {"ls-stuck", "ls-behind"} <= logged and "ls-busy" not in logged


def test_a_leak_toward_a_low_fd_limit_is_forecast_and_a_steady_high_count_is_not() -> None:
    with NetNS() as ns:
        watch = Watch(ns, {"fd_exhaustion": {"min_seconds_left": 120}}, facts_refresh_seconds=0.4)
        _start(ns, "listener", "7710", "--nofile", "256", "--name", "fd-leaky")
        _start(ns, "listener", "7711", "--nofile", "8192", "--fds", "5000", "--name", "fd-steady")
        watch.poll()
        _start(ns, "loop", "127.0.0.1", "7710", "--rate", "20", "--name", "fd-client")
        polls = watch.poll_for(6.0, 0.5)

        for p in polls:
            assert p.gauge("tcpwatchd_fd_exhaustion_seconds", "fd-steady") == math.inf
            assert p.gauge("tcpwatchd_process_max_fds", "fd-steady") == 8192
            assert (p.gauge("tcpwatchd_process_open_fds", "fd-steady") or 0) > 5000
            assert p.findings("fd_exhaustion", "fd-steady") == []
        left = [p.gauge("tcpwatchd_fd_exhaustion_seconds", "fd-leaky") for p in polls]
        finite = [x for x in left if x is not None and x < math.inf]
        assert len(finite) >= 3, left
        assert finite[-1] < finite[0] and finite[-1] < 60, left  # falling toward zero
        last = polls[-1]
        assert last.gauge("tcpwatchd_process_max_fds", "fd-leaky") == 256
        [f] = last.findings("fd_exhaustion", "fd-leaky")
        assert f["details"]["max_fds"] == 256 and f["details"]["fds_per_minute"] > 300
        assert f["details"]["close_wait_sockets"] > 20  # what holds the fds: the CLOSE_WAIT leak
        assert 0 < f["details"]["seconds_to_limit"] < 120


def test_a_client_filling_its_port_range_towards_one_upstream_is_flagged_a_pool_is_not() -> None:
    with NetNS() as ns:
        ns.run("sysctl", "-w", "net.ipv4.ip_local_port_range=40000 40200")
        ns.run("sysctl", "-w", "net.ipv4.tcp_tw_reuse=0")  # no TIME_WAIT reuse on loopback either
        watch = Watch(ns, {"port_exhaustion": {"max_fill": 0.5}})
        for port in ("7720", "7721"):
            workload(
                ns, "server", "--host", "127.0.0.1", "--port", port, "--mode", "close", "--name", "pe-up"
            )
        workload(ns, "client", "127.0.0.1", "7721", "--count", "5", "--talk", "0.2", "--name", "pe-pool")
        _start(ns, "hammer", "127.0.0.1", "7720", "--count", "150", "--name", "pe-hammer")
        p = watch.poll()

        [f] = p.findings("port_exhaustion")
        assert (f["process"], f["remote"], f["peer"]) == ("pe-hammer", "127.0.0.1:7720", "127.0.0.1")
        in_use = f["details"]["local_ports_in_use"]
        assert in_use >= 140, in_use  # 150 connections, each holding a port (TIME_WAIT but the last)
        assert f["details"]["usable_local_ports"] == 201
        time_wait = [
            s for s in p.raw["sockets"] if s["state"] == "time_wait" and s["remote"] == "127.0.0.1:7720"
        ]
        assert len(time_wait) >= in_use - 1  # the pile-up is real
        assert p.gauge("tcpwatchd_ephemeral_port_use_ratio", "pe-hammer") == pytest.approx(in_use / 201)
        assert p.gauge("tcpwatchd_port_exhaustion_destinations", "pe-hammer") == 1
        assert p.gauge("tcpwatchd_ephemeral_port_use_ratio", "pe-pool") == pytest.approx(5 / 201)
        assert p.gauge("tcpwatchd_port_exhaustion_destinations", "pe-pool") == 0


def test_a_zero_window_peer_that_vanishes_is_unresponsive_a_slow_reader_that_answers_is_not() -> None:
    with NetNS() as ns, NetNS() as gone_ns, NetNS() as slow_ns:
        _, gone_link = veth(ns, "198.18.6.1", gone_ns, "198.18.6.2")
        veth(ns, "198.18.7.1", slow_ns, "198.18.7.2")
        watch = Watch(ns, {"unresponsive_peer": {"min_retransmits": 3}})
        workload(gone_ns, "server", "--port", "7600", "--mode", "hold", "--name", "zw-peer")  # never reads
        workload(slow_ns, "server", "--port", "7601", "--mode", "hold", "--name", "zw-peer")
        _, gone_port = workload(ns, "send", "198.18.6.2", "7600", "--name", "zw-gone")
        _, slow_port = workload(ns, "send", "198.18.7.2", "7601", "--name", "zw-slow")

        def persisting(p: Poll) -> bool:
            timers = {s["timer"] for s in p.sockets("zw-gone") + p.sockets("zw-slow")}
            return timers == {"ZERO_WINDOW_PROBE"}

        watch.poll_until(persisting, timeout=15, interval=0.1, what="both senders at a zero window")
        gone_ns.run("ip", "link", "set", "dev", gone_link, "down")  # the peer vanishes behind its zero window

        def flagged(p: Poll) -> bool:
            return bool(p.findings("unresponsive_peer", "zw-gone"))

        p = watch.poll_until(flagged, timeout=30, interval=0.3, what="unanswered zero-window probes")
        [f] = p.findings("unresponsive_peer")
        assert (f["local"], f["remote"]) == (f"198.18.6.1:{gone_port}", "198.18.6.2:7600")
        assert f["details"]["zero_window_probes"] >= 3
        assert f["details"]["kernel_gives_up_after_seconds"] == pytest.approx(924.6)
        assert p.gauge("tcpwatchd_unresponsive_peer_connections", "zw-gone") == 1
        assert p.gauge("tcpwatchd_unresponsive_peer_connections", "zw-slow") == 0
        # The look-alike is real: still at a zero window, its probes answered.
        assert _socket(p, "zw-slow", f"198.18.7.1:{slow_port}")["timer"] == "ZERO_WINDOW_PROBE"
        assert not any(q.findings("unresponsive_peer", "zw-slow") for q in watch.polls)


def test_a_stopped_reader_is_stalled_and_a_slow_one_is_not() -> None:
    min_age = 1.0
    with NetNS() as ns:
        watch = Watch(ns, {"stalled_receive": {"min_age_seconds": min_age}})
        _start(ns, "reader", "7730", "--every", "0", "--name", "sr-stopped")
        _start(ns, "reader", "7731", "--every", "0.02", "--chunk", "4096", "--name", "sr-slow")
        workload(ns, "send", "127.0.0.1", "7730", "--name", "sr-sender")
        workload(ns, "send", "127.0.0.1", "7731", "--name", "sr-sender")
        started = time.monotonic()
        polls = watch.poll_for(min_age + 2.5, 0.3)

        for p in polls:
            assert p.findings("stalled_receive", "sr-slow") == []
            assert p.gauge("tcpwatchd_stalled_receive_connections", "sr-slow") == 0
        behind = [p for p in polls if _socket(p, "sr-slow", "127.0.0.1:7731")["rqueue"] > 0]
        assert len(behind) >= len(polls) - 1  # the look-alike is real: always data queued, yet reading
        late = [p for p in polls if p.at - started >= min_age + 0.7]
        assert late
        for p in late:
            [f] = p.findings("stalled_receive", "sr-stopped")
            assert f["local"] == "127.0.0.1:7730" and f["details"]["reader"] == "stopped"
            assert f["details"]["unread_bytes"] > 0
