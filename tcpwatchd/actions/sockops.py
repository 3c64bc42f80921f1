"""Acting on another process's TCP socket: duplicate its fd, read and set keepalive, destroy it.

`pidfd_open(2)` (Linux 5.3) and `pidfd_getfd(2)` (Linux 5.6) give tcpwatchd a duplicate of the owner's
socket fd. A duplicate refers to the same `struct socket`, so options set on it change the owner's socket
(that is the point: the owner's connection sends the keepalive probes). pidfd_getfd needs
PTRACE_MODE_ATTACH_REALCREDS over the target, i.e. CAP_SYS_PTRACE for another user's process, and it
passes through seccomp and the LSMs (Yama ptrace_scope 3 refuses it to everyone).

Destroying a socket (reap mode) is sockdestroy.py; `SystemOps` (system_ops.py) bundles both for the prober.

Nothing here raises: every refusal comes back as a `Failure` with a reason for the log.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass

from tcpwatchd.actions.outcome import Failure, Refusal, refusal_for
from tcpwatchd.sources.fdtable import fds_of_socket

SYS_PIDFD_OPEN, SYS_PIDFD_GETFD = 434, 438  # same numbers on every architecture (unified syscall table)
TCP_INFO_PREFIX = 8  # tcpi_state, ca_state, retransmits, probes, backoff, options, wscale, flags
MAX_TCP_KEEPCNT = 127  # include/net/tcp.h: the largest TCP_KEEPCNT the kernel accepts

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


@dataclass(frozen=True, slots=True)
class KeepaliveOptions:
    """A socket's keepalive settings as getsockopt reports them (the effective values).

    >>> KeepaliveOptions(enabled=False, idle=7200, interval=75, count=9)   # kernel defaults, keepalive off
    KeepaliveOptions(enabled=False, idle=7200, interval=75, count=9)
    """

    enabled: bool  # SO_KEEPALIVE
    idle: int  # TCP_KEEPIDLE, seconds (the sysctl tcp_keepalive_time unless the socket set its own)
    interval: int  # TCP_KEEPINTVL, seconds
    count: int  # TCP_KEEPCNT, unanswered probes before the kernel aborts


@dataclass(frozen=True, slots=True)
class Target:
    """One socket of one process: `fd` is a hint (-1: unknown), checked against `inode` on every use."""

    pid: int
    inode: int
    fd: int = -1


@dataclass(frozen=True, slots=True)
class SocketStatus:
    """What getsockopt says of a socket through a duplicate; reading it never consumes sk_err."""

    fd: int  # the owner's fd number that holds the socket
    state: int  # tcpi_state (include/net/tcp_states.h): 7 = CLOSE
    probes: int  # tcpi_probes: icsk_probes_out, unanswered keepalive probes
    retransmits: int  # tcpi_retransmits
    user_timeout_ms: int  # TCP_USER_TIMEOUT; when set it, not TCP_KEEPCNT, bounds keepalive (tcp_timer.c)
    keepalive: KeepaliveOptions


class Refused(Exception):
    def __init__(self, failure: Failure) -> None:
        self.failure = failure


def errno_failure(err: int, doing: str) -> Refused:
    return Refused(refusal_for(err, doing))


def _scan_fds(pid: int, inode: int, proc_root: str) -> int | None:
    """The lowest fd under which `pid` holds socket `inode`, or None; raises OSError as fd_table does
    (/proc/<pid>/fd is guarded by the same ptrace access check as pidfd_getfd)."""
    fds = fds_of_socket(pid, inode, proc_root)
    return fds[0] if fds else None


def holds_socket(target: Target, proc_root: str = "/proc") -> bool:
    """Whether `target.pid` still holds socket `target.inode` under fd `target.fd` (one readlink)."""
    try:
        return os.readlink(f"{proc_root}/{target.pid}/fd/{target.fd}") == f"socket:[{target.inode}]"
    except OSError:
        return False


@contextlib.contextmanager
def duplicate(target: Target, proc_root: str) -> Iterator[tuple[socket.socket, int]]:
    """A duplicate of the owner's fd for socket `target.inode`, as a socket object, and the fd number."""
    pidfd = _libc.syscall(SYS_PIDFD_OPEN, target.pid, 0)
    if pidfd < 0:
        raise errno_failure(ctypes.get_errno(), "pidfd_open")
    try:
        dup = _getfd(pidfd, target, proc_root)
    finally:
        os.close(pidfd)
    fd, copy = dup
    # socket(fileno=) takes ownership: closing it closes our duplicate only, never the owner's fd.
    sock = socket.socket(fileno=copy)
    try:
        yield sock, fd
    finally:
        sock.close()


def _getfd(pidfd: int, target: Target, proc_root: str) -> tuple[int, int]:
    fd = target.fd
    for attempt in range(2):  # the hint first; if it no longer holds the socket, look the fd up again
        if fd < 0 or attempt:
            try:
                found = _scan_fds(target.pid, target.inode, proc_root)
            except OSError as e:
                raise Refused(_fd_dir_failure(e, f"{proc_root}/{target.pid}/fd")) from e
            if found is None:
                raise Refused(
                    Failure(Refusal.FD_CLOSED, f"pid {target.pid} holds no socket:[{target.inode}]")
                )
            fd = found
        copy = _libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
        if copy < 0:
            err = ctypes.get_errno()
            if err == errno.EBADF and not attempt:
                continue
            raise errno_failure(err, "pidfd_getfd")
        if os.fstat(copy).st_ino == target.inode:  # a socket's st_ino is its inode (sock_alloc_inode)
            return fd, copy
        os.close(copy)  # the fd number was reused for another file since the hint
    raise Refused(Failure(Refusal.FD_CLOSED, f"pid {target.pid} holds no socket:[{target.inode}]"))


def _fd_dir_failure(e: OSError, path: str) -> Failure:
    """/proc/<pid>/fd is guarded by the same ptrace access check as pidfd_getfd (proc_fd_access_allowed)."""
    if e.errno in (errno.EACCES, errno.EPERM):
        return Failure(
            Refusal.NO_PERMISSION,
            f"cannot read {path}: {e.strerror} (needs CAP_SYS_PTRACE, or an LSM refuses ptrace access)",
        )
    if e.errno == errno.ENOENT:
        return Failure(Refusal.PROCESS_EXITED, f"{path}: the process exited")
    return refusal_for(e.errno or 0, f"reading {path}")


def _read_keepalive(sock: socket.socket) -> KeepaliveOptions:
    return KeepaliveOptions(
        enabled=bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)),
        idle=sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        interval=sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
        count=sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
    )


def _status(sock: socket.socket, fd: int) -> SocketStatus:
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_PREFIX)
    return SocketStatus(
        fd=fd,
        state=info[0],
        retransmits=info[2],
        probes=info[3],
        user_timeout_ms=sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
        keepalive=_read_keepalive(sock),
    )


def read_status(target: Target, proc_root: str = "/proc") -> SocketStatus | Failure:
    """State, probe count and keepalive options of the owner's socket, read through a duplicate."""
    try:
        with duplicate(target, proc_root) as (sock, fd):
            return _status(sock, fd)
    except Refused as r:
        return r.failure
    except OSError as e:
        return refusal_for(e.errno or 0, "getsockopt")


def set_keepalive(
    target: Target, wanted: KeepaliveOptions, proc_root: str = "/proc"
) -> SocketStatus | Failure:
    """Set the owner's keepalive options to `wanted`, read them back, and refuse if they differ.

    Order matters (net/ipv4/tcp.c): TCP_KEEPIDLE re-arms a running keepalive timer and SO_KEEPALIVE on
    arms it with the idle time in force, so the times go first when turning on, and keepalive goes off
    first (deleting the timer) when turning off.
    """
    try:
        with duplicate(target, proc_root) as (sock, fd):
            if not wanted.enabled:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 0)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, wanted.count)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, wanted.interval)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, wanted.idle)
            if wanted.enabled:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            status = _status(sock, fd)
    except Refused as r:
        return r.failure
    except OSError as e:
        return refusal_for(e.errno or 0, "setsockopt")
    if status.keepalive != wanted:
        return Failure(Refusal.MISMATCH, f"read back {status.keepalive}, wanted {wanted}")
    return status
