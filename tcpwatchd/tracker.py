"""Connection identity across polls: first seen, time in the current state, time with unread data.

Identity is the 4-tuple, which the kernel keeps unique among connections (the established hash holds
ESTABLISHED..TIME_WAIT and request sockets alike), so a connection keeps its identity when it is
orphaned by close() (its inode drops to 0) or moves to TIME_WAIT. LISTEN and unconnected sockets can
share a local address (SO_REUSEPORT), so their identity also carries the inode. A 4-tuple reused by a
new connection (after TIME_WAIT, or with a different inode) starts a new identity.

The tracker is the only stateful stage: `update(snapshot)` returns a frozen `TrackedPoll` that detectors
read. Tracks that did not change are reused, so a steady-state poll allocates almost nothing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from tcpwatchd.model import Owner, Snapshot, Socket, TcpState, unread_bytes

ConnKey = tuple[int, str, int, str, int, int]

# Not connections: they share local addresses (so their identity carries the inode), and one first
# seen after start is not an opening.
_UNCONNECTED = frozenset({TcpState.LISTEN, TcpState.CLOSE})
_ENDED = frozenset({TcpState.TIME_WAIT, TcpState.CLOSE})


def connection_key(sock: Socket) -> ConnKey:
    """The identity of a socket across polls (see the module docstring)."""
    inode = sock.inode if sock.state in _UNCONNECTED else 0
    return (sock.family, sock.local_address, sock.local_port, sock.remote_address, sock.remote_port, inode)


@dataclass(frozen=True, slots=True)
class Track:
    """What the tracker knows of one connection beyond the current snapshot. Times are monotonic."""

    first_seen: float  # the poll that first saw it
    first_seen_poll: int  # 1 is tcpwatchd's first poll
    preexisting: bool  # seen in the first poll: open before tcpwatchd started, real age unknown
    state: TcpState
    state_since: float  # first poll that saw it in `state` (for preexisting ones: a lower bound)
    inode: int
    unread_since: float | None  # first poll of the current run of polls with unread data queued


@dataclass(frozen=True, slots=True)
class Opened:
    """A connection first seen after tcpwatchd's start (client or server side)."""

    at: float  # monotonic time of the poll that saw it first
    poll: int
    key: ConnKey
    remote_address: str
    local_port: int
    process: str  # owner's name, "" when no process held it yet (e.g. not yet accepted)
    pid: int  # 0 when unowned


@dataclass(frozen=True, slots=True)
class TrackedPoll:
    """The tracker's view after one poll: the snapshot plus history. Detectors read only this."""

    snapshot: Snapshot
    poll: int
    now: float  # the snapshot's monotonic time
    tracks: Mapping[ConnKey, Track]
    opened: tuple[Opened, ...]  # first seen in this poll
    recent_opened: tuple[Opened, ...]  # first seen within the tracker's history window, oldest first
    closed: int  # identities that disappeared since the previous poll
    opened_totals: Mapping[str, int]  # process name -> connections opened since start (a counter)

    def track_of(self, sock: Socket) -> Track:
        return self.tracks[connection_key(sock)]

    def owner_of(self, sock: Socket) -> Owner | None:
        return self.snapshot.owner_of(sock)


class Tracker:
    """Follows connections from snapshot to snapshot. Not thread-safe: one poller feeds it."""

    def __init__(self, history_seconds: float = 900.0) -> None:
        self._history_seconds = history_seconds
        self._tracks: dict[ConnKey, Track] = {}
        self._recent: deque[Opened] = deque()
        self._opened_totals: dict[str, int] = {}
        self._poll = 0

    def set_history(self, seconds: float) -> None:
        """How long `recent_opened` remembers openings (the longest detector window needs)."""
        self._history_seconds = seconds

    def update(self, snap: Snapshot) -> TrackedPoll:
        self._poll += 1
        poll, now, first = self._poll, snap.monotonic, self._poll == 1
        old = self._tracks
        new: dict[ConnKey, Track] = {}
        opened: list[Opened] = []
        for sock in snap.sockets:
            key = connection_key(sock)
            prev = old.get(key)
            if prev is not None and not _is_reused(prev, sock):
                track = _advance(prev, sock, now)
            else:
                track = _start(sock, now, poll, first)
                if not first and sock.state not in _UNCONNECTED:
                    opened.append(_opened(snap, sock, key, now, poll))
            new[key] = track
        if any(not o.pid for o in opened):
            opened = _attribute_to_listeners(snap, opened)
        closed = sum(1 for key in old if key not in new)
        self._tracks = new
        self._remember(opened, now)
        for o in opened:
            self._opened_totals[o.process] = self._opened_totals.get(o.process, 0) + 1
        return TrackedPoll(
            snapshot=snap,
            poll=poll,
            now=now,
            tracks=MappingProxyType(new),
            opened=tuple(opened),
            recent_opened=tuple(self._recent),
            closed=closed,
            opened_totals=MappingProxyType(dict(self._opened_totals)),
        )

    def _remember(self, opened: list[Opened], now: float) -> None:
        self._recent.extend(opened)
        horizon = now - self._history_seconds
        while self._recent and self._recent[0].at < horizon:
            self._recent.popleft()


def _is_reused(prev: Track, sock: Socket) -> bool:
    """True when the 4-tuple now belongs to a different, newer connection."""
    if prev.inode and sock.inode and prev.inode != sock.inode:
        return True
    return prev.state in _ENDED and sock.state not in _ENDED


def _start(sock: Socket, now: float, poll: int, first: bool) -> Track:
    return Track(
        first_seen=now,
        first_seen_poll=poll,
        preexisting=first,
        state=sock.state,
        state_since=now,
        inode=sock.inode,
        unread_since=now if unread_bytes(sock) > 0 else None,
    )


def _advance(prev: Track, sock: Socket, now: float) -> Track:
    """The same connection one poll later; returns `prev` itself when nothing it tracks changed."""
    queued = unread_bytes(sock) > 0
    unread_since = (prev.unread_since if prev.unread_since is not None else now) if queued else None
    # An inode that drops to 0 (orphaned by close()) is kept: it is still the same connection.
    inode = sock.inode or prev.inode
    if sock.state is prev.state and unread_since == prev.unread_since and inode == prev.inode:
        return prev
    return Track(
        first_seen=prev.first_seen,
        first_seen_poll=prev.first_seen_poll,
        preexisting=prev.preexisting,
        state=sock.state,
        state_since=prev.state_since if sock.state is prev.state else now,
        inode=inode,
        unread_since=unread_since,
    )


def _opened(snap: Snapshot, sock: Socket, key: ConnKey, now: float, poll: int) -> Opened:
    owner = snap.owner_of(sock)
    return Opened(
        at=now,
        poll=poll,
        key=key,
        remote_address=sock.remote_address,
        local_port=sock.local_port,
        process=owner.name if owner else "",
        pid=owner.pid if owner else 0,
    )


def _attribute_to_listeners(snap: Snapshot, opened: list[Opened]) -> list[Opened]:
    """Count an opening no process holds yet (still in the accept queue, or already TIME_WAIT on the
    server side) under the process listening on its local port: that is who the peer connected to."""
    listeners: dict[int, Owner] = {}
    for sock in snap.sockets:
        if sock.state is TcpState.LISTEN:
            owner = snap.owner_of(sock)
            if owner is not None:
                listeners.setdefault(sock.local_port, owner)
    out = []
    for o in opened:
        owner = listeners.get(o.local_port) if not o.pid else None
        out.append(replace(o, process=owner.name, pid=owner.pid) if owner else o)
    return out
