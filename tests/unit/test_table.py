"""SocketTable's derived views against the obvious computation on the same rows."""

from __future__ import annotations

import random

import pytest

from tcpwatchd.model import TcpState
from tcpwatchd.snapshot import row_owner_names
from tcpwatchd.table import SocketTable
from tests.support.builders import owner, snapshot, sock


def table_of(states: list[TcpState]) -> SocketTable:
    return SocketTable.of(
        [
            sock(state, ("127.0.0.1", 80), ("127.0.0.1", 1000 + i), inode=i + 1)
            for i, state in enumerate(states)
        ]
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rows_in_each_state_are_every_row_of_it_in_order(seed: int) -> None:
    # Mostly ESTABLISHED (found through a 0/1 mask), a few of others (found byte by byte), some absent.
    rng = random.Random(seed)
    common = [TcpState.ESTABLISHED] * 80 + [TcpState.TIME_WAIT] * 15
    rare = [TcpState.CLOSE_WAIT, TcpState.LISTEN, TcpState.SYN_RECV, TcpState.FIN_WAIT2]
    states = [rng.choice(common + rare) for _ in range(2000)]
    table = table_of(states)
    for state in TcpState:
        assert list(table.rows_in(state)) == [i for i, s in enumerate(states) if s == state], state.name


def test_rows_in_an_empty_table_and_a_table_of_one_state() -> None:
    assert list(SocketTable().rows_in(TcpState.ESTABLISHED)) == []
    assert list(table_of([TcpState.LISTEN] * 3).rows_in(TcpState.LISTEN)) == [0, 1, 2]


def test_row_owner_names_blank_for_unowned_and_inode_zero() -> None:
    sockets = [sock(inode=1), sock(inode=2, remote=("127.0.0.1", 2)), sock(inode=0, remote=("127.0.0.1", 3))]
    snap = snapshot(0.0, sockets, {1: owner("nginx", 10), 7: owner("other", 11)})
    assert row_owner_names(snap) == ["nginx", "", ""]
