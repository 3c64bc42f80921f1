"""Reading and writing /proc/sys: the only I/O of the sysctl package.

/proc/sys/net shows the network namespace of the process that opens the file, whichever procfs mount the
path goes through (net/sysctl_net.c: net_ctl_header_lookup() uses current->nsproxy->net_ns). So these
functions read and write tcpwatchd's own network namespace; `read_netns` says which one that is.

Names are validated against the catalog before a path is built, and files are opened with O_NOFOLLOW and
without O_CREAT: a write can only land on an existing catalogued sysctl file.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass
from pathlib import Path

from tcpwatchd.sysctl.policy import name_problem, printable

_READ_CAP = 4096  # procfs reports st_size 0; never trust it, never read unbounded
_INT = re.compile(r"-?[0-9]{1,20}")


class SysctlParseError(ValueError):
    """A sysctl file whose text is not one integer."""


@dataclass(frozen=True, slots=True)
class Reading:
    """One sysctl read: `value`, or `error` saying why not. `missing` means no such file (ENOENT)."""

    name: str
    value: int | None
    error: str = ""
    missing: bool = False


def parse_value(text: str) -> int:
    """The integer in a single-valued sysctl file.

    >>> parse_value("7200\\n")
    7200
    """
    fields = text.split()
    if len(fields) != 1 or not _INT.fullmatch(fields[0]):
        raise SysctlParseError(f"expected one integer, got {printable(text[:40])!s}")
    return int(fields[0])


def sysctl_path(name: str, proc_root: str = "/proc") -> Path:
    """`net.ipv4.tcp_fin_timeout` → `<proc_root>/sys/net/ipv4/tcp_fin_timeout`; refuses unknown names."""
    problem = name_problem(name)
    if problem is not None:
        raise ValueError(f"{printable(name)}: {problem}")
    return Path(proc_root, "sys", *name.split("."))


def read_sysctl(name: str, proc_root: str = "/proc") -> int:
    """The current value; raises OSError (e.g. ENOENT when absent here) or SysctlParseError."""
    fd = os.open(sysctl_path(name, proc_root), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        data = os.read(fd, _READ_CAP)
    finally:
        os.close(fd)
    return parse_value(data.decode("ascii", errors="replace"))


def write_sysctl(name: str, value: int, proc_root: str = "/proc") -> None:
    """Write one value in a single write() at offset 0, as procfs requires; raises OSError on failure."""
    path = sysctl_path(name, proc_root)
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        data = f"{int(value)}\n".encode("ascii")
        if os.write(fd, data) != len(data):
            raise OSError(errno.EIO, f"short write to {path}")
    finally:
        os.close(fd)


def describe_os_error(e: OSError) -> str:
    """'Read-only file system (EROFS)': the errno text an operator can act on."""
    code = errno.errorcode.get(e.errno, str(e.errno)) if e.errno is not None else "?"
    text = e.strerror or str(e)
    return f"{text} ({code})"


def read_one(name: str, proc_root: str = "/proc") -> Reading:
    """Read without raising: every failure becomes `Reading.error`."""
    try:
        return Reading(name, read_sysctl(name, proc_root))
    except FileNotFoundError:
        return Reading(name, None, "not present in this kernel or network namespace", missing=True)
    except OSError as e:
        return Reading(name, None, f"cannot read: {describe_os_error(e)}")
    except ValueError as e:
        return Reading(name, None, f"cannot parse: {e}")


def read_all(names: tuple[str, ...], proc_root: str = "/proc") -> tuple[Reading, ...]:
    return tuple(read_one(name, proc_root) for name in names)


def read_netns(proc_root: str = "/proc") -> str:
    """The reading process's network namespace, as `net:[4026531840]`; '' when it cannot be told."""
    try:
        return os.readlink(Path(proc_root, "self", "ns", "net"))
    except OSError:
        return ""
