"""FdMap: the owner cache's compact fd tables answer as the dicts they replace."""

from __future__ import annotations

import doctest

import pytest

from tcpwatchd import rowsets
from tcpwatchd.sources import fdmap
from tcpwatchd.sources.fdmap import FdMap


@pytest.mark.parametrize(
    "fds",
    [
        {},
        {"0": 0, "1": 0, "2": 0, "3": 4242},  # 0..n-1, the usual table
        {"0": 0, "5": 11, "7": 0, "9": 2**32 - 1},  # gaps
        {"0": 0, "3": 7, "100000": 9},  # sparse: one fd dup2()ed far up
    ],
)
def test_an_fd_map_answers_as_its_dict(fds: dict[str, int]) -> None:
    table = FdMap.of(fds)
    assert len(table) == len(fds)
    assert sorted(table.values()) == sorted(fds.values())
    assert sorted(table, key=int) == sorted(fds, key=int)
    for name in [*fds, "4", "8", "99999", "100001", "-1", "x"]:
        assert table.get(name) == fds.get(name), name


@pytest.mark.parametrize("module", [fdmap, rowsets])
def test_docstring_examples_hold(module: object) -> None:
    assert doctest.testmod(module).failed == 0  # type: ignore[arg-type]
