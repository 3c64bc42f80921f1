"""Listener saturation "for a while": the queue-fill history the tracker keeps, and the rule over it."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

from tcpwatchd.detectors.listen_saturation import LISTEN_SATURATED
from tcpwatchd.model import Socket
from tcpwatchd.readers import MAX_FILL_STEPS, QueueFill, queue_fills
from tcpwatchd.report import Report, build_report
from tcpwatchd.snapshot import Snapshot
from tcpwatchd.table import SocketTable
from tcpwatchd.tracker import Tracker
from tests.support.builders import owner
from tests.support.detect_snapshots import detect_config, listener

APP = owner("app", 10, start=5.0)
CFG = detect_config(listen_saturation={"min_fill": 0.8, "for_seconds": 20})


def _queued(n: int, limit: int = 100, port: int = 8080) -> Socket:
    return replace(listener(port, inode=1), rqueue=n, wqueue=limit)


def _poll(t: Tracker, at: float, sock: Socket, counters: dict[str, int] | None = None) -> Report:
    snap = Snapshot(
        taken_at=at,
        monotonic=at,
        source="sockdiag",
        sockets=SocketTable.of([sock]),
        owners=MappingProxyType({sock.inode: APP}),
        kernel_counters=MappingProxyType(counters or {}),
    )
    return build_report(t.update(snap), CFG)


def _fills(queues: list[tuple[float, int]]) -> QueueFill | None:
    fills: dict[object, QueueFill] = {}
    for at, n in queues:
        table = SocketTable.of([_queued(n)])
        fills = dict(queue_fills(table, fills, at))  # type: ignore[arg-type]
    return next(iter(fills.values()), None)


def test_the_fill_history_answers_any_threshold() -> None:
    fill = _fills([(0.0, 50), (10.0, 90), (20.0, 85), (30.0, 95)])
    assert fill is not None
    assert fill.above_since(0.5) == 0.0
    assert fill.above_since(0.8) == 10.0  # 90, 85, 95: all at least 80 % since 10 s
    assert fill.above_since(0.9) == 30.0  # 85 at 20 s broke the 90 % run
    assert fill.above_since(0.96) is None  # not so full now
    assert _fills([(0.0, 90), (10.0, 0)]) is None  # an empty queue forgets the listener


def test_the_fill_history_stays_bounded_and_never_lengthens_a_run() -> None:
    fill = _fills([(float(k), k + 1) for k in range(100)])  # a queue climbing one a poll
    assert fill is not None and len(fill.steps) <= MAX_FILL_STEPS
    assert fill.above_since(0.01) == 0.0
    for fraction in (0.2, 0.5, 0.9):
        since = fill.above_since(fraction)
        assert since is not None and since >= fraction * 100 - 1  # exact or later, never earlier


def test_a_queue_full_for_a_while_is_flagged_a_burst_that_drains_is_not() -> None:
    stuck, burst = Tracker(), Tracker()
    for at, n in ((0.0, 90), (10.0, 100), (20.0, 95)):
        held = _poll(stuck, at, _queued(n))
    [f] = held.of_kind(LISTEN_SATURATED)
    assert (f.age_seconds, f.detail("accept_queue"), f.detail("accept_queue_limit")) == (20.0, 95, 100)
    for at, n in ((0.0, 100), (10.0, 3), (20.0, 100), (30.0, 90)):  # drained between the full polls
        drained = _poll(burst, at, _queued(n))
        assert drained.of_kind(LISTEN_SATURATED) == ()


def test_a_full_queue_with_overflows_rising_is_flagged_at_once() -> None:
    t = Tracker()
    _poll(t, 0.0, _queued(10), {"TcpExt.ListenOverflows": 7})
    quiet = _poll(t, 1.0, _queued(101), {"TcpExt.ListenOverflows": 7})
    assert quiet.of_kind(LISTEN_SATURATED) == ()  # full, but nobody dropped yet and not for long
    dropping = _poll(t, 2.0, _queued(101), {"TcpExt.ListenOverflows": 12})
    [f] = dropping.of_kind(LISTEN_SATURATED)
    assert f.detail("listen_overflows_since_last_poll") == 5
    # Overflows rising elsewhere in the namespace do not make a listener with room saturated.
    other = Tracker()
    _poll(other, 0.0, _queued(85), {"TcpExt.ListenOverflows": 0})
    assert _poll(other, 1.0, _queued(85), {"TcpExt.ListenOverflows": 9}).of_kind(LISTEN_SATURATED) == ()
