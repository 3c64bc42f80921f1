"""Socket inode -> owning process: the caching policy over fd tables (sources/fdtable.py) and process
identities (sources/identity.py).

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
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

from tcpwatchd.model import AttributionStats, Owner
from tcpwatchd.sources.fdmap import FdMap
from tcpwatchd.sources.fdtable import FdScan, fd_dir, list_pids, read_fds
from tcpwatchd.sources.identity import ProcessIdentity, ProcKey

log = logging.getLogger(__name__)

_GONE = (errno.ENOENT, errno.ESRCH)
_MAX_SCAN_THREADS = 4  # the most threads a big host starts for a scan (measured here on 2 cores only)


@dataclass(slots=True)
class _Process:
    owner: Owner
    start_ticks: int
    fds: FdMap = field(default_factory=FdMap)  # fd number -> socket inode (0: not a socket)


_ScanOutcome = tuple[ProcKey, _Process] | Literal["denied", "vanished"]


@dataclass(frozen=True, slots=True)
class Attribution:
    owners: Mapping[int, Owner]  # inode -> the counted owner (the oldest holder)
    stats: AttributionStats


class OwnerCache:
    """Keeps the fd tables seen so far and updates them from the socket inodes of each new snapshot."""

    def __init__(
        self, proc_root: str = "/proc", full_rescan_seconds: float = 300.0, scan_threads: int | None = None
    ) -> None:
        self._root = proc_root
        self._threads = scan_threads or min(_MAX_SCAN_THREADS, len(os.sched_getaffinity(0)))
        self._identity = ProcessIdentity(proc_root)
        self._procs: dict[ProcKey, _Process] = {}
        # The inodes of the last attribution, as the table's column (a set of 100k ints is ~7 MB: it is
        # built again from this only on a poll whose sockets changed), and how many were non-zero.
        self._basis: Sequence[int] = ()
        self._basis_count = 0
        self._last_list: Sequence[int] = ()
        self._prefetch: FdScan[_ScanOutcome] | None = None  # started by start_full_scan
        self._recheck = False  # scan for new fds even when the sockets are the same as last poll's
        self._last_pids: frozenset[str] = frozenset()
        self._last: Attribution | None = None
        self._full_rescan_seconds = full_rescan_seconds
        self._next_full = 0.0

    def needs_full_scan(self) -> bool:
        return time.monotonic() >= self._next_full

    def start_full_scan(self) -> FdScan[_ScanOutcome]:
        """Start reading every fd table now, on helper threads, for the next `attribute` to use.

        The poll calls this before the netlink dump, and `finish()` on the result after it: both are
        mostly kernel time (readlink, recv) outside the GIL, so the scan costs little extra wall time.
        `attribute` must not be called before `finish()` has returned.
        """
        self._procs.clear()
        scan = FdScan(partial(self._scan_one, current=frozenset(), gone=None), list_pids(self._root))
        scan.start(helpers=self._threads - 1)
        self._prefetch = scan
        return scan

    def attribute(self, inodes: Sequence[int]) -> Attribution:
        """Owners for the given socket inodes (0s ignored). Takes the cheapest path that is still exact:
        the last answer as it was, the last answer less closed sockets, a finished prefetch, a full
        rescan when one is due, or an incremental scan."""
        pids = frozenset(list_pids(self._root))
        now = time.monotonic()
        prefetched = self._take_prefetch()
        recheck, self._recheck = self._recheck, False
        quiet = prefetched is None and not recheck and self._quiet_since_last_poll(pids, now)
        if quiet and inodes == self._last_list:
            return self._same_as_last_poll()
        self._last_list = inodes
        current = frozenset(filter(None, inodes))  # without inode 0, in one pass
        if quiet and current <= self._last_inodes():
            return self._only_closed_since_last_poll(current)
        if prefetched is not None:
            return self._settle(prefetched, current, pids, full_at=now, read_during_dump=True)
        if now >= self._next_full:
            return self._full_rescan(pids, current, now)
        return self._incremental(pids, current)

    def _incremental(self, pids: frozenset[str], current: frozenset[int]) -> Attribution:
        """New processes and new fds are read; of the known fds, only those whose socket left the table
        since the last poll (a UNIX socket's or another namespace's fd is not read again each poll: a
        host has thousands). An fd number whose unknown socket closed and was reused for one of ours
        leaves that socket without an owner: then every fd not vouched for by `current` is read again."""
        last = self._last_inodes()
        gone = last - current
        attribution = self._settle(self._scan(list(pids), current, gone), current, pids, full_at=None)
        if (current - last).difference(attribution.owners):
            attribution = self._settle(self._scan(list(pids), current), current, pids, full_at=None)
        return attribution

    def _quiet_since_last_poll(self, pids: frozenset[str], now: float) -> bool:
        """No full scan due and the same processes as last poll (which there was)."""
        return now < self._next_full and self._last is not None and pids == self._last_pids

    def _same_as_last_poll(self) -> Attribution:
        """The very same sockets and processes as last poll (compared in C): read nothing."""
        last = self._require_last()
        stats = _stats(last.stats, last.owners, self._basis_count, scanned=0)
        self._last = Attribution(last.owners, stats)
        return self._last

    def _only_closed_since_last_poll(self, current: frozenset[int]) -> Attribution:
        """No socket is new: some only closed. Drop them, read nothing."""
        last = self._require_last()
        owners = {i: o for i, o in last.owners.items() if i in current}
        stats = _stats(last.stats, owners, len(current), scanned=0)
        self._last = Attribution(owners, stats)
        self._remember(current)
        return self._last

    def _full_rescan(self, pids: frozenset[str], current: frozenset[int], now: float) -> Attribution:
        """Forget every fd table and read them all: fd numbers reused while the old socket lived on
        (which an incremental scan cannot see) are caught here."""
        self._procs.clear()
        return self._settle(self._scan(list(pids), current), current, pids, full_at=now)

    def _settle(
        self,
        scanned: AttributionStats,
        current: frozenset[int],
        pids: frozenset[str],
        full_at: float | None,
        read_during_dump: bool = False,
    ) -> Attribution:
        """The attribution from freshly read fd tables; `full_at` is when a full read was done (None:
        incremental), from which the next full rescan is due."""
        if full_at is not None:
            self._next_full = full_at + self._full_rescan_seconds
        owners = self._owners(current)
        stats = _stats(scanned, owners, len(current), scanned=scanned.processes_scanned)
        # Tables read during the dump miss a socket opened meanwhile: when some socket has no owner,
        # the next poll reads the fds it does not know instead of trusting this.
        self._recheck = read_during_dump and len(owners) < len(current)
        self._last, self._last_pids = Attribution(owners, stats), pids
        self._remember(current)
        return self._last

    def _remember(self, current: frozenset[int]) -> None:
        self._basis, self._basis_count = self._last_list, len(current)

    def _last_inodes(self) -> frozenset[int]:
        return frozenset(filter(None, self._basis))

    def _require_last(self) -> Attribution:
        if self._last is None:
            raise RuntimeError("no previous attribution to reuse")
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

    def _scan(
        self, pids: Sequence[str], current: frozenset[int], gone: frozenset[int] | None = None
    ) -> AttributionStats:
        scan = FdScan(partial(self._scan_one, current=current, gone=gone), pids)
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

    def _scan_one(self, pid_s: str, current: frozenset[int], gone: frozenset[int] | None) -> _ScanOutcome:
        try:
            key, proc = self._process(int(pid_s))
            with fd_dir(pid_s, self._root) as dir_fd:
                proc.fds = FdMap.of(read_fds(dir_fd, proc.fds, current, gone))
        except PermissionError:
            return "denied"
        except (FileNotFoundError, ProcessLookupError):
            return "vanished"
        except OSError as e:
            if e.errno in _GONE:
                return "vanished"
            raise
        return key, proc

    def _process(self, pid: int) -> tuple[ProcKey, _Process]:
        key, stat = self._identity.stat(pid)
        proc = self._procs.get(key)
        if proc is None:
            proc = _Process(owner=self._identity.owner(pid, stat), start_ticks=stat.start_ticks)
        elif proc.owner.name != stat.comm:
            # exec() and PR_SET_NAME rename a process without changing its pid or start time
            # (fs/exec.c, __set_task_comm): keep the identity, take the new name.
            proc.owner = dataclasses.replace(proc.owner, name=stat.comm)
        return key, proc

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


def _stats(
    base: AttributionStats, owners: Mapping[int, Owner], sockets: int, scanned: int
) -> AttributionStats:
    return AttributionStats(
        processes=base.processes,
        processes_scanned=scanned,
        processes_denied=base.processes_denied,
        processes_vanished=base.processes_vanished if scanned else 0,
        sockets_unowned=sockets - len(owners),
    )
