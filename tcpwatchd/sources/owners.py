"""Socket inode -> owning process, by scanning /proc/<pid>/fd incrementally.

A full scan (readlink of every fd of every process: about 3 us of kernel time per fd) is done on the
first poll, overlapping the netlink dump on up to one thread per core, and again every few minutes; after
that a poll only lists fd directories and readlinks the fds it has not seen, plus the fds whose cached
socket has left the kernel's table (an fd number reused by accept() after a close() between two polls
would otherwise be missed: counting fds is not enough). Processes are keyed by (pid, start time in
ticks), so a recycled pid is a new process. When no socket is new and no process came or went, the
previous attribution is reused without touching /proc/<pid>/fd at all.

Races are normal: a process that exits mid-scan is skipped and counted; an fd directory we may not read
(not root) is counted as denied, and attribution is then partial.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import pwd
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import compress
from operator import itemgetter, methodcaller
from typing import Literal

import psutil

from tcpwatchd.model import AttributionStats, Owner
from tcpwatchd.sources.procfs import SOCKET_LINK_PREFIX, parse_cgroup, parse_stat, socket_inode

log = logging.getLogger(__name__)

ProcKey = tuple[int, int]  # (pid, start_ticks)
_GONE = (errno.ENOENT, errno.ESRCH)


@dataclass(slots=True)
class _Process:
    owner: Owner
    start_ticks: int
    fds: dict[str, int] = field(default_factory=dict)  # fd number -> socket inode (0: not a socket)


_ScanOutcome = tuple[ProcKey, _Process] | Literal["denied", "vanished"]
_MAX_SCAN_THREADS = 4  # the most threads a big host starts for a scan (measured here on 2 cores only)


@dataclass(frozen=True, slots=True)
class Attribution:
    owners: Mapping[int, Owner]  # inode -> the counted owner (the oldest holder)
    stats: AttributionStats


class FdScan:
    """One pass over processes' fd tables, shared by the threads that call `work`.

    A scan is readlink after readlink: kernel time outside the GIL, so threads spread it over cores.
    The poll starts helper threads on it while netlink dumps the sockets, and its own thread joins in
    once the dump is done (`finish`): every core stays busy until the last fd table is read.
    """

    def __init__(self, read: Callable[[str], _ScanOutcome], pids: Sequence[str]) -> None:
        self._read = read
        self._todo = iter(pids)
        self._helpers: list[threading.Thread] = []
        self.outcomes: list[_ScanOutcome] = []
        self.error: Exception | None = None

    def start(self, helpers: int) -> None:
        for _ in range(helpers):
            thread = threading.Thread(target=self.work, name="tcpwatchd-fd-scan", daemon=True)
            thread.start()
            self._helpers.append(thread)

    def work(self) -> None:
        """Read fd tables until none is left. Never raises (a helper thread has no caller to raise to):
        the error is kept, and `OwnerCache.attribute` then scans again."""
        try:
            for pid_s in self._todo:  # next() on a shared list iterator is atomic under the GIL
                self.outcomes.append(self._read(pid_s))
        except Exception as e:
            self.error = e

    def finish(self) -> None:
        """Help with what is left, then wait for the helpers."""
        self.work()
        for thread in self._helpers:
            thread.join()
        self._helpers.clear()


class OwnerCache:
    """Keeps the fd tables seen so far and updates them from the socket inodes of each new snapshot."""

    def __init__(
        self, proc_root: str = "/proc", full_rescan_seconds: float = 300.0, scan_threads: int | None = None
    ) -> None:
        self._root = proc_root
        self._threads = scan_threads or min(_MAX_SCAN_THREADS, len(os.sched_getaffinity(0)))
        self._procs: dict[ProcKey, _Process] = {}
        self._last_inodes: frozenset[int] = frozenset()
        self._last_list: Sequence[int] = ()
        self._prefetch: FdScan | None = None  # started by start_full_scan for the coming attribute()
        self._recheck = False  # scan for new fds even when the sockets are the same as last poll's
        self._last_pids: frozenset[str] = frozenset()
        self._last: Attribution | None = None
        self._full_rescan_seconds = full_rescan_seconds
        self._next_full = 0.0
        self._users: dict[int, str] = {}
        self._ticks = os.sysconf("SC_CLK_TCK")
        self._boot = psutil.boot_time()

    def needs_full_scan(self) -> bool:
        return time.monotonic() >= self._next_full

    def start_full_scan(self) -> FdScan:
        """Start reading every fd table now, on helper threads, for the next `attribute` to use.

        The poll calls this before the netlink dump, and `finish()` on the result after it: both are
        mostly kernel time (readlink, recv) outside the GIL, so the scan costs little extra wall time.
        `attribute` must not be called before `finish()` has returned.
        """
        self._procs.clear()
        scan = FdScan(partial(self._scan_one, current=frozenset()), _list_pids(self._root))
        scan.start(helpers=self._threads - 1)
        self._prefetch = scan
        return scan

    def attribute(self, inodes: Sequence[int]) -> Attribution:
        """Owners for the given socket inodes (0s ignored)."""
        pids = frozenset(_list_pids(self._root))
        now = time.monotonic()
        prefetched = self._take_prefetch()
        full = prefetched is None and now >= self._next_full
        recheck, self._recheck = self._recheck, False
        unchanged = (
            not full
            and not recheck
            and prefetched is None
            and self._last is not None
            and pids == self._last_pids
        )
        if unchanged and self._last is not None and inodes == self._last_list:
            # The very same sockets and processes as last poll (compared in C): read nothing.
            stats = _stats(self._last.stats, self._last.owners, self._last_inodes, scanned=0)
            self._last = Attribution(self._last.owners, stats)
            return self._last
        self._last_list = inodes
        current = frozenset(filter(None, inodes))  # without inode 0, in one pass
        if unchanged and self._last is not None and current <= self._last_inodes:
            # Nothing new: sockets only closed. Drop the closed ones, read nothing.
            owners = {i: o for i, o in self._last.owners.items() if i in current}
            stats = _stats(self._last.stats, owners, current, scanned=0)
            self._last, self._last_inodes = Attribution(owners, stats), current
            return self._last
        if prefetched is not None:
            stats = prefetched
        else:
            if full:
                self._procs.clear()  # fd numbers reused while the old socket lived on are caught here
            stats = self._scan(list(pids), current)
        if full or prefetched is not None:
            self._next_full = now + self._full_rescan_seconds
        owners = self._owners(current)
        stats = _stats(stats, owners, current, scanned=stats.processes_scanned)
        # The fd tables were read during the dump, so a socket opened meanwhile is in none of them: when
        # some socket has no owner, the next poll reads the fds it does not know instead of trusting this.
        self._recheck = prefetched is not None and len(owners) < len(current)
        self._last, self._last_inodes, self._last_pids = Attribution(owners, stats), current, pids
        return self._last

    def _take_prefetch(self) -> AttributionStats | None:
        """Install the finished prefetch's fd tables; None when there was none or it failed."""
        scan, self._prefetch = self._prefetch, None
        if scan is None:
            return None
        if scan.error is not None:
            log.debug("fd table prefetch failed, scanning again: %s", scan.error)
            self._procs.clear()
            return None
        return self._install(scan.outcomes)

    def _scan(self, pids: Sequence[str], current: frozenset[int]) -> AttributionStats:
        scan = FdScan(partial(self._scan_one, current=current), pids)
        scan.start(helpers=self._threads - 1)
        scan.finish()
        if scan.error is not None:
            raise scan.error
        return self._install(scan.outcomes)

    def _install(self, outcomes: Sequence[_ScanOutcome]) -> AttributionStats:
        seen: dict[ProcKey, _Process] = {}
        denied = vanished = 0
        for outcome in outcomes:
            if outcome == "denied":
                denied += 1
            elif outcome == "vanished":
                vanished += 1  # exited mid-scan: normal
            else:
                key, proc = outcome
                seen[key] = proc
        self._procs = seen
        return AttributionStats(
            processes=len(seen) + denied,
            processes_scanned=len(seen),
            processes_denied=denied,
            processes_vanished=vanished,
        )

    def _scan_one(self, pid_s: str, current: frozenset[int]) -> _ScanOutcome:
        try:
            key, proc = self._process(int(pid_s))
            self._refresh_fds(pid_s, proc, current)
        except PermissionError:
            return "denied"
        except (FileNotFoundError, ProcessLookupError, psutil.NoSuchProcess):
            return "vanished"
        except OSError as e:
            if e.errno in _GONE:
                return "vanished"
            raise
        return key, proc

    def _process(self, pid: int) -> tuple[ProcKey, _Process]:
        with open(f"{self._root}/{pid}/stat", "rb") as f:
            stat = parse_stat(f.read(4096))
        key = (pid, stat.start_ticks)
        proc = self._procs.get(key)
        if proc is None:
            proc = _Process(
                owner=self._new_owner(pid, stat.comm, stat.start_ticks), start_ticks=stat.start_ticks
            )
        elif proc.owner.name != stat.comm:
            # exec() and PR_SET_NAME rename a process without changing its pid or start time
            # (fs/exec.c, __set_task_comm): keep the identity, take the new name.
            proc.owner = dataclasses.replace(proc.owner, name=stat.comm)
        return key, proc

    def _new_owner(self, pid: int, comm: str, start_ticks: int) -> Owner:
        try:
            uid = os.stat(f"{self._root}/{pid}").st_uid
        except FileNotFoundError:
            raise
        try:
            with open(f"{self._root}/{pid}/cgroup", encoding="utf-8", errors="replace") as f:
                cg = parse_cgroup(f.read(65536))
        except (PermissionError, FileNotFoundError):
            cg = parse_cgroup("")
        return Owner(
            pid=pid,
            name=comm,
            start_time=self._boot + start_ticks / self._ticks,
            user=self._user(uid),
            unit=cg.unit,
            container=cg.container,
        )

    def _user(self, uid: int) -> str:
        name = self._users.get(uid)
        if name is None:
            try:
                name = pwd.getpwuid(uid).pw_name
            except KeyError:
                name = str(uid)
            self._users[uid] = name
        return name

    def _refresh_fds(self, pid_s: str, proc: _Process, current: frozenset[int]) -> None:
        # Through a directory fd: readlink then resolves one name, not the whole /proc/<pid>/fd path.
        dir_fd = os.open(f"{self._root}/{pid_s}/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            proc.fds = _read_fds(dir_fd, proc.fds, current)
        finally:
            os.close(dir_fd)

    def _owners(self, current: frozenset[int]) -> dict[int, Owner]:
        """inode -> oldest holder: a socket shared after fork is counted once, under its parent."""
        best: dict[int, Owner] = {}
        # Youngest first, so that an older holder overwrites (the updates loop in C, not per socket).
        for proc in sorted(self._procs.values(), key=_age_order, reverse=True):
            best.update(dict.fromkeys(proc.fds.values(), proc.owner))
        best.pop(0, None)
        for inode in best.keys() - current:  # sockets of other namespaces, UNIX sockets, closed ones
            del best[inode]
        return best


def _age_order(proc: _Process) -> tuple[int, int]:
    return proc.start_ticks, proc.owner.pid


def _read_fds(dir_fd: int, old: Mapping[str, int], current: frozenset[int]) -> dict[str, int]:
    if not old:
        return _read_all_fds(dir_fd)
    fds: dict[str, int] = {}
    stale: list[str] = []
    for name in os.listdir(dir_fd):
        inode = old.get(name)
        # Re-read an fd we have not seen, or whose socket left the table (the number may be reused).
        if inode is None or (inode and inode not in current):
            stale.append(name)
        else:
            fds[name] = inode
    fds.update(_read_links(dir_fd, stale))
    return fds


def _read_all_fds(dir_fd: int) -> dict[str, int]:
    """Every fd of one process, without listing the directory when its fds are 0..count-1.

    Since Linux 6.2, a /proc/<pid>/fd directory's st_size is its number of open fds (0 before). As
    the kernel hands out the lowest free number, fds are usually exactly 0..count-1, and reading them
    by number skips the listing: a fifth of a full scan's kernel time. A gap shows as ENOENT, an fd past
    the count as an existing `count`; either way (or on a race with open/close), the directory is listed.
    """
    count = os.fstat(dir_fd).st_size
    if count > 0:
        names = _fd_names(count)
        links = _links(dir_fd, names)  # None: a gap
        if links is not None and not _fd_exists(dir_fd, str(count)):
            return _by_fd(names, links)
    return _read_links(dir_fd, os.listdir(dir_fd))


def _fd_exists(dir_fd: int, name: str) -> bool:
    try:
        os.readlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    return True


def _read_links(dir_fd: int, names: list[str]) -> dict[str, int]:
    """fd name -> socket inode (0: not a socket); an fd closed since listdir is left out."""
    links = _links(dir_fd, names)
    return _read_links_one_by_one(dir_fd, names) if links is None else _by_fd(names, links)


def _links(dir_fd: int, names: list[str]) -> list[str] | None:
    """The readlink target of every named fd, the loop in C; None when one of them does not exist."""
    try:
        return list(map(partial(os.readlink, dir_fd=dir_fd), names))
    except FileNotFoundError:
        return None


def _read_links_one_by_one(dir_fd: int, names: list[str]) -> dict[str, int]:
    fds: dict[str, int] = {}
    for name in names:
        try:
            fds[name] = socket_inode(os.readlink(name, dir_fd=dir_fd))
        except FileNotFoundError:
            continue  # closed between listdir and readlink
    return fds


_IS_SOCKET = methodcaller("startswith", SOCKET_LINK_PREFIX)
_INODE_DIGITS = itemgetter(slice(len(SOCKET_LINK_PREFIX), -1))


def _by_fd(names: list[str], links: list[str]) -> dict[str, int]:
    """fd name -> socket inode (0: not a socket), from readlink targets.

    A full scan does this for every fd on the host, so the loops run in C (map/compress), not per fd in
    Python. Only sockfs makes a target that starts with "socket:[" (a path starts with "/"), so the rest
    is the inode; a malformed one (never seen) sends the process through `socket_inode`.
    """
    is_socket = list(map(_IS_SOCKET, links))
    fds = dict.fromkeys(names, 0)
    try:
        fds.update(
            zip(
                compress(names, is_socket),
                map(int, map(_INODE_DIGITS, compress(links, is_socket))),
                strict=True,
            )
        )
    except ValueError:
        return dict(zip(names, map(socket_inode, links), strict=True))
    return fds


_fd_name_cache: list[str] = []
_FD_NAMES_KEPT = 1 << 14  # names kept for the next scans (about 1 MB); a larger table makes its own


def _fd_names(count: int) -> list[str]:
    """["0", "1", ..., str(count - 1)], from a cache shared by every scan (fd tables run to thousands)."""
    global _fd_name_cache
    names = _fd_name_cache
    if len(names) < count:
        if count > _FD_NAMES_KEPT:
            return list(map(str, range(count)))
        # Replaced, never extended in place: scan threads may race here, and each then sees a whole list.
        names = list(map(str, range(min(max(count, 2 * len(names)), _FD_NAMES_KEPT))))
        _fd_name_cache = names
    return names[:count]


def _list_pids(root: str) -> list[str]:
    return [e.name for e in os.scandir(root) if e.name.isdigit()]


def _stats(
    base: AttributionStats, owners: Mapping[int, Owner], current: frozenset[int], scanned: int
) -> AttributionStats:
    return AttributionStats(
        processes=base.processes,
        processes_scanned=scanned,
        processes_denied=base.processes_denied,
        processes_vanished=base.processes_vanished if scanned else 0,
        sockets_unowned=len(current) - len(owners),
    )
