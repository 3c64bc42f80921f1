"""The probe metric families, built from a `ProbeSummary` (a scrape does no I/O of its own)."""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from tcpwatchd.actions.probe_types import ProbeSummary, Result


def probe_families(summary: ProbeSummary, processes: set[str] | None = None) -> list[Metric]:
    """tcpwatchd_phantom_probes_total{process,result}, tcpwatchd_proven_phantom_connections{process},
    tcpwatchd_reaped_connections_total{process}.

    Every result is exported (as 0 too) for each process that was ever probed, so `rate()` sees a series
    from its first probe on. `processes` adds zero-valued proven gauges (e.g. the allowlisted owners).
    """
    probes = CounterMetricFamily(
        "tcpwatchd_phantom_probes",
        "Keepalive probes of phantom and idle suspect connections, by owner and result.",
        labels=["process", "result"],
    )
    proven = GaugeMetricFamily(
        "tcpwatchd_proven_phantom_connections",
        "Connections proven dead or unreachable by a probe that the owner still holds.",
        labels=["process"],
    )
    reaped = CounterMetricFamily(
        "tcpwatchd_reaped_connections",
        "Unreachable phantom connections destroyed with SOCK_DESTROY (probe = reap).",
        labels=["process"],
    )
    probed = sorted({process for process, _ in summary.probes_total})
    for process in probed:
        for result in Result:
            probes.add_metric([process, result.value], summary.probes_total.get((process, result), 0))
    for process in sorted(set(summary.proven) | set(processes or ()) | set(probed)):
        proven.add_metric([process], summary.proven.get(process, 0))
    for process in sorted(set(summary.reaped_total) | set(probed)):
        reaped.add_metric([process], summary.reaped_total.get(process, 0))
    return [probes, proven, reaped]
