"""Aborting another process's TCP socket with SOCK_DESTROY (reap mode), as `ss -K` does.

SOCK_DESTROY (linux/sock_diag.h, net/core/sock_diag.c) needs CONFIG_INET_DIAG_DESTROY, CAP_NET_ADMIN in
the socket's network namespace, and a NETLINK_SOCK_DIAG socket opened in that namespace; SIOCGSKNS on a
duplicate of the owner's fd names the namespace, so no guessing from pids. Entering a foreign namespace
(setns) needs CAP_SYS_ADMIN; only the calling thread moves, and it moves back before returning.

Nothing here raises: every refusal comes back as a `Failure`.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import socket
import struct
from collections.abc import Iterator

from tcpwatchd.actions.outcome import Failure, Refusal, refusal_for
from tcpwatchd.actions.sockops import Refused, Target, duplicate, errno_failure

SIOCGSKNS = 0x894C  # linux/sockios.h: an fd for the socket's network namespace (Linux 4.9)
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


def destroy(target: Target, request: bytes, proc_root: str = "/proc") -> Failure | None:
    """Abort the owner's socket with SOCK_DESTROY in the socket's own network namespace.

    `request` is `destroy_request(...)`; the kernel finds the socket by its 4-tuple and checks the
    cookie, so a new connection that reused the 4-tuple is never hit. None on success.
    """
    try:
        with duplicate(target, proc_root) as (sock, _fd):
            nsfd = fcntl.ioctl(sock.fileno(), SIOCGSKNS)
        try:
            with _in_netns(nsfd), _diag_socket() as diag:
                diag.send(request)
                return _ack(diag.recv(4096))
        finally:
            os.close(nsfd)
    except Refused as r:
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
            raise errno_failure(ctypes.get_errno(), "setns into the socket's namespace")
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
