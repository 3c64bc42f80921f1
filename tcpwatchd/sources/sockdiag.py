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
from tcpwatchd.sources.sockdiag_buffers import SHARED, BufferPool
from tcpwatchd.sources.sockdiag_bulk import BulkDump, parse_bulk
from tcpwatchd.sources.sockdiag_columns import AddressCache
from tcpwatchd.sources.sockdiag_compact import Compactor
from tcpwatchd.sources.sockdiag_msg import INET_DIAG_INFO
from tcpwatchd.table import SocketTable

T = TypeVar("T")
NETLINK_SOCK_DIAG = 4  # linux/netlink.h
NLM_F_REQUEST, NLM_F_ROOT, NLM_F_MATCH = 0x1, 0x100, 0x200
NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH
ALL_STATES = 0xFFFFFFFF  # idiag_states bitmask: 1 << state for every state, NEW_SYN_RECV (12) included
# inet_diag_req_v2: family, protocol, ext (bit INET_DIAG_INFO - 1), pad, states, then a zeroed 48-byte sockid.
REQ_V2 = struct.Struct("=BBBxI48x")
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

    Kept across polls for what is worth remembering: address texts, and receive buffers (`pool`: the
    process's shared one unless given; see sockdiag_buffers). `open_socket(family)`, when given,
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
        pool: BufferPool = SHARED,
    ) -> None:
        self._timeout = timeout
        self._parallel = parallel
        self._pool = pool
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
            with self._open(family) as sock, self._pool.buffer() as buf:
                result = self._receive(sock, buf, family, seq, label)
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

    def _receive(self, sock: socket.socket, buf: mmap.mmap, family: int, seq: int, label: str) -> BulkDump:
        """Every reply of one dump, up to and including NLMSG_DONE, decoded. Replies are received back to
        back into `buf`; each time it is full (a reply never straddles two fillings) and at the end, what
        it holds is decoded and compacted, and the next replies overwrite it."""
        sock.sendall(request_bytes(family, seq))
        compactor = Compactor(family, self._addresses)
        view, pos, recv, step, ends = memoryview(buf), 0, sock.recv_into, self._pool.recv, _ends_dump
        deadline = time.monotonic() + MAX_DUMP_SECONDS
        for rounds in itertools.count():
            if len(buf) - pos < step:  # full: compact what it holds, then receive into it again
                compactor.add(parse_bulk(view[:pos], family, self._addresses))
                pos = 0
            n = recv(view[pos : pos + step])
            if n == 0:
                raise NetlinkError(errno.EPIPE, f"{label} dump ended without NLMSG_DONE")
            last, pos = pos, pos + n
            if ends(buf, last, pos):
                compactor.add(parse_bulk(view[:pos], family, self._addresses))
                return compactor.finish()
            if rounds % 64 == 63 and time.monotonic() > deadline:
                break
        raise NetlinkError(errno.ETIMEDOUT, f"{label} dump did not finish within {MAX_DUMP_SECONDS:.0f}s")


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
