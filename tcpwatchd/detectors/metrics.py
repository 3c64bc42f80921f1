"""Prometheus metrics for the detectors, built from a finished `Report` (no I/O, safe in a scrape).

Every finding gauge is labelled by `process` only (DESIGN.md label rules: never a peer, port or pid).
A gauge is emitted for every process that has sockets in the poll, 0 when it has no finding, so an alert
resolves as soon as the condition ends and a dashboard shows 0, not a gap; a process whose sockets are all
gone drops out. A detector that is disabled, or raised in this poll, emits no gauges at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from tcpwatchd.detectors.base import Kind
from tcpwatchd.report import DETECTOR_OF, ProcessSummary, Report


@dataclass(frozen=True, slots=True)
class ProcessGauge:
    name: str
    help: str
    detector: str
    value: Callable[[ProcessSummary], float]


def _counting(kind: Kind) -> Callable[[ProcessSummary], float]:
    return lambda summary: float(summary.count(kind))


PROCESS_GAUGES: tuple[ProcessGauge, ...] = (
    ProcessGauge(
        "tcpwatchd_close_wait_oldest_age_seconds",
        "Age in seconds of the process's oldest socket continuously in CLOSE_WAIT (0 when none).",
        "close_wait",
        lambda s: s.close_wait_oldest_age_seconds,
    ),
    ProcessGauge(
        "tcpwatchd_close_wait_leaked_sockets",
        "CLOSE_WAIT sockets of the process older than detect.close_wait.min_age_seconds.",
        "close_wait",
        _counting(Kind.CLOSE_WAIT),
    ),
    ProcessGauge(
        "tcpwatchd_phantom_connections",
        "ESTABLISHED connections idle past detect.phantom.idle_seconds and superseded by a newer "
        "connection from the same peer address to the same local port.",
        "phantom",
        _counting(Kind.PHANTOM),
    ),
    ProcessGauge(
        "tcpwatchd_idle_suspect_connections",
        "ESTABLISHED connections idle past detect.phantom.idle_seconds, not superseded, keepalive off.",
        "phantom",
        _counting(Kind.IDLE_SUSPECT),
    ),
    ProcessGauge(
        "tcpwatchd_reconnect_storm_peers",
        "Peer addresses that opened at least detect.reconnect_storm.min_new_connections connections to "
        "one of the process's ports within detect.reconnect_storm.window_seconds.",
        "reconnect_storm",
        _counting(Kind.RECONNECT_STORM),
    ),
    ProcessGauge(
        "tcpwatchd_keepalive_off_connections",
        "ESTABLISHED connections of the process with no keepalive timer (busy sockets whose retransmit "
        "or probe timer hides it are not counted).",
        "keepalive_off",
        _counting(Kind.KEEPALIVE_OFF),
    ),
    ProcessGauge(
        "tcpwatchd_stalled_receive_connections",
        "Connections of the process with unread data queued for longer than "
        "detect.stalled_receive.min_age_seconds.",
        "stalled_receive",
        _counting(Kind.STALLED_RECEIVE),
    ),
    ProcessGauge(
        "tcpwatchd_unresponsive_peer_connections",
        "Connections of the process with at least detect.unresponsive_peer.min_retransmits consecutive "
        "retransmissions.",
        "unresponsive_peer",
        _counting(Kind.UNRESPONSIVE_PEER),
    ),
)


def detector_metrics(report: Report) -> list[Metric]:
    """Every detector metric for one report, in a stable order."""
    metrics: list[Metric] = []
    for gauge in PROCESS_GAUGES:
        if report.ran(gauge.detector):
            family = GaugeMetricFamily(gauge.name, gauge.help, labels=["process"])
            for summary in report.processes:
                family.add_metric([summary.process], gauge.value(summary))
            metrics.append(family)
    metrics.append(_opened(report))
    if report.ran(DETECTOR_OF[Kind.UNRESPONSIVE_PEER]):
        metrics.append(
            GaugeMetricFamily(
                "tcpwatchd_unresponsive_peer_give_up_seconds",
                "Seconds a connection retransmits to an unresponsive peer before the kernel gives up, "
                "derived from net.ipv4.tcp_retries2 and net.ipv4.tcp_rto_max_ms.",
                value=report.give_up_seconds,
            )
        )
    metrics.extend(_detector_health(report))
    return metrics


def _opened(report: Report) -> CounterMetricFamily:
    family = CounterMetricFamily(
        "tcpwatchd_connections_opened",
        'New connections first seen after tcpwatchd started, by owning process ("" when none held it yet).',
        labels=["process"],
    )
    for process, total in sorted(report.opened_totals.items()):
        family.add_metric([process], float(total))
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
