from __future__ import annotations

from collections.abc import Sequence

import pytest

from tcpwatchd.detectors.reconnect_storm import RECONNECT_STORM
from tcpwatchd.model import ProcessLabels, TcpState
from tcpwatchd.report import Report
from tests.support.builders import owner
from tests.support.detect_snapshots import Scenario, conn, detect_config, listener

# A low floor so that five openings in a minute are far above it: the table below is about counting.
CFG = detect_config(
    reconnect_storm={"window_seconds": 60, "min_new_connections": 5, "min_baseline_per_second": 0.01}
)
SRV = owner("server", 10, unit="api.service")
A, B = "198.18.0.2", "198.18.0.3"


def _storm(openings: Sequence[tuple[float, str, int]], end: float) -> Report:
    """Poll at 0 (the start), then at each opening's time, then at `end`; each opening lives one poll.

    An opening is (time, peer address, local port); it shows up in TIME_WAIT with no owner, like a
    connection that opened and closed between two polls.
    """
    sc = Scenario()
    lsn = [listener(8080, inode=1), listener(9090, inode=2)]
    owners = dict.fromkeys(lsn, SRV)
    sc.report(0, lsn, owners, CFG)
    report = None
    for i, (at, peer, port) in enumerate(openings):
        tw = conn(peer, 41000 + i, local_port=port, state=TcpState.TIME_WAIT, inode=0)
        report = sc.report(at, [*lsn, tw], owners, CFG)
    report = sc.report(end, lsn, owners, CFG)
    return report


@pytest.mark.parametrize(
    ("openings", "end", "storming"),
    [
        pytest.param([(t, A, 8080) for t in (1, 2, 3, 4, 5)], 6, {(A, "*:8080")}, id="five-in-five-seconds"),
        pytest.param([(t, A, 8080) for t in (1, 2, 3, 4)], 6, set(), id="four-is-under-the-minimum"),
        pytest.param([(t, A, 8080) for t in (1, 20, 40, 60, 80)], 81, set(), id="spread-beyond-the-window"),
        pytest.param(
            [(t, A, 8080) for t in (1, 2, 3, 4, 5)], 61.5, set(), id="storm-over-once-the-window-passes"
        ),
        pytest.param(
            [(1, A, 8080), (2, A, 8080), (3, A, 9090), (4, A, 9090), (5, A, 8080)],
            6,
            set(),
            id="different-local-ports-do-not-add-up",
        ),
        pytest.param(
            [(1, A, 8080), (2, B, 8080), (3, A, 8080), (4, B, 8080), (5, A, 8080)],
            6,
            set(),
            id="different-peers-do-not-add-up",
        ),
        pytest.param(
            [(t, p, 8080) for t in (1, 2, 3, 4, 5) for p in (A, B)],
            6,
            {(A, "*:8080"), (B, "*:8080")},
            id="two-peers-storming",
        ),
        pytest.param(
            [
                (1, A, 8080),
                (2, "::ffff:198.18.0.2", 8080),
                (3, A, 8080),
                (4, A, 8080),
                (5, "::ffff:198.18.0.2", 8080),
            ],
            6,
            {(A, "*:8080")},
            id="ipv4-mapped-is-the-same-peer",
        ),
    ],
)
def test_storm_table(
    openings: list[tuple[float, str, int]], end: float, storming: set[tuple[str, str]]
) -> None:
    report = _storm(openings, end)
    assert {(f.peer, f.local) for f in report.of_kind(RECONNECT_STORM)} == storming


def test_a_storm_is_attributed_to_the_listening_service_and_counts_peers_per_process() -> None:
    report = _storm([(t, p, 8080) for t in (1, 2, 3, 4, 5) for p in (A, B)], 10)
    findings = report.of_kind(RECONNECT_STORM)
    assert {(f.process, f.pid, f.unit) for f in findings} == {("server", 10, "api.service")}
    assert {f.remote: f.detail("new_connections") for f in findings} == {f"{A}:*": 5, f"{B}:*": 5}
    assert all(f.age_seconds == 10.0 for f in findings)  # first opening's 5 s bucket began at 0, now 10
    [summary] = [p for p in report.processes if p.process == "server"]
    assert summary.count(RECONNECT_STORM) == 2


def test_connections_open_at_start_are_not_openings() -> None:
    sc = Scenario()
    socks = [listener(), *(conn(A, 41000 + i) for i in range(20))]
    report = sc.report(0, socks, dict.fromkeys(socks, SRV), CFG)
    report = sc.report(1, socks, dict.fromkeys(socks, SRV), CFG)
    assert report.of_kind(RECONNECT_STORM) == ()
    assert report.opened_totals == {}


def test_client_side_connections_from_this_host_are_not_a_storm_on_their_ephemeral_ports() -> None:
    # This host's client connecting 10 times to a remote server: each has its own local (ephemeral) port.
    sc = Scenario()
    sc.report(0, [], None, CFG)
    client = owner("client", 20)
    report = None
    for i in range(10):
        sock = conn("198.18.0.9", 8080, local_port=50000 + i)
        report = sc.report(1 + i, [sock], {sock: client}, CFG)
    assert report is not None
    assert report.of_kind(RECONNECT_STORM) == ()
    assert report.opened_totals == {ProcessLabels("client"): 10}
