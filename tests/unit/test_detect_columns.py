"""Findings built from the table's columns are the ones built from Socket objects (issue 12)."""

from __future__ import annotations

from types import MappingProxyType

from tcpwatchd.detectors.base import Kind, connection_finding, row_finding
from tcpwatchd.detectors.port_exhaustion import PORT_EXHAUSTION
from tcpwatchd.facts import PortRange
from tcpwatchd.report import build_report
from tcpwatchd.snapshot import Snapshot
from tcpwatchd.table import SocketTable
from tcpwatchd.tracker import Tracker
from tests.support.builders import owner
from tests.support.detect_snapshots import conn, detect_config

APP, BUSY = owner("app", 10, start=5.0), owner("busy", 20, start=6.0)


def test_a_row_finding_equals_the_connection_finding_of_its_socket() -> None:
    socks = [conn("198.18.0.2", 40000 + i, inode=100 + i) for i in range(3)]
    socks.append(conn("::ffff:198.18.0.3", 41000, local="::1", inode=0))  # no owner, mapped peer
    snap = Snapshot(
        taken_at=0.0,
        monotonic=0.0,
        source="sockdiag",
        sockets=SocketTable.of(socks),
        owners=MappingProxyType({100: APP, 101: BUSY}),
    )
    tracked = Tracker().update(snap)
    for row, sock in enumerate(socks):
        assert row_finding(Kind("k"), tracked, row, 3.0) == connection_finding(Kind("k"), tracked, sock, 3.0)


def test_a_destination_is_named_after_its_biggest_holder_and_the_first_of_equals() -> None:
    ranges = MappingProxyType({0: PortRange(20000, 20009)})
    to = "198.18.0.9"
    socks = [conn(to, 80, local="198.18.0.1", local_port=20000 + i, inode=1 + i) for i in range(8)]
    tie = [conn(to, 81, local="198.18.0.1", local_port=20000 + i, inode=50 + i) for i in range(6)]
    owners = {s.inode: (BUSY if k < 3 else APP) for k, s in enumerate(socks)}
    owners |= {s.inode: (BUSY if k % 2 else APP) for k, s in enumerate(tie)}
    snap = Snapshot(
        taken_at=0.0,
        monotonic=0.0,
        source="sockdiag",
        sockets=SocketTable.of([*socks, *tie]),
        owners=MappingProxyType(owners),
        port_ranges=ranges,
    )
    report = build_report(Tracker().update(snap), detect_config())
    named = {f.remote: (f.process, f.detail("local_ports_in_use")) for f in report.of_kind(PORT_EXHAUSTION)}
    assert named == {f"{to}:80": ("app", 8), f"{to}:81": ("app", 6)}  # 5 of 8; 3 and 3: the first row's
