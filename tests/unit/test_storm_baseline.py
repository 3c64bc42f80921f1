"""The reconnect storm against each peer's own baseline, on hand-built polls with the default settings:
healthy periodic clients are never storms, a crash loop is, and the history stays as small as the peers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tcpwatchd.detectors.reconnect_storm import RECONNECT_STORM
from tcpwatchd.model import TcpState
from tcpwatchd.report import Report
from tcpwatchd.tracker import TrackedPoll
from tests.support.builders import owner
from tests.support.detect_snapshots import Scenario, conn, detect_config, info, listener

DEFAULT = detect_config()
SRV = owner("server", 10)
PEER = "198.18.0.2"
POLL = 10.0


def _run(schedule: Iterator[tuple[float, int]], until: float, start: float = 0.0) -> list[Report]:
    """Poll every POLL seconds; `schedule` yields (time, n): n connections from PEER that opened and
    closed (TIME_WAIT, no owner) between the previous poll and this one."""
    sc = Scenario()
    lsn = [listener(8080, inode=1)]
    owners = dict.fromkeys(lsn, SRV)
    reports, port, pending = [sc.report(start, lsn, owners, DEFAULT)], 1024, dict(schedule)
    t = start + POLL
    while t <= until:
        due = sum(n for at, n in pending.items() if t - POLL < at <= t)
        socks = [conn(PEER, port + i, state=TcpState.TIME_WAIT, inode=0) for i in range(due)]
        port = 1024 + (port + due) % 60000
        reports.append(sc.report(t, [*lsn, *socks], owners, DEFAULT))
        t += POLL
    return reports


def _every(period: float, until: float, n: int = 1) -> Iterator[tuple[float, int]]:
    t = period
    while t <= until:
        yield (t, n)
        t += period


def _storms(reports: list[Report]) -> int:
    return sum(len(r.of_kind(RECONNECT_STORM)) for r in reports)


@pytest.mark.parametrize("period", [1.0, 5.0, 15.0], ids=["1s", "5s", "15s"])
def test_a_periodic_client_is_never_a_storm_at_any_interval(period: float) -> None:
    """Prometheus scraping, or a health checker, from tcpwatchd's first poll on for two hours."""
    assert _storms(_run(_every(period, 7200.0), 7200.0)) == 0


def test_a_steady_proxy_without_keepalive_is_never_a_storm() -> None:
    """Three connections a second, steadily: above the floor's 1/s once, but at its own baseline."""
    assert _storms(_run(_every(1.0, 7200.0, n=3), 7200.0)) == 0


def test_a_crash_loop_is_a_storm_until_it_is_the_new_normal() -> None:
    """1 s health checks for an hour, then a crash loop at 40 connections a second."""
    quiet = list(_every(1.0, 3600.0))
    loop = [(t, 40) for t, _n in _every(1.0, 1800.0)]
    reports = _run(iter(quiet + [(3600.0 + t, n) for t, n in loop]), 5400.0)
    flagged = [r for r in reports if r.of_kind(RECONNECT_STORM)]
    first = reports.index(flagged[0]) * POLL
    assert 3600.0 < first <= 3600.0 + 20.0  # within two polls of the start
    [finding] = flagged[0].of_kind(RECONNECT_STORM)
    assert (finding.process, finding.peer, finding.detail("reason")) == ("server", PEER, "rate")
    assert len(flagged) * POLL >= 1700.0  # every poll of the half hour (the window trails by 60 s)


def test_an_old_crash_loop_becomes_the_baseline() -> None:
    loop = [(t, 40) for t, _n in _every(1.0, 9000.0)]
    reports = _run(iter(loop), 9000.0)
    assert reports[10].of_kind(RECONNECT_STORM)  # from the start: judged against the floor
    assert not reports[-1].of_kind(RECONNECT_STORM)  # 2.5 h later, 40/s is this peer's normal


def test_peers_that_abandon_connections_are_a_storm() -> None:
    """Reboot storm: each time the client comes back, its previous connection stays ESTABLISHED, silent."""
    sc = Scenario()
    lsn = [listener(8080, inode=1)]
    owners = dict.fromkeys(lsn, SRV)
    sc.report(0.0, lsn, owners, DEFAULT)
    ghosts: list[tuple[float, int]] = []
    report = None
    for k in range(1, 6):
        at = k * 400.0
        ghosts.append((at, 50000 + k))
        socks = [conn(PEER, p, tcp_info=info(int((at + 350.0 - t) * 1000))) for t, p in ghosts]
        report = sc.report(at + 350.0, [*lsn, *socks], dict.fromkeys(lsn + socks, SRV), DEFAULT)
    assert report is not None
    [finding] = report.of_kind(RECONNECT_STORM)
    assert finding.detail("reason") == "abandoned" and finding.detail("abandoned_connections") == 4


def test_the_history_costs_per_peer_not_per_connection() -> None:
    reports_view: list[TrackedPoll] = []
    sc = Scenario()
    lsn = [listener(8080, inode=1)]
    sc.poll(0.0, lsn, dict.fromkeys(lsn, SRV))
    for k in range(1, 31):
        socks = [
            conn(PEER, 1024 + (k * 500 + i) % 60000, state=TcpState.TIME_WAIT, inode=0) for i in range(500)
        ]
        reports_view.append(sc.poll(k * POLL, [*lsn, *socks], dict.fromkeys(lsn, SRV)))
    view = reports_view[-1].openings
    assert list(view.peers) == [(0, PEER, 8080)]
    peer = view.peers[(0, PEER, 8080)]
    assert len(peer.fine) <= 12 and len(peer.coarse) <= 13
    assert view.recent((0, PEER, 8080)) == 3000  # the last 60 s: six polls of 500
