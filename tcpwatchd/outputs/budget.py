"""Bounded per-process series: which `process` values get their own series, and the opened counters.

A local user can run processes under any number of names; each name would be a series in every
per-process family, forever (the opened counter never forgets). So, once per poll (never in a scrape):

- **Gone names are dropped after a grace period.** A gauge series ends with its sockets (as cAdvisor's
  per-container series end with the container). A counter series (`tcpwatchd_connections_opened_total`)
  stays exported, monotonic, for `grace_seconds` (10 min) after its process name was last seen, so that
  `rate()` and `increase()` over the usual windows see its last increments; then it is dropped. If the name
  comes back later its counter starts again at 0, which Prometheus reads as a counter reset (the same
  trade-off node_exporter makes for a vanished device, and cAdvisor for a restarted container).
- **At most `cap` names have their own series** (`[exporter] max_process_label_values`, per metric, "" for
  unowned sockets not counted). The others are summed under the reserved value `~other` (no process name
  can start with `~`, sources/names.py), and each name sent there is counted once per episode in
  `tcpwatchd_label_values_capped_total`. Which names keep a series is stable: first come, first served,
  and a name keeps its slot while it is seen (and for the grace period after). A newcomer takes the slot of
  the weakest holder only if that holder has had it for `tenure_seconds` and the newcomer holds at least
  twice as many sockets plus two (so names of similar size never swap back and forth). The `~other`
  counter only ever grows: a name moved in or out changes where its *future* openings are counted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from tcpwatchd.model import ProcessLabels
from tcpwatchd.outputs.series import SeriesLabels
from tcpwatchd.poller import PollResult
from tcpwatchd.sources.names import RESERVED_PREFIX

OTHER = RESERVED_PREFIX + "other"  # the `process` value of every name beyond the cap
GRACE_SECONDS = 600.0
TENURE_SECONDS = 300.0
SeriesKey = tuple[str, ...]  # label values, `process` first (SeriesLabels.names)


@dataclass(frozen=True, slots=True)
class SeriesView:
    """What one poll's metrics are labelled with: frozen, read by scrapes while the next poll runs."""

    series: SeriesLabels = field(default_factory=SeriesLabels)
    kept: frozenset[str] | None = None  # names with their own series; None: every name (no budget)
    opened: Mapping[SeriesKey, float] = field(default_factory=lambda: MappingProxyType({}))
    capped_total: int = 0
    closed: Mapping[SeriesKey, float] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def names(self) -> list[str]:
        return self.series.names

    def label(self, labels: ProcessLabels) -> ProcessLabels:
        """`labels` as exported: the process name, or `~other` when it has no series of its own."""
        if self.kept is None or not labels.process or labels.process in self.kept:
            return labels
        return labels._replace(process=OTHER)

    def merge(
        self,
        items: Iterable[tuple[ProcessLabels, float]],
        combine: Callable[[float, float], float] = float.__add__,
    ) -> dict[SeriesKey, float]:
        """As `SeriesLabels.merge`, with the names beyond the cap merged under `~other`."""
        return self.series.merge(((self.label(labels), v) for labels, v in items), combine)


@dataclass(slots=True)
class _Counter:
    """One exported counter family, kept from the per-poll rises of a tracker total (which may forget a
    name and begin it anew): values only grow while a series exists."""

    values: dict[SeriesKey, float] = field(default_factory=dict)
    seen: dict[SeriesKey, float] = field(default_factory=dict)
    last: Mapping[ProcessLabels, int] = field(default_factory=dict)

    def add(self, totals: Mapping[ProcessLabels, int], view: SeriesView, now: float) -> None:
        for labels, total in totals.items():
            before = self.last.get(labels, 0)
            delta = total - before if total >= before else total  # the tracker forgot it and began anew
            if delta:
                key = view.series.values(view.label(labels))
                self.values[key] = self.values.get(key, 0.0) + delta
                self.seen[key] = now
        self.last = totals

    def expire(self, view: SeriesView, present: set[str], now: float, grace: float) -> None:
        """Series of names still seen live on; those unseen for the grace period, or whose name lost its
        series, are dropped."""
        for key in list(self.values):
            process = key[0]
            if process in present:
                self.seen[key] = now
            elif now - self.seen[key] > grace or view.label(ProcessLabels(process)) != ProcessLabels(process):
                del self.values[key], self.seen[key]

    def clear(self) -> None:
        self.values.clear()
        self.seen.clear()


@dataclass(slots=True)
class _Slot:
    admitted: float  # monotonic time the name got its series
    seen: float  # the last poll it was present in
    weight: int  # sockets it held then


class SeriesBudget:
    """Keeps the slots and the opened and closed counters across polls; `update` once per poll, in the
    poll loop."""

    def __init__(
        self,
        cap: int = 1000,
        series: SeriesLabels | None = None,
        grace_seconds: float = GRACE_SECONDS,
        tenure_seconds: float = TENURE_SECONDS,
    ) -> None:
        self.cap = cap
        self.series = series or SeriesLabels()
        self._grace = grace_seconds
        self._tenure = tenure_seconds
        self._slots: dict[str, _Slot] = {}
        self._overflow: frozenset[str] = frozenset()
        self._capped = 0
        self._opened = _Counter()
        self._closed = _Counter()

    def reconfigure(self, cap: int, series: SeriesLabels) -> None:
        """A reload: a new cap applies from the next poll; new label names start the counters afresh."""
        if series != self.series:
            self._opened.clear()
            self._closed.clear()
        self.cap, self.series = cap, series

    def update(self, result: PollResult) -> SeriesView:
        now = result.snapshot.monotonic
        weights = _weights(result)
        self._admit(weights, now)
        kept = frozenset(self._slots)
        view = SeriesView(self.series, kept)
        present = {view.label(ProcessLabels(n)).process for n in weights}
        for counter, totals in (
            (self._opened, result.report.opened_totals),
            (self._closed, result.report.closed_totals),
        ):
            counter.add(totals, view, now)
            counter.expire(view, present, now, self._grace)
        return SeriesView(
            self.series,
            kept,
            MappingProxyType(dict(self._opened.values)),
            capped_total=self._capped,
            closed=MappingProxyType(dict(self._closed.values)),
        )

    def _admit(self, weights: Mapping[str, int], now: float) -> None:
        for name, w in weights.items():
            slot = self._slots.get(name)
            if slot is not None:
                slot.seen, slot.weight = now, w
        for name in [n for n, s in self._slots.items() if now - s.seen > self._grace]:
            del self._slots[name]
        while len(self._slots) > self.cap:  # the cap was lowered on reload: the weakest go first
            del self._slots[min(self._slots, key=lambda n: self._strength(n, now))]
        newcomers = sorted((n for n in weights if n and n not in self._slots), key=lambda n: (-weights[n], n))
        free = self.cap - len(self._slots)
        for name in newcomers[:free]:
            self._slots[name] = _Slot(now, now, weights[name])
        refused = self._displace(newcomers[max(free, 0) :], weights, now)
        self._capped += len(refused - self._overflow)
        self._overflow = refused

    def _displace(self, waiting: list[str], weights: Mapping[str, int], now: float) -> frozenset[str]:
        """Let the strongest newcomers take the slots of the weakest settled holders; the rest wait."""
        settled = [n for n, s in self._slots.items() if now - s.admitted >= self._tenure]
        settled.sort(key=lambda n: self._strength(n, now))
        refused = set(waiting)
        for newcomer, holder in zip(waiting, settled, strict=False):
            if weights[newcomer] < 2 * (self._strength(holder, now)[0] + 1):
                break  # newcomers descend, holders ascend: no later pair qualifies either
            del self._slots[holder]
            self._slots[newcomer] = _Slot(now, now, weights[newcomer])
            refused.discard(newcomer)
            if holder in weights:
                refused.add(holder)
        return frozenset(refused)

    def _strength(self, name: str, now: float) -> tuple[int, float, str]:
        slot = self._slots[name]
        return (slot.weight if slot.seen == now else 0), slot.seen, name


def _weights(result: PollResult) -> dict[str, int]:
    """Every process name present in the poll and the sockets it holds (0 for findings without any)."""
    weights: dict[str, int] = {}
    for (_state, labels), n in result.socket_counts.items():
        weights[labels.process] = weights.get(labels.process, 0) + n
    for summary in result.report.processes:
        weights.setdefault(summary.process, 0)
    return weights
