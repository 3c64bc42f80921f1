"""Row selections in C (rowsets.py) and per-row process codes (snapshot.RowProcesses): the same answers as
the obvious Python loops, including past 256 processes and with equal labels on two owners."""

from __future__ import annotations

from array import array
from collections import Counter

from tcpwatchd.model import NOBODY, Owner, Socket, TcpState
from tcpwatchd.rowsets import idle_established, rows_with_byte
from tcpwatchd.snapshot import Snapshot, row_labels, row_processes
from tests.support.builders import info, owner, snapshot, sock


def test_rows_with_byte_matches_a_loop_for_rare_and_common_values() -> None:
    values = array("B", [i % 7 for i in range(1000)])
    for wanted in ({3}, {0, 1, 2, 3, 4, 5}, {9}, set(range(256))):
        expected = [row for row, v in enumerate(values) if v in wanted]
        assert rows_with_byte(values, frozenset(wanted)) == expected


def test_rows_with_byte_on_lists_and_signed_columns() -> None:
    assert rows_with_byte([0, 4, -1, 4], frozenset({4})) == [1, 3]
    assert rows_with_byte(array("h", [-1, 300, 4]), frozenset({4})) == [2]


def test_idle_established_needs_both_clocks_and_the_state() -> None:
    socks = [
        sock(tcp_info=info(last_data_recv_ms=9000, last_ack_recv_ms=9000)),  # idle
        sock(tcp_info=info(last_data_recv_ms=9000, last_ack_recv_ms=10)),  # ACKs still arrive
        sock(TcpState.CLOSE_WAIT, tcp_info=info(last_data_recv_ms=9000, last_ack_recv_ms=9000)),
        sock(),  # no tcp_info: -1
    ]
    table = snapshot(0, socks).sockets
    assert list(idle_established(table, 5000.0)) == [0]
    assert list(idle_established(table, 10_000.0)) == []


def _crowd(processes: int, per: int) -> tuple[list[int], Snapshot]:
    socks: list[Socket] = []
    owners: dict[int, Owner] = {}
    for p in range(processes):
        who = owner(f"app{p % (processes - 1)}", pid=100 + p)  # the last two share a name: one series
        for k in range(per):
            inode = 1 + p * per + k
            socks.append(sock(inode=inode, local=("127.0.0.1", 1000 + k)))
            owners[inode] = who
    socks.append(sock(inode=0))  # no owner
    return list(range(len(socks))), snapshot(0, socks, owners)


def test_counts_and_listing_agree_with_python_below_and_above_256_processes() -> None:
    for processes in (5, 300):
        rows, snap = _crowd(processes, 3)
        processes_ = row_processes(snap)
        labels = row_labels(snap)
        codes = processes_.codes_of(rows[::2])
        assert processes_.counted(codes) == Counter(labels[r] for r in rows[::2])
        firsts: list[int] = []
        seen: Counter[object] = Counter()
        for at, row in enumerate(rows[::2]):
            if seen[labels[row]] < 1:
                firsts.append(at)
            seen[labels[row]] += 1
        assert processes_.first_of_each(codes, 1) == firsts
        assert labels[-1] == NOBODY


def test_holders_are_one_owner_per_process_whoever_built_the_snapshot() -> None:
    from dataclasses import replace

    from tcpwatchd.snapshot import holders

    a, b = owner("a", 1), owner("b", 2)
    snap = snapshot(0, [sock(inode=1), sock(inode=2), sock(inode=3)], {1: a, 2: a, 3: b})
    assert sorted(o.name for o in holders(snap)) == ["a", "b"]  # hand-built: computed
    assert holders(replace(snap, processes=(b,))) == (b,)  # from the source: taken as given
