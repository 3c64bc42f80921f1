"""Logs each finding once, when it first appears, as one structured line; and detector health changes.

Findings are diffed across polls by `Finding.identity` (kind, network namespace and socket), so a leak that
lasts a day is one line, not one per poll; one that is gone for a few polls and then returns is announced
again. The line goes to the `tcpwatchd.finding` logger with `extra={"tcpwatchd_fields": {...}}`, which the
journald handler (tcpwatchd/logs.py) turns into journal fields; the message repeats the same facts, hostile
strings escaped. A host with thousands of new findings at once (every connection without keepalive, at
start) gets at most `max_per_kind` lines per kind per poll and one line saying exactly how many more there
are (the report lists a few per process but counts every one).
"""

from __future__ import annotations

import logging
from collections import Counter

from tcpwatchd.detectors.base import Finding
from tcpwatchd.detectors.registry import detector_of, kind_spec, kinds
from tcpwatchd.logs import SYSCTL_DRIFT_MESSAGE_ID
from tcpwatchd.report import Report

FINDING_LOGGER = "tcpwatchd.finding"
HEALTH_LOGGER = "tcpwatchd.detectors"

Identity = tuple[str, int, str, str]  # Finding.identity: kind, network namespace, socket


def message_ids() -> dict[str, str]:
    """Every journal MESSAGE_ID tcpwatchd logs with: one per registered kind of finding, and sysctl drift."""
    ids = {str(k.kind): k.message_id for k in kinds()}
    ids["sysctl_drift"] = SYSCTL_DRIFT_MESSAGE_ID
    return ids


def journal_fields(f: Finding) -> dict[str, object]:
    """The structured fields of one finding, named for the journal."""
    fields: dict[str, object] = {
        "TCPWATCHD_FINDING": str(f.kind),
        "TCPWATCHD_PROCESS": f.process,
        "TCPWATCHD_PID": f.pid,
        "TCPWATCHD_PEER": f.peer,
        "TCPWATCHD_AGE_SECONDS": round(f.age_seconds, 1),
        "TCPWATCHD_SOCKET": f"{f.local} -> {f.remote}",
    }
    spec = kind_spec(f.kind)
    if spec is not None:
        fields["MESSAGE_ID"] = spec.message_id  # "a new finding of this kind", for journalctl MESSAGE_ID=
    if f.unit:
        fields["TCPWATCHD_UNIT"] = f.unit
    if f.netns:
        fields["TCPWATCHD_NETNS"] = f.netns
    if f.pod:
        fields.update(TCPWATCHD_NAMESPACE=f.namespace, TCPWATCHD_POD=f.pod, TCPWATCHD_CONTAINER=f.container)
    if f.rule:
        fields["TCPWATCHD_RULE"] = f.rule  # the [[override]] whose settings judged it
    if f.details:
        fields["TCPWATCHD_DETAILS"] = " ".join(f"{d.key}={d.value}" for d in f.details)
    return fields


class Announcer:
    """Stateful across polls (when each finding was last seen); one per poller.

    A finding absent for fewer than `forget_after_polls` consecutive polls is the same incident when it
    returns (a busy socket's keepalive timer is hidden in some polls and visible in others), so it is not
    announced again; after that it is forgotten, and announced anew if it comes back.
    """

    def __init__(
        self, logger: logging.Logger | None = None, max_per_kind: int = 20, forget_after_polls: int = 3
    ) -> None:
        self._log = logger or logging.getLogger(FINDING_LOGGER)
        self._health = logging.getLogger(HEALTH_LOGGER)
        self._max_per_kind = max_per_kind
        self._forget_after = forget_after_polls
        self._poll = 0
        self._last_seen: dict[Identity, int] = {}
        self._degraded: set[str] = set()
        self._failed: set[str] = set()

    def announce(self, report: Report) -> tuple[Finding, ...]:
        """Log the findings that are new (or back after being forgotten); returns them."""
        self._poll += 1
        failed = {run.name for run in report.detectors if not run.ok}
        new = [f for f in report.findings if f.identity not in self._last_seen]
        for f in report.findings:
            self._last_seen[f.identity] = self._poll
        for identity in list(self._last_seen):
            # A detector that failed this poll found nothing: its findings are not gone.
            if detector_of(identity[0]) in failed:
                self._last_seen[identity] = self._poll
            elif self._poll - self._last_seen[identity] >= self._forget_after:
                del self._last_seen[identity]
        self._log_findings(new, report)
        self._log_health(report)
        return tuple(new)

    def _log_findings(self, new: list[Finding], report: Report) -> None:
        shown: Counter[str] = Counter()
        for f in new:
            shown[f.kind] += 1
            if shown[f.kind] <= self._max_per_kind:
                self._log.warning(
                    "new finding: %s", f.describe(), extra={"tcpwatchd_fields": journal_fields(f)}
                )
        # The report lists at most LISTED_PER_PROCESS findings per process and kind, and counts them all:
        # the figure said is the count (every finding of the kind in this poll) less the lines logged.
        listed: Counter[str] = Counter(str(f.kind) for f in report.findings)
        for kind, n in shown.items():
            total = sum(s.count(kind) for s in report.processes)
            logged = min(n, self._max_per_kind)
            if n > self._max_per_kind or total > listed[kind]:
                self._log.warning(
                    "%d more %s findings not logged one by one (%d in this poll; see `tcpwatchd snapshot`)",
                    total - logged,
                    kind,
                    total,
                    extra={"tcpwatchd_fields": _kind_fields(kind)},
                )

    def _log_health(self, report: Report) -> None:
        """Log when a detector starts or stops failing, and starts or stops being degraded."""
        failed = {run.name: run.error for run in report.detectors if not run.ok}
        degraded = {run.name: run.degraded for run in report.detectors if run.degraded}
        for name, error in failed.items():
            if name not in self._failed:
                self._health.error("detector %s failed: %s", name, error)
        for name in self._failed - failed.keys():
            self._health.info("detector %s is no longer failing", name)
        for name, why in degraded.items():
            if name not in self._degraded:
                self._health.warning("detector %s is degraded: %s", name, why)
        for name in self._degraded - degraded.keys() - failed.keys():
            self._health.info("detector %s is no longer degraded", name)
        self._failed = set(failed)
        # A failed run says nothing about degradation: remember the state from before it.
        self._degraded = set(degraded) | (self._degraded & failed.keys())


def _kind_fields(kind: str) -> dict[str, object]:
    spec = kind_spec(kind)
    fields: dict[str, object] = {"TCPWATCHD_FINDING": kind}
    if spec is not None:
        fields["MESSAGE_ID"] = spec.message_id
    return fields
