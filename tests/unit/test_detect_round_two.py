"""The issue-13 rules on hand-built tables, each beside the healthy look-alike it must not flag."""

from __future__ import annotations

import math
from dataclasses import replace
from types import MappingProxyType

from tcpwatchd.detectors.fd_exhaustion import FD_EXHAUSTION, SECONDS_LEFT
from tcpwatchd.detectors.listen_saturation import LISTEN_SATURATED, QUEUE_LENGTH, QUEUE_LIMIT
from tcpwatchd.detectors.port_exhaustion import PORT_EXHAUSTION, USE_RATIO
from tcpwatchd.detectors.stalled_receive import STALLED_RECEIVE
from tcpwatchd.detectors.unresponsive_peer import UNRESPONSIVE_PEER
from tcpwatchd.facts import PortRange, ProcessFacts
from tcpwatchd.model import ProcessLabels, Socket, TcpState, TimerKind
from tcpwatchd.report import Report, build_report
from tcpwatchd.snapshot import Snapshot
from tcpwatchd.table import SocketTable
from tcpwatchd.tracker import Tracker
from tests.support.builders import owner
from tests.support.detect_snapshots import conn, detect_config, info, listener

CFG = detect_config()
APP, BUSY = owner("app", 10, start=5.0), owner("busy", 20, start=6.0)


def _poll(
    tracker: Tracker, at: float, socks: list[Socket], owners: dict[Socket, object], **extra: object
) -> Report:
    snap = Snapshot(
        taken_at=at,
        monotonic=at,
        source="sockdiag",
        sockets=SocketTable.of(socks),
        owners=MappingProxyType({s.inode: o for s, o in owners.items() if s.inode}),  # type: ignore[misc]
        **extra,  # type: ignore[arg-type]
    )
    return build_report(tracker.update(snap), CFG)


def test_a_listener_that_stopped_accepting_is_saturated_and_a_busy_one_is_not() -> None:
    stuck = replace(listener(8080, inode=1), rqueue=128, wqueue=128)
    busy = replace(listener(9090, inode=2), rqueue=3, wqueue=4096)
    t = Tracker()
    first = _poll(t, 0.0, [stuck, busy], {stuck: APP, busy: BUSY})
    assert first.of_kind(LISTEN_SATURATED) == ()  # full for an instant is no saturation yet (for_seconds)
    report = _poll(t, 30.0, [stuck, busy], {stuck: APP, busy: BUSY})
    [finding] = report.of_kind(LISTEN_SATURATED)
    assert (finding.process, finding.local, finding.detail("accept_queue")) == ("app", "0.0.0.0:8080", 128)
    assert (finding.age_seconds, finding.detail("held_seconds")) == (30.0, 30.0)
    assert report.port_values[QUEUE_LENGTH][(APP.labels, 8080)] == 128.0
    assert report.port_values[QUEUE_LIMIT][(BUSY.labels, 9090)] == 4096.0


def test_a_leak_toward_a_low_fd_limit_is_forecast_and_a_steady_high_count_is_not() -> None:
    t = Tracker()
    socks = [listener(8080, inode=1), listener(9090, inode=2)]
    owners = {socks[0]: APP, socks[1]: BUSY}
    report = None
    for k in range(6):
        facts = {
            10: ProcessFacts(10, 100 + 60 * k, 1024, at=60.0 * k, start_time=5.0),
            20: ProcessFacts(20, 60_000, 1_048_576, at=60.0 * k, start_time=6.0),
        }
        report = _poll(t, 60.0 * k, socks, owners, process_facts=MappingProxyType(facts))
    assert report is not None
    [finding] = report.of_kind(FD_EXHAUSTION)
    assert finding.process == "app"
    summary = {p.process: p for p in report.processes}
    assert summary["app"].value(SECONDS_LEFT) == (1024 - 400) / 1.0  # one fd a second
    assert summary["busy"].value(SECONDS_LEFT) == math.inf


def test_a_destination_filling_the_port_range_is_flagged_and_a_pool_is_not() -> None:
    tw = TcpState.TIME_WAIT
    hammer = [
        conn("198.18.0.9", 80, local="198.18.0.1", local_port=p, state=tw, inode=0)
        for p in range(20000, 20060)
    ]
    mine = conn("198.18.0.9", 80, local="198.18.0.1", local_port=20100)
    pool = [conn("198.18.0.7", 5432, local="198.18.0.1", local_port=20200 + i) for i in range(4)]
    ranges = MappingProxyType({0: PortRange(20000, 20100)})
    owners: dict[Socket, object] = {mine: APP, **dict.fromkeys(pool, BUSY)}
    report = _poll(Tracker(), 0.0, [*hammer, mine, *pool], owners, port_ranges=ranges)
    [finding] = report.of_kind(PORT_EXHAUSTION)
    assert (finding.process, finding.remote, finding.detail("local_ports_in_use")) == (
        "app",
        "198.18.0.9:80",
        61,
    )
    values = {p.process: p.value(USE_RATIO) for p in report.processes}
    assert values["app"] == 61 / 101 and values["busy"] == 0.0  # the pool's ports are outside the range


def test_unanswered_zero_window_probes_are_an_unresponsive_peer_and_answered_ones_are_not() -> None:
    gone = conn(remote_port=1, timer=TimerKind.ZERO_WINDOW_PROBE, tcp_info=replace(info(), probes=5))
    slow = conn(remote_port=2, timer=TimerKind.ZERO_WINDOW_PROBE, tcp_info=replace(info(), probes=0))
    report = _poll(Tracker(), 0.0, [gone, slow], {gone: APP, slow: APP})
    [finding] = report.of_kind(UNRESPONSIVE_PEER)
    assert finding.remote.endswith(":1") and finding.detail("zero_window_probes") == 5


def _reader(port: int, queued: int, received: int) -> Socket:
    return conn(remote_port=port, rqueue=queued, tcp_info=replace(info(), bytes_received=received))


def test_a_stopped_reader_is_stalled_and_a_slow_one_is_not() -> None:
    t = Tracker()
    report = None
    for k in range(4):  # both have data queued all along; only the slow one reads between polls
        socks = [_reader(1, 4096, 10_000), _reader(2, 4096, 10_000 + 1000 * k)]
        report = _poll(t, 40.0 * k, socks, dict.fromkeys(socks, APP))
    assert report is not None
    assert [f.remote.rsplit(":", 1)[1] for f in report.of_kind(STALLED_RECEIVE)] == ["1"]
    assert report.of_kind(STALLED_RECEIVE)[0].detail("reader") == "stopped"
    assert {p.labels for p in report.processes} == {ProcessLabels("app")}
