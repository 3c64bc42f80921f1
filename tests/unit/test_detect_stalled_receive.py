from __future__ import annotations

from collections.abc import Sequence

import pytest

from tcpwatchd.detectors.stalled_receive import STALLED_RECEIVE
from tcpwatchd.model import TcpState
from tests.support.builders import owner
from tests.support.detect_snapshots import Scenario, conn, detect_config

CFG = detect_config(stalled_receive={"min_age_seconds": 20})
APP = owner("app", 10)


@pytest.mark.parametrize(
    ("state", "rqueues", "flagged_unread"),
    [
        pytest.param(TcpState.ESTABLISHED, [100, 100, 100], 100, id="never-read"),
        pytest.param(TcpState.ESTABLISHED, [100, 0, 100], None, id="drained-between-polls"),
        pytest.param(TcpState.ESTABLISHED, [100, 100, 0], None, id="drained-now"),
        pytest.param(TcpState.ESTABLISHED, [0, 100, 100], None, id="queued-for-only-10s"),
        # rcv_nxt - copied_seq counts an unread FIN as 1: that is EOF, not data.
        pytest.param(TcpState.CLOSE_WAIT, [1, 1, 1], None, id="close-wait-with-only-the-fin-unread"),
        pytest.param(TcpState.CLOSE_WAIT, [5, 5, 5], 4, id="close-wait-with-data-before-the-fin"),
        pytest.param(TcpState.LAST_ACK, [1, 1, 1], None, id="last-ack-only-fin"),
        pytest.param(TcpState.FIN_WAIT2, [7, 7, 7], 7, id="half-closed-by-us-still-receiving"),
    ],
)
def test_stalled_receive_table(state: TcpState, rqueues: Sequence[int], flagged_unread: int | None) -> None:
    sc = Scenario()
    report = None
    for t, rq in zip((0, 10, 20), rqueues, strict=True):
        sock = conn(state=state, rqueue=rq)
        report = sc.report(t, [sock], {sock: APP}, CFG)
    assert report is not None
    found = report.of_kind(STALLED_RECEIVE)
    assert [f.detail("unread_bytes") for f in found] == ([] if flagged_unread is None else [flagged_unread])


def test_a_listen_backlog_is_not_a_receive_queue() -> None:
    sc = Scenario()
    lsn = conn("0.0.0.0", 0, local="0.0.0.0", state=TcpState.LISTEN, rqueue=50)
    for t in (0, 10, 30):
        report = sc.report(t, [lsn], {lsn: APP}, CFG)
    assert report.of_kind(STALLED_RECEIVE) == ()


def test_the_finding_carries_age_state_and_owner() -> None:
    sc = Scenario()
    sock = conn(rqueue=4096)
    sc.report(0, [sock], {sock: APP}, CFG)
    report = sc.report(25, [sock], {sock: APP}, CFG)
    [f] = report.of_kind(STALLED_RECEIVE)
    assert (f.process, f.pid, f.age_seconds, f.detail("state")) == ("app", 10, 25.0, "established")
    assert [p.count(STALLED_RECEIVE) for p in report.processes] == [1]
