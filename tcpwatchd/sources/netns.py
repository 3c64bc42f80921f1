"""Every network namespace on the host, found through the processes in it.

`/proc/<pid>/ns/net` of every process opens that process's network namespace (nsfs); its device and inode
number identify the namespace, so many processes (the containers of one pod, the workers of one service) give
one namespace, read once. `/proc/self/ns/net` is the namespace tcpwatchd runs in.

An inode number is freed when its namespace is destroyed and the kernel hands out the lowest free one next
(ns_alloc_inum → proc_alloc_inum, an IDA: fs/proc/generic.c), so under container churn a NEW namespace often
gets the number of one that just died. History must not leak from one to the other, hence a `generation`:

- A namespace that was absent from the previous scan starts a new generation (a vanished one is dropped).
- One present before keeps its generation when the caller pins it (it holds a socket opened inside it: a
  socket holds a reference on its namespace, so the namespace, and its inode number, cannot have been freed
  in between; net/core/sock.c sk_alloc → get_net_track), or when one of its anchors is still in it: an anchor
  is a (pid, start time) seen in it before, the start time telling a recycled pid apart.
- Otherwise (every anchor gone between two scans, nothing pinning it) it is taken as new. The rule errs on
  the safe side: a namespace whose every process was replaced within one poll loses its history; it never
  inherits someone else's.

Races are data: a process that exits mid-scan, or whose namespace we may not see (EACCES: ptrace access is
required, fs/proc/namespaces.c), is counted and skipped.
"""

from __future__ import annotations

import errno
import itertools
import os
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from tcpwatchd.sources.procfs import parse_stat

MAX_REPRESENTATIVES = 4  # pids kept per namespace: enough to outlive a few exits between two polls
_GONE = frozenset({errno.ENOENT, errno.ESRCH})  # the process exited mid-scan


@dataclass(frozen=True, slots=True, order=True)
class NetnsId:
    """A namespace as the kernel names it now: (nsfs device, inode). Reused after the namespace dies."""

    dev: int
    ino: int


@dataclass(frozen=True, slots=True, order=True)
class NetnsKey:
    """A namespace for its whole life: its id plus a generation no later namespace with the same id shares.

    >>> NetnsKey(4, 4026532281, 7).label
    'net:[4026532281]#7'
    """

    dev: int
    ino: int
    generation: int

    @property
    def id(self) -> NetnsId:
        return NetnsId(self.dev, self.ino)

    @property
    def label(self) -> str:
        return f"net:[{self.ino}]#{self.generation}"


@dataclass(frozen=True, slots=True)
class NetNamespace:
    """One namespace found by a scan: `pids` in it (anchors first), at most MAX_REPRESENTATIVES of them."""

    key: NetnsKey
    pids: tuple[int, ...]
    own: bool  # the namespace tcpwatchd itself runs in


@dataclass(frozen=True, slots=True)
class NetnsScan:
    """What one scan found, and what it could not see."""

    namespaces: tuple[NetNamespace, ...]
    dropped: tuple[NetnsKey, ...]  # present in the previous scan, gone (or reused) now
    processes: int = 0
    vanished: int = 0  # processes that exited mid-scan
    denied: int = 0  # processes whose namespace we may not see
    reused: int = 0  # ids that came back as a new namespace (a new generation)


@dataclass(frozen=True, slots=True)
class _Known:
    key: NetnsKey
    anchors: tuple[tuple[int, int], ...]  # (pid, start ticks)


def continues(was_present: bool, pinned: bool, live_anchors: int) -> bool:
    """Whether a namespace id seen now is the namespace seen under that id in the previous scan.

    >>> continues(was_present=True, pinned=False, live_anchors=0)
    False
    """
    return was_present and (pinned or live_anchors > 0)


class NetnsDiscovery:
    """Scans `<proc_root>/<pid>/ns/net` and keeps generations across scans. Not thread-safe: one poller."""

    def __init__(self, proc_root: str = "/proc") -> None:
        self._proc_root = proc_root
        self._known: dict[NetnsId, _Known] = {}
        self._generations = itertools.count(1)

    def scan(self, pinned: Collection[NetnsKey] = ()) -> NetnsScan:
        """One pass over every process. `pinned`: namespaces the caller holds open (see the module doc)."""
        members, own, counts = self._members()
        found: list[NetNamespace] = []
        known: dict[NetnsId, _Known] = {}
        reused = 0
        for ns_id, pids in members.items():
            previous = self._known.get(ns_id)
            carried = self._carried(previous, pids) if previous is not None else None
            if previous is not None and continues(
                True, previous.key in pinned or ns_id == own, carried is not None
            ):
                key, anchors = previous.key, carried or ()
            else:
                reused += previous is not None
                key, anchors = NetnsKey(ns_id.dev, ns_id.ino, next(self._generations)), ()
            anchors = self._topped_up(anchors, pids)
            known[ns_id] = _Known(key, anchors)
            chosen = [pid for pid, _ in anchors]
            rest = [pid for pid in pids if pid not in chosen]
            found.append(NetNamespace(key, tuple((chosen + rest)[:MAX_REPRESENTATIVES]), ns_id == own))
        dropped = tuple(
            k.key for ns_id, k in self._known.items() if ns_id not in known or known[ns_id].key != k.key
        )
        self._known = known
        processes, vanished, denied = counts
        return NetnsScan(tuple(found), dropped, processes, vanished, denied, reused)

    def _members(self) -> tuple[dict[NetnsId, list[int]], NetnsId | None, tuple[int, int, int]]:
        """namespace id → its pids (ascending as /proc lists them), the own id, and the scan's counts."""
        members: dict[NetnsId, list[int]] = {}
        processes = vanished = denied = 0
        own = self._ns_of("self")
        try:
            entries = os.listdir(self._proc_root)
        except OSError:
            entries = []
        for pid in sorted(int(name) for name in entries if name.isdigit()):
            name = str(pid)
            processes += 1
            try:
                ns_id = self._stat_ns(name)
            except OSError as e:
                if e.errno in _GONE:
                    vanished += 1
                else:  # EACCES, EPERM: attribution stays with the namespaces we can see
                    denied += 1
                continue
            members.setdefault(ns_id, []).append(pid)
        if own is not None:
            members.setdefault(own, [])
        return members, own, (processes, vanished, denied)

    def _stat_ns(self, pid: str) -> NetnsId:
        st = os.stat(os.path.join(self._proc_root, pid, "ns", "net"))
        return NetnsId(st.st_dev, st.st_ino)

    def _ns_of(self, pid: str) -> NetnsId | None:
        try:
            return self._stat_ns(pid)
        except OSError:
            return None

    def _start_ticks(self, pid: int) -> int | None:
        try:
            with open(os.path.join(self._proc_root, str(pid), "stat"), "rb") as f:
                return parse_stat(f.read(4096)).start_ticks
        except (OSError, ValueError, IndexError):  # exited, or a stat we cannot read: not an anchor
            return None

    def _carried(self, previous: _Known, pids: Iterable[int]) -> tuple[tuple[int, int], ...] | None:
        """The previous anchors still in the namespace, from the first whose start time still matches
        (one stat read in the steady state; the others are checked when their turn comes); None when none
        matches: every anchor exited or its pid was recycled."""
        members = set(pids)
        for i, (pid, ticks) in enumerate(previous.anchors):
            if pid in members and self._start_ticks(pid) == ticks:
                return tuple(anchor for anchor in previous.anchors[i:] if anchor[0] in members)
        return None

    def _topped_up(
        self, anchors: tuple[tuple[int, int], ...], pids: list[int]
    ) -> tuple[tuple[int, int], ...]:
        """Anchors refilled from the namespace's other processes, up to MAX_REPRESENTATIVES."""
        chosen = list(anchors)
        taken = {pid for pid, _ in chosen}
        for pid in pids:
            if len(chosen) >= MAX_REPRESENTATIVES:
                break
            ticks = None if pid in taken else self._start_ticks(pid)
            if ticks is not None:
                chosen.append((pid, ticks))
        return tuple(chosen)


def by_key(namespaces: Iterable[NetNamespace]) -> Mapping[NetnsKey, NetNamespace]:
    return {ns.key: ns for ns in namespaces}
