"""Per-process fd facts: the limits parser on recorded /proc text, the cache on this process's /proc."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tcpwatchd.errors import ParseError
from tcpwatchd.sources.process_facts import ProcessFactsCache, parse_max_open_files, read_process_facts

FACTS = Path(__file__).resolve().parents[1] / "fixtures" / "proc" / "facts"


@pytest.mark.parametrize(("name", "soft"), [("limits_default", 20000), ("limits_low", 64)])
def test_soft_limit_from_recorded_limits(name: str, soft: int) -> None:
    assert parse_max_open_files((FACTS / name).read_text()) == soft


def test_unlimited_is_none() -> None:
    text = (FACTS / "limits_low").read_text().replace("64                   4096", "unlimited  unlimited")
    assert parse_max_open_files(text) is None


@pytest.mark.parametrize("text", ["", "Max open files\n", "Max open files  lots  4096 files\n", "\x00\xff"])
def test_bad_limits_are_parse_errors(text: str) -> None:
    with pytest.raises(ParseError):
        parse_max_open_files(text)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cache_rereads_only_after_the_refresh_interval() -> None:
    clock, me = Clock(), os.getpid()
    cache = ProcessFactsCache(refresh_seconds=30, clock=clock)
    first = cache.facts([(me, 1.0)])[me]
    assert first.open_fds == len(os.listdir(f"/proc/{me}/fd")) - 1  # listdir's own fd is gone again
    extra = [os.open("/dev/null", os.O_RDONLY) for _ in range(5)]
    try:
        clock.now += 29
        assert cache.facts([(me, 1.0)])[me] == first and cache.stats.refreshed == 0
        clock.now += 1
        assert cache.facts([(me, 1.0)])[me].open_fds == first.open_fds + 5
        assert cache.facts([(me, 2.0)])[me].open_fds == first.open_fds + 5  # a new start time: re-read
        assert cache.stats.refreshed == 1 and cache.stats.cached == 1  # the old identity was dropped
    finally:
        for fd in extra:
            os.close(fd)


def test_gone_processes_are_counted_and_dropped(tmp_path: Path) -> None:
    cache = ProcessFactsCache(proc_root=str(tmp_path), clock=Clock())
    assert cache.facts([(424242, 1.0)]) == {}
    assert (cache.stats.failed, cache.stats.cached) == (1, 0)


def test_the_cache_is_bounded() -> None:
    me = os.getpid()
    cache = ProcessFactsCache(max_entries=1, clock=Clock())
    got = cache.facts([(me, 1.0), (me, 2.0), (os.getppid(), 3.0)])
    assert set(got) == {me, os.getppid()} and cache.stats.cached == 1


def test_read_process_facts_of_this_process() -> None:
    import resource

    facts = read_process_facts(os.getpid())
    assert facts.max_fds == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert facts.open_fds >= 3
