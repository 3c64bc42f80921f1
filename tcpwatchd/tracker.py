"""Connection identity across polls: first seen, time in the current state, time with unread data.

Identity is the 4-tuple, which the kernel keeps unique among connections (the established hash holds
ESTABLISHED..TIME_WAIT and request sockets alike), so a connection keeps its identity when it is
orphaned by close() (its inode drops to 0) or moves to TIME_WAIT. LISTEN and unconnected sockets can
share a local address (SO_REUSEPORT), so their identity also carries the inode. A 4-tuple reused by a
new connection (after TIME_WAIT, or with a different inode) starts a new identity.

From sock_diag the identity is the kernel's socket cookie instead (table.Key), which a socket keeps when
orphaned and when it becomes TIME_WAIT; the one place it changes is a server-side handshake (the request
socket and the accepted socket are two kernel sockets), so a new socket whose 4-tuple was a request socket
in the previous poll continues that track instead of counting as a second opening.

The tracker is the only stateful stage: `update(snapshot)` returns a frozen `TrackedPoll` that detectors
read. It works on the snapshot's columns: when the identities, states, inodes and timers are exactly those
of the previous poll (and the same sockets hold unread data), the previous tracks are reused whole, without
a per-socket step; otherwise one pass rebuilds them, sharing one Track object among all the sockets whose
history is identical (all those of the first poll in one state, for instance).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from tcpwatchd.columns import UNCONNECTED, ConnKey, Key, four_tuple, object_key
from tcpwatchd.model import NOBODY, Owner, ProcessLabels, Socket, TcpState
from tcpwatchd.snapshot import Snapshot, listener_owners

_ENDED = frozenset({TcpState.TIME_WAIT, TcpState.CLOSE})


def connection_key(sock: Socket) -> Key:
    """The identity of a socket across polls (see the module docstring)."""
    return object_key(sock)


@dataclass(frozen=True, slots=True)
class Track:
    """What the tracker knows of one connection beyond the current snapshot. Times are monotonic."""

    first_seen: float  # the poll that first saw it
    first_seen_poll: int  # 1 is tcpwatchd's first poll
    preexisting: bool  # seen in the first poll: open before tcpwatchd started, real age unknown
    state: TcpState
    state_since: float  # first poll that saw it in `state` (for preexisting ones: a lower bound)
    inode: int  # for 4-tuple identities only (a new inode on the same 4-tuple is a new connection); else 0
    unread_since: float | None  # first poll of the current run of polls with unread data queued


@dataclass(frozen=True, slots=True)
class Opened:
    """A connection first seen after tcpwatchd's start (client or server side)."""

    at: float  # monotonic time of the poll that saw it first
    poll: int
    key: Key
    remote_address: str
    local_port: int
    owner: Owner | None  # None when no process held it yet (e.g. not yet accepted)
    netns: int = 0  # the network namespace it was seen in (model.Socket.netns)

    @property
    def process(self) -> str:
        return self.owner.name if self.owner else ""

    @property
    def pid(self) -> int:
        return self.owner.pid if self.owner else 0

    @property
    def labels(self) -> ProcessLabels:
        return self.owner.labels if self.owner else NOBODY


@dataclass(frozen=True, slots=True)
class TrackedPoll:
    """The tracker's view after one poll: the snapshot plus history. Detectors read only this."""

    snapshot: Snapshot
    poll: int
    now: float  # the snapshot's monotonic time
    tracks: Mapping[Key, Track]
    opened: tuple[Opened, ...]  # first seen in this poll
    recent_opened: tuple[Opened, ...]  # first seen within the tracker's history window, oldest first
    closed: int  # identities that disappeared since the previous poll
    opened_totals: Mapping[ProcessLabels, int]  # process -> connections opened since start (a counter)
    unchanged: bool = False  # same sockets, states, inodes and timers as the previous poll

    def track_of(self, sock: Socket) -> Track:
        return self.tracks[connection_key(sock)]

    def track_at(self, row: int) -> Track:
        """The track of the snapshot's socket at `row`."""
        return self.tracks[self.snapshot.sockets.column("key")[row]]

    def owner_of(self, sock: Socket) -> Owner | None:
        return self.snapshot.owner_of(sock)


class Tracker:
    """Follows connections from snapshot to snapshot. Not thread-safe: one poller feeds it."""

    def __init__(self, history_seconds: float = 900.0) -> None:
        self._history_seconds = history_seconds
        self._tracks: dict[Key, Track] = {}
        self._structure: tuple[list[Any], ...] = ()
        self._unread: frozenset[Key] = frozenset()
        self._requests: dict[ConnKey, Key] = {}  # 4-tuple -> key of the request sockets last seen
        self._recent: deque[Opened] = deque()
        self._opened_totals: dict[ProcessLabels, int] = {}
        self._poll = 0

    def set_history(self, seconds: float) -> None:
        """How long `recent_opened` remembers openings (the longest detector window needs)."""
        self._history_seconds = seconds

    def update(self, snap: Snapshot) -> TrackedPoll:
        self._poll += 1
        table, now = snap.sockets, snap.monotonic
        keys = table.column("key")
        structure = table.structure()
        unread = frozenset(map(keys.__getitem__, table.unread_rows()))
        unchanged = self._poll > 1 and structure == self._structure and unread == self._unread
        opened: list[Opened] = []
        closed = 0
        if not unchanged:
            old = self._tracks
            self._tracks = _Rebuild(self, snap, unread).run(opened)
            closed = len(old.keys() - self._tracks.keys())
            self._structure, self._unread = structure, unread
        if any(not o.pid for o in opened):
            opened = _attribute_to_listeners(snap, opened)
        self._remember(opened, now)
        for o in opened:
            self._opened_totals[o.labels] = self._opened_totals.get(o.labels, 0) + 1
        return TrackedPoll(
            snapshot=snap,
            poll=self._poll,
            now=now,
            tracks=MappingProxyType(self._tracks),
            opened=tuple(opened),
            recent_opened=tuple(self._recent),
            closed=closed,
            opened_totals=MappingProxyType(dict(self._opened_totals)),
            unchanged=unchanged,
        )

    def _remember(self, opened: list[Opened], now: float) -> None:
        self._recent.extend(opened)
        horizon = now - self._history_seconds
        while self._recent and self._recent[0].at < horizon:
            self._recent.popleft()


class _Rebuild:
    """One pass over a changed snapshot: continue, restart or start the track of every socket."""

    def __init__(self, tracker: Tracker, snap: Snapshot, unread: frozenset[Key]) -> None:
        self.tracker, self.snap, self.unread = tracker, snap, unread
        self.now, self.poll, self.first = snap.monotonic, tracker._poll, tracker._poll == 1
        self.shared: dict[tuple[int, bool, int], Track] = {}  # new tracks, shared when identical

    def run(self, opened: list[Opened]) -> dict[Key, Track]:
        table = self.snap.sockets
        keys, states, inodes = table.column("key"), table.column("state"), table.column("inode")
        if self.first and keys and isinstance(keys[0], int):
            return self._baseline(keys, states)
        old_get = self.tracker._tracks.get
        unread, now = self.unread, self.now
        requests = self.tracker._requests
        new: dict[Key, Track] = {}
        rows = zip(keys, states, inodes, map(old_get, keys), strict=True)
        for row, (key, state, inode, prev) in enumerate(rows):
            is_unread = key in unread
            if (
                prev is not None
                and prev.state == state
                and (prev.unread_since is not None) == is_unread
                and (not prev.inode or not inode or prev.inode == inode)
            ):
                new[key] = prev  # the common case: nothing this tracker follows has changed
                continue
            if prev is not None and not _is_reused(prev, state, inode):
                new[key] = _advance(prev, state, inode, is_unread, now)
                continue
            track = self._start(key, state, inode, is_unread, row, requests, opened)
            new[key] = track
        self.tracker._requests = {
            four_tuple(table.socket(row)): keys[row] for row in table.rows_in(TcpState.SYN_RECV)
        }
        return new

    def _baseline(self, keys: list[Any], states: list[int]) -> dict[Key, Track]:
        """The first poll, with cookie identities: one shared Track per state, assigned in C."""
        by_state = {state: self._shared(state, False, 0) for state in set(states)}
        new = dict(zip(keys, map(by_state.__getitem__, states), strict=True))
        for key in self.unread:
            new[key] = self._shared(new[key].state, True, 0)
        return new

    def _start(
        self,
        key: Key,
        state: int,
        inode: int,
        is_unread: bool,
        row: int,
        requests: Mapping[ConnKey, Key],
        opened: list[Opened],
    ) -> Track:
        own_inode = 0 if isinstance(key, int) else inode  # cookies are never reused
        if self.first:
            return self._shared(state, is_unread, own_inode)
        if state in UNCONNECTED:
            return self._shared(state, is_unread, own_inode)
        sock = self.snap.sockets.socket(row)
        handshake = requests.get(four_tuple(sock)) if requests else None
        before = self.tracker._tracks.get(handshake) if handshake is not None else None
        if before is not None:  # the accepted socket of a handshake seen as a request socket
            return _advance(before, state, own_inode, is_unread, self.now)
        opened.append(_opened(self.snap, sock, key, self.now, self.poll))
        return self._shared(state, is_unread, own_inode)

    def _shared(self, state: int, is_unread: bool, inode: int) -> Track:
        if inode:
            return _start(TcpState(state), inode, is_unread, self.now, self.poll, self.first)
        memo = (state, is_unread, inode)
        track = self.shared.get(memo)
        if track is None:
            track = self.shared[memo] = _start(TcpState(state), 0, is_unread, self.now, self.poll, self.first)
        return track


def _is_reused(prev: Track, state: int, inode: int) -> bool:
    """True when the 4-tuple now belongs to a different, newer connection."""
    if prev.inode and inode and prev.inode != inode:
        return True
    return prev.state in _ENDED and state not in _ENDED


def _start(state: TcpState, inode: int, is_unread: bool, now: float, poll: int, first: bool) -> Track:
    return Track(
        first_seen=now,
        first_seen_poll=poll,
        preexisting=first,
        state=state,
        state_since=now,
        inode=inode,
        unread_since=now if is_unread else None,
    )


def _advance(prev: Track, state: int, inode: int, is_unread: bool, now: float) -> Track:
    """The same connection one poll later; returns `prev` itself when nothing it tracks changed."""
    unread_since = (prev.unread_since if prev.unread_since is not None else now) if is_unread else None
    # An inode that drops to 0 (orphaned by close()) is kept: it is still the same connection.
    inode = (inode or prev.inode) if prev.inode else 0
    if state == prev.state and unread_since == prev.unread_since and inode == prev.inode:
        return prev
    return Track(
        first_seen=prev.first_seen,
        first_seen_poll=prev.first_seen_poll,
        preexisting=prev.preexisting,
        state=TcpState(state),
        state_since=prev.state_since if state == prev.state else now,
        inode=inode,
        unread_since=unread_since,
    )


def _opened(snap: Snapshot, sock: Socket, key: Key, now: float, poll: int) -> Opened:
    owner = snap.owner_of(sock)
    return Opened(
        at=now,
        poll=poll,
        key=key,
        remote_address=sock.remote_address,
        local_port=sock.local_port,
        owner=owner,
        netns=sock.netns,
    )


def _attribute_to_listeners(snap: Snapshot, opened: list[Opened]) -> list[Opened]:
    """Count an opening no process holds yet (still in the accept queue, or already TIME_WAIT on the
    server side) under the process listening on its local port: that is who the peer connected to."""
    listeners = listener_owners(snap)
    out = []
    for o in opened:
        owner = listeners.get((o.netns, o.local_port)) if not o.pid else None
        out.append(replace(o, owner=owner) if owner else o)
    return out
