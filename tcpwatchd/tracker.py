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

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from tcpwatchd.columns import UNCONNECTED, ConnKey, Key, four_tuple, object_key
from tcpwatchd.conncounts import (
    ConnectionCounts,
    Opened,
    attribute_to_listeners,
    born_time_wait,
    events_counted,
)
from tcpwatchd.fd_forecast import FdTrends, Sample
from tcpwatchd.model import Owner, ProcessLabels, Socket, TcpState
from tcpwatchd.openings import OpeningHistory, OpeningsView, OpeningWindows
from tcpwatchd.readers import QueueFill, counter_deltas, queue_fills, reading_since
from tcpwatchd.rekey import rekeyed
from tcpwatchd.scope import Scope
from tcpwatchd.snapshot import Snapshot
from tcpwatchd.table import SocketTable

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
class TrackedPoll:
    """The tracker's view after one poll: the snapshot plus history. Detectors read only this."""

    snapshot: Snapshot
    poll: int
    now: float  # the snapshot's monotonic time
    tracks: Mapping[Key, Track]
    opened: tuple[Opened, ...]  # first seen in this poll
    openings: OpeningsView  # openings per (netns, peer, service port), sub-poll ones included
    closed: int  # identities that disappeared since the previous poll
    opened_totals: Mapping[ProcessLabels, int]  # process -> connections opened since start (a counter)
    unchanged: bool = False  # same sockets, states, inodes and timers as the previous poll
    scope: Scope | None = None  # set by the report for one detector run (see scope.py); None: all sockets
    closed_totals: Mapping[ProcessLabels, int] = field(default_factory=lambda: MappingProxyType({}))
    fd_samples: Mapping[int, tuple[Sample, ...]] = field(default_factory=lambda: MappingProxyType({}))
    consumed: bool = True  # False: the socket sources failed, the tracks are the previous poll's
    # kernel counter -> its rise since the previous poll that had it (absent on the first poll)
    counter_deltas: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    # connections with unread data whose application read some since the previous poll (slow readers)
    reading: frozenset[Key] = frozenset()
    queue_fills: Mapping[Key, QueueFill] = field(default_factory=lambda: MappingProxyType({}))  # listeners

    def track_of(self, sock: Socket) -> Track:
        return self.tracks[connection_key(sock)]

    def track_at(self, row: int) -> Track:
        """The track of the snapshot's socket at `row`."""
        return self.tracks[self.snapshot.sockets.column("key")[row]]

    def owner_of(self, sock: Socket) -> Owner | None:
        return self.snapshot.owner_of(sock)


class Tracker:
    """Follows connections from snapshot to snapshot. Not thread-safe: one poller feeds it."""

    def __init__(self, history_seconds: float = 900.0, windows: OpeningWindows | None = None) -> None:
        self._tracks: dict[Key, Track] = {}
        self._structure: tuple[list[Any], ...] = ()
        self._unread: frozenset[Key] = frozenset()
        self._requests: dict[ConnKey, Key] = {}  # 4-tuple -> key of the request sockets last seen
        windows = windows or OpeningWindows()
        self._openings = OpeningHistory(replace(windows, keep_seconds=history_seconds))
        self._counts = ConnectionCounts(self._openings)
        self._fds = FdTrends()
        self._previous: Snapshot | None = None  # the last consumed poll
        self._counters: Mapping[str, int] = {}
        self._copied: dict[Key, int] = {}  # unread connections -> bytes the application has read
        self._reading: frozenset[Key] = frozenset()
        self._fills: Mapping[Key, QueueFill] = MappingProxyType({})  # listeners with a backlog
        self._poll = 0
        self._consumed = 0  # polls whose sockets were read (a poll whose socket sources failed is not)

    def set_history(self, seconds: float, windows: OpeningWindows | None = None) -> None:
        """How long a quiet peer's openings are remembered (the longest detector window needs), and the
        windows the opening history counts in (the storm detector's)."""
        self._openings.configure(replace(windows or self._openings.windows, keep_seconds=seconds))

    def update(self, snap: Snapshot) -> TrackedPoll:
        self._poll += 1
        now = snap.monotonic
        self._openings.observe(now)
        if snap.sockets_failed:  # keep every track: an empty table is no news about connections
            self._counts.count_events(snap, self._poll)
            return self._view(snap, (), 0, unchanged=False, consumed=False)
        if self._previous is not None and self._tracks:
            self._tracks = rekeyed(self._tracks, self._previous.sockets, snap.sockets)
        table = snap.sockets
        keys = table.column("key")
        structure = table.structure()
        unread = frozenset(map(keys.__getitem__, table.unread_rows()))
        unchanged = self._consumed > 0 and structure == self._structure and unread == self._unread
        opened: list[Opened] = []
        closed = 0
        if not unchanged:
            old = self._tracks
            self._tracks = _Rebuild(self, snap, unread).run(opened)
            gone = old.keys() - self._tracks.keys()
            closed = len(gone)
            if gone and self._previous is not None:
                born_tw = {k for k in gone if born_time_wait(old[k])} if events_counted(snap) else set()
                self._counts.count_gone(self._previous, gone - born_tw)
            self._structure, self._unread = structure, unread
        if any(not o.pid for o in opened):
            opened = attribute_to_listeners(snap, opened)
        self._note_reading(table)
        self._fills = MappingProxyType(queue_fills(table, self._fills, now))
        self._counts.count_openings(snap, opened)
        self._counts.count_events(snap, self._poll)
        self._consumed += 1
        self._previous = snap
        return self._view(snap, tuple(opened), closed, unchanged=unchanged, consumed=True)

    def _note_reading(self, table: SocketTable) -> None:
        self._reading, self._copied = reading_since(table, self._copied)

    def _view(
        self, snap: Snapshot, opened: tuple[Opened, ...], closed: int, *, unchanged: bool, consumed: bool
    ) -> TrackedPoll:
        samples = {(f.pid, f.start_time): (f.at, f.open_fds) for f in snap.process_facts.values()}
        deltas, self._counters = counter_deltas(self._counters, snap.kernel_counters)
        return TrackedPoll(
            snapshot=snap,
            poll=self._poll,
            now=snap.monotonic,
            tracks=MappingProxyType(self._tracks),
            opened=opened,
            openings=self._openings.view(snap.monotonic),
            closed=closed,
            opened_totals=self._counts.opened(),
            unchanged=unchanged,
            closed_totals=self._counts.closed(),
            fd_samples=MappingProxyType(self._fds.update(samples)),
            consumed=consumed,
            counter_deltas=MappingProxyType(deltas),
            reading=self._reading if consumed else frozenset(),
            queue_fills=self._fills,
        )


class _Rebuild:
    """One pass over a changed snapshot: continue, restart or start the track of every socket."""

    def __init__(self, tracker: Tracker, snap: Snapshot, unread: frozenset[Key]) -> None:
        self.tracker, self.snap, self.unread = tracker, snap, unread
        self.now, self.poll, self.first = snap.monotonic, tracker._poll, tracker._consumed == 0
        self.events = events_counted(snap)
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
        if not (state == TcpState.TIME_WAIT and self.events):
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
        remote_port=sock.remote_port,
        netns=sock.netns,
    )
