"""The table's memo contract: a derived value is inherited by the next poll only when every column it
reads (and the owners, if it reads them) is unchanged; never served stale."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from tcpwatchd.model import ProcessLabels, Socket, TcpState
from tcpwatchd.snapshot import count_by_state_and_process, row_owner_names
from tcpwatchd.table import Derived, SocketTable
from tests.support.builders import info, owner, snapshot, sock

QUEUED = Derived[list[int]]("test.queued", reads=("rqueue",))
IDLE = Derived[list[int]]("test.idle", reads=("last_data_recv_ms",))
NAMES = Derived[list[str]]("test.names", reads=("inode",), owners=True)


def _base() -> list[Socket]:
    return [
        sock(inode=1, rqueue=0, tcp_info=info(last_data_recv_ms=10)),
        sock(inode=2, remote=("127.0.0.1", 2), rqueue=5, tcp_info=info(last_data_recv_ms=99_000)),
    ]


def _queued(table: SocketTable) -> Callable[[], list[int]]:
    return lambda: [i for i, q in enumerate(table.column("rqueue")) if q]


def _idle(table: SocketTable) -> Callable[[], list[int]]:
    return lambda: [i for i, ms in enumerate(table.column("last_data_recv_ms")) if ms > 60_000]


def test_unchanged_columns_hand_the_value_over_without_recomputing() -> None:
    owners = {1: owner("a", 1)}
    first = snapshot(0.0, _base(), owners)
    first.sockets.derive(QUEUED, _queued(first.sockets))
    second = snapshot(10.0, _base(), owners)
    second.inherit(first.carry())
    assert second.sockets.derive(QUEUED, lambda: pytest.fail("recomputed")) == [1]


@pytest.mark.parametrize(
    ("what", "compute", "change"),
    [
        (QUEUED, _queued, lambda s: replace(s[0], rqueue=7)),
        (
            IDLE,
            _idle,
            lambda s: replace(s[0], tcp_info=info(last_data_recv_ms=70_000)),
        ),
    ],
    ids=["a queue changed", "a tcp_info field changed"],
)
def test_a_changed_column_is_recomputed_never_served_stale(
    what: Derived[list[int]],
    compute: Callable[[SocketTable], Callable[[], list[int]]],
    change: Callable[[list[Socket]], Socket],
) -> None:
    first = snapshot(0.0, _base(), {})
    before = first.sockets.derive(what, compute(first.sockets))
    changed = _base()
    changed[0] = change(changed)
    second = snapshot(10.0, changed, {})
    second.inherit(first.carry())
    after = second.sockets.derive(what, compute(second.sockets))
    assert after != before and 0 in after


def test_a_changed_owner_is_never_served_stale() -> None:
    first = snapshot(0.0, _base(), {1: owner("old", 1)})
    assert row_owner_names(first) == ["old", ""]
    count_by_state_and_process(first)
    second = snapshot(10.0, _base(), {1: owner("new", 1)})
    second.inherit(first.carry())
    assert row_owner_names(second) == ["new", ""]
    assert count_by_state_and_process(second)[("established", ProcessLabels("new"))] == 1


def test_owners_unchanged_but_sockets_reordered_recomputes() -> None:
    owners = {1: owner("a", 1), 2: owner("b", 2)}
    first = snapshot(0.0, _base(), owners)
    assert row_owner_names(first) == ["a", "b"]
    second = snapshot(10.0, list(reversed(_base())), owners)
    second.inherit(first.carry())
    assert row_owner_names(second) == ["b", "a"]


def test_a_value_that_reads_only_states_survives_a_queue_change() -> None:
    first = snapshot(0.0, _base(), {})
    first.sockets.rows_in(TcpState.ESTABLISHED)
    changed = _base()
    changed[1] = replace(changed[1], rqueue=0)
    second = snapshot(10.0, changed, {})
    assert second.sockets.inherit(first.carry(), second.owners) >= 1
    assert second.sockets.unread_rows() == []  # reads rqueue: recomputed


def test_a_declaration_names_only_real_columns() -> None:
    with pytest.raises(ValueError, match="unknown columns"):
        Derived[int]("typo", reads=("rqeueu",))  # type: ignore[arg-type]


def test_keepalive_offs_counts_carried_only_while_the_owners_hold() -> None:
    """The listing (counts per process, rows named) rides with the rows: same sockets under a new owner
    count under the new owner; the same sockets and owners reuse it."""
    from tcpwatchd.detectors.base import Context
    from tcpwatchd.detectors.keepalive_off import KeepaliveOffConfig, detect_keepalive_off
    from tcpwatchd.tracker import Tracker

    tracker, cfg = Tracker(), KeepaliveOffConfig()
    counts = []
    previous = None
    for at, name in ((0.0, "a"), (10.0, "a"), (20.0, "b")):
        snap = snapshot(at, _base(), {1: owner(name, 1), 2: owner(name, 1)})
        if previous is not None:
            snap.inherit(previous.carry())
        outcome = detect_keepalive_off(tracker.update(snap), cfg, Context())
        counts.append({labels.process: n for (_kind, labels), n in outcome.counts.items()})
        previous = snap
    assert counts == [{"a": 2}, {"a": 2}, {"b": 2}]
