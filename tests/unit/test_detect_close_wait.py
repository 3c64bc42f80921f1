from __future__ import annotations

import pytest

from tcpwatchd.detectors.close_wait import CLOSE_WAIT
from tcpwatchd.model import Socket, TcpState
from tests.support.builders import owner
from tests.support.detect_snapshots import Scenario, conn, detect_config

CFG = detect_config(close_wait={"min_age_seconds": 30})
LEAKY = owner("leaky", 10)
PROMPT = owner("prompt", 20)


def _cw(remote_port: int) -> Socket:
    return conn(remote_port=remote_port, state=TcpState.CLOSE_WAIT, rqueue=1)


@pytest.mark.parametrize(
    ("poll_times", "expected_ages"),
    [
        ((0, 10, 20), []),  # first seen at 0: 20 s old, under 30
        ((0, 10, 20, 30), [30.0]),  # reaches the threshold
        ((0, 10, 20, 30, 45), [45.0]),
        ((0, 45), [45.0]),
    ],
)
def test_a_socket_left_in_close_wait_is_flagged_once_older_than_min_age(
    poll_times: tuple[float, ...], expected_ages: list[float]
) -> None:
    sc = Scenario()
    sock = _cw(40001)
    report = None
    for t in poll_times:
        report = sc.report(t, [sock], {sock: LEAKY}, CFG)
    assert report is not None
    found = report.of_kind(CLOSE_WAIT)
    assert [f.age_seconds for f in found] == expected_ages
    assert all((f.process, f.pid, f.remote) == ("leaky", 10, "198.18.0.2:40001") for f in found)


def test_a_service_that_closes_promptly_is_never_flagged() -> None:
    sc = Scenario()
    cfg = detect_config(close_wait={"min_age_seconds": 5})
    # Each poll catches a different connection in CLOSE_WAIT for an instant, never the same one twice.
    for i, t in enumerate(range(0, 100, 10)):
        sock = _cw(41000 + i)
        report = sc.report(t, [sock], {sock: PROMPT}, cfg)
        assert report.of_kind(CLOSE_WAIT) == ()
        assert report.processes[0].value("oldest_age_seconds") == 0.0


def test_age_counts_from_entering_close_wait_not_from_the_connection_start() -> None:
    sc = Scenario()
    est = conn(remote_port=40002)
    cw = conn(remote_port=40002, state=TcpState.CLOSE_WAIT, rqueue=1)
    sc.report(0, [est], {est: LEAKY}, CFG)
    sc.report(100, [est], {est: LEAKY}, CFG)
    report = sc.report(110, [cw], {cw: LEAKY}, CFG)
    assert report.of_kind(CLOSE_WAIT) == ()
    report = sc.report(140, [cw], {cw: LEAKY}, CFG)
    assert [f.age_seconds for f in report.of_kind(CLOSE_WAIT)] == [30.0]


def test_oldest_age_and_leaked_count_are_per_process() -> None:
    sc = Scenario()
    old, young, other = _cw(40010), _cw(40011), _cw(40012)
    sc.report(0, [old], {old: LEAKY}, CFG)
    report = sc.report(50, [old, young, other], {old: LEAKY, young: LEAKY, other: PROMPT}, CFG)
    by_name = {p.process: p for p in report.processes}
    assert by_name["leaky"].value("oldest_age_seconds") == 50.0
    assert by_name["leaky"].count(CLOSE_WAIT) == 1  # the young one is under the threshold
    assert by_name["prompt"].value("oldest_age_seconds") == 0.0
    assert by_name["prompt"].count(CLOSE_WAIT) == 0


def test_a_socket_already_in_close_wait_at_start_says_its_age_is_a_lower_bound() -> None:
    sc = Scenario()
    pre, later = _cw(40020), _cw(40021)
    sc.report(0, [pre], {pre: LEAKY}, CFG)
    report = sc.report(40, [pre, later], {pre: LEAKY, later: LEAKY}, CFG)
    sc.report(50, [pre, later], {pre: LEAKY, later: LEAKY}, CFG)
    report = sc.report(80, [pre, later], {pre: LEAKY, later: LEAKY}, CFG)
    bounds = {f.remote: f.detail("age_is_lower_bound") for f in report.of_kind(CLOSE_WAIT)}
    assert bounds == {"198.18.0.2:40020": "yes", "198.18.0.2:40021": None}


def test_the_finding_disappears_when_the_application_closes() -> None:
    sc = Scenario()
    sock = _cw(40030)
    sc.report(0, [sock], {sock: LEAKY}, CFG)
    assert len(sc.report(40, [sock], {sock: LEAKY}, CFG).of_kind(CLOSE_WAIT)) == 1
    last_ack = conn(remote_port=40030, state=TcpState.LAST_ACK, rqueue=1, inode=0)
    assert sc.report(50, [last_ack], {}, CFG).of_kind(CLOSE_WAIT) == ()
