"""The poller's own bookkeeping, on a recorded /proc (source procnet, sysctl off)."""

from __future__ import annotations

import gc
import shutil
from pathlib import Path

import pytest

from tcpwatchd.config import Config, DaemonConfig, SysctlConfig
from tcpwatchd.poller import _GC_FULL_EVERY, Poller

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "proc" / "population"


def test_the_full_collection_runs_every_thirty_polls_not_on_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first poll is the costly one (every fd table read): it must not also pay for a full GC."""
    shutil.copytree(RECORDED, tmp_path / "proc")
    poller = Poller(
        Config(daemon=DaemonConfig(source="procnet"), sysctl=SysctlConfig(mode="off")),
        proc_root=str(tmp_path / "proc"),
    )
    collected: list[int] = []
    monkeypatch.setattr(gc, "collect", lambda *a: collected.append(1) or 0)
    sockets = poller.poll().socket_total
    assert sockets > 0 and collected == []
    for _ in range(_GC_FULL_EVERY - 1):
        poller.poll()
    assert collected == [1]
