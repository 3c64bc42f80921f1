"""Prometheus metrics for the detectors, built from a finished `Report` (no I/O, safe in a scrape).

The gauges come from the registry: each kind a detector declares is counted per process in its gauge, and
each extra value it declares (close_wait's oldest age) is a gauge too. Every finding gauge is labelled by
`process` only (DESIGN.md label rules: never a peer, port or pid). A gauge is emitted for every process
that has sockets in the poll, 0 when it has no finding, so an alert resolves as soon as the condition ends
and a dashboard shows 0, not a gap; a process whose sockets are all gone drops out. A detector that is
disabled, or raised in this poll, emits no gauges at all.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from tcpwatchd.detectors.registry import registered
from tcpwatchd.outputs.budget import SeriesView
from tcpwatchd.outputs.series import SeriesLabels
from tcpwatchd.report import Report


def detector_metrics(report: Report, series: SeriesLabels | SeriesView | None = None) -> list[Metric]:
    """Every detector metric for one report, in a stable order (registry order). With a `SeriesView`
    (the daemon's), names beyond the cap are merged under `~other` and the opened counters are the
    view's (bounded, outputs/budget.py); without one, every name is a series and the counters are the
    tracker's totals."""
    series = series if isinstance(series, SeriesView) else unbudgeted(report, series or SeriesLabels())
    metrics: list[Metric] = []
    for spec in registered():
        if not report.ran(spec.name):
            continue
        for value in spec.values:  # an extra value is a level or an age: merged series take the largest
            if value.per_port:
                metrics.append(_port_gauge(value.gauge, value.help, series, report, value.key))
                continue
            merged = series.merge(((s.labels, s.value(value.key)) for s in report.processes), max)
            metrics.append(_gauge(value.gauge, value.help, series, merged))
        for kind in spec.kinds:
            merged = series.merge((s.labels, float(s.count(kind.kind))) for s in report.processes)
            metrics.append(_gauge(kind.gauge, kind.help, series, merged))
    metrics.append(_opened(series))
    metrics.append(_closed(series))
    metrics.extend(_detector_health(report))
    return metrics


def unbudgeted(report: Report, series: SeriesLabels) -> SeriesView:
    """A view that keeps every name, with the tracker's opened totals (`snapshot`, tests)."""
    view = SeriesView(series)
    return SeriesView(
        series,
        opened=view.merge((k, float(n)) for k, n in report.opened_totals.items()),
        closed=view.merge((k, float(n)) for k, n in report.closed_totals.items()),
    )


def _gauge(name: str, help: str, series: SeriesView, values: dict[tuple[str, ...], float]) -> Metric:
    family = GaugeMetricFamily(name, help, labels=series.names)
    for labels, value in values.items():
        family.add_metric(list(labels), value)
    return family


def _port_gauge(name: str, help: str, series: SeriesView, report: Report, key: str) -> Metric:
    family = GaugeMetricFamily(name, help, labels=[*series.names, "port"])
    out: dict[tuple[str, ...], float] = {}
    for (labels, port), value in report.port_values.get(key, {}).items():
        k = (*series.series.values(series.label(labels)), "" if port < 0 else str(port))
        out[k] = max(out[k], value) if k in out else value
    for k, value in sorted(out.items()):
        family.add_metric(list(k), value)
    return family


def _opened(series: SeriesView) -> CounterMetricFamily:
    return _counter(
        "tcpwatchd_connections_opened",
        "New connections since tcpwatchd started (first seen in a poll, or opened and closed between two "
        'polls when destroy events are available), by owning process ("" when none held it yet).',
        series,
        series.opened,
    )


def _closed(series: SeriesView) -> CounterMetricFamily:
    return _counter(
        "tcpwatchd_connections_closed",
        "Connections gone from the kernel's table since tcpwatchd started, sub-poll ones included when "
        'destroy events are available, by owning process (the listener\'s owner for a server side; "" '
        "when none is known).",
        series,
        series.closed,
    )


def _counter(
    name: str, help: str, series: SeriesView, totals: Mapping[tuple[str, ...], float]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, help, labels=series.names)
    for labels, total in sorted(totals.items()):
        family.add_metric(list(labels), total)
    return family


def _detector_health(report: Report) -> list[Metric]:
    degraded = GaugeMetricFamily(
        "tcpwatchd_detector_degraded",
        "1 when the detector could not judge every socket in the last poll (e.g. no tcp_info from the "
        "/proc fallback); its counts then cover only the sockets it could judge.",
        labels=["detector"],
    )
    success = GaugeMetricFamily(
        "tcpwatchd_detector_success",
        "1 when the detector ran in the last poll, 0 when it failed (its gauges are then absent).",
        labels=["detector"],
    )
    took = GaugeMetricFamily(
        "tcpwatchd_detector_duration_seconds",
        "Time the detector took in the last poll, in seconds.",
        labels=["detector"],
    )
    for run in report.detectors:
        degraded.add_metric([run.name], 1.0 if run.degraded else 0.0)
        success.add_metric([run.name], 1.0 if run.ok else 0.0)
        took.add_metric([run.name], run.duration_seconds)
    return [degraded, success, took]
