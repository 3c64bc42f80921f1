from __future__ import annotations

import pytest

from tcpwatchd.detectors.unresponsive_peer import UNRESPONSIVE_PEER
from tcpwatchd.model import Socket, TcpState, TimerKind
from tcpwatchd.sysctl.derived import inflight_detection_from
from tests.support.builders import owner
from tests.support.detect_snapshots import Scenario, conn, detect_config, info

CFG = detect_config(unresponsive_peer={"min_retransmits": 3})
APP = owner("sender", 10)


@pytest.mark.parametrize(
    ("retries2", "rto_max_ms", "seconds"),
    [
        (15, 120_000, 924.6),  # the well-known default: 1023 * 0.2 s + 6 * 120 s
        (0, 120_000, 0.2),
        (3, 120_000, 3.0),  # 15 * 0.2 s
        (8, 120_000, 102.2),  # 511 * 0.2 s
        (9, 120_000, 204.6),  # the last doubling step: ilog2(120000 / 200) = 9
        (10, 120_000, 324.6),
        (15, 60_000, 522.2),  # tcp_rto_max_ms = 60 s (Linux 6.15+): ilog2(300) = 8, 511 * 0.2 + 7 * 60
    ],
)
def test_give_up_seconds_follows_tcp_model_timeout(retries2: int, rto_max_ms: int, seconds: float) -> None:
    sysctl = {"net.ipv4.tcp_retries2": retries2, "net.ipv4.tcp_rto_max_ms": rto_max_ms}
    assert inflight_detection_from(sysctl) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("sock", "flagged"),
    [
        pytest.param(
            conn(tcp_info=info(retransmits=3), timer=TimerKind.RETRANSMIT), True, id="three-in-a-row"
        ),
        pytest.param(
            conn(tcp_info=info(retransmits=2), timer=TimerKind.RETRANSMIT), False, id="two-in-a-row"
        ),
        pytest.param(conn(retrans=4, timer=TimerKind.RETRANSMIT), True, id="proc-fallback-retransmit-timer"),
        pytest.param(conn(retrans=4, timer=TimerKind.KEEPALIVE), False, id="proc-fallback-keepalive-probes"),
        pytest.param(
            conn(retrans=4, timer=TimerKind.ZERO_WINDOW_PROBE), True, id="proc-fallback-window-probes"
        ),
        pytest.param(
            conn(state=TcpState.CLOSE_WAIT, tcp_info=info(retransmits=5), timer=TimerKind.RETRANSMIT),
            True,
            id="close-wait-still-sending",
        ),
        pytest.param(
            conn(state=TcpState.FIN_WAIT1, inode=0, tcp_info=info(retransmits=5), timer=TimerKind.RETRANSMIT),
            False,
            id="orphan-obeys-tcp_orphan_retries",
        ),
        pytest.param(
            conn(state=TcpState.SYN_SENT, tcp_info=info(retransmits=5), timer=TimerKind.RETRANSMIT),
            False,
            id="connect-in-progress",
        ),
    ],
)
def test_unresponsive_peer_table(sock: Socket, flagged: bool) -> None:
    report = Scenario().report(0, [sock], {sock: APP}, CFG)
    assert len(report.of_kind(UNRESPONSIVE_PEER)) == int(flagged)


def test_the_finding_says_when_the_kernel_gives_up() -> None:
    # Three retransmissions from a 200 ms RTO: the RTO is now 1.6 s; waits were 0.2 + 0.4 + 0.8 = 1.4 s,
    # and the last retransmission left 0.5 s ago: 1.9 s since the head segment was first sent.
    sock = conn(
        tcp_info=info(retransmits=3, rto_us=1_600_000, last_data_sent_ms=500), timer=TimerKind.RETRANSMIT
    )
    report = Scenario().report(0, [sock], {sock: APP}, CFG)
    [f] = report.of_kind(UNRESPONSIVE_PEER)
    assert f.age_seconds == pytest.approx(1.9)
    assert f.detail("retransmits") == 3
    assert f.detail("kernel_gives_up_after_seconds") == pytest.approx(924.6)
    assert f.detail("kernel_gives_up_in_seconds") == pytest.approx(922.7)


def test_the_give_up_time_comes_from_the_current_sysctl() -> None:
    sock = conn(
        tcp_info=info(retransmits=3, rto_us=1_600_000, last_data_sent_ms=500), timer=TimerKind.RETRANSMIT
    )
    report = Scenario().report(0, [sock], {sock: APP}, CFG, sysctl={"net.ipv4.tcp_retries2": 5})
    [f] = report.of_kind(UNRESPONSIVE_PEER)
    assert f.detail("kernel_gives_up_after_seconds") == pytest.approx(12.6)
    assert f.detail("kernel_gives_up_in_seconds") == pytest.approx(10.7)


def test_from_the_proc_fallback_the_give_up_estimate_is_left_out_not_guessed() -> None:
    sock = conn(retrans=3, timer=TimerKind.RETRANSMIT)
    report = Scenario(source="procnet").report(0, [sock], {sock: APP}, CFG)
    [f] = report.of_kind(UNRESPONSIVE_PEER)
    assert f.detail("kernel_gives_up_in_seconds") is None
    assert f.age_seconds == 0.0
    assert f.detail("kernel_gives_up_after_seconds") == pytest.approx(924.6)


def test_an_ack_resets_the_count_and_the_finding_goes() -> None:
    sc = Scenario()
    bad = conn(tcp_info=info(retransmits=4), timer=TimerKind.RETRANSMIT)
    good = conn(tcp_info=info(retransmits=0), timer=TimerKind.RETRANSMIT)
    assert len(sc.report(0, [bad], {bad: APP}, CFG).of_kind(UNRESPONSIVE_PEER)) == 1
    assert sc.report(1, [good], {good: APP}, CFG).of_kind(UNRESPONSIVE_PEER) == ()
