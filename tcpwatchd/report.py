"""The detectors' verdict on one poll: every finding, per-process figures for the metrics, detector health.

`build_report` runs each enabled detector on the tracker's view. A detector that raises is recorded as
failed (its metrics are left out) and never fails the poll; one that cannot judge every socket says why
in `degraded`. Nothing here does I/O or logs: `detectors.announce` turns new findings into log lines.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from tcpwatchd.config import DetectConfig
from tcpwatchd.detectors import Context, Finding, Kind, Outcome, Registered, is_enabled, registered
from tcpwatchd.detectors.unresponsive_peer import give_up_from_sysctl
from tcpwatchd.snapshot import count_by_state_and_process
from tcpwatchd.tracker import TrackedPoll

# The detector that produces each kind of finding.
DETECTOR_OF: Mapping[Kind, str] = MappingProxyType(
    {kind: ("phantom" if kind is Kind.IDLE_SUSPECT else kind.value) for kind in Kind}
)
_KIND_ORDER = {kind: i for i, kind in enumerate(Kind)}


@dataclass(frozen=True, slots=True)
class DetectorRun:
    """How one detector fared in one poll."""

    name: str
    ok: bool  # False when it raised: its findings and metrics are missing, `error` says why
    duration_seconds: float
    degraded: str = ""  # why it could not judge every socket; "" when it could
    error: str = ""


@dataclass(frozen=True, slots=True)
class ProcessSummary:
    """Per-process figures behind the `process`-labelled detector gauges."""

    process: str  # comm; "" for sockets no process holds
    counts: Mapping[Kind, int]  # findings by kind (reconnect storms: distinct storming peers)
    close_wait_oldest_age_seconds: float  # 0 when the process has no CLOSE_WAIT socket

    def count(self, kind: Kind) -> int:
        return self.counts.get(kind, 0)


@dataclass(frozen=True, slots=True)
class Report:
    findings: tuple[Finding, ...]  # sorted by kind, process, socket
    processes: tuple[ProcessSummary, ...]  # every process with sockets or findings, sorted by name
    opened_totals: Mapping[str, int]  # process -> connections opened since tcpwatchd started
    detectors: tuple[DetectorRun, ...]  # the enabled detectors, in registry order
    give_up_seconds: float  # how long the kernel retransmits before it gives up (tcp_retries2)

    @property
    def degraded(self) -> tuple[DetectorRun, ...]:
        return tuple(run for run in self.detectors if run.degraded)

    def ran(self, detector: str) -> bool:
        """True when the detector is enabled and did not fail in this poll."""
        return any(run.name == detector and run.ok for run in self.detectors)

    def of_kind(self, kind: Kind) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.kind is kind)


def build_report(
    tracked: TrackedPoll,
    detect: DetectConfig,
    sysctl_values: Mapping[str, int] | None = None,
    detectors: Sequence[Registered] | None = None,
) -> Report:
    """Run every enabled detector on one poll. `sysctl_values` are keyed by dotted name;
    `detectors` defaults to the registry."""
    sysctl = MappingProxyType(dict(sysctl_values or {}))
    ctx = Context(detect=detect, sysctl=sysctl)
    runs: list[DetectorRun] = []
    findings: list[Finding] = []
    counts: dict[str, dict[Kind, int]] = {}
    oldest_close_wait: Mapping[str, float] = MappingProxyType({})
    for entry in registered() if detectors is None else detectors:
        if not is_enabled(entry, detect):
            continue
        run, outcome = _run(entry, tracked, ctx)
        runs.append(run)
        findings.extend(outcome.findings)
        _count(counts, outcome)
        if entry.name == "close_wait":
            oldest_close_wait = outcome.oldest_age
    findings.sort(key=lambda f: (_KIND_ORDER[f.kind], f.process, f.local, f.remote))
    return Report(
        findings=tuple(findings),
        processes=_summaries(tracked, counts, oldest_close_wait),
        opened_totals=tracked.opened_totals,
        detectors=tuple(runs),
        give_up_seconds=give_up_from_sysctl(sysctl),
    )


def _run(entry: Registered, tracked: TrackedPoll, ctx: Context) -> tuple[DetectorRun, Outcome]:
    start = time.perf_counter()
    try:
        outcome = entry.detect(tracked, ctx)
    except Exception as e:  # a detector bug must not stop the poll; the Announcer logs it
        took = time.perf_counter() - start
        return DetectorRun(entry.name, False, took, error=f"{type(e).__name__}: {e}"), Outcome()
    took = time.perf_counter() - start
    return DetectorRun(entry.name, True, took, degraded=outcome.degraded), outcome


def _count(counts: dict[str, dict[Kind, int]], outcome: Outcome) -> None:
    """Add one detector's findings to the per-process counts (reconnect storms: distinct peers)."""
    if outcome.counts is not None:
        for (kind, process), n in outcome.counts.items():
            per = counts.setdefault(process, {})
            per[kind] = per.get(kind, 0) + n
        return
    storm_peers: dict[str, set[str]] = {}
    for f in outcome.findings:
        if f.kind is Kind.RECONNECT_STORM:
            storm_peers.setdefault(f.process, set()).add(f.peer)
        else:
            per = counts.setdefault(f.process, {})
            per[f.kind] = per.get(f.kind, 0) + 1
    for process, peers in storm_peers.items():
        per = counts.setdefault(process, {})
        per[Kind.RECONNECT_STORM] = per.get(Kind.RECONNECT_STORM, 0) + len(peers)


def _summaries(
    tracked: TrackedPoll, counts: dict[str, dict[Kind, int]], oldest_close_wait: Mapping[str, float]
) -> tuple[ProcessSummary, ...]:
    names = set(counts) | {process for _state, process in count_by_state_and_process(tracked.snapshot)}
    return tuple(
        ProcessSummary(name, MappingProxyType(counts.get(name, {})), oldest_close_wait.get(name, 0.0))
        for name in sorted(names)
    )
