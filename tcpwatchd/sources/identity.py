"""Who a process is: its identity key (pid, start time) and its `Owner` (name, user, unit, container).

A pid alone is recycled; (pid, start time in clock ticks after boot) is not, so it keys every cache of
per-process facts. The start time becomes wall-clock seconds with the boot time of the same `proc_root`
(`btime` in <proc_root>/stat), so a fixture tree or another host's /proc is read consistently.
"""

from __future__ import annotations

import logging
import os
import pwd

from tcpwatchd.model import Owner
from tcpwatchd.sources.procfs import ProcStat, parse_boot_time, parse_cgroup, parse_stat

log = logging.getLogger(__name__)

ProcKey = tuple[int, int]  # (pid, start_ticks)


def read_boot_time(proc_root: str = "/proc") -> float:
    """Boot time (seconds since the epoch) from <proc_root>/stat.

    Raises OSError when the file cannot be read, ValueError when it has no btime line.
    """
    with open(f"{proc_root}/stat", encoding="ascii", errors="replace") as f:
        return float(parse_boot_time(f.read(1 << 20)))


class ProcessIdentity:
    """Reads /proc/<pid>/stat for the identity key and builds `Owner`s; remembers user names.

    A vanished process raises FileNotFoundError or ProcessLookupError (the caller counts it); an
    unreadable cgroup file gives an owner without unit and container.
    """

    def __init__(self, proc_root: str = "/proc") -> None:
        self._root = proc_root
        self._ticks = os.sysconf("SC_CLK_TCK")
        self._users: dict[int, str] = {}
        try:
            self._boot = read_boot_time(proc_root)
        except (OSError, ValueError) as e:
            # Only start_time depends on it: owners stay right, their start times count from boot.
            log.warning("no boot time in %s/stat (%s): process start times count from boot", proc_root, e)
            self._boot = 0.0

    @property
    def boot_time(self) -> float:
        return self._boot

    def stat(self, pid: int) -> tuple[ProcKey, ProcStat]:
        """The identity key and the stat fields of `pid`."""
        with open(f"{self._root}/{pid}/stat", "rb") as f:
            stat = parse_stat(f.read(4096))
        return (pid, stat.start_ticks), stat

    def owner(self, pid: int, stat: ProcStat) -> Owner:
        """The `Owner` of a process whose stat was just read."""
        uid = os.stat(f"{self._root}/{pid}").st_uid
        try:
            with open(f"{self._root}/{pid}/cgroup", encoding="utf-8", errors="replace") as f:
                cg = parse_cgroup(f.read(65536))
        except (PermissionError, FileNotFoundError):
            cg = parse_cgroup("")
        return Owner(
            pid=pid,
            name=stat.comm,
            start_time=self._boot + stat.start_ticks / self._ticks,
            user=self.user(uid),
            unit=cg.unit,
            container=cg.container,
        )

    def user(self, uid: int) -> str:
        """The user name of `uid` (its number when it has none), cached."""
        name = self._users.get(uid)
        if name is None:
            try:
                name = pwd.getpwuid(uid).pw_name
            except KeyError:
                name = str(uid)
            self._users[uid] = name
        return name
