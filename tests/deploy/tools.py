"""External tools the deployment tests run, and the contract they check against."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
RUNBOOK = REPO / "docs" / "runbook.md"

# The metric contract (DESIGN.md, "Metrics"), plus the metrics added since. Dashboards and rules may
# query only these, and Prometheus' own `up`.
CONTRACT_METRICS = frozenset(
    {
        "tcpwatchd_sockets",
        "tcpwatchd_close_wait_oldest_age_seconds",
        "tcpwatchd_close_wait_leaked_sockets",
        "tcpwatchd_phantom_connections",
        "tcpwatchd_idle_suspect_connections",
        "tcpwatchd_reconnect_storm_peers",
        "tcpwatchd_connections_opened_total",
        "tcpwatchd_keepalive_off_connections",
        "tcpwatchd_stalled_receive_connections",
        "tcpwatchd_unresponsive_peer_connections",
        "tcpwatchd_sysctl_value",
        "tcpwatchd_sysctl_desired_value",
        "tcpwatchd_sysctl_compliant",
        "tcpwatchd_kernel_tcp_aborts_total",
        "tcpwatchd_poll_duration_seconds",
        "tcpwatchd_source_success",
        "tcpwatchd_last_poll_timestamp_seconds",
        "tcpwatchd_build_info",
        "tcpwatchd_attribution_partial",
        "tcpwatchd_connection_events_source",
        "tcpwatchd_kernel_listen_overflows_total",
        "tcpwatchd_kernel_listen_drops_total",
    }
)
# Issue 13's per-process contract: the end states seen coming, and every connection counted.
ROUND_TWO_PROCESS_METRICS = frozenset(
    {
        "tcpwatchd_connections_closed_total",
        "tcpwatchd_listen_queue_length",
        "tcpwatchd_listen_queue_limit",
        "tcpwatchd_listen_saturated_listeners",
        "tcpwatchd_process_open_fds",
        "tcpwatchd_process_max_fds",
        "tcpwatchd_fd_exhaustion_seconds",
        "tcpwatchd_ephemeral_port_use_ratio",
        "tcpwatchd_port_exhaustion_destinations",
    }
)
CONTRACT_METRICS |= ROUND_TWO_PROCESS_METRICS
# Issue 14's contract: probing phantoms ([detect.phantom] probe).
PROBE_METRICS = frozenset(
    {
        "tcpwatchd_phantom_probes_total",
        "tcpwatchd_proven_phantom_connections",
        "tcpwatchd_reaped_connections_total",
    }
)
CONTRACT_METRICS |= PROBE_METRICS
HISTOGRAMS = frozenset({"tcpwatchd_poll_duration_seconds"})
# Metrics with a `process` label: alerts on them must name the process.
PROCESS_METRICS = frozenset(
    {
        "tcpwatchd_sockets",
        "tcpwatchd_close_wait_oldest_age_seconds",
        "tcpwatchd_close_wait_leaked_sockets",
        "tcpwatchd_phantom_connections",
        "tcpwatchd_idle_suspect_connections",
        "tcpwatchd_reconnect_storm_peers",
        "tcpwatchd_connections_opened_total",
        "tcpwatchd_keepalive_off_connections",
        "tcpwatchd_stalled_receive_connections",
        "tcpwatchd_unresponsive_peer_connections",
    }
)
PROCESS_METRICS |= ROUND_TWO_PROCESS_METRICS | PROBE_METRICS

_METRIC = re.compile(r"(?<![\w:$])(tcpwatchd_\w+)")


def metrics_in(expr: str) -> set[str]:
    """The tcpwatchd metric families an expression reads (histogram series folded into their family)."""
    found = set()
    for name in _METRIC.findall(expr):
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name.removesuffix(suffix) in HISTOGRAMS:
                name = name.removesuffix(suffix)
        found.add(name)
    return found


def github_anchor(heading: str) -> str:
    """The fragment GitHub gives a Markdown heading: 'CLOSE_WAIT leak' -> 'close_wait-leak'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def runbook_anchors() -> set[str]:
    headings = re.findall(r"^#{1,6} (.+)$", RUNBOOK.read_text(encoding="utf-8"), flags=re.M)
    return {github_anchor(h) for h in headings}


def require_tool(name: str) -> str:
    """The tool's path; skips when it is missing, and fails instead under CI=true."""
    path = shutil.which(name)
    if path is not None:
        return path
    reason = f"needs `{name}` (scripts/bootstrap.sh --test installs it)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"deploy test cannot run under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require_module(name: str) -> None:
    """Skips when a Python package is not installed, and fails instead under CI=true."""
    try:
        __import__(name)
    except ImportError:
        reason = f"needs the Python package `{name}` (pip install -e '.[test]')"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"deploy test cannot run under CI: {reason}", pytrace=False)
        pytest.skip(reason)
