"""The destroy-event subscriber on real sockets, in a private namespace, with the socket made inside it."""

from __future__ import annotations

import ctypes
import os
import subprocess
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from tcpwatchd.sources.destroy_events import DestroySubscriber, open_netlink_sock_diag
from tcpwatchd.sources.destroy_parse import CloseKey, DestroyBatch, Side
from tests.support.netns import REPO, NetNS, stop, wait_line

pytestmark = pytest.mark.integration
CLONE_NEWNET = 0x40000000
LOOPS = str(REPO / "tests" / "support" / "close_loops.py")


def in_namespace(name: str) -> Callable[[], object]:
    """A socket factory that opens the NETLINK_SOCK_DIAG socket inside namespace `name`: setns on a
    short-lived thread (only that thread moves; the socket keeps the namespace it was made in)."""

    def make() -> object:
        out: dict[str, object] = {}

        def run() -> None:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
                out["sock"] = open_netlink_sock_diag()
            except OSError as e:
                out["error"] = e
            finally:
                os.close(fd)

        thread = threading.Thread(target=run)
        thread.start()
        thread.join(timeout=10)
        if "error" in out:
            raise out["error"]  # type: ignore[misc]
        return out["sock"]

    return make


@dataclass
class Totals:
    events: int = 0
    lost: int = 0
    overruns: int = 0
    unconnected: int = 0
    overflow: int = 0
    max_keys_seen: int = 0
    closed: dict[CloseKey, int] = field(default_factory=dict)
    unseen: dict[CloseKey, int] = field(default_factory=dict)

    def add(self, b: DestroyBatch) -> None:
        self.events += b.events
        self.lost += b.lost
        self.overruns += b.overruns
        self.unconnected += b.unconnected
        self.overflow += b.overflow.closed
        self.max_keys_seen = max(self.max_keys_seen, len(b.by_key))
        for key, c in b.by_key.items():
            self.closed[key] = self.closed.get(key, 0) + c.closed
            self.unseen[key] = self.unseen.get(key, 0) + c.unseen


def drain_until(sub: DestroySubscriber, total: Totals, want: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while total.events + total.lost < want and time.monotonic() < deadline:
        total.add(sub.drain(listening={7000}))
        time.sleep(0.05)


@pytest.fixture
def ns() -> Iterator[NetNS]:
    with NetNS("tcpwev") as n:
        yield n


def run_loops(ns: NetNS, *args: str) -> subprocess.Popen[str]:
    child = ns.python(LOOPS, *args)
    wait_line(child, "READY")
    return child


@pytest.mark.parametrize("first", ["client", "server"])
def test_fifty_short_connections_give_one_event_per_socket(ns: NetNS, first: str) -> None:
    with DestroySubscriber(in_namespace(ns.name)) as sub:  # type: ignore[arg-type]
        child = run_loops(ns, "50", "7000", "1", first)
        wait_line(child, "DONE 50")
        stop(child)  # its listener closes: one more event, without a peer
        total = Totals()
        drain_until(sub, total, 101)
        time.sleep(0.3)
        total.add(sub.drain(listening={7000}))
    assert (total.events, total.lost, total.unconnected) == (101, 0, 1)
    accepted = CloseKey(Side.ACCEPTED, "127.0.0.1", 7000, "127.0.0.1")
    outgoing = CloseKey(Side.OUTGOING, "127.0.0.1", 7000, "127.0.0.1")
    assert total.closed == {accepted: 50, outgoing: 50}
    assert total.unseen == {accepted: 50, outgoing: 50}  # no poll ran: every one is sub-poll


def test_the_subscription_sees_only_its_own_namespace(ns: NetNS) -> None:
    with NetNS("tcpwev") as other, DestroySubscriber(in_namespace(other.name)) as sub:  # type: ignore[arg-type]
        child = run_loops(ns, "20", "7000")
        wait_line(child, "DONE 20")
        time.sleep(0.5)
        batch = sub.drain()
    assert batch.events == 0


def test_a_flood_keeps_each_drain_bounded_and_counts_every_event(ns: NetNS) -> None:
    n, sources, max_keys = 20_000, 2_000, 500
    with DestroySubscriber(in_namespace(ns.name), max_keys=max_keys, max_messages=5_000) as sub:  # type: ignore[arg-type]
        child = run_loops(ns, str(n), "7000", str(sources))
        total, slowest, capped = Totals(), 0.0, False
        tracemalloc.start()
        deadline = time.monotonic() + 120
        while total.events + total.lost < 2 * n + 1 and time.monotonic() < deadline:
            started = time.monotonic()
            batch = sub.drain(listening={7000})
            slowest = max(slowest, time.monotonic() - started)
            capped |= batch.more
            total.add(batch)
            if child.poll() is not None and not batch.events:
                time.sleep(0.05)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        started = time.monotonic()
        empty = sub.drain()
        empty_seconds = time.monotonic() - started
        stop(child)
    assert total.events + total.lost >= 2 * n  # every socket accounted for: received or counted lost
    assert total.max_keys_seen <= max_keys and total.overflow > 0
    assert capped  # at least one drain stopped at max_messages and left the rest for the next
    assert empty.events == 0 and empty_seconds < 0.05  # an empty queue returns at once
    assert slowest < 5.0
    assert peak < 8 << 20, f"a drain held {peak} bytes"
    print(f"flood: {total.events} events, {total.lost} lost, slowest drain {slowest:.3f}s, peak {peak} B")


def test_a_full_buffer_loses_events_counts_them_and_goes_on(ns: NetNS) -> None:
    with DestroySubscriber(in_namespace(ns.name), rcvbuf=16 << 10) as sub:  # type: ignore[arg-type]
        child = run_loops(ns, "2000", "7000")
        wait_line(child, "DONE 2000", timeout=60)
        stop(child)
        time.sleep(0.5)
        total = Totals()
        total.add(sub.drain(listening={7000}))
        drain_until(sub, total, 4001, timeout=5)
    assert total.lost > 0 and total.overruns >= 1
    assert total.events + total.lost == 4001
