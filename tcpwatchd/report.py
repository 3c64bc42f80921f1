"""The detectors' verdict on one poll: every finding, per-process figures for the metrics, detector health.

`build_report` runs each enabled detector on the tracker's view. A detector that raises is recorded as
failed (its metrics are left out) and never fails the poll; one that cannot judge every socket says why
in `degraded`. Nothing here names a detector (each declares itself in detectors/registry.py), does I/O
or logs: tcpwatchd/outputs renders and announces the report.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from tcpwatchd.detectors.base import Context, Finding, Kind, Outcome
from tcpwatchd.detectors.registry import DetectorSpec, registered
from tcpwatchd.model import ProcessLabels
from tcpwatchd.rules import Rules, Run
from tcpwatchd.sections import DetectSections
from tcpwatchd.snapshot import count_by_state_and_process
from tcpwatchd.tracker import TrackedPoll
from tcpwatchd.verdicts import Probed


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

    labels: ProcessLabels  # process name ("" for sockets no process holds) and where it runs
    counts: Mapping[Kind, int]  # findings by kind, every one counted (also those not listed)
    values: Mapping[str, float]  # the detectors' extra per-process figures (registry `values`), by key

    @property
    def process(self) -> str:
        return self.labels.process

    def count(self, kind: str) -> int:
        return self.counts.get(Kind(kind), 0)

    def value(self, key: str) -> float:
        return self.values.get(key, 0.0)


@dataclass(frozen=True, slots=True)
class Report:
    findings: tuple[Finding, ...]  # the listed findings, sorted by kind (registry order), process, socket
    processes: tuple[ProcessSummary, ...]  # every process with sockets or findings, sorted by labels
    opened_totals: Mapping[ProcessLabels, int]  # connections opened since tcpwatchd started
    detectors: tuple[DetectorRun, ...]  # the enabled detectors, in registry order
    # kind -> every row of this poll's table it was found on (Outcome.rows): for actions, this poll only
    rows: Mapping[Kind, Sequence[int]] = field(default_factory=lambda: MappingProxyType({}))
    # value key -> (process, port) -> value, for the per-port gauges (registry ValueGauge.per_port)
    port_values: Mapping[str, Mapping[tuple[ProcessLabels, int], float]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    # connections closed since start
    closed_totals: Mapping[ProcessLabels, int] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def degraded(self) -> tuple[DetectorRun, ...]:
        return tuple(run for run in self.detectors if run.degraded)

    def ran(self, detector: str) -> bool:
        """True when the detector is enabled and did not fail in this poll."""
        return any(run.name == detector and run.ok for run in self.detectors)

    def of_kind(self, kind: str) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.kind == kind)


def build_report(
    tracked: TrackedPoll,
    detect: DetectSections,
    sysctl_values: Mapping[str, int] | None = None,
    detectors: Sequence[DetectorSpec[Any]] | None = None,
    rules: Rules | None = None,
    probed: Mapping[int, Probed] | None = None,
) -> Report:
    """Run every enabled detector on one poll. `sysctl_values` are keyed by dotted name;
    `detectors` defaults to the registry; `rules` are the config's `[[override]]`s and `[ignore]`
    (tcpwatchd/rules.py): a detector then runs once per settings group, each on its group's sockets;
    `probed` are the probe verdicts by socket cookie."""
    ctx = Context(
        sysctl=MappingProxyType(dict(sysctl_values or {})), probed=MappingProxyType(dict(probed or {}))
    )
    codes = rules.row_codes(tracked) if rules is not None and rules.active else None
    rows: dict[Kind, Sequence[int]] = {}
    runs: list[DetectorRun] = []
    findings: list[Finding] = []
    counts: dict[ProcessLabels, dict[Kind, int]] = {}
    values: dict[ProcessLabels, dict[str, float]] = {}
    order: dict[str, int] = {}
    port_values: dict[str, dict[tuple[ProcessLabels, int], float]] = {}
    for spec in registered() if detectors is None else detectors:
        for k in spec.kinds:
            order.setdefault(k.kind, len(order))
        passes = (
            [Run("", spec.settings_in(detect), None)]
            if codes is None or rules is None
            else rules.runs(spec, detect, codes)
        )
        passes = [p for p in passes if p.settings.enabled]
        if not passes:
            continue
        done = [_run(spec, p, tracked, ctx) for p in passes]
        runs.append(_merge_runs(spec.name, [run for run, _ in done]))
        for p, (_, outcome) in zip(passes, done, strict=True):
            findings.extend(replace(f, rule=p.rule) if p.rule else f for f in outcome.findings)
            for kind, kind_rows in outcome.rows.items():  # each pass judges its own group's rows
                # The detector's own sequence (an array of 4-byte rows, maybe every connection), joined
                # into a list only when a second pass adds rows of the kind.
                rows[kind] = [*rows[kind], *kind_rows] if kind in rows else kind_rows
            _add(counts, values, outcome)
            for key, by_port in outcome.port_values.items():  # passes judge disjoint processes
                port_values.setdefault(key, {}).update(by_port)
    findings.sort(key=lambda f: (order.get(f.kind, len(order)), f.process, f.local, f.remote))
    return Report(
        findings=tuple(findings),
        processes=_summaries(tracked, counts, values),
        opened_totals=tracked.opened_totals,
        detectors=tuple(runs),
        rows=MappingProxyType(rows),
        port_values=MappingProxyType(port_values),
        closed_totals=tracked.closed_totals,
    )


def _run(
    spec: DetectorSpec[Any], one: Run, tracked: TrackedPoll, ctx: Context
) -> tuple[DetectorRun, Outcome]:
    start = time.perf_counter()
    view = tracked if one.scope is None else replace(tracked, scope=one.scope)
    try:
        outcome = spec.detect(view, one.settings, ctx)
    except Exception as e:  # a detector bug must not stop the poll; outputs/announce logs it
        took = time.perf_counter() - start
        return DetectorRun(spec.name, False, took, error=f"{type(e).__name__}: {e}"), Outcome()
    took = time.perf_counter() - start
    return DetectorRun(spec.name, True, took, degraded=outcome.degraded), outcome


def _merge_runs(name: str, runs: list[DetectorRun]) -> DetectorRun:
    """One detector's health over its passes: failed if any pass failed (the others still count)."""
    if len(runs) == 1:
        return runs[0]
    return DetectorRun(
        name,
        all(r.ok for r in runs),
        sum(r.duration_seconds for r in runs),
        degraded=next((r.degraded for r in runs if r.degraded), ""),
        error=next((r.error for r in runs if r.error), ""),
    )


def _add(
    counts: dict[ProcessLabels, dict[Kind, int]],
    values: dict[ProcessLabels, dict[str, float]],
    outcome: Outcome,
) -> None:
    """Add one pass's counts and per-process values to the per-process figures. A process whose sockets
    fall in two settings groups (one name, two units) has its counts summed and its values maximised
    (values are oldest ages and peaks)."""
    for (kind, process), n in outcome.counts.items():
        per = counts.setdefault(process, {})
        per[kind] = per.get(kind, 0) + n
    for key, by_process in outcome.values.items():
        for process, value in by_process.items():
            mine = values.setdefault(process, {})
            mine[key] = max(value, mine[key]) if key in mine else value


def _summaries(
    tracked: TrackedPoll,
    counts: dict[ProcessLabels, dict[Kind, int]],
    values: dict[ProcessLabels, dict[str, float]],
) -> tuple[ProcessSummary, ...]:
    names = set(counts) | set(values)
    names |= {process for _state, process in count_by_state_and_process(tracked.snapshot)}
    return tuple(
        ProcessSummary(name, MappingProxyType(counts.get(name, {})), MappingProxyType(values.get(name, {})))
        for name in sorted(names)
    )
