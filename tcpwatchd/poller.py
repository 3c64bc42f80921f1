"""One poll, end to end: snapshot -> tracker -> detectors -> report (+ the sysctl audit, + probing).

The poller owns the only long-lived state (the tracker's history and the owner cache); everything it
returns is frozen, so the outputs (metrics, journal, CLI) read a finished `PollResult` and never do I/O.
It logs nothing itself: the daemon and the CLI hand the result to tcpwatchd/outputs.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, TypeVar

from tcpwatchd.actions.netns_sysctl import NamespaceSysctl, NamespaceSysctls
from tcpwatchd.actions.probe_types import ProbeEvent
from tcpwatchd.actions.probing import ProbeStage, ProbeStep
from tcpwatchd.config import Config
from tcpwatchd.detectors.registry import DetectorSpec, registered
from tcpwatchd.model import ProcessLabels, SourceStatus
from tcpwatchd.openings import OpeningWindows
from tcpwatchd.rekey import REKEY_COLUMNS
from tcpwatchd.report import Report, build_report
from tcpwatchd.rules import Rules
from tcpwatchd.snapshot import Snapshot, count_by_state_and_process
from tcpwatchd.sources.taker import Clock, SnapshotTaker
from tcpwatchd.sysctl.audit import SysctlReport
from tcpwatchd.sysctl.enforce import SysctlPolicy
from tcpwatchd.table import Carry, SocketTable
from tcpwatchd.tracker import TrackedPoll, Tracker


@dataclass(frozen=True, slots=True)
class PollResult:
    tracked: TrackedPoll
    report: Report
    sysctl: SysctlReport | None  # None when [sysctl] mode is "off"
    sysctl_status: SourceStatus | None
    duration_seconds: float
    socket_counts: Mapping[tuple[str, ProcessLabels], int]  # (state label, process) -> sockets
    number: int = 0  # 1 for the poller's first poll
    interval_seconds: float = 0.0  # the configured poll interval when it ran
    namespace_sysctl: tuple[NamespaceSysctl, ...] = ()  # the other network namespaces' audits
    probes: ProbeStep | None = None  # what probing did ([detect.phantom] probe); None when it is off

    @property
    def snapshot(self) -> Snapshot:
        return self.tracked.snapshot

    @property
    def socket_total(self) -> int:
        return sum(self.socket_counts.values())

    def retained(self) -> PollResult:
        """This result without its socket table: what the daemon keeps for scrapes between polls.

        Everything /metrics renders is here (counts, report, sources, counters); the table is the bulk
        of a poll's memory (the raw dump), and keeping it would hold two polls' worth during the next."""
        snapshot = replace(self.tracked.snapshot, sockets=SocketTable())
        report = replace(self.report, rows=MappingProxyType({}))  # rows of the dropped table
        return replace(self, tracked=replace(self.tracked, snapshot=snapshot), report=report)


# A poll allocates about ten objects per socket, all acyclic (frozen dataclasses, tuples, strings), which
# refcounting frees. Left on, the cyclic collector runs hundreds of times per poll over the previous
# poll's live objects and finds nothing: a third of a steady poll at 100k sockets (benchmarks/README.md).
# So it is paused during a poll and the survivors are frozen out of its view afterwards; every
# _GC_FULL_EVERY polls everything is unfrozen and collected once, so that any real cycle is still freed.
_GC_FULL_EVERY = 30


@contextlib.contextmanager
def _cyclic_gc_paused(polls: int) -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if polls % _GC_FULL_EVERY == 0:
            gc.unfreeze()
            gc.collect()
        gc.freeze()
        if was_enabled:
            gc.enable()


T = TypeVar("T")


def _history_seconds(cfg: Config, rules: Rules | None = None) -> float:
    """How far back the tracker must remember openings: the longest any enabled detector asks for,
    under the defaults or any `[[override]]`."""
    wanted = _asked(cfg, rules or Rules.of(cfg), lambda spec: spec.remembers_openings)
    return max(wanted, default=0.0) + 2 * cfg.daemon.poll_interval_seconds


def _asked(
    cfg: Config, rules: Rules, ask: Callable[[DetectorSpec[Any]], Callable[[Any], T] | None]
) -> list[T]:
    """What each enabled detector asks for (`ask(spec)` applied to its settings), under the defaults and
    every `[[override]]` that changes it."""
    return [
        question(settings)
        for spec in registered()
        if (question := ask(spec)) is not None
        for settings in rules.variants(spec, cfg.detect)
        if settings.enabled
    ]


def _opening_windows(cfg: Config, rules: Rules | None = None) -> OpeningWindows:
    """The widest (window, baseline) an enabled detector asks the opening buckets to cover, under the
    defaults or any `[[override]]`."""
    rules = rules or Rules.of(cfg)
    pairs = _asked(cfg, rules, lambda spec: spec.opening_windows)
    keep = _history_seconds(cfg, rules)
    if not pairs:
        return OpeningWindows(keep_seconds=keep)
    window, baseline = max(w for w, _b in pairs), max(b for _w, b in pairs)
    return OpeningWindows(window, baseline, keep)


class Poller:
    def __init__(self, cfg: Config, proc_root: str = "/proc", clock: Clock | None = None) -> None:
        self._proc_root = proc_root
        self._taker = SnapshotTaker(cfg.daemon, proc_root=proc_root, clock=clock, namespaces=cfg.namespaces)
        self._rules = Rules.of(cfg)
        self._tracker = Tracker(_history_seconds(cfg, self._rules), _opening_windows(cfg, self._rules))
        self._cfg = cfg
        self._policy = SysctlPolicy(cfg.sysctl, proc_root=proc_root)
        self._namespace_sysctls = NamespaceSysctls(cfg.sysctl, proc_root=proc_root)
        self._polls = 0
        self._carry = Carry()
        self._table = SocketTable()  # the last poll's, released when the next one starts
        self._probing = ProbeStage(cfg.detect, proc_root=proc_root)

    @property
    def config(self) -> Config:
        return self._cfg

    def reconfigure(self, cfg: Config) -> None:
        """Apply a new, already validated config; history is kept."""
        self._cfg = cfg
        self._taker.reconfigure(cfg.daemon, cfg.namespaces)
        self._rules = Rules.of(cfg)
        self._tracker.set_history(_history_seconds(cfg, self._rules), _opening_windows(cfg, self._rules))
        self._policy = self._policy.reconfigured(cfg.sysctl)  # the write counters go on
        self._namespace_sysctls = self._namespace_sysctls.reconfigured(cfg.sysctl)
        self._probing.reconfigure(cfg.detect)

    def close(self) -> tuple[ProbeEvent, ...]:
        """At shutdown: put back the keepalive options of every probe in flight (the events to log),
        then release the destroy-event subscription, the other namespaces' sockets and the namespace
        thread."""
        try:
            return self._probing.close()
        finally:
            self._taker.close()

    def poll(self) -> PollResult:
        self._polls += 1
        with _cyclic_gc_paused(self._polls):  # the first full collection after poll 30, not poll 1
            return self._poll()

    def _poll(self) -> PollResult:
        start = time.perf_counter()
        # Before this poll's dump: the previous table's buffers go back to the system (the tracker and
        # the carry read its columns only), so two dumps are never resident at once.
        self._table.release(keep=REKEY_COLUMNS)
        snapshot = self._taker.take()
        snapshot.inherit(self._carry)
        tracked = self._tracker.update(snapshot)
        sysctl, status = self._sysctl()
        per_namespace = self._namespace_sysctls.run(self._taker.foreign, snapshot.namespaces)
        values = sysctl.values() if sysctl is not None else None
        report = build_report(
            tracked, self._cfg.detect, values, rules=self._rules, probed=self._probing.verdicts()
        )
        probes = self._probing.step(tracked, report)
        counts = count_by_state_and_process(snapshot)
        self._carry, self._table = snapshot.carry(), snapshot.sockets
        return PollResult(
            tracked=tracked,
            report=report,
            sysctl=sysctl,
            sysctl_status=status,
            duration_seconds=time.perf_counter() - start,
            socket_counts=counts,
            number=self._polls,
            interval_seconds=self._cfg.daemon.poll_interval_seconds,
            namespace_sysctl=per_namespace,
            probes=probes,
        )

    def _sysctl(self) -> tuple[SysctlReport | None, SourceStatus | None]:
        mode = self._cfg.sysctl.mode
        if mode == "off":
            return None, None
        start = time.perf_counter()
        report = self._policy.enforce() if mode == "enforce" else self._policy.check()
        return report, SourceStatus("sysctl", report.ok, time.perf_counter() - start, report.error_summary())
