"""The probe metric families, built from the poll's `ProbeSummary` (a scrape does no I/O of its own).

Labelled like every per-process family (`SeriesLabels`: process, and namespace, pod, container where it
runs); the issue's contract names `process`, the workload labels come with it.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from tcpwatchd.actions.probe_types import ProbeSummary, Result
from tcpwatchd.model import ProcessLabels
from tcpwatchd.outputs.series import SeriesLabels


def probe_families(summary: ProbeSummary, series: SeriesLabels | None = None) -> list[Metric]:
    """tcpwatchd_phantom_probes_total{process,result}, tcpwatchd_proven_phantom_connections{process},
    tcpwatchd_reaped_connections_total{process}.

    Every result is exported (as 0 too) for each owner ever probed, so `rate()` sees a series from its
    first probe on; proven and reaped likewise have a 0 for every probed owner.
    """
    series = series or SeriesLabels()
    probes = CounterMetricFamily(
        "tcpwatchd_phantom_probes",
        "Keepalive probes of phantom and idle suspect connections, by owner and result.",
        labels=[*series.names, "result"],
    )
    proven = GaugeMetricFamily(
        "tcpwatchd_proven_phantom_connections",
        "Connections proven dead or unreachable by a probe that the owner still holds.",
        labels=series.names,
    )
    reaped = CounterMetricFamily(
        "tcpwatchd_reaped_connections",
        "Unreachable phantom connections destroyed with SOCK_DESTROY (probe = reap).",
        labels=series.names,
    )
    probed = {labels for labels, _ in summary.probes_total}
    for result in Result:
        per = [(labels, float(summary.probes_total.get((labels, result), 0))) for labels in probed]
        for values, n in sorted(series.merge(per).items()):
            probes.add_metric([*values, result.value], n)
    _add(proven, series, probed, summary.proven)
    _add(reaped, series, probed, summary.reaped_total)
    return [probes, proven, reaped]


def _add(
    family: GaugeMetricFamily | CounterMetricFamily,
    series: SeriesLabels,
    probed: set[ProcessLabels],
    counts: Mapping[ProcessLabels, int],
) -> None:
    items = [(labels, float(counts.get(labels, 0))) for labels in probed | set(counts)]
    for values, n in sorted(series.merge(items).items()):
        family.add_metric(list(values), n)
