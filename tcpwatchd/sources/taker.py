"""Takes one snapshot: sockets (netlink, or /proc as the fallback), their owners, kernel counters.

Each source is timed and its success recorded; one failing source never fails the poll. With
`source = "auto"`, netlink is tried first and /proc/net/tcp* is used when netlink is unavailable: this is
the one place that falls back from one socket source to another.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import TypeVar

from tcpwatchd.config import DaemonConfig, NamespacesConfig
from tcpwatchd.facts import PortRange
from tcpwatchd.model import AttributionStats, NamespaceStats, Owner, SourceStatus
from tcpwatchd.snapshot import Snapshot, distinct_owners
from tcpwatchd.sources import (
    ProcNetSource,
    SockDiagSource,
    SocketSource,
    SourceUnavailable,
    read_kernel_counters,
)
from tcpwatchd.sources.conn_events import ConnectionEventSource
from tcpwatchd.sources.destroy_events import DestroySubscriber
from tcpwatchd.sources.foreign import ForeignNamespaces, ForeignPoll
from tcpwatchd.sources.owners import Attribution, OwnerCache
from tcpwatchd.sources.port_range import read_port_range
from tcpwatchd.sources.process_facts import ProcessFactsCache
from tcpwatchd.sources.workloads import Workloads
from tcpwatchd.sysctl.procsys import Reading
from tcpwatchd.table import SocketTable

NO_FOREIGN = ForeignPoll((), (), NamespaceStats(), 0)

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Clock:
    """Injected time: `monotonic` measures ages, `wall` stamps snapshots."""

    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time


class SnapshotTaker:
    def __init__(
        self,
        cfg: DaemonConfig,
        proc_root: str = "/proc",
        clock: Clock | None = None,
        sockdiag: SocketSource | None = None,
        namespaces: NamespacesConfig | None = None,
        events: Callable[[], DestroySubscriber] | None = DestroySubscriber,
    ) -> None:
        """`sockdiag` replaces the netlink source (tests give one that is refused); `namespaces` says
        which network namespaces to watch and where pod names are read (the daemon passes its config's;
        without it, only the own namespace is watched); `events` subscribes to the destroy events (None:
        polling alone)."""
        self._mode = cfg.source
        self._proc_root = proc_root
        self._clock = clock or Clock()
        self._sockdiag = sockdiag or SockDiagSource()
        self._procnet = ProcNetSource(proc_root=proc_root)
        self._owners = OwnerCache(proc_root=proc_root)
        self._warned: set[str] = set()
        self._last_owners: tuple[Mapping[int, Owner], Mapping[int, Owner], tuple[Owner, ...]] | None = None
        self._namespaces = namespaces or NamespacesConfig(watch="own")
        self._workloads = Workloads(proc_root, self._namespaces.host_root)
        self._foreign: ForeignNamespaces | None = None
        self._set_foreign()
        self._events = ConnectionEventSource(events)
        self._facts = ProcessFactsCache(
            proc_root=proc_root,
            refresh_seconds=cfg.process_facts_refresh_seconds,
            clock=self._clock.monotonic,
        )

    def reconfigure(self, cfg: DaemonConfig, namespaces: NamespacesConfig | None = None) -> None:
        self._mode = cfg.source
        self._facts.refresh_seconds = cfg.process_facts_refresh_seconds
        if namespaces is not None and namespaces != self._namespaces:
            if namespaces.host_root != self._namespaces.host_root:
                self._workloads = Workloads(self._proc_root, namespaces.host_root)
            self._namespaces = namespaces
            self._set_foreign()

    def close(self) -> None:
        """Release the destroy-event subscription, close the other namespaces' sockets and stop the
        namespace thread (the daemon calls this on exit)."""
        self._events.close()
        self._close_foreign()

    def _close_foreign(self) -> None:
        if self._foreign is not None:
            self._foreign.close()
            self._foreign = None

    @property
    def foreign(self) -> ForeignNamespaces | None:
        """The other namespaces' reader (None with `[namespaces] watch = "own"`), for the sysctl audit."""
        return self._foreign

    def _set_foreign(self) -> None:
        if self._namespaces.watch == "all" and self._foreign is None:
            self._foreign = ForeignNamespaces(self._workloads, self._proc_root)
        elif self._namespaces.watch == "own":
            self._close_foreign()

    def take(self) -> Snapshot:
        statuses: list[SourceStatus] = []
        # The full fd scan overlaps the socket dump (see OwnerCache.start_full_scan).
        scan = self._owners.start_full_scan() if self._owners.needs_full_scan() else None
        try:
            source, sockets = self._sockets(statuses)
            foreign = self._read_foreign(statuses)
        finally:
            if scan is not None:
                scan.finish()
        events = self._events.drain(sockets)  # our namespace's: the destroy events are subscribed there
        if foreign.parts:  # the other namespaces' sockets after ours: socket inodes are host-wide
            sockets = SocketTable((*sockets.parts, *foreign.parts))
        attribution = self._timed("owners", statuses, lambda: self._owners.attribute(sockets.column("inode")))
        if attribution is not None:  # a failed read says nothing about completeness: no "complete again"
            self._note_partial(attribution.stats)
        else:
            attribution = Attribution(MappingProxyType({}), AttributionStats())
        owners = self._named(attribution.owners) if self._namespaces.labels else attribution.owners
        counters = self._timed("kstats", statuses, lambda: read_kernel_counters(self._proc_root)) or {}
        proxy, holders = self._holders(owners)
        processes = {(o.pid, o.start_time) for o in holders}
        facts = self._timed("process_facts", statuses, lambda: self._facts.facts(processes)) or {}
        ports = self._timed("port_range", statuses, lambda: _port_range(self._proc_root))
        return Snapshot(
            taken_at=self._clock.wall(),
            monotonic=self._clock.monotonic(),
            source=source,
            sockets=sockets,
            owners=proxy,
            processes=holders,
            kernel_counters=MappingProxyType(counters),
            sources=tuple(statuses),
            attribution=attribution.stats,
            namespaces=foreign.namespaces,
            namespace_stats=foreign.stats,
            connection_events=events,
            process_facts=MappingProxyType(facts),
            port_ranges=MappingProxyType({0: ports} if ports else {}),
        )

    def _holders(self, owners: Mapping[int, Owner]) -> tuple[Mapping[int, Owner], tuple[Owner, ...]]:
        """The owners as the snapshot holds them, and the distinct owners. When the owner cache answered
        with the very same mapping as last poll (nothing changed), both are last poll's objects: no pass
        over every socket, and the next poll's inherit finds the owners unchanged by identity."""
        if self._last_owners is not None and owners is self._last_owners[0]:
            return self._last_owners[1], self._last_owners[2]
        holders = distinct_owners(owners)
        proxy = MappingProxyType(owners) if not isinstance(owners, MappingProxyType) else owners
        self._last_owners = (owners, proxy, holders)
        return proxy, holders

    def read_namespace_sysctls(self, names: tuple[str, ...]) -> list[tuple[int, tuple[Reading, ...]]]:
        """(netns id, readings of `names`) for every other namespace the last poll read."""
        return self._foreign.read_sysctls(names) if self._foreign is not None else []

    def _read_foreign(self, statuses: list[SourceStatus]) -> ForeignPoll:
        if self._foreign is None:
            return NO_FOREIGN
        self._workloads.refresh()  # pod names for the namespaces, then for the owners
        foreign = self._foreign
        return self._timed("netns", statuses, foreign.read) or NO_FOREIGN

    def _named(self, owners: Mapping[int, Owner]) -> Mapping[int, Owner]:
        if self._foreign is None:
            self._workloads.refresh()
        return self._workloads.label(owners)

    def _sockets(self, statuses: list[SourceStatus]) -> tuple[str, SocketTable]:
        if self._mode in ("auto", "sockdiag"):
            result = self._read_sockets(self._sockdiag, statuses)
            if result is not None:
                return "sockdiag", result
            if self._mode == "sockdiag":
                return "sockdiag", SocketTable()
        return "procnet", self._read_sockets(self._procnet, statuses) or SocketTable()

    def _read_sockets(self, source: SocketSource, statuses: list[SourceStatus]) -> SocketTable | None:
        result = self._timed(source.name, statuses, source.sockets)
        if result is None:
            return None
        if result.skipped_lines or result.notes:
            # Degraded but usable: say how, in the metric and (at debug, every poll) in the log.
            statuses[-1] = replace(statuses[-1], skipped=result.skipped_lines, error="; ".join(result.notes))
            log.debug("source %s skipped %d records: %s", source.name, result.skipped_lines, result.notes)
        sockets = result.sockets
        return sockets if isinstance(sockets, SocketTable) else SocketTable.of(sockets)

    def _timed(self, name: str, statuses: list[SourceStatus], read: Callable[[], T]) -> T | None:
        """Run one source; a failure is recorded and logged once per streak, never raised."""
        start = time.perf_counter()
        try:
            value = read()
        except (OSError, SourceUnavailable, ValueError) as e:
            statuses.append(SourceStatus(name, False, time.perf_counter() - start, error=str(e)))
            if name not in self._warned:
                self._warned.add(name)
                log.warning("source %s failed: %s", name, e)
            return None
        if name in self._warned:
            self._warned.discard(name)
            log.info("source %s works again", name)
        statuses.append(SourceStatus(name, True, time.perf_counter() - start))
        return value

    def _note_partial(self, stats: AttributionStats) -> None:
        if stats.partial and "partial" not in self._warned:
            self._warned.add("partial")
            hint = (
                "even as root: they live in another user namespace or an LSM forbids it"
                if os.geteuid() == 0
                else "run as root or grant CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH"
            )
            log.warning(
                "attribution is partial: %d processes' fd tables are not readable (%s); "
                'their sockets count under process=""',
                stats.processes_denied,
                hint,
            )
        elif not stats.partial and "partial" in self._warned:
            self._warned.discard("partial")
            log.info("attribution is complete again")


def _port_range(proc_root: str) -> PortRange | None:
    """The own namespace's ephemeral range; None where /proc/sys has none (a sandbox, a test root)."""
    try:
        return read_port_range(f"{proc_root}/sys")
    except FileNotFoundError:
        return None
