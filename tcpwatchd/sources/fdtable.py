"""Reading processes' fd tables (/proc/<pid>/fd): which socket inode each open fd holds.

An fd's readlink target is `socket:[<inode>]` for a socket (sockfs) and something else for any other
file. A process's table is read through a directory fd (readlink then resolves one name, not a whole
path), with the loops in C (map over os.readlink, compress), because a full scan reads every fd of the
host: about 3 us of kernel time per fd. Races are normal: an fd closed between listing and readlink is
left out; a process that exits raises FileNotFoundError or ProcessLookupError for the caller to count.

One-call helpers for a single process: `fd_table`, `fds_of_socket`, `open_fd_count`. The scan of every
process that attribution needs is `FdScan` (threads) over `read_fds` (incremental) or `read_all_fds`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from itertools import compress
from operator import itemgetter, methodcaller
from typing import Generic, Protocol, TypeVar

from tcpwatchd.sources.procfs import SOCKET_LINK_PREFIX, socket_inode

T = TypeVar("T")
FdTable = dict[str, int]  # fd number (its name in /proc/<pid>/fd) -> socket inode (0: not a socket)


def list_pids(proc_root: str = "/proc") -> list[str]:
    """The process directories under `proc_root` (names, unsorted)."""
    return [e.name for e in os.scandir(proc_root) if e.name.isdigit()]


@contextmanager
def fd_dir(pid: int | str, proc_root: str = "/proc") -> Iterator[int]:
    """An O_DIRECTORY fd on /proc/<pid>/fd, closed on exit."""
    dir_fd = os.open(f"{proc_root}/{pid}/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield dir_fd
    finally:
        os.close(dir_fd)


def fd_table(pid: int, proc_root: str = "/proc") -> FdTable:
    """Every open fd of `pid` and the socket inode it holds (0: not a socket).

    Raises FileNotFoundError / ProcessLookupError when the process is gone, PermissionError when its fd
    table may not be read (not root, another user's process).

    >>> import socket; s = socket.socket()
    >>> fd_table(os.getpid())[str(s.fileno())] == os.fstat(s.fileno()).st_ino
    True
    """
    with fd_dir(pid, proc_root) as dir_fd:
        return read_all_fds(dir_fd)


def fds_of_socket(pid: int, inode: int, proc_root: str = "/proc") -> list[int]:
    """The fd numbers of `pid` that hold socket `inode`, ascending ([] when none; dup() makes several).

    Raises as `fd_table` does.
    """
    return sorted(int(name) for name, held in fd_table(pid, proc_root).items() if held == inode)


def open_fd_count(pid: int, proc_root: str = "/proc") -> int:
    """How many fds `pid` has open: one listing, no readlink (as psutil's num_fds). Raises as `fd_table`
    does. (st_size counts them too since Linux 6.2, but only on procfs: a fixture tree's directory size
    is not a count, and read_all_fds checks that number before trusting it.)"""
    with fd_dir(pid, proc_root) as dir_fd:
        return len(os.listdir(dir_fd))


class KnownFds(Protocol):
    """A process's last fd table as kept (a dict, or sources.fdmap.FdMap)."""

    def get(self, name: str, /) -> int | None: ...

    def __len__(self) -> int: ...


def read_fds(
    dir_fd: int, old: KnownFds, current: frozenset[int], gone: frozenset[int] | None = None
) -> FdTable:
    """The fd table, re-reading only what `old` (this process's last table) cannot vouch for: an fd not
    seen before, or one whose socket may have been closed (its number then reused): with `gone`, one
    whose socket is among `gone` (those that left the table since the last poll); without, any whose
    socket is not in `current` (UNIX sockets and other namespaces' included)."""
    if not old:
        return read_all_fds(dir_fd)
    fds: FdTable = {}
    stale: list[str] = []
    suspect = gone.__contains__ if gone is not None else current.__contains__
    expect = gone is not None  # a suspect inode is one in `gone`, or one not in `current`
    for name in os.listdir(dir_fd):
        inode = old.get(name)
        if inode is None or (inode and suspect(inode) == expect):
            stale.append(name)
        else:
            fds[name] = inode
    fds.update(read_links(dir_fd, stale))
    return fds


def read_all_fds(dir_fd: int) -> FdTable:
    """Every fd of one process, without listing the directory when its fds are 0..count-1.

    Since Linux 6.2, a /proc/<pid>/fd directory's st_size is its number of open fds (0 before). As
    the kernel hands out the lowest free number, fds are usually exactly 0..count-1, and reading them
    by number skips the listing: a fifth of a full scan's kernel time. A gap shows as ENOENT, an fd past
    the count as an existing `count`; either way (or on a race with open/close), the directory is listed.
    """
    count = os.fstat(dir_fd).st_size
    if count > 0:
        names = fd_names(count)
        links = _links(dir_fd, names)  # None: a gap
        if links is not None and not _fd_exists(dir_fd, str(count)):
            return by_fd(names, links)
    return read_links(dir_fd, os.listdir(dir_fd))


def _fd_exists(dir_fd: int, name: str) -> bool:
    try:
        os.readlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    return True


def read_links(dir_fd: int, names: list[str]) -> FdTable:
    """fd name -> socket inode (0: not a socket); an fd closed since listdir is left out."""
    links = _links(dir_fd, names)
    return _read_links_one_by_one(dir_fd, names) if links is None else by_fd(names, links)


def _links(dir_fd: int, names: list[str]) -> list[str] | None:
    """The readlink target of every named fd, the loop in C; None when one of them does not exist."""
    try:
        return list(map(partial(os.readlink, dir_fd=dir_fd), names))
    except FileNotFoundError:
        return None


def _read_links_one_by_one(dir_fd: int, names: list[str]) -> FdTable:
    fds: FdTable = {}
    for name in names:
        try:
            fds[name] = socket_inode(os.readlink(name, dir_fd=dir_fd))
        except FileNotFoundError:
            continue  # closed between listdir and readlink
    return fds


_IS_SOCKET = methodcaller("startswith", SOCKET_LINK_PREFIX)
_INODE_DIGITS = itemgetter(slice(len(SOCKET_LINK_PREFIX), -1))


def by_fd(names: list[str], links: list[str]) -> FdTable:
    """fd name -> socket inode (0: not a socket), from readlink targets.

    A full scan does this for every fd on the host, so the loops run in C (map/compress), not per fd in
    Python. Only sockfs makes a target that starts with "socket:[" (a path starts with "/"), so the rest
    is the inode; a malformed one (never seen) sends the process through `socket_inode`.

    >>> by_fd(["0", "3"], ["/dev/null", "socket:[12345]"])
    {'0': 0, '3': 12345}
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
FD_NAMES_KEPT = 1 << 14  # names kept for the next scans (about 1 MB); a larger table makes its own


def fd_names(count: int) -> list[str]:
    """["0", "1", ..., str(count - 1)], from a cache shared by every scan (fd tables run to thousands)."""
    global _fd_name_cache
    names = _fd_name_cache
    if len(names) < count:
        if count > FD_NAMES_KEPT:
            return list(map(str, range(count)))
        # Replaced, never extended in place: scan threads may race here, and each then sees a whole list.
        names = list(map(str, range(min(max(count, 2 * len(names)), FD_NAMES_KEPT))))
        _fd_name_cache = names
    return names[:count]


class FdScan(Generic[T]):
    """One pass over processes' fd tables, shared by the threads that call `work`.

    A scan is readlink after readlink: kernel time outside the GIL, so threads spread it over cores.
    The poll starts helper threads on it while netlink dumps the sockets, and its own thread joins in
    once the dump is done (`finish`): every core stays busy until the last fd table is read. `read`
    turns one pid into an outcome and must only raise for what is not a race.
    """

    def __init__(self, read: Callable[[str], T], pids: Sequence[str]) -> None:
        self._read = read
        self._todo = iter(pids)
        self._helpers: list[threading.Thread] = []
        self.outcomes: list[T] = []
        self.error: Exception | None = None

    def start(self, helpers: int) -> None:
        for _ in range(helpers):
            thread = threading.Thread(target=self.work, name="tcpwatchd-fd-scan", daemon=True)
            thread.start()
            self._helpers.append(thread)

    def work(self) -> None:
        """Read fd tables until none is left. Never raises (a helper thread has no caller to raise to):
        the error is kept for the owner of the scan."""
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
