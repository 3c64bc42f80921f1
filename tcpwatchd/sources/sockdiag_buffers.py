"""Receive buffers for sock_diag dumps, reused from one dump to the next.

A dump is received into a fixed-size buffer, decoded and compacted (sockdiag_compact) each time the buffer
fills, then received into again: no table keeps a view of it. So a buffer outlives its dump, and the next
dump writes into pages already faulted in (a 100k-socket IPv4 dump takes 0.097 s into fresh maps, 0.081 s
into touched ones, on the benchmark machine).

One pool per process (SHARED), not one per reader: a reader per watched network namespace (sources.nsdiag)
dumps one family at a time on the poller thread, and a hundred namespaces must not hold a hundred buffers.
A buffer is lent to one dump at a time (the IPv6 dump runs on a helper thread: it takes its own), and at most
`keep` idle buffers are kept; a dump that finds none idle maps a new one.

    >>> pool = BufferPool(chunk=1 << 16, recv=1 << 14)
    >>> with pool.buffer() as buf:
    ...     len(buf)
    65536
    >>> pool.idle
    1
"""

from __future__ import annotations

import mmap
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# The kernel fills at most ~32 KiB per dump skb: netlink_recvmsg caps max_recvmsg_len, the size
# netlink_dump allocates, at SKB_WITH_OVERHEAD(32768) (net/netlink/af_netlink.c). Each recv is offered 8
# times that, so a reply is never truncated.
RECV_BUFFER = 256 << 10
# 2 MiB a buffer: ~4.5k sockets of ~400 bytes compacted at once, while they are still in the CPU's cache.
# The pool's touched pages stay resident between polls, so this is what a big dump costs at rest (two
# buffers); a 100k-socket dump compacts as fast through 1, 2 or 4 MiB buffers, slower through 8.
CHUNK = 2 << 20
KEEP = 2  # IPv4 and IPv6 of the own namespace at once; foreign namespaces dump one family at a time


class BufferPool:
    """Fixed-size anonymous maps lent to one dump at a time. `recv` is the most one recv may fill.

    Anonymous maps, not bytearrays: the kernel hands out zeroed pages as they are first written (a bytearray
    memsets all of it first), and pages a small dump never reaches cost nothing."""

    def __init__(self, chunk: int = CHUNK, recv: int = RECV_BUFFER, keep: int = KEEP) -> None:
        if chunk < recv:
            raise ValueError(f"a {chunk}-byte buffer cannot take a {recv}-byte receive")
        self.chunk, self.recv, self._keep = chunk, recv, keep
        self._idle: list[mmap.mmap] = []
        self._lock = threading.Lock()

    @property
    def idle(self) -> int:
        """Buffers waiting for a dump."""
        return len(self._idle)

    @contextmanager
    def buffer(self) -> Iterator[mmap.mmap]:
        """A buffer no other dump uses until this one gives it back (also on error)."""
        with self._lock:
            buf = self._idle.pop() if self._idle else None
        if buf is None:
            buf = mmap.mmap(-1, self.chunk, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        try:
            yield buf
        finally:
            with self._lock:
                if len(self._idle) < self._keep:
                    self._idle.append(buf)  # else dropped: unmapped once nothing refers to it


SHARED = BufferPool()
