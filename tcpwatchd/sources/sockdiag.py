"""TCP sockets from netlink sock_diag: the primary source (what `ss -tan` uses).

A NETLINK_SOCK_DIAG socket sees the network namespace of the process that opened it, exactly like
/proc/net/tcp: to watch another namespace, run in it (setns, `ip netns exec`). One dump per address
family, `struct inet_diag_req_v2` (linux/inet_diag.h) asking for every state and for INET_DIAG_INFO only.
State bit 12 (NEW_SYN_RECV) selects the request sockets of half-open handshakes, which the kernel then
reports with state SYN_RECV (3), as /proc/net/tcp does (inet_req_diag_fill, net/ipv4/inet_diag.c).
TIME_WAIT and request sockets carry no tcp_info. Reading needs no privilege for TCP; uid, inode and
tcp_info are reported for every socket of the namespace.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import socket
import struct
import time
from dataclasses import dataclass

from tcpwatchd.errors import SourceUnavailable
from tcpwatchd.model import Socket
from tcpwatchd.sources.sockdiag_parse import (
    INET_DIAG_INFO,
    NLMSGHDR,
    SOCK_DIAG_BY_FAMILY,
    DecodeCache,
    NetlinkError,
    decode_into,
)

NETLINK_SOCK_DIAG = 4  # linux/netlink.h
NLM_F_REQUEST, NLM_F_ROOT, NLM_F_MATCH = 0x1, 0x100, 0x200
NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH
ALL_STATES = 0xFFFFFFFF  # idiag_states bitmask: 1 << state for every state, NEW_SYN_RECV (12) included
# inet_diag_req_v2: family, protocol, ext (bit INET_DIAG_INFO - 1), pad, states, then a zeroed 48-byte sockid.
REQ_V2 = struct.Struct("=BBBxI48x")
RECV_BUFFER = 1 << 20  # the kernel fills at most ~32 KiB per dump skb (net/netlink/af_netlink.c)
SO_RCVBUF_WANTED = 4 << 20
MAX_DUMP_SECONDS = 30.0  # a bound on the whole dump; a single recv is bounded by the socket timeout
# Errors that mean "this kernel cannot answer", so the caller should fall back to /proc.
UNAVAILABLE_ERRNOS = frozenset({errno.ENOENT, errno.EOPNOTSUPP, errno.EPROTONOSUPPORT, errno.EAFNOSUPPORT})


@dataclass(frozen=True, slots=True)
class SockDiagDump:
    sockets: tuple[Socket, ...]
    skipped: int  # messages we could not represent
    notes: tuple[str, ...]  # e.g. "the IPv4 dump was interrupted by a table change"


def request_bytes(family: int, seq: int) -> bytes:
    """The dump request for one address family: nlmsghdr + inet_diag_req_v2."""
    body = REQ_V2.pack(family, socket.IPPROTO_TCP, 1 << (INET_DIAG_INFO - 1), ALL_STATES)
    header = NLMSGHDR.pack(NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
    return header + body


def open_sock_diag(timeout: float = 5.0) -> socket.socket:
    """A bound NETLINK_SOCK_DIAG socket; SourceUnavailable when the kernel or the sandbox refuses it."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG)
    except OSError as e:  # EPERM (seccomp), EAFNOSUPPORT / EPROTONOSUPPORT (no netlink or no sock_diag)
        raise SourceUnavailable("sockdiag", f"cannot open NETLINK_SOCK_DIAG: {e}") from e
    # Capped by net.core.rmem_max; dumps are paced by our reads anyway, so a refusal costs nothing.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SO_RCVBUF_WANTED)
    try:
        sock.settimeout(timeout)
        sock.bind((0, 0))
    except OSError as e:
        sock.close()
        raise SourceUnavailable("sockdiag", f"cannot bind NETLINK_SOCK_DIAG: {e}") from e
    return sock


def dump_tcp_sockets(timeout: float = 5.0) -> SockDiagDump:
    """Every TCP socket (IPv4 then IPv6) of this process's network namespace.

    Raises SourceUnavailable when sock_diag cannot be used here, NetlinkError (an OSError) for a failed
    dump, TimeoutError when the kernel stops answering.
    """
    dump = _Dump()
    # The decoder allocates two objects per socket and no cycles: without this, the collector would
    # rescan the growing result many times over (a quarter of the decode time at 20k sockets).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        with open_sock_diag(timeout) as sock:
            for seq, family in enumerate((socket.AF_INET, socket.AF_INET6), start=1):
                _dump_family(dump, sock, family, seq)
    finally:
        if gc_was_enabled:
            gc.enable()
    return SockDiagDump(tuple(dump.out), dump.skipped, tuple(dump.notes))


def _dump_family(dump: _Dump, sock: socket.socket, family: int, seq: int) -> None:
    try:
        dump.run(sock, family, seq)
    except NetlinkError as e:
        if e.errno not in UNAVAILABLE_ERRNOS:
            raise
        if family == socket.AF_INET:
            raise SourceUnavailable("sockdiag", f"tcp_diag refused the dump: {e}") from e
        dump.notes.append(f"no IPv6 sockets from sock_diag ({errno.errorcode.get(e.errno, e.errno)})")


class _Dump:
    """The state of one poll's dumps: the receive buffer and the decode cache serve both families."""

    def __init__(self) -> None:
        self.buf = bytearray(RECV_BUFFER)
        self.out: list[Socket] = []
        self.cache = DecodeCache()
        self.notes: list[str] = []
        self.skipped = 0

    def run(self, sock: socket.socket, family: int, seq: int) -> None:
        """Send one dump request and decode the replies until NLMSG_DONE."""
        label = "IPv4" if family == socket.AF_INET else "IPv6"
        sock.sendall(request_bytes(family, seq))
        view = memoryview(self.buf)
        deadline = time.monotonic() + MAX_DUMP_SECONDS
        interrupted = False
        while time.monotonic() < deadline:
            n = sock.recv_into(self.buf)
            if n == 0:
                raise NetlinkError(errno.EPIPE, f"{label} dump ended without NLMSG_DONE")
            chunk = decode_into(view[:n], self.out, self.cache)
            self.skipped += chunk.skipped
            interrupted = interrupted or chunk.interrupted
            if chunk.done:
                if interrupted:
                    self.notes.append(
                        f"the {label} dump was interrupted by a table change: it may be inexact"
                    )
                return
        raise NetlinkError(errno.ETIMEDOUT, f"{label} dump did not finish within {MAX_DUMP_SECONDS:.0f}s")
