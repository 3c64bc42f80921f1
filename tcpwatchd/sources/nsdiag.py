"""Sockets, kernel counters and sysctls of every network namespace on the host.

A netlink socket answers for the namespace it was created in, whichever thread later uses it. So each new
namespace costs one visit of the namespace thread (sources.nsenter) to open two NETLINK_SOCK_DIAG sockets
(one per address family, dumped one after the other on the caller's thread: no thread per namespace
per poll); they are kept across polls and closed when
the namespace vanishes, so fds stay flat under churn. Holding them also pins the namespace alive, which is
what makes its generation exact (sources.netns). Dumps then run on the caller's thread.

Where entering is refused (EPERM: no CAP_SYS_ADMIN; EACCES: no ptrace access to the process), a namespace is
read from `/proc/<pid>/net/tcp{,6}` of a process in it instead: source "procnet", with a note saying why,
as AutoSource does for the own namespace. Counters come from `/proc/<pid>/net/{netstat,snmp}` either way.

    >>> watched = NamespaceSet().refresh()                         # doctest: +SKIP
    >>> [(w.key.label, w.mode) for w in watched][:2]               # doctest: +SKIP
    [('net:[4026531840]#1', 'sockdiag'), ('net:[4026532281]#2', 'procnet')]
    >>> len(NamespaceSet().dump(watched[0]).sockets)               # doctest: +SKIP
    42
"""

from __future__ import annotations

import errno
import functools
import os
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from tcpwatchd.errors import SourceUnavailable
from tcpwatchd.sources import SourceResult
from tcpwatchd.sources.kstats import read_kstats
from tcpwatchd.sources.netns import NetNamespace, NetnsDiscovery, NetnsId, NetnsKey
from tcpwatchd.sources.nsenter import NamespaceGone, NamespaceWorker, Visit
from tcpwatchd.sources.nsstat import read_aborts, sockstat_families
from tcpwatchd.sources.procnet import read_net_tcp
from tcpwatchd.sources.sockdiag import SockDiagReader, open_sock_diag
from tcpwatchd.sysctl.procsys import Reading, read_all

T = TypeVar("T")
SOCKDIAG, PROCNET = "sockdiag", "procnet"
_FAMILIES = (socket.AF_INET, socket.AF_INET6)
_GONE = (FileNotFoundError, ProcessLookupError)


@dataclass(frozen=True, slots=True)
class WatchedNamespace:
    """One namespace of the last refresh and how it is read. `error` says why it is degraded ('' if not)."""

    key: NetnsKey
    pids: tuple[int, ...]  # processes in it, to read /proc/<pid>/net and to find its pod
    own: bool  # the namespace tcpwatchd runs in
    mode: str  # "sockdiag" or "procnet"
    error: str = ""


@dataclass(frozen=True, slots=True)
class RefreshStats:
    """What the last refresh saw and did, ready for metrics."""

    processes: int = 0
    processes_vanished: int = 0  # exited mid-scan
    processes_denied: int = 0  # namespace not visible to us
    reused: int = 0  # namespace ids that came back as a new namespace
    opened: int = 0  # namespaces whose sockets were opened in this refresh
    closed: int = 0  # namespaces dropped (vanished) in this refresh, their sockets closed
    gone: int = 0  # found by the scan, gone before we could enter it
    denied: int = 0  # entering refused: read through /proc instead


class _Entry:
    __slots__ = ("denied", "error", "ns", "reader", "sockets")

    def __init__(self, ns: NetNamespace) -> None:
        self.ns = ns
        self.sockets: dict[int, socket.socket] = {}
        self.reader: SockDiagReader | None = None
        self.error = ""
        self.denied = False  # entering was refused for good: never retried for this generation

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close()
        self.sockets.clear()
        self.reader = None

    def watched(self) -> WatchedNamespace:
        mode = SOCKDIAG if self.reader is not None else PROCNET
        return WatchedNamespace(self.ns.key, self.ns.pids, self.ns.own, mode, self.error)


class NamespaceSet:
    """The host's namespaces, each with its sockets opened once. Used from one poller thread."""

    def __init__(self, proc_root: str = "/proc", timeout: float = 5.0) -> None:
        self._proc_root = proc_root
        self._timeout = timeout
        self._discovery = NetnsDiscovery(proc_root)
        self._worker = NamespaceWorker(proc_root)
        self._entries: dict[NetnsKey, _Entry] = {}
        self.stats = RefreshStats()

    @property
    def open_sockets(self) -> int:
        """Netlink sockets held (two per namespace read by sock_diag): the fds this set owns."""
        return sum(len(entry.sockets) for entry in self._entries.values())

    def refresh(self) -> list[WatchedNamespace]:
        """Discover, drop what vanished, open sockets in what is new. Never raises for a race."""
        pinned = {key for key, entry in self._entries.items() if entry.sockets}
        scan = self._discovery.scan(pinned)
        for key in scan.dropped:
            entry = self._entries.pop(key, None)
            if entry is not None:
                entry.close()
        fresh: list[_Entry] = []
        for ns in scan.namespaces:
            entry = self._entries.get(ns.key)
            if entry is None:
                entry = self._entries[ns.key] = _Entry(ns)
            entry.ns = ns
            if entry.reader is None and not entry.denied:
                fresh.append(entry)
        gone, denied = self._open(fresh)
        for entry in gone:
            del self._entries[entry.ns.key]
        self.stats = RefreshStats(
            scan.processes, scan.vanished, scan.denied, scan.reused,
            len(fresh) - len(gone) - denied, len(scan.dropped), len(gone), denied,
        )  # fmt: skip
        return [entry.watched() for entry in self._entries.values()]

    def dump(self, ns: WatchedNamespace) -> SourceResult:
        """Every TCP socket of `ns`. Raises NamespaceGone when it vanished, SourceUnavailable or OSError
        when it cannot be read at all this poll."""
        entry = self._entries.get(ns.key)
        if entry is None:
            raise NamespaceGone(errno.ENOENT, f"{ns.key.label} is not watched (it vanished)")
        if entry.reader is not None:
            try:
                dump = entry.reader.dump(self._families(entry.ns))
                return SourceResult(SOCKDIAG, dump.sockets, dump.skipped, dump.notes)
            except (SourceUnavailable, OSError) as e:  # NetlinkError, TimeoutError: reopened next refresh
                entry.close()  # a failed dump may have left replies queued on the sockets
                entry.error = f"sockdiag failed, used procnet: {e}"
        table = self._through_pid(entry.ns, read_net_tcp)
        return SourceResult(PROCNET, table.sockets, table.skipped_lines, (entry.error, *table.notes))

    def _families(self, ns: NetNamespace) -> tuple[int, ...]:
        """The address families worth a dump in `ns` (each dump walks the host's whole socket hash)."""
        try:
            return self._through_pid(ns, sockstat_families)
        except (SourceUnavailable, OSError, ValueError):
            return _FAMILIES

    def read_kstats(self, ns: WatchedNamespace) -> dict[str, int]:
        """TcpExt/Tcp/... counters of `ns` from /proc/<pid>/net/netstat and snmp (see sources.kstats)."""
        entry = self._entries.get(ns.key)
        return self._through_pid(entry.ns if entry else _namespace(ns), read_kstats)

    def read_aborts(self, ns: WatchedNamespace) -> dict[str, int]:
        """Only the TcpExt TCPAbort* counters of `ns` (what is exported per namespace), from netstat alone."""
        entry = self._entries.get(ns.key)
        return self._through_pid(entry.ns if entry else _namespace(ns), read_aborts)

    def read_sysctls(
        self, namespaces: Sequence[WatchedNamespace], names: tuple[str, ...]
    ) -> list[tuple[Reading, ...]]:
        """The sysctls `names` as each namespace sees them, in one visit per namespace (none for the own).
        A namespace we may not enter gets a Reading with an `error` for every name."""
        visits: list[Visit] = []
        for ns in namespaces:
            if not ns.own and ns.mode == SOCKDIAG:
                visits.append(Visit(ns.pids, ns.key.id, lambda: read_all(names, self._proc_root)))
        try:
            answers = iter(self._worker.run(visits))
        except RuntimeError as e:
            answers = iter([e] * len(visits))
        out: list[tuple[Reading, ...]] = []
        for ns in namespaces:
            if ns.own:
                out.append(read_all(names, self._proc_root))
                continue
            answer = next(answers) if ns.mode == SOCKDIAG else ns.error or "entering it is not permitted"
            if isinstance(answer, tuple):
                out.append(answer)
            else:
                out.append(
                    tuple(Reading(name, None, f"cannot enter {ns.key.label}: {answer}") for name in names)
                )
        return out

    def inside(
        self, namespaces: Sequence[WatchedNamespace], job: Callable[[WatchedNamespace], T]
    ) -> list[T | Exception]:
        """`job(ns)` run inside each of `namespaces` (none may be the own one, none one we may not enter),
        one after another on the namespace thread; the exception it raised in place of a result."""
        visits = [Visit(ns.pids, ns.key.id, functools.partial(job, ns)) for ns in namespaces]
        try:
            return list(self._worker.run(visits))
        except RuntimeError as e:
            return [e] * len(visits)

    def close(self) -> None:
        """Close every socket and stop the namespace thread."""
        for entry in self._entries.values():
            entry.close()
        self._entries.clear()
        self._worker.stop()

    def _open(self, entries: Iterable[_Entry]) -> tuple[list[_Entry], int]:
        """Open the sockets of `entries` (the own namespace here, the others on the namespace thread).
        Returns the entries whose namespace is gone, and how many refused entry."""
        entries = list(entries)
        foreign = [e for e in entries if not e.ns.own]
        visits = [Visit(e.ns.pids, e.ns.key.id, self._open_pair) for e in foreign]
        try:
            answers: list[object] = self._worker.run(visits)
        except RuntimeError as e:
            answers = [e] * len(visits)
        outcomes: list[tuple[_Entry, object]] = list(zip(foreign, answers, strict=True))
        for entry in entries:
            if entry.ns.own:
                outcomes.append((entry, _attempt(self._open_pair)))
        gone, denied = [], 0
        for entry, answer in outcomes:
            if isinstance(answer, dict):
                entry.sockets, entry.error = answer, ""
                entry.reader = SockDiagReader(
                    self._timeout, open_socket=_duplicate(entry.sockets), parallel=False
                )
            elif isinstance(answer, NamespaceGone):
                gone.append(entry)
            else:
                # EPERM/EACCES, or sock_diag refused inside: permanent for this namespace, not retried.
                entry.denied = isinstance(answer, (PermissionError, SourceUnavailable))
                denied += entry.denied
                entry.error = f"sockdiag not possible in {entry.ns.key.label}, used procnet: {answer}"
        return gone, denied

    def _open_pair(self) -> dict[int, socket.socket]:
        """One sock_diag socket per family, in the namespace the calling thread is in."""
        pair: dict[int, socket.socket] = {}
        try:
            for family in _FAMILIES:
                pair[family] = open_sock_diag(self._timeout)
        except BaseException:
            for sock in pair.values():
                sock.close()
            raise
        return pair

    def _through_pid(self, ns: NetNamespace, read: Callable[[str], T]) -> T:
        """`read("<proc_root>/<pid>")` through the first pid still in `ns`, checked before and after (a pid
        can exit and be reused by a process elsewhere: then its /proc/<pid>/net shows another namespace)."""
        for pid in ns.pids:
            root = os.path.join(self._proc_root, str(pid))
            if not self._in(root, ns.key.id):
                continue
            try:
                result = read(root)
            except (SourceUnavailable, OSError):
                if self._in(root, ns.key.id):
                    raise
                continue
            if self._in(root, ns.key.id):
                return result
        raise NamespaceGone(errno.ENOENT, f"no process left in {ns.key.label}")

    @staticmethod
    def _in(root: str, wanted: NetnsId) -> bool:
        try:
            st = os.stat(os.path.join(root, "ns", "net"))
        except OSError:
            return False
        return NetnsId(st.st_dev, st.st_ino) == wanted


def _duplicate(sockets: dict[int, socket.socket]) -> Callable[[int], socket.socket]:
    """The reader closes the socket it is given after each dump: give it a duplicate of the one we keep."""
    return lambda family: sockets[family].dup()


def _attempt(fn: Callable[[], T]) -> T | Exception:
    try:
        return fn()
    except Exception as e:
        return e


def _namespace(ns: WatchedNamespace) -> NetNamespace:
    return NetNamespace(ns.key, ns.pids, ns.own)
