"""Per process with sockets: open fds and the soft RLIMIT_NOFILE, refreshed slowly and cached.

Both come from /proc, readable for every process by root and by the owner:
- the soft limit from /proc/<pid>/limits (fs/proc/base.c proc_pid_limits, mode 0444), parsed purely.
  prlimit(2) on another user's process needs CAP_SYS_RESOURCE or matching uids; the file does not.
- the fd count from the st_size of /proc/<pid>/fd: since Linux 6.2 it is the number of open fds
  (proc_fd_getattr); before 6.2 it is 0, and we count the entries instead (one getdents, no readlink).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from tcpwatchd.errors import ParseError
from tcpwatchd.facts import ProcessFacts

ProcessRef = tuple[int, float]  # (pid, start time): a recycled pid gets another start time
LIMITS_MAX_BYTES = 8192  # the file is ~1.3 KB; read at most this much


def parse_max_open_files(text: str, path: str = "limits") -> int | None:
    """The soft limit of the "Max open files" line of /proc/<pid>/limits (None: unlimited).

    >>> parse_max_open_files("Max open files            1024                 524288               files\\n")
    1024
    """
    for line_no, line in enumerate(text.splitlines(), 1):
        if line.startswith("Max open files"):
            fields = line[len("Max open files") :].split()
            if not fields:
                break
            if fields[0] == "unlimited":
                return None
            if not fields[0].isdigit():
                raise ParseError(path, line_no, f"soft limit {fields[0]!r} is not a number")
            return int(fields[0])
    raise ParseError(path, 0, "no 'Max open files' line")


def read_max_open_files(pid: int, proc_root: str = "/proc") -> int | None:
    path = f"{proc_root}/{pid}/limits"
    with open(path, "rb") as f:
        return parse_max_open_files(f.read(LIMITS_MAX_BYTES).decode("ascii", "replace"), path)


def count_open_fds(pid: int, proc_root: str = "/proc") -> int:
    """How many fds `pid` has open: st_size of its fd directory (Linux 6.2+), else its entries."""
    path = f"{proc_root}/{pid}/fd"
    size = os.stat(path).st_size
    return size if size > 0 else len(os.listdir(path))


def read_process_facts(pid: int, proc_root: str = "/proc") -> ProcessFacts:
    """Raises OSError when the process is gone (ENOENT, ESRCH) or hidden from us (EACCES)."""
    return ProcessFacts(pid, count_open_fds(pid, proc_root), read_max_open_files(pid, proc_root))


@dataclass(frozen=True, slots=True)
class FactsStats:
    refreshed: int  # processes read this call
    failed: int  # of which vanished or denied (skipped; their old facts, if any, dropped)
    cached: int  # entries kept after this call


class ProcessFactsCache:
    """Facts of the processes the caller names, each re-read at most every `refresh_seconds`.

    Keyed by (pid, start time), so a recycled pid is read afresh; entries for processes the caller no
    longer names are dropped, and at most `max_entries` processes are kept (the rest read every call).
    """

    def __init__(
        self,
        proc_root: str = "/proc",
        refresh_seconds: float = 30.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._root, self.refresh_seconds, self._max = proc_root, refresh_seconds, max_entries
        self._clock = clock
        self._entries: dict[ProcessRef, tuple[float, ProcessFacts]] = {}
        self.stats = FactsStats(0, 0, 0)

    def facts(self, procs: Iterable[ProcessRef]) -> dict[int, ProcessFacts]:
        """pid -> facts for each named process we could read (now or within refresh_seconds)."""
        now, old = self._clock(), self._entries
        kept: dict[ProcessRef, tuple[float, ProcessFacts]] = {}
        out: dict[int, ProcessFacts] = {}
        refreshed = failed = 0
        for ref in procs:
            entry = old.get(ref)
            if entry is None or now - entry[0] >= self.refresh_seconds:
                refreshed += 1
                try:
                    entry = (now, replace(read_process_facts(ref[0], self._root), at=now, start_time=ref[1]))
                except (OSError, ParseError):
                    failed += 1  # gone, denied, or a limits file we cannot read: no facts this time
                    continue
            out[ref[0]] = entry[1]
            if len(kept) < self._max:
                kept[ref] = entry
        self._entries = kept
        self.stats = FactsStats(refreshed, failed, len(kept))
        return out
