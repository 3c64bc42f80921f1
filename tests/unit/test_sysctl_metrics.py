"""The sysctl metric families, read back through a real prometheus_client registry."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from tcpwatchd.outputs.sysctl_metrics import sysctl_metrics
from tcpwatchd.sysctl.audit import SysctlReport, WriteTotal, build_report
from tcpwatchd.sysctl.procsys import Reading

OWN = {"namespace": "", "pod": "", "netns": ""}  # tcpwatchd's own network namespace
DESIRED = {"net.ipv4.tcp_keepalive_time": 600, "net.ipv4.tcp_keepalive_intvl": 75}


class _Collect(Collector):
    def __init__(self, report: SysctlReport) -> None:
        self.report = report

    def collect(self) -> Iterator[Metric]:
        yield from sysctl_metrics(self.report)


def _own(r: CollectorRegistry, family: str, name: str) -> float | None:
    """The sample of `family` for sysctl `name` in tcpwatchd's own network namespace."""
    return r.get_sample_value(family, {"name": name, **OWN})


def _registry(report: SysctlReport) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_Collect(report))
    return registry


def _report(**extra: object) -> SysctlReport:
    readings = (
        Reading("net.ipv4.tcp_keepalive_time", 7200),
        Reading("net.ipv4.tcp_keepalive_intvl", 75),
        Reading("net.ipv4.tcp_keepalive_probes", 9),
        Reading("net.ipv4.tcp_retries2", 15),
        Reading("net.ipv4.tcp_max_orphans", None, "not present", missing=True),
    )
    return build_report(readings, DESIRED, **extra)  # type: ignore[arg-type]


def test_values_desired_and_compliance() -> None:
    r = _registry(_report())
    assert _own(r, "tcpwatchd_sysctl_value", "net.ipv4.tcp_keepalive_time") == 7200
    assert _own(r, "tcpwatchd_sysctl_value", "net.ipv4.tcp_retries2") == 15
    assert _own(r, "tcpwatchd_sysctl_value", "net.ipv4.tcp_max_orphans") is None
    assert _own(r, "tcpwatchd_sysctl_desired_value", "net.ipv4.tcp_keepalive_time") == 600
    assert _own(r, "tcpwatchd_sysctl_compliant", "net.ipv4.tcp_keepalive_time") == 0
    assert _own(r, "tcpwatchd_sysctl_compliant", "net.ipv4.tcp_keepalive_intvl") == 1


@pytest.mark.parametrize("family", ["tcpwatchd_sysctl_desired_value", "tcpwatchd_sysctl_compliant"])
def test_desired_and_compliant_only_for_names_with_a_desired_value(family: str) -> None:
    r = _registry(_report())
    assert r.get_sample_value(family, {"name": "net.ipv4.tcp_retries2"}) is None


def test_unreadable_desired_sysctl_is_not_compliant() -> None:
    report = build_report((Reading("net.ipv4.tcp_keepalive_time", None, "cannot read: EACCES"),), DESIRED)
    r = _registry(report)
    assert _own(r, "tcpwatchd_sysctl_compliant", "net.ipv4.tcp_keepalive_time") == 0
    assert _own(r, "tcpwatchd_sysctl_value", "net.ipv4.tcp_keepalive_time") is None


def test_derived_times() -> None:
    r = _registry(_report())
    assert r.get_sample_value("tcpwatchd_dead_peer_idle_detection_seconds") == 7875
    assert r.get_sample_value("tcpwatchd_dead_peer_inflight_detection_seconds") == pytest.approx(924.6)


def test_derived_times_absent_when_unknown() -> None:
    r = _registry(build_report((Reading("net.ipv4.tcp_keepalive_time", 7200),), {}))
    assert r.get_sample_value("tcpwatchd_dead_peer_idle_detection_seconds") is None
    assert r.get_sample_value("tcpwatchd_dead_peer_inflight_detection_seconds") is None


def test_write_counters() -> None:
    totals = (WriteTotal("net.ipv4.tcp_keepalive_time", 3, 1),)
    r = _registry(_report(write_totals=totals))
    assert _own(r, "tcpwatchd_sysctl_writes_total", "net.ipv4.tcp_keepalive_time") == 3
    assert (
        r.get_sample_value(
            "tcpwatchd_sysctl_write_errors_total", {"name": "net.ipv4.tcp_keepalive_time", **OWN}
        )
        == 1
    )


def test_help_is_a_full_sentence_and_types_are_right() -> None:
    text = generate_latest(
        _registry(_report(write_totals=(WriteTotal("net.core.somaxconn", 1, 0),)))
    ).decode()
    helps = [line for line in text.splitlines() if line.startswith("# HELP")]
    assert len(helps) == 7
    for line in helps:
        sentence = line.split(" ", 3)[3]
        assert sentence[0].isupper() and sentence.endswith("."), line
    assert "# TYPE tcpwatchd_sysctl_writes_total counter" in text
    assert "# TYPE tcpwatchd_sysctl_compliant gauge" in text
