"""Every TCP socket freed, as it happens: sock_diag's destroy multicast groups, read once per poll.

The kernel multicasts one message per freed full socket to SKNLGRP_INET_TCP_DESTROY (1) and
SKNLGRP_INET6_TCP_DESTROY (3) (enum sknetlink_groups, include/uapi/linux/sock_diag.h) of the socket's
network namespace; subscribing needs no privilege (NL_CFG_F_NONROOT_RECV, net/core/sock_diag.c). The
queue is our socket's receive buffer: when it is full the kernel drops the event, counts it in the
socket's sk_drops (netlink_overrun, net/netlink/af_netlink.c) and reports ENOBUFS once. So memory is
bounded by SO_RCVBUF, a drain reads at most `max_messages`, and losses are counted, never fatal.

Measured (Linux 6.18): 50 connect-send-close cycles on loopback give 100 events, one per socket; a
socket that is not bound (port id 0) receives nothing, since the kernel's own port id is 0 too
(do_one_broadcast skips the sender's port id): a pre-made socket is bound before joining the groups.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import struct
from collections.abc import Callable, Container

from tcpwatchd.errors import ParseError, SourceUnavailable
from tcpwatchd.sources.destroy_parse import Aggregator, DestroyBatch, parse_destroy
from tcpwatchd.sources.netlink import NetlinkError
from tcpwatchd.sources.sockdiag_msg import DecodeCache

NETLINK_SOCK_DIAG = 4  # include/uapi/linux/netlink.h
SOL_NETLINK = 270  # include/linux/socket.h
NETLINK_ADD_MEMBERSHIP = 1  # include/uapi/linux/netlink.h
SKNLGRP_INET_TCP_DESTROY, SKNLGRP_INET6_TCP_DESTROY = 1, 3  # include/uapi/linux/sock_diag.h
SO_RCVBUFFORCE = 33  # asm-generic/socket.h: ignores net.core.rmem_max, needs CAP_NET_ADMIN
SO_MEMINFO = 55  # asm-generic/socket.h: u32[SK_MEMINFO_VARS], Linux 4.12+
SK_MEMINFO_DROPS = 8  # include/uapi/linux/sock_diag.h
# An event costs 1,280 bytes of receive buffer (skb truesize, measured on 6.18); the kernel doubles what
# we ask: 16 MiB asked holds ~26k events. Without CAP_NET_ADMIN, net.core.rmem_max caps it (~330 events
# at the default 212992).
RCVBUF_WANTED = 16 << 20
MAX_MESSAGES = 30_000  # per drain: ~0.4 s at the ~12 µs an event measured (decode + aggregate)
MAX_KEYS = 10_000  # distinct (side, local address, port, peer address) per drain
RECV_SIZE = 64 << 10  # one event is ~400 bytes; recv returns one message per call


class DestroyEventsUnavailable(SourceUnavailable):
    """The destroy groups cannot be joined here: fall back to polling alone (say so once).

    `errno` is the refusal's errno (EPERM from a sandbox, EPROTONOSUPPORT / ENOENT without sock_diag or
    tcp_diag), or None.
    """

    def __init__(self, reason: str, err: int | None = None) -> None:
        super().__init__("destroy_events", reason)
        self.errno = err


def open_netlink_sock_diag() -> socket.socket:
    """The default socket factory: a NETLINK_SOCK_DIAG socket in the caller's network namespace."""
    return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG)


def subscribe(sock: socket.socket, rcvbuf: int = RCVBUF_WANTED) -> int:
    """Join both TCP destroy groups on `sock` (bound first if it is not), make it non-blocking and
    enlarge its receive buffer; returns the buffer size the kernel granted. Raises
    DestroyEventsUnavailable (closing nothing: the caller owns `sock`)."""
    try:
        if sock.getsockname()[0] == 0:
            sock.bind((0, 0))  # the kernel picks our port id; an unbound socket receives no multicast
        for group in (SKNLGRP_INET_TCP_DESTROY, SKNLGRP_INET6_TCP_DESTROY):
            sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
    except OSError as e:
        raise DestroyEventsUnavailable(f"cannot join the sock_diag destroy groups: {e}", e.errno) from e
    sock.setblocking(False)
    for option in (SO_RCVBUFFORCE, socket.SO_RCVBUF):  # the second is capped by net.core.rmem_max
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, option, rcvbuf)
            break
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


def kernel_drops(sock: socket.socket) -> int | None:
    """Messages the kernel dropped for a full receive buffer so far (sk_drops), or None before 4.12."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, 4 * (SK_MEMINFO_DROPS + 1))
    except OSError:
        return None
    if len(raw) < 4 * (SK_MEMINFO_DROPS + 1):
        return None
    return int(struct.unpack_from("=I", raw, 4 * SK_MEMINFO_DROPS)[0])


class DestroySubscriber:
    """Owns one subscribed socket (one network namespace); `drain()` once per poll.

    >>> with DestroySubscriber() as events:  # doctest: +SKIP
    ...     batch = events.drain(listening={6379}, seen=tracker_cookies)
    """

    def __init__(
        self,
        factory: Callable[[], socket.socket] = open_netlink_sock_diag,
        *,
        rcvbuf: int = RCVBUF_WANTED,
        max_messages: int = MAX_MESSAGES,
        max_keys: int = MAX_KEYS,
        netns: int = 0,
    ) -> None:
        """`factory` opens the netlink socket in the namespace to watch; `netns` is that namespace's
        id in the socket table (Socket.netns: 0 for tcpwatchd's own), carried by every CloseKey."""
        try:
            sock = factory()
        except OSError as e:  # EPERM (seccomp), EAFNOSUPPORT / EPROTONOSUPPORT (no netlink, no sock_diag)
            raise DestroyEventsUnavailable(f"cannot open NETLINK_SOCK_DIAG: {e}", e.errno) from e
        try:
            self.rcvbuf = subscribe(sock, rcvbuf)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._max_messages, self._max_keys, self.netns = max_messages, max_keys, netns
        self._buf = bytearray(RECV_SIZE)
        self._drops = kernel_drops(sock) or 0

    def __enter__(self) -> DestroySubscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def fileno(self) -> int:
        """For a caller that wants to wake on events (select/poll); drain() never blocks either way."""
        return self._sock.fileno()

    def drain(self, listening: Container[int] = (), seen: Container[int] = ()) -> DestroyBatch:
        """Read what is queued (at most max_messages), aggregated. `listening`: the local ports of the
        LISTEN sockets (they decide the side); `seen`: the cookies the tracker knows (the sockets of the
        last two dumps), so that `unseen` counts the connections no poll saw."""
        agg = Aggregator(listening, seen, self._max_keys, self.netns)
        cache, view, recv = DecodeCache(), memoryview(self._buf), self._sock.recv_into
        skipped = overruns = reads = 0
        while reads < self._max_messages:
            try:
                n = recv(view)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    raise
                overruns += 1  # reported once per overflow; the queue goes on after it
                continue
            reads += 1
            try:
                for ev in parse_destroy(view[:n], cache):
                    agg.add(ev)
            except (ParseError, NetlinkError):
                skipped += 1
        drops = kernel_drops(self._sock)
        lost = 0
        if drops is not None:
            lost, self._drops = (drops - self._drops) & 0xFFFFFFFF, drops
        return agg.batch(skipped, lost, overruns, reads >= self._max_messages)
