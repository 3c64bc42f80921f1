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
import itertools
import mmap
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from tcpwatchd.errors import SourceUnavailable
from tcpwatchd.sources.netlink import NLMSG_DONE, NLMSG_ERROR, NLMSGHDR, SOCK_DIAG_BY_FAMILY, NetlinkError
from tcpwatchd.sources.sockdiag_bulk import BulkDump, parse_bulk
from tcpwatchd.sources.sockdiag_columns import AddressCache
from tcpwatchd.sources.sockdiag_msg import INET_DIAG_INFO
from tcpwatchd.table import SocketTable

T = TypeVar("T")
NETLINK_SOCK_DIAG = 4  # linux/netlink.h
NLM_F_REQUEST, NLM_F_ROOT, NLM_F_MATCH = 0x1, 0x100, 0x200
NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH
ALL_STATES = 0xFFFFFFFF  # idiag_states bitmask: 1 << state for every state, NEW_SYN_RECV (12) included
# inet_diag_req_v2: family, protocol, ext (bit INET_DIAG_INFO - 1), pad, states, then a zeroed 48-byte sockid.
REQ_V2 = struct.Struct("=BBBxI48x")
RECV_BUFFER = 1 << 20  # the kernel fills at most ~32 KiB per dump skb (net/netlink/af_netlink.c)
CHUNK = 8 << 20  # receive buffer size; a dump of 100k sockets (about 400 bytes each) fills five
SO_RCVBUF_WANTED = 4 << 20
MAX_DUMP_SECONDS = 30.0  # a bound on the whole dump; a single recv is bounded by the socket timeout
# Errors that mean "this kernel cannot answer", so the caller should fall back to /proc.
UNAVAILABLE_ERRNOS = frozenset({errno.ENOENT, errno.EOPNOTSUPP, errno.EPROTONOSUPPORT, errno.EAFNOSUPPORT})


@dataclass(frozen=True, slots=True)
class SockDiagDump:
    sockets: SocketTable
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


class SockDiagReader:
    """Dumps every TCP socket of this process's network namespace into a SocketTable.

    Kept across polls for what is worth remembering: address texts. `open_socket(family)`, when given,
    supplies the socket each family's dump runs on (the reader closes it after the dump): sources.nsdiag
    passes duplicates of sockets it opened inside another network namespace. `parallel=False` dumps IPv6
    after IPv4 on the calling thread: for a container's few sockets a helper thread costs more than it
    saves, and a hundred namespaces must not start a hundred threads per poll.
    """

    def __init__(
        self,
        timeout: float = 5.0,
        open_socket: Callable[[int], socket.socket] | None = None,
        parallel: bool = True,
    ) -> None:
        self._timeout = timeout
        self._parallel = parallel
        self._addresses = AddressCache()
        self._open = open_socket or (lambda _family: open_sock_diag(self._timeout))

    def dump(self, families: tuple[int, ...] = (socket.AF_INET, socket.AF_INET6)) -> SockDiagDump:
        """IPv4 and IPv6 at once (with `parallel=False`: only `families`, one after the other). Raises
        SourceUnavailable when sock_diag cannot be used here,
        NetlinkError (an OSError) for a failed dump, TimeoutError when the kernel stops answering.

        Each family is dumped on its own netlink socket, IPv6 on a helper thread: filling the messages is
        kernel time (recv releases the GIL), so on a dual-stack host the two dumps share the cores.
        """
        notes: list[str] = []
        v6_notes: list[str] = []
        if self._parallel:
            v6 = _Background(lambda: self._family(socket.AF_INET6, 2, v6_notes))
            try:
                v4_result = self._family(socket.AF_INET, 1, notes)
            except BaseException:
                v6.wait()  # never leave a dump running behind an error
                raise
            v6_result = v6.result()
        else:
            v4_result = self._family(socket.AF_INET, 1, notes) if socket.AF_INET in families else None
            v6_result = self._family(socket.AF_INET6, 2, v6_notes) if socket.AF_INET6 in families else None
        parts: list[Any] = []
        skipped = 0
        for result in (v4_result, v6_result):
            if result is not None:
                parts.extend(result.parts)
                skipped += result.skipped
        return SockDiagDump(SocketTable(parts), skipped, (*notes, *v6_notes))

    def _family(self, family: int, seq: int, notes: list[str]) -> BulkDump | None:
        label = "IPv4" if family == socket.AF_INET else "IPv6"
        try:
            with self._open(family) as sock:
                chunks = self._receive(sock, family, seq, label)
            result = _joined([parse_bulk(chunk, family, self._addresses) for chunk in chunks])
        except NetlinkError as e:
            if e.errno not in UNAVAILABLE_ERRNOS:
                raise
            if family == socket.AF_INET:
                raise SourceUnavailable("sockdiag", f"tcp_diag refused the dump: {e}") from e
            notes.append(f"no IPv6 sockets from sock_diag ({errno.errorcode.get(e.errno, e.errno)})")
            return None
        if not result.done:
            raise NetlinkError(errno.EPIPE, f"{label} dump ended without NLMSG_DONE")
        if result.interrupted:
            notes.append(f"the {label} dump was interrupted by a table change: it may be inexact")
        return result

    def _receive(self, sock: socket.socket, family: int, seq: int, label: str) -> list[memoryview]:
        """Every reply of one dump, up to and including NLMSG_DONE, back to back in one or more buffers
        (a reply never straddles two)."""
        sock.sendall(request_bytes(family, seq))
        # Anonymous maps, not bytearrays: the kernel hands out zeroed pages as they are first written (a
        # bytearray memsets all of it first: 20 ms for 50 MB), pages never reached cost nothing, and a
        # map goes back to the system when the last table reading it is dropped. Fixed-size maps, so a
        # dump bigger than expected takes one more instead of copying what it has to a larger one.
        chunks: list[memoryview] = []
        buf = _anonymous(CHUNK)
        view, pos, recv, ends = memoryview(buf), 0, sock.recv_into, _ends_dump
        deadline = time.monotonic() + MAX_DUMP_SECONDS
        for rounds in itertools.count():
            if len(buf) - pos < RECV_BUFFER:  # full: go on in another buffer
                chunks.append(view[:pos])
                buf = _anonymous(CHUNK)
                view, pos = memoryview(buf), 0
            n = recv(view[pos : pos + RECV_BUFFER])
            if n == 0:
                raise NetlinkError(errno.EPIPE, f"{label} dump ended without NLMSG_DONE")
            last, pos = pos, pos + n
            if ends(buf, last, pos):
                chunks.append(view[:pos])
                return chunks
            if rounds % 64 == 63 and time.monotonic() > deadline:
                break
        raise NetlinkError(errno.ETIMEDOUT, f"{label} dump did not finish within {MAX_DUMP_SECONDS:.0f}s")


def _anonymous(size: int) -> mmap.mmap:
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


def _joined(chunks: list[BulkDump]) -> BulkDump:
    """One family's dump from its buffers' decodings, in order (only the last holds NLMSG_DONE)."""
    if len(chunks) == 1:
        return chunks[0]
    return BulkDump(
        parts=tuple(part for chunk in chunks for part in chunk.parts),
        done=chunks[-1].done,
        skipped=sum(chunk.skipped for chunk in chunks),
        interrupted=any(chunk.interrupted for chunk in chunks),
    )


class _Background(Generic[T]):
    """`run()` on a thread of its own, started at once; `result()` waits and returns or re-raises."""

    def __init__(self, run: Callable[[], T]) -> None:
        self._run = run
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="tcpwatchd-sockdiag", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            self._value = self._run()
        except BaseException as e:  # handed to the caller by result()
            self._error = e

    def wait(self) -> None:
        self._thread.join()

    def result(self) -> T:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return cast(T, self._value)


def _ends_dump(buf: mmap.mmap, start: int, end: int) -> bool:
    """Whether the reply just received (buf[start:end], whole messages) ends the dump: it closes with
    NLMSG_DONE, or it is an error. parse_bulk checks the framing; a DONE look-alike that is not one
    ends in a ParseError or a "no NLMSG_DONE" error, never in a silently short dump."""
    first_type = NLMSGHDR.unpack_from(buf, start)[1] if end - start >= NLMSGHDR.size else 0
    if first_type in (NLMSG_ERROR, NLMSG_DONE):
        return True
    if end - start < NLMSGHDR.size + 4:
        return False
    mlen, mtype, _flags, _seq, _pid = NLMSGHDR.unpack_from(buf, end - NLMSGHDR.size - 4)
    return bool(mtype == NLMSG_DONE and mlen == NLMSGHDR.size + 4)
