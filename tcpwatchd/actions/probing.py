"""Probing as a stage of the poll: one `Prober` for the current `[detect.phantom]` probe settings.

The poller calls `verdicts()` before the detectors (they read it as data, `Context.probed`) and `step()`
once after the report: the candidates are the rows the report found phantoms and idle suspects on, each
with its owner (pid, unit, and pod from `Owner.workload`) and namespace (the `netns` column); the
observations are this poll's sockets whose cookie the prober watches. Without cookies (the /proc
fallback) a poll can say nothing about a probe, so the prober skips it rather than call every probe gone.

A new config with other probe settings replaces the prober, after restoring every probe in flight; the
events of that restore come out with the next step (the poller logs nothing).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import compress

from tcpwatchd.actions.probe_types import Candidate, ProbeEvent, ProbeOps, ProbeSettings, ProbeSummary
from tcpwatchd.actions.prober import Prober
from tcpwatchd.actions.system_ops import SystemOps
from tcpwatchd.detectors.base import Kind
from tcpwatchd.detectors.phantom import IDLE_SUSPECT, PHANTOM, SPEC, PhantomConfig
from tcpwatchd.model import Socket
from tcpwatchd.report import Report
from tcpwatchd.sections import DetectSections
from tcpwatchd.tracker import TrackedPoll
from tcpwatchd.verdicts import Probed, Proof

COOKIE_SOURCE = "sockdiag"  # the only source whose "key" column is the kernel's socket cookie
_KINDS: tuple[tuple[Kind, bool], ...] = ((PHANTOM, True), (IDLE_SUSPECT, False))  # (kind, superseded)


@dataclass(frozen=True, slots=True)
class ProbeStep:
    """What probing did in one poll: its events (for the journal) and its counters (for the metrics)."""

    events: tuple[ProbeEvent, ...]
    summary: ProbeSummary


def probe_settings(detect: DetectSections) -> ProbeSettings | None:
    """The probe settings of a validated `[detect]` table; None when probing (or the detector) is off."""
    cfg: PhantomConfig = SPEC.settings_in(detect)
    return ProbeSettings.from_config(cfg) if cfg.enabled else None


class ProbeStage:
    """`ProbeStage(cfg.detect)`; `reconfigure(cfg.detect)` on reload; `close()` at shutdown."""

    def __init__(self, detect: DetectSections, proc_root: str = "/proc", ops: ProbeOps | None = None) -> None:
        self._ops: ProbeOps = ops or SystemOps(proc_root)
        self._settings = probe_settings(detect)
        self._prober = Prober(self._settings, self._ops) if self._settings else None
        self._pending: list[ProbeEvent] = []

    @property
    def active(self) -> bool:
        return self._prober is not None

    def reconfigure(self, detect: DetectSections) -> None:
        """Keep the prober when its settings are unchanged; else restore what is in flight, replace it."""
        settings = probe_settings(detect)
        if settings == self._settings:
            return
        if self._prober is not None:
            self._pending += self._prober.restore_all("the probe settings changed")
        self._settings = settings
        self._prober = Prober(settings, self._ops) if settings else None

    def verdicts(self) -> Mapping[int, Probed]:
        """Socket cookie -> what probing says of it so far (empty when probing is off)."""
        return self._prober.verdicts() if self._prober is not None else {}

    def step(self, tracked: TrackedPoll, report: Report) -> ProbeStep | None:
        """Judge the probes in flight and arm new ones; None when probing is off and nothing is pending."""
        events, self._pending = tuple(self._pending), []
        prober = self._prober
        if prober is None:
            return ProbeStep(events, ProbeSummary.frozen({}, {}, {}, 0, {})) if events else None
        if tracked.snapshot.source != COOKIE_SOURCE:
            return ProbeStep(events, prober.summary({"no_cookies": 1}))
        # In flight or proven dead/unreachable: the prober would refuse them; alive ones may be due again.
        settled = frozenset(c for c, v in prober.verdicts().items() if v.proof is not Proof.ALIVE)
        found = candidates(tracked, report, settled)
        done = prober.step(tracked.now, found, observations(tracked, prober.watching()))
        return ProbeStep(events + done.events, done.summary)

    def close(self) -> tuple[ProbeEvent, ...]:
        """At shutdown: restore every probe in flight; the events to log."""
        restored = self._prober.restore_all("tcpwatchd stopped") if self._prober else []
        events = (*self._pending, *restored)
        self._pending = []
        return events


def candidates(tracked: TrackedPoll, report: Report, skip: frozenset[int] = frozenset()) -> list[Candidate]:
    """The phantoms and idle suspects of this poll with a cookie and an owner, except cookies in `skip`
    (being probed, or proven for good: the prober would refuse them anyway)."""
    table = tracked.snapshot.sockets
    keys = table.column("key")
    out: list[Candidate] = []
    for kind, superseded in _KINDS:
        for row in report.rows.get(kind, ()):
            if keys[row] in skip:
                continue
            sock = table.socket(row)
            owner = tracked.owner_of(sock)
            if owner is None or sock.cookie is None:
                continue
            out.append(
                Candidate(sock, owner.pid, owner.name, owner.unit, owner.workload, superseded, sock.netns)
            )
    return out


def observations(tracked: TrackedPoll, cookies: frozenset[int]) -> dict[int, Socket]:
    """Cookie -> this poll's socket, for `cookies` (a cookie not in the result left the tables)."""
    if not cookies:
        return {}
    table = tracked.snapshot.sockets
    keys = table.column("key")
    return {
        keys[row]: table.socket(row) for row in compress(range(len(table)), map(cookies.__contains__, keys))
    }
