"""Bounded per-process series (outputs/budget.py): gone names dropped after a grace period, a cap on
distinct `process` values with `~other`, stable choice of who keeps a series, monotonic counters."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from types import MappingProxyType

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tcpwatchd.config import DetectConfig
from tcpwatchd.model import Owner, Socket, TcpState
from tcpwatchd.outputs.budget import OTHER, SeriesBudget, SeriesView
from tcpwatchd.outputs.prometheus import DurationHistogram, LatestPoll, TcpwatchdCollector
from tcpwatchd.poller import PollResult
from tcpwatchd.report import build_report
from tcpwatchd.snapshot import count_by_state_and_process
from tcpwatchd.sources.names import decode_name
from tcpwatchd.tracker import Tracker
from tests.support.builders import owner, snapshot, sock

OPENED = "tcpwatchd_connections_opened_total"


class World:
    """Processes by name, each holding some connections; a name's connections are new when it
    (re)appears, so each appearance counts as openings. `poll(t, {"api": 3})`."""

    def __init__(self) -> None:
        self._tracker = Tracker(history_seconds=60.0)
        self._inodes = itertools.count(1)
        self._held: dict[str, list[Socket]] = {}
        self._owners: dict[str, Owner] = {}
        self._pids = itertools.count(100)

    def poll(self, at: float, held: Mapping[str, int]) -> PollResult:
        for name in list(self._held):
            if name not in held:
                del self._held[name]
        for name, n in held.items():
            socks = self._held.setdefault(name, [])
            if name not in self._owners:
                self._owners[name] = owner(name, next(self._pids))
            while len(socks) < n:
                i = next(self._inodes)
                socks.append(sock(TcpState.ESTABLISHED, remote=("127.0.0.1", 1024 + i), inode=i))
            del socks[n:]
        owners = {s.inode: self._owners[name] for name, socks in self._held.items() for s in socks}
        snap = snapshot(at, [s for socks in self._held.values() for s in socks], owners)
        tracked = self._tracker.update(snap)
        report = build_report(tracked, DetectConfig())
        return PollResult(tracked, report, None, None, 0.01, count_by_state_and_process(snap))


def opened(view: SeriesView) -> dict[str, float]:
    return {key[0]: v for key, v in view.opened.items()}


def test_a_gone_name_keeps_its_counter_for_the_grace_period_then_it_is_dropped() -> None:
    world, budget = World(), SeriesBudget(cap=10, grace_seconds=30)
    budget.update(world.poll(0, {}))
    assert opened(budget.update(world.poll(1, {"job": 3}))) == {"job": 3}
    for t in range(2, 31):  # gone at 2: still exported, unchanged, for 30 s
        assert opened(budget.update(world.poll(t, {}))) == {"job": 3}
    view = budget.update(world.poll(32, {}))
    assert opened(view) == {} and "job" not in (view.kept or ())
    # Back later: a new series from 0 (Prometheus reads a reset), never the old total plus the new.
    assert opened(budget.update(world.poll(40, {"job": 2}))) == {"job": 2}


def test_a_live_counter_only_grows_even_while_names_come_and_go() -> None:
    world, budget = World(), SeriesBudget(cap=3, grace_seconds=5, tenure_seconds=5)
    budget.update(world.poll(0, {}))
    last: dict[tuple[str, ...], float] = {}
    for t in range(1, 200):
        held = {"api": 2 + t % 3, f"cron{t % 17}": 1, f"batch{t // 20}": 4}  # ~30 names over time
        view = budget.update(world.poll(t, held))
        for key, value in view.opened.items():
            assert value >= last.get(key, 0.0), (t, key)
        last = dict(view.opened)
        assert len({key[0] for key in view.opened}) <= 3 + 2  # the cap, "" and ~other


def test_beyond_the_cap_names_go_to_other_and_are_counted_once_per_spell() -> None:
    world, budget = World(), SeriesBudget(cap=2)
    budget.update(world.poll(0, {}))
    view = budget.update(world.poll(1, {"big": 9, "mid": 5, "a": 1, "b": 1}))
    assert view.kept == {"big", "mid"}  # the largest first
    assert opened(view) == {"big": 9, "mid": 5, OTHER: 2}
    assert view.capped_total == 2
    view = budget.update(world.poll(2, {"big": 9, "mid": 5, "a": 2, "b": 1}))
    assert view.capped_total == 2  # a and b are still the same spell
    assert opened(view) == {"big": 9, "mid": 5, OTHER: 3}
    view = budget.update(world.poll(3, {"big": 9, "mid": 5, "c": 1}))
    assert view.capped_total == 3


def test_who_keeps_a_series_does_not_flap() -> None:
    """A newcomer must hold twice the sockets of the weakest settled holder, plus two, to take its slot;
    then the old holder cannot take it back until it is that much larger again."""
    world, budget = World(), SeriesBudget(cap=2, grace_seconds=600, tenure_seconds=10)
    budget.update(world.poll(0, {}))
    kept = []
    for t in range(1, 60):
        c = 3 if t < 10 else 11 if t < 30 else 20  # c grows past 2 * (mid's 5 + 1) at 30
        held = {"big": 50, "mid": 5 + t % 2, "c": c - t % 2}
        kept.append(budget.update(world.poll(t, held)).kept)
    assert all(k == {"big", "mid"} for k in kept[:29])
    assert all(k == {"big", "c"} for k in kept[29:])
    view = budget.update(world.poll(60, {"big": 50, "mid": 30, "c": 20}))  # 30 < 2 * (20 + 1)
    assert view.kept == {"big", "c"}
    assert OTHER in opened(view) and "mid" not in opened(view)  # mid's future openings count under ~other


def test_a_lowered_cap_on_reload_drops_the_weakest() -> None:
    world, budget = World(), SeriesBudget(cap=3)
    budget.update(world.poll(0, {}))
    budget.update(world.poll(1, {"a": 5, "b": 1, "c": 3}))
    budget.reconfigure(2, budget.series)
    view = budget.update(world.poll(2, {"a": 5, "b": 1, "c": 3}))
    assert view.kept == {"a", "c"} and "b" not in opened(view)


def _scrape(latest: LatestPoll) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TcpwatchdCollector(latest, DurationHistogram()))
    return generate_latest(registry).decode()


def test_metrics_stay_bounded_under_a_churn_of_names() -> None:
    """3,000 short-lived processes with distinct names, one per poll: /metrics keeps at most cap + 2
    `process` values per family, and its size stops growing."""
    world, latest = World(), LatestPoll(SeriesBudget(cap=20, grace_seconds=30))
    latest.publish(world.poll(0, {}))
    sizes = []
    for t in range(1, 3001):
        latest.publish(world.poll(t, {"nginx": 4, f"x{t}": 1, f"y{t}": 2}))
        if t % 500 == 0:
            text = _scrape(latest)
            sizes.append(len(text))
            for family in text_string_to_metric_families(text):
                names = {s.labels["process"] for s in family.samples if "process" in s.labels}
                assert len(names) <= 20 + 2, (family.name, len(names))
    assert max(sizes) < 2 * min(sizes), sizes
    text = _scrape(latest)
    assert 'process="nginx"' in text and f'process="{OTHER}"' in text
    assert "tcpwatchd_label_values_capped_total " in text


def test_the_byte_0x80_and_the_text_backslash_x80_are_two_series() -> None:
    """Both used to render as `\\x80` and merge into one series."""
    raw_byte, text = decode_name(b"sv\x80"), decode_name(b"sv\\x80")
    assert raw_byte != text
    snap = snapshot(
        0,
        [sock(inode=1), sock(inode=2, remote=("127.0.0.1", 2)), sock(inode=3, remote=("127.0.0.1", 3))],
        {1: owner(raw_byte, 1), 2: owner(text, 2), 3: owner(decode_name(b"bell\x07\x1b[2J"), 3)},
    )
    tracked = Tracker().update(snap)
    latest = LatestPoll()
    report = build_report(tracked, DetectConfig())
    latest.publish(PollResult(tracked, report, None, None, 0.01, count_by_state_and_process(snap)))
    out = _scrape(latest)
    values = {
        s.labels["process"]
        for f in text_string_to_metric_families(out)
        if f.name == "tcpwatchd_sockets"
        for s in f.samples
    }
    assert values == {"sv\\x80", "sv\\\\x80", "bell\\x07\\x1b[2J"}
    assert not any(ch < " " for ch in out.replace("\n", ""))  # no control character reached /metrics


def test_decoding_is_injective_and_printable() -> None:
    samples = [bytes([a, b]) for a in range(1, 256) for b in (0x5C, 0x78, 0x80, 0xC3, 0xA9, 0x7E, 0x0A)]
    samples += [b"~", b"\\x7e", b"\\", b"\\\\", b"\xe2\x80\xae", b"\\u202e", b"\xf0\x9f\x98\x80", b""]
    decoded = [decode_name(s) for s in samples]
    assert len(set(decoded)) == len(set(samples))
    assert all(d.isprintable() and not d.startswith("~") for d in decoded)


def test_without_a_budget_every_name_is_a_series() -> None:
    view = SeriesView()
    assert view.label(owner("anything").labels).process == "anything"
    assert MappingProxyType(dict(view.opened)) == {}
