"""Connection openings per (namespace, peer address, service port), as time buckets: memory ∝ peers.

The tracker records every opening here (first seen in a dump, or a sub-poll connection a destroy event
revealed); the storm and phantom detectors read a frozen view. Per peer it keeps

- `fine`: counts in FINE buckets of window/FINE seconds: the openings of the last `window_seconds`;
- `coarse`: counts in COARSE buckets of baseline/COARSE seconds: the peer's own baseline rate;
- the newest opening (poll and time): all phantom's "superseded" needs.

So a peer costs two small tuples whatever its rate, a poll costs O(new openings + peers), never O(openings
in a window), and a peer with no opening for `keep_seconds` is forgotten. At most `max_peers` peers are
followed; openings of further peers are counted in `overflow` and otherwise ignored.
"""

from __future__ import annotations

import ipaddress
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from tcpwatchd.model import Owner


def peer_address(address: str) -> str:
    """A peer address as one key whichever socket family carried it.

    A dual-stack listener sees IPv4 peers as IPv4-mapped IPv6 (RFC 4291 2.5.5.2):
    '::ffff:198.18.0.2' -> '198.18.0.2'; other addresses are returned unchanged.
    """
    if not address.startswith("::ffff:"):
        return address
    try:
        mapped = ipaddress.IPv6Address(address).ipv4_mapped
    except ValueError:
        return address
    return str(mapped) if mapped is not None else address


PeerKey = tuple[int, str, int]  # (netns, peer address, service port on this host)
Buckets = tuple[tuple[int, int], ...]  # (bucket index, openings), oldest first
FINE = 12
COARSE = 12
MAX_PEERS = 20_000


@dataclass(frozen=True, slots=True)
class OpeningWindows:
    """How the history is kept: the storm window, its baseline span and when a quiet peer is forgotten."""

    window_seconds: float = 60.0
    baseline_seconds: float = 3600.0
    keep_seconds: float = 900.0
    max_peers: int = MAX_PEERS

    @property
    def fine_width(self) -> float:
        return self.window_seconds / FINE

    @property
    def coarse_width(self) -> float:
        return self.baseline_seconds / COARSE


@dataclass(frozen=True, slots=True)
class PeerHistory:
    """One peer's openings at one service port (immutable: an opening replaces it)."""

    fine: Buckets
    coarse: Buckets
    newest_poll: int  # the tracker's poll that saw the newest opening
    newest_at: float  # its monotonic time
    owner: Owner | None  # who held the newest opening (the listener's owner for one no process held)


def _bump(buckets: Buckets, index: int, n: int, oldest: int) -> Buckets:
    """Add n to bucket `index`, dropping buckets before `oldest`."""
    kept = [b for b in buckets if b[0] >= oldest]
    if kept and kept[-1][0] == index:
        kept[-1] = (index, kept[-1][1] + n)
    else:
        kept.append((index, n))
    return tuple(kept)


@dataclass(frozen=True, slots=True)
class OpeningsView:
    """The history as one poll sees it. `recent` and `baseline_per_second` work at bucket resolution.

    >>> v = OpeningsView(OpeningWindows(60.0, 600.0), observed_since=0.0, now=700.0)
    >>> v.recent((0, "198.18.0.2", 80))
    0
    """

    windows: OpeningWindows
    observed_since: float  # the tracker's first poll: nothing before it was seen
    now: float
    peers: Mapping[PeerKey, PeerHistory] = field(default_factory=lambda: MappingProxyType({}))
    overflow: int = 0  # openings not recorded because max_peers peers were followed (since start)

    def recent(self, key: PeerKey, seconds: float | None = None) -> int:
        """Openings within the last `seconds` (at most window_seconds, the default), to one fine bucket."""
        peer = self.peers.get(key)
        if peer is None:
            return 0
        width = self.windows.fine_width
        span = self.windows.window_seconds if seconds is None else min(seconds, self.windows.window_seconds)
        first = int(self.now // width) - max(1, round(span / width)) + 1
        return sum(n for index, n in peer.fine if index >= first)

    def first_recent(self, key: PeerKey) -> float:
        """The start of the oldest fine bucket holding an opening in the window (now when none)."""
        peer = self.peers.get(key)
        first = int(self.now // self.windows.fine_width) - FINE + 1
        indexes = [index for index, _n in peer.fine if index >= first] if peer else []
        return min(indexes) * self.windows.fine_width if indexes else self.now

    def active(self, seconds: float | None = None) -> list[PeerKey]:
        """The peers with an opening within the last `seconds` (default window_seconds)."""
        horizon = self.now - (self.windows.window_seconds if seconds is None else seconds)
        return [key for key, peer in self.peers.items() if peer.newest_at > horizon]

    def baseline_per_second(self, key: PeerKey) -> float | None:
        """The median opening rate of the coarse buckets before the window that tcpwatchd observed in
        full (empty ones count as 0); None when it observed none yet."""
        width = self.windows.coarse_width
        before = self.now - self.windows.window_seconds
        last = int(before // width) - 1  # the newest bucket that ends before the window
        first = max(last - COARSE + 1, int(-(-self.observed_since // width)))
        if last < first:
            return None
        peer = self.peers.get(key)
        counts = dict(peer.coarse) if peer else {}
        return statistics.median(counts.get(i, 0) / width for i in range(first, last + 1))

    def newest(self, key: PeerKey) -> PeerHistory | None:
        return self.peers.get(key)


class OpeningHistory:
    """The mutable side, owned by the tracker."""

    def __init__(self, windows: OpeningWindows | None = None) -> None:
        self._windows = windows or OpeningWindows()
        self._peers: dict[PeerKey, PeerHistory] = {}
        self._observed_since: float | None = None
        self._overflow = 0

    @property
    def windows(self) -> OpeningWindows:
        return self._windows

    def configure(self, windows: OpeningWindows) -> None:
        """New widths make the old buckets meaningless: they are dropped, the newest openings kept."""
        if (windows.window_seconds, windows.baseline_seconds) != (
            self._windows.window_seconds,
            self._windows.baseline_seconds,
        ):
            self._peers = {k: replace(p, fine=(), coarse=()) for k, p in self._peers.items()}
        self._windows = windows

    def observe(self, now: float) -> None:
        """A poll happened at `now` (the first one starts the observed span)."""
        if self._observed_since is None:
            self._observed_since = now

    def add(self, key: PeerKey, at: float, poll: int, n: int = 1, owner: Owner | None = None) -> None:
        w, peer = self._windows, self._peers.get(key)
        if peer is None and len(self._peers) >= w.max_peers:
            self._overflow += n
            return
        fw, cw = w.fine_width, w.coarse_width
        fine_at, coarse_at = int(at // fw), int(at // cw)
        fine = _bump(peer.fine if peer else (), fine_at, n, fine_at - FINE + 1)
        # Coarse buckets cover the baseline span before the window, plus the window itself.
        oldest = int((at - w.window_seconds) // cw) - COARSE
        coarse = _bump(peer.coarse if peer else (), coarse_at, n, oldest)
        if peer is not None and owner is None:
            owner = peer.owner
        self._peers[key] = PeerHistory(fine, coarse, poll, at, owner)

    def view(self, now: float) -> OpeningsView:
        """Forget peers quiet for keep_seconds, and freeze the rest for this poll."""
        horizon = now - self._windows.keep_seconds
        stale = [k for k, p in self._peers.items() if p.newest_at < horizon]
        for k in stale:
            del self._peers[k]
        since = self._observed_since if self._observed_since is not None else now
        return OpeningsView(self._windows, since, now, MappingProxyType(dict(self._peers)), self._overflow)
