from __future__ import annotations

import pytest

from tcpwatchd.detectors.keepalive_off import KEEPALIVE_OFF
from tcpwatchd.model import TcpState, TimerKind
from tests.support.builders import owner
from tests.support.detect_snapshots import Scenario, conn

APP = owner("app", 10)


@pytest.mark.parametrize(
    ("state", "timer", "flagged"),
    [
        (TcpState.ESTABLISHED, TimerKind.OFF, True),
        (TcpState.ESTABLISHED, TimerKind.KEEPALIVE, False),
        # A busy socket: the retransmit or zero-window probe timer is reported instead of keepalive.
        (TcpState.ESTABLISHED, TimerKind.RETRANSMIT, False),
        (TcpState.ESTABLISHED, TimerKind.ZERO_WINDOW_PROBE, False),
        # Not ESTABLISHED: keepalive is not the question (close_wait and others judge these).
        (TcpState.CLOSE_WAIT, TimerKind.OFF, False),
        (TcpState.FIN_WAIT2, TimerKind.OFF, False),
        (TcpState.TIME_WAIT, TimerKind.TIME_WAIT, False),
        (TcpState.SYN_SENT, TimerKind.RETRANSMIT, False),
    ],
)
def test_keepalive_off_table(state: TcpState, timer: TimerKind, flagged: bool) -> None:
    sock = conn(state=state, timer=timer)
    report = Scenario().report(0, [sock], {sock: APP})
    assert len(report.of_kind(KEEPALIVE_OFF)) == int(flagged)


def test_counted_per_process_and_aged_from_first_sight() -> None:
    sc = Scenario()
    off1, off2, on = conn(remote_port=1), conn(remote_port=2), conn(remote_port=3, timer=TimerKind.KEEPALIVE)
    other = conn(remote_port=4)
    owners = {off1: APP, off2: APP, on: APP, other: owner("other", 20)}
    sc.report(0, [off1], owners)
    report = sc.report(30, [off1, off2, on, other], owners)
    counts = {p.process: p.count(KEEPALIVE_OFF) for p in report.processes}
    assert counts == {"app": 2, "other": 1}
    ages = {f.remote: f.age_seconds for f in report.of_kind(KEEPALIVE_OFF)}
    assert ages == {"198.18.0.2:1": 30.0, "198.18.0.2:2": 0.0, "198.18.0.2:4": 0.0}


def test_works_from_the_proc_fallback_too() -> None:
    sock = conn()
    report = Scenario(source="procnet").report(0, [sock], {sock: APP})
    assert len(report.of_kind(KEEPALIVE_OFF)) == 1
    assert [r.name for r in report.degraded] == ["phantom"]  # idle times need tcp_info; timers do not


def test_a_socket_that_turns_keepalive_on_stops_being_flagged() -> None:
    sc = Scenario()
    off, on = conn(), conn(timer=TimerKind.KEEPALIVE)
    assert len(sc.report(0, [off], {off: APP}).of_kind(KEEPALIVE_OFF)) == 1
    assert sc.report(10, [on], {on: APP}).of_kind(KEEPALIVE_OFF) == ()
