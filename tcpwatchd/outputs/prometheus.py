"""Prometheus exposition: a custom collector that renders the last poll. A scrape never does I/O.

Label values (process names) are hostile input: they arrive printable and injectively escaped
(sources/names.py), prometheus_client escapes backslash and double quote in label values, so the
exposition stays valid whatever a process calls itself; how many there are is bounded by outputs/budget.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from tcpwatchd import __version__
from tcpwatchd.model import ProcessLabels
from tcpwatchd.outputs.budget import SeriesBudget, SeriesView
from tcpwatchd.outputs.conn_metrics import connection_event_metrics, listen_counter_metrics
from tcpwatchd.outputs.detector_metrics import detector_metrics
from tcpwatchd.outputs.netns_metrics import aborts_metric, namespace_metrics
from tcpwatchd.outputs.probe_metrics import probe_families
from tcpwatchd.outputs.sysctl_metrics import sysctl_metrics
from tcpwatchd.poller import PollResult
from tcpwatchd.snapshot import Snapshot

# Poll durations span ~1 ms (a small host, steady state) to seconds (100k sockets, cold).
POLL_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class DurationHistogram:
    """Cumulative poll-duration histogram, fed by the poll loop and read by scrapes."""

    def __init__(self, buckets: Sequence[float] = POLL_BUCKETS) -> None:
        self._bounds = tuple(buckets)
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0
        self._count = 0
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        with self._lock:
            self._sum += seconds
            self._count += 1
            for i, bound in enumerate(self._bounds):
                if seconds <= bound:
                    self._counts[i] += 1

    def metric(self, name: str, documentation: str) -> HistogramMetricFamily:
        with self._lock:
            buckets = [(_le(b), float(c)) for b, c in zip(self._bounds, self._counts, strict=True)]
            buckets.append(("+Inf", float(self._count)))
            return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=self._sum)


def _le(bound: float) -> str:
    return repr(float(bound))


class LatestPoll:
    """Holds the newest PollResult and the series view it is rendered with; the poll loop writes them,
    scrapes read them. The series budget (outputs/budget.py) is updated here, once per poll."""

    def __init__(self, budget: SeriesBudget | None = None) -> None:
        self.budget = budget or SeriesBudget()
        self._result: PollResult | None = None
        self._view = SeriesView(self.budget.series)
        self._last_success: float | None = None
        self._lock = threading.Lock()

    def publish(self, result: PollResult) -> None:
        view = self.budget.update(result)  # only the poll loop publishes: the budget needs no lock
        with self._lock:
            self._result, self._view = result, view
            # A poll succeeded when its socket source did; a failed one keeps the older timestamp,
            # so staleness alerts fire.
            if any(s.ok and s.name == result.snapshot.source for s in result.snapshot.sources):
                self._last_success = result.snapshot.taken_at

    def get(self) -> tuple[PollResult | None, float | None]:
        with self._lock:
            return self._result, self._last_success

    def published(self) -> tuple[PollResult | None, float | None, SeriesView]:
        """The result, the last success and the series view of the same poll, read together."""
        with self._lock:
            return self._result, self._last_success, self._view


class TcpwatchdCollector(Collector):
    def __init__(self, latest: LatestPoll, durations: DurationHistogram) -> None:
        self._latest = latest
        self._durations = durations

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "tcpwatchd_build_info",
            "Always 1; the version label says which tcpwatchd runs.",
            labels=["version"],
        )
        info.add_metric([__version__], 1.0)
        yield info
        yield self._durations.metric(
            "tcpwatchd_poll_duration_seconds", "Time one full poll took, in seconds."
        )
        result, last_success, view = self._latest.published()
        if result is None:
            return
        snap = result.snapshot
        yield sockets_metric(result, view)
        yield aborts_metric(snap)
        yield from source_metrics(result)
        yield from attribution_metrics(snap)
        yield from namespace_metrics(snap)
        yield from connection_event_metrics(snap)
        yield from listen_counter_metrics(snap)
        if last_success is not None:
            yield GaugeMetricFamily(
                "tcpwatchd_last_poll_timestamp_seconds",
                "Unix time at which the last successful poll ended.",
                value=last_success,
            )
        yield from detector_metrics(result.report, view)
        yield capped_metric(view)
        if result.sysctl is not None:
            yield from sysctl_metrics(result.sysctl, result.namespace_sysctl)
        if result.probes is not None:
            yield from probe_families(result.probes.summary, view.series)


def sockets_metric(result: PollResult, series: SeriesView | None = None) -> GaugeMetricFamily:
    """Sockets by state and owning process (the oldest owner of a shared socket; "" when none)."""
    series = series or SeriesView()
    m = GaugeMetricFamily(
        "tcpwatchd_sockets",
        'TCP sockets by state and owning process (process="" for sockets no process holds).',
        labels=["state", *series.names],
    )
    by_state: dict[str, list[tuple[ProcessLabels, float]]] = {}
    for (state, labels), n in result.socket_counts.items():
        by_state.setdefault(state, []).append((labels, float(n)))
    for state in sorted(by_state):
        for values, total in sorted(series.merge(by_state[state]).items()):
            m.add_metric([state, *values], total)
    return m


def capped_metric(view: SeriesView) -> CounterMetricFamily:
    return CounterMetricFamily(
        "tcpwatchd_label_values_capped",
        "Process names that got no series of their own (beyond [exporter] max_process_label_values) and "
        'were counted under process="~other" instead; each name once per spell.',
        value=float(view.capped_total),
    )


def source_metrics(result: PollResult) -> Iterator[Metric]:
    statuses = list(result.snapshot.sources)
    if result.sysctl_status is not None:
        statuses.append(result.sysctl_status)
    ok = GaugeMetricFamily(
        "tcpwatchd_source_success",
        "1 when the source worked in the last poll, 0 when it failed.",
        labels=["source"],
    )
    took = GaugeMetricFamily(
        "tcpwatchd_source_duration_seconds",
        "Time the source took in the last poll, in seconds.",
        labels=["source"],
    )
    skipped = GaugeMetricFamily(
        "tcpwatchd_source_skipped_records",
        "Records the source could not use in the last poll (cut-short /proc lines, odd netlink messages).",
        labels=["source"],
    )
    for status in statuses:
        ok.add_metric([status.name], 1.0 if status.ok else 0.0)
        took.add_metric([status.name], status.duration_seconds)
        skipped.add_metric([status.name], float(status.skipped))
    yield ok
    yield took
    yield skipped


def attribution_metrics(snap: Snapshot) -> Iterator[Metric]:
    stats = snap.attribution
    yield GaugeMetricFamily(
        "tcpwatchd_attribution_partial",
        "1 when some processes' fd tables could not be read (not root), so some sockets have no owner.",
        value=1.0 if stats.partial else 0.0,
    )
    yield GaugeMetricFamily(
        "tcpwatchd_attribution_denied_processes",
        "Processes whose /proc/<pid>/fd could not be read in the last poll.",
        value=float(stats.processes_denied),
    )
    yield GaugeMetricFamily(
        "tcpwatchd_unowned_sockets",
        "Sockets with an inode that no readable process holds (orphans, or owners we may not see).",
        value=float(stats.sockets_unowned),
    )
