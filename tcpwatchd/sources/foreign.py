"""The sockets of every network namespace other than tcpwatchd's own, as table parts tagged with it.

Each namespace read (sources/nsdiag.py: sock_diag opened inside it, or /proc/<pid>/net/tcp where entering is
refused) gets a number its sockets carry in the `netns` column: the namespace's generation, unique for the
daemon's life (sources/netns.py: an inode reused by a new namespace gets a new one), so the tracker, the
detectors and the findings never mix two namespaces' identical 4-tuples. tcpwatchd's own namespace is 0.

A namespace that cannot be read this poll (it vanished mid-dump, no process is left in it) is counted and
skipped; the poll goes on. Each kind of failure is logged once per streak, whatever the number of
namespaces failing (thousands of crash-looping containers make one line, not thousands).

    >>> poll = ForeignNamespaces(workloads).read()          # doctest: +SKIP
    >>> [(ns.label, ns.mode, ns.pod) for ns in poll.namespaces][:1]   # doctest: +SKIP
    [('net:[4026532281]', 'sockdiag', 'web-7d4b9')]
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import TypeVar

from tcpwatchd.columns import Column, ObjectPart, Part, Values
from tcpwatchd.errors import SourceUnavailable
from tcpwatchd.model import NamespaceStats, Socket, WatchedNetns, Workload
from tcpwatchd.sources.nsdiag import PROCNET, SOCKDIAG, NamespaceSet, WatchedNamespace
from tcpwatchd.sources.nsenter import NamespaceGone
from tcpwatchd.sources.podnames import pod_uid_of
from tcpwatchd.sources.workloads import Workloads
from tcpwatchd.sysctl.procsys import Reading
from tcpwatchd.table import SocketTable

log = logging.getLogger(__name__)
T = TypeVar("T")


class NetnsPart:
    """A part of a foreign namespace's dump whose rows all carry `netns` (the dump itself says 0)."""

    __slots__ = ("_netns", "_part")

    def __init__(self, part: Part, netns: int) -> None:
        self._part, self._netns = part, netns

    def __len__(self) -> int:
        return len(self._part)

    def socket(self, i: int) -> Socket:
        return replace(self._part.socket(i), netns=self._netns)

    def column(self, name: Column) -> Values:
        return [self._netns] * len(self._part) if name == "netns" else self._part.column(name)

    def retained(self, names: Collection[str]) -> NetnsPart:
        return NetnsPart(self._part.retained(names), self._netns)


def tagged_parts(sockets: Sequence[Socket], netns: int) -> list[Part]:
    """The parts of one namespace's dump with `netns` set. Cookies stay the identity (the kernel's cookie
    counter is global); /proc sockets are rebuilt with it, since their identity key includes the namespace.

    >>> s = Socket(2, 1, "127.0.0.1", 1, "127.0.0.1", 2, 0, 0, 0, 7, 0, 0, 0)
    >>> tagged_parts([s], 5)[0].column("key")[0][0]
    5
    """
    if isinstance(sockets, SocketTable):
        return [NetnsPart(part, netns) for part in sockets.parts]
    return [ObjectPart([replace(s, netns=netns) for s in sockets])]


@dataclass(frozen=True, slots=True)
class ForeignPoll:
    parts: tuple[Part, ...]
    namespaces: tuple[WatchedNetns, ...]
    stats: NamespaceStats
    skipped: int  # records the dumps could not use


class ForeignNamespaces:
    """Reads every other namespace each poll; keeps their sockets open between polls (NamespaceSet)."""

    def __init__(self, workloads: Workloads, proc_root: str = "/proc", timeout: float = 5.0) -> None:
        self._set = NamespaceSet(proc_root, timeout)
        self._workloads = workloads
        self._proc_root = proc_root
        self._watched: list[WatchedNamespace] = []
        self._pod_uids: dict[int, str] = {}  # netns id -> the pod UID of its processes ('' for none)
        self._warned: set[str] = set()

    def read(self) -> ForeignPoll:
        self._watched = [ns for ns in self._set.refresh() if not ns.own]
        live = {ns.key.generation for ns in self._watched}
        self._pod_uids = {k: v for k, v in self._pod_uids.items() if k in live}
        refresh = self._set.stats
        parts: list[Part] = []
        namespaces: list[WatchedNetns] = []
        failed = vanished = skipped = 0
        for ns in self._watched:
            try:
                result = self._set.dump(ns)
            except (SourceUnavailable, OSError) as e:
                gone = isinstance(e, NamespaceGone)
                vanished += gone
                failed += not gone
                self._warn_once("failed" if not gone else "vanished", f"{ns.key.label}: {e}", gone)
                continue
            parts += tagged_parts(result.sockets, ns.key.generation)
            skipped += result.skipped_lines
            namespaces.append(self._describe(ns, result.source, "; ".join(n for n in result.notes if n)))
        self._settle("failed", failed)
        denied = sum(ns.mode == PROCNET for ns in namespaces)
        self._settle("denied", denied)
        if denied:
            self._warn_once("denied", next(ns.error for ns in namespaces if ns.mode == PROCNET), False)
        names = self._workloads.name_stats
        stats = NamespaceStats(
            failed=failed,
            denied=denied,
            vanished=vanished + refresh.gone,
            unresolved=self._workloads.unresolved,
            names_skipped=names.skipped,
            names_unreadable=names.unreadable,
        )
        return ForeignPoll(tuple(parts), tuple(namespaces), stats, skipped)

    def inside(self, netns: Collection[int], job: Callable[[int], T]) -> list[tuple[int, T | Exception]]:
        """(id, `job(id)` run inside it, or the exception that stopped it) for each namespace of the last
        read whose id is in `netns`, on the namespace thread. A namespace we may not enter is left out."""
        chosen = [ns for ns in self._watched if ns.key.generation in netns and ns.mode == SOCKDIAG]
        answers = self._set.inside(chosen, lambda ns: job(ns.key.generation))
        return list(zip((ns.key.generation for ns in chosen), answers, strict=True))

    def read_sysctls(self, names: tuple[str, ...]) -> list[tuple[int, tuple[Reading, ...]]]:
        """(netns id, readings) for every namespace of the last read."""
        readings = self._set.read_sysctls(self._watched, names)
        return [(ns.key.generation, r) for ns, r in zip(self._watched, readings, strict=True)]

    @property
    def open_sockets(self) -> int:
        return self._set.open_sockets

    def close(self) -> None:
        self._set.close()

    def _describe(self, ns: WatchedNamespace, mode: str, error: str) -> WatchedNetns:
        try:
            kept = self._set.read_aborts(ns)
        except (SourceUnavailable, OSError, ValueError):
            kept = {}
        netns = ns.key.generation
        if netns not in self._pod_uids:  # a namespace's pod is its pause/sandbox process's: fixed for life
            self._pod_uids[netns] = pod_uid_of(ns.pids, self._proc_root)
        pod: Workload = self._workloads.pod_named(self._pod_uids[netns])
        return WatchedNetns(
            netns=netns,
            label=f"net:[{ns.key.ino}]",
            mode=mode,
            namespace=pod.namespace,
            pod=pod.pod,
            error=error,
            kernel_counters=MappingProxyType(kept),
        )

    def _warn_once(self, what: str, message: str, quiet: bool) -> None:
        if what in self._warned:
            return
        self._warned.add(what)
        level = logging.DEBUG if quiet else logging.WARNING
        log.log(level, "network namespace %s (logged once; counted in tcpwatchd_netns_*)", message)

    def _settle(self, what: str, count: int) -> None:
        if not count and what in self._warned:
            self._warned.discard(what)
            log.info("network namespaces: none %s any more", what)
