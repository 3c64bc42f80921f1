"""Acting on another process's TCP socket: duplicate its fd, read and set keepalive, destroy it.

`pidfd_open(2)` (Linux 5.3) and `pidfd_getfd(2)` (Linux 5.6) give tcpwatchd a duplicate of the owner's
socket fd. A duplicate refers to the same `struct socket`, so options set on it change the owner's socket
(that is the point: the owner's connection sends the keepalive probes). pidfd_getfd needs
PTRACE_MODE_ATTACH_REALCREDS over the target, i.e. CAP_SYS_PTRACE for another user's process, and it
passes through seccomp and the LSMs (Yama ptrace_scope 3 refuses it to everyone).

SOCK_DESTROY (linux/sock_diag.h, net/core/sock_diag.c) aborts one socket as `ss -K` does: it needs
CONFIG_INET_DIAG_DESTROY, CAP_NET_ADMIN in the socket's network namespace, and a NETLINK_SOCK_DIAG socket
opened in that namespace; SIOCGSKNS on the duplicate names the namespace, so no guessing from pids.

Nothing here raises: every refusal comes back as a `Failure` with a reason for the log.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from tcpwatchd.actions.outcome import Failure, Refusal, refusal_for
from tcpwatchd.model import Socket

SYS_PIDFD_OPEN, SYS_PIDFD_GETFD = 434, 438  # same numbers on every architecture (unified syscall table)
SIOCGSKNS = 0x894C  # linux/sockios.h: an fd for the socket's network namespace (Linux 4.9)
CLONE_NEWNET = 0x40000000
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


class _Refused(Exception):
    def __init__(self, failure: Failure) -> None:
        self.failure = failure


def _errno_failure(err: int, doing: str) -> _Refused:
    return _Refused(refusal_for(err, doing))


def find_socket_fd(pid: int, inode: int, proc_root: str = "/proc") -> int | None:
    """The fd number under which `pid` holds socket `inode`, or None (scans /proc/<pid>/fd readlinks).

    Kept in one function so that the owner cache's own lookup can replace it.
    >>> find_socket_fd(1234, 98765)   # /proc/1234/fd/7 -> 'socket:[98765]'
    7
    """
    try:
        return _scan_fds(pid, inode, proc_root)
    except OSError:  # exited (ENOENT) or not ours to read (EACCES)
        return None


def _scan_fds(pid: int, inode: int, proc_root: str) -> int | None:
    want = f"socket:[{inode}]"
    base = f"{proc_root}/{pid}/fd"
    names = os.listdir(base)  # the same ptrace access check as pidfd_getfd guards /proc/<pid>/fd
    for name in names:
        # Closed between listdir and readlink: skip. EACCES (no ptrace access to its fds) propagates.
        with contextlib.suppress(FileNotFoundError):
            if os.readlink(f"{base}/{name}") == want:
                return int(name)
    return None


def holds_socket(target: Target, proc_root: str = "/proc") -> bool:
    """Whether `target.pid` still holds socket `target.inode` under fd `target.fd` (one readlink)."""
    try:
        return os.readlink(f"{proc_root}/{target.pid}/fd/{target.fd}") == f"socket:[{target.inode}]"
    except OSError:
        return False


@contextlib.contextmanager
def _duplicate(target: Target, proc_root: str) -> Iterator[tuple[socket.socket, int]]:
    """A duplicate of the owner's fd for socket `target.inode`, as a socket object, and the fd number."""
    pidfd = _libc.syscall(SYS_PIDFD_OPEN, target.pid, 0)
    if pidfd < 0:
        raise _errno_failure(ctypes.get_errno(), "pidfd_open")
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
                raise _Refused(_fd_dir_failure(e, f"{proc_root}/{target.pid}/fd")) from e
            if found is None:
                raise _Refused(
                    Failure(Refusal.FD_CLOSED, f"pid {target.pid} holds no socket:[{target.inode}]")
                )
            fd = found
        copy = _libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
        if copy < 0:
            err = ctypes.get_errno()
            if err == errno.EBADF and not attempt:
                continue
            raise _errno_failure(err, "pidfd_getfd")
        if os.fstat(copy).st_ino == target.inode:  # a socket's st_ino is its inode (sock_alloc_inode)
            return fd, copy
        os.close(copy)  # the fd number was reused for another file since the hint
    raise _Refused(Failure(Refusal.FD_CLOSED, f"pid {target.pid} holds no socket:[{target.inode}]"))


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
        with _duplicate(target, proc_root) as (sock, fd):
            return _status(sock, fd)
    except _Refused as r:
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
        with _duplicate(target, proc_root) as (sock, fd):
            if not wanted.enabled:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 0)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, wanted.count)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, wanted.interval)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, wanted.idle)
            if wanted.enabled:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            status = _status(sock, fd)
    except _Refused as r:
        return r.failure
    except OSError as e:
        return refusal_for(e.errno or 0, "setsockopt")
    if status.keepalive != wanted:
        return Failure(Refusal.MISMATCH, f"read back {status.keepalive}, wanted {wanted}")
    return status


def destroy(target: Target, request: bytes, proc_root: str = "/proc") -> Failure | None:
    """Abort the owner's socket with SOCK_DESTROY in the socket's own network namespace.

    `request` is `destroy_request(...)`; the kernel finds the socket by its 4-tuple and checks the
    cookie, so a new connection that reused the 4-tuple is never hit. None on success.
    """
    try:
        with _duplicate(target, proc_root) as (sock, _fd):
            nsfd = fcntl.ioctl(sock.fileno(), SIOCGSKNS)
        try:
            with _in_netns(nsfd), _diag_socket() as diag:
                diag.send(request)
                return _ack(diag.recv(4096))
        finally:
            os.close(nsfd)
    except _Refused as r:
        return r.failure
    except OSError as e:
        return refusal_for(e.errno or 0, "SOCK_DESTROY")


@contextlib.contextmanager
def _in_netns(nsfd: int) -> Iterator[None]:
    """Run the body with this thread in network namespace `nsfd`; only this thread moves (setns(2))."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if os.fstat(own).st_ino == os.fstat(nsfd).st_ino:
            yield
            return
        if _libc.setns(nsfd, CLONE_NEWNET) != 0:
            raise _errno_failure(ctypes.get_errno(), "setns into the socket's namespace")
        try:
            yield
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:  # cannot happen with the rights we just used
                raise OSError(ctypes.get_errno(), "setns back to tcpwatchd's own namespace failed")
    finally:
        os.close(own)


@contextlib.contextmanager
def _diag_socket() -> Iterator[socket.socket]:
    # The namespace of a netlink socket is fixed when it is created (the creating thread's).
    diag = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 4)  # NETLINK_SOCK_DIAG
    try:
        diag.settimeout(2.0)
        diag.bind((0, 0))
        yield diag
    finally:
        diag.close()


NLMSG_ERROR, SOCK_DESTROY = 2, 21  # linux/netlink.h, linux/sock_diag.h
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
_NLMSGHDR = struct.Struct("=IHHII")
_REQ_HEAD = struct.Struct("=BBBxI")  # inet_diag_req_v2: family, protocol, ext, pad, states
_PORTS = struct.Struct("!HH")  # sockid: sport, dport, big-endian
_TAIL = struct.Struct("=III")  # sockid: if, cookie[0] (low 32 bits), cookie[1] (high)


def destroy_request(
    family: int, local: tuple[str, int], remote: tuple[str, int], cookie: int, seq: int = 1
) -> bytes:
    """nlmsghdr + inet_diag_req_v2 for SOCK_DESTROY of exactly one TCP socket (what `ss -K` sends).

    >>> len(destroy_request(socket.AF_INET, ("198.18.1.1", 7100), ("198.18.1.2", 40000), 4097))
    72
    """
    body = (
        _REQ_HEAD.pack(family, socket.IPPROTO_TCP, 0, 0xFFFFFFFF)
        + _PORTS.pack(local[1], remote[1])
        + _address(family, local[0])
        + _address(family, remote[0])
        + _TAIL.pack(0, cookie & 0xFFFFFFFF, cookie >> 32)
    )
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body


def _address(family: int, text: str) -> bytes:
    return socket.inet_pton(family, text).ljust(16, b"\0")


def _ack(reply: bytes) -> Failure | None:
    """The kernel's NLMSG_ERROR ack: error 0 is success, else a negative errno."""
    if len(reply) < _NLMSGHDR.size + 4:
        return Failure(Refusal.ERROR, f"SOCK_DESTROY: short reply of {len(reply)} bytes")
    _len, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(reply)
    if kind != NLMSG_ERROR:
        return Failure(Refusal.ERROR, f"SOCK_DESTROY: unexpected reply type {kind}")
    (code,) = struct.unpack_from("=i", reply, _NLMSGHDR.size)
    return None if code == 0 else refusal_for(-code, "SOCK_DESTROY")


class SystemOps:
    """The real operations on this host, for `prober.Prober` (which sees them as `ProbeOps`)."""

    def __init__(self, proc_root: str = "/proc") -> None:
        self._proc_root = proc_root
        self._seq = 0

    def read_status(self, target: Target) -> SocketStatus | Failure:
        return read_status(target, self._proc_root)

    def set_keepalive(self, target: Target, wanted: KeepaliveOptions) -> SocketStatus | Failure:
        return set_keepalive(target, wanted, self._proc_root)

    def holds(self, target: Target) -> bool:
        return holds_socket(target, self._proc_root)

    def destroy(self, target: Target, sock: Socket) -> Failure | None:
        if sock.cookie is None:
            return Failure(Refusal.ERROR, "SOCK_DESTROY needs the socket cookie (netlink source)")
        self._seq += 1
        request = destroy_request(
            int(sock.family),
            (sock.local_address, sock.local_port),
            (sock.remote_address, sock.remote_port),
            sock.cookie,
            self._seq,
        )
        return destroy(target, request, self._proc_root)
