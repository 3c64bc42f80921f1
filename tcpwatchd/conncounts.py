"""Connections opened and closed per process, sub-poll ones included; openings into the peer history.

Three ways a connection is counted, none twice:
- opened: first seen in a dump after tcpwatchd's first poll (any state but LISTEN/CLOSE, so one first
  seen in TIME_WAIT counts);
- closed: a connection identity that was in the previous dump and is gone from this one, under the owner
  it had there (or the listener's owner on its port, or "" when neither);
- opened and closed between two dumps: a destroy event whose cookie no dump showed (`unseen`, see
  sources/destroy_parse.py), under the listener's owner for the server side, "" for the client side
  (the kernel reports no owner for a freed socket). Without destroy events these are invisible.
Only the server side (the local port is a listening port) enters the per-peer history: a client's
openings scatter over ephemeral ports and would make memory grow with connections, not peers.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from itertools import compress
from types import MappingProxyType
from typing import Any

from tcpwatchd.columns import UNCONNECTED, Key
from tcpwatchd.facts import Side
from tcpwatchd.model import NOBODY, Owner, ProcessLabels, TcpState
from tcpwatchd.openings import OpeningHistory, peer_address
from tcpwatchd.snapshot import Snapshot, listener_owners, pod_labels, row_processes
from tcpwatchd.sources.destroy_parse import side_of


@dataclass(frozen=True, slots=True)
class Opened:
    """A connection first seen after tcpwatchd's start (client or server side)."""

    at: float  # monotonic time of the poll that saw it first
    poll: int
    key: Key
    remote_address: str
    local_port: int
    owner: Owner | None  # None when no process held it yet (e.g. not yet accepted)
    remote_port: int = 0
    netns: int = 0

    @property
    def process(self) -> str:
        return self.owner.name if self.owner else ""

    @property
    def pid(self) -> int:
        return self.owner.pid if self.owner else 0

    @property
    def labels(self) -> ProcessLabels:
        return self.owner.labels if self.owner else NOBODY


class ConnectionCounts:
    """Per-process counters since start (`opened`, `closed`) and what feeds the opening history."""

    def __init__(self, history: OpeningHistory) -> None:
        self.history = history
        self._opened: dict[ProcessLabels, int] = {}
        self._closed: dict[ProcessLabels, int] = {}
        self.sub_poll_total = 0  # connections only destroy events revealed

    def opened(self) -> Mapping[ProcessLabels, int]:
        return MappingProxyType(dict(self._opened))

    def closed(self) -> Mapping[ProcessLabels, int]:
        return MappingProxyType(dict(self._closed))

    def forget(self, keep: Collection[ProcessLabels]) -> None:
        """Drop the counters of series not in `keep` (a bounded-series policy decides which)."""
        self._opened = {k: v for k, v in self._opened.items() if k in keep}
        self._closed = {k: v for k, v in self._closed.items() if k in keep}

    def count_openings(self, snap: Snapshot, opened: Iterable[Opened]) -> None:
        """The openings first seen in `snap` (already attributed to listeners where no process held them)."""
        listening: Mapping[int, frozenset[int]] | None = None
        pods = pod_labels(snap)
        for o in opened:
            who = o.labels if o.owner else pods.get(o.netns, NOBODY)  # unowned in a pod: the pod's
            self._opened[who] = self._opened.get(who, 0) + 1
            listening = _listening(snap) if listening is None else listening
            if side_of(o.local_port, o.remote_port, listening.get(o.netns, frozenset())) is Side.ACCEPTED:
                key = (o.netns, peer_address(o.remote_address), o.local_port)
                self.history.add(key, o.at, o.poll, 1, o.owner)

    def count_gone(self, previous: Snapshot, gone: Collection[Key]) -> None:
        """Connections of `previous` whose identity is in `gone`."""
        table = previous.sockets
        keys, states, ports = table.column("key"), table.column("state"), table.column("local_port")
        spaces = table.column("netns")
        processes, listeners = row_processes(previous), listener_owners(previous)
        codes, labels = processes.codes, processes.labels
        for row in compress(range(len(keys)), map(gone.__contains__, keys)):
            if states[row] in UNCONNECTED:
                continue
            who = labels[codes[row]]
            listener = listeners.get((spaces[row], ports[row])) if not who.process else None
            if listener is not None:
                who = listener.labels
            self._closed[who] = self._closed.get(who, 0) + 1

    def count_events(self, snap: Snapshot, poll: int) -> None:
        """The sub-poll connections of this poll's destroy events."""
        batch = snap.connection_events.batch
        if batch is None:
            return
        listeners, pods = listener_owners(snap), pod_labels(snap)
        for key, counts in batch.by_key.items():
            if not counts.unseen:
                continue
            owner = listeners.get((key.netns, key.port)) if key.side is Side.ACCEPTED else None
            who = owner.labels if owner else pods.get(key.netns, NOBODY)
            self._add_both(who, counts.unseen)
            if key.side is Side.ACCEPTED:
                peer = (key.netns, peer_address(key.peer_address), key.port)
                self.history.add(peer, snap.monotonic, poll, counts.unseen, owner)
        if batch.overflow.unseen:
            self._add_both(NOBODY, batch.overflow.unseen)

    def _add_both(self, who: ProcessLabels, n: int) -> None:
        self._opened[who] = self._opened.get(who, 0) + n
        self._closed[who] = self._closed.get(who, 0) + n
        self.sub_poll_total += n


def _listening(snap: Snapshot) -> Mapping[int, frozenset[int]]:
    """netns -> its listening ports (a port listening in one namespace is not listening in another)."""
    table = snap.sockets
    ports, spaces = table.column("local_port"), table.column("netns")
    found: dict[int, set[int]] = {}
    for row in table.rows_in(TcpState.LISTEN):
        found.setdefault(spaces[row], set()).add(ports[row])
    return {netns: frozenset(p) for netns, p in found.items()}


def attribute_to_listeners(snap: Snapshot, opened: list[Opened]) -> list[Opened]:
    """Count an opening no process holds yet (still in the accept queue, or already TIME_WAIT on the
    server side) under the process listening on its local port in its namespace: that is who the peer
    connected to."""
    listeners = listener_owners(snap)
    out = []
    for o in opened:
        owner = listeners.get((o.netns, o.local_port)) if not o.pid else None
        out.append(replace(o, owner=owner) if owner else o)
    return out


def events_counted(snap: Snapshot) -> bool:
    """Destroy events count every full socket, once, by cookie. A TIME_WAIT socket that no dump saw as
    a full socket was counted by its socket's event (the kernel gives the TIME_WAIT socket another
    cookie): counting it again when first seen, or when it goes, would count that connection twice."""
    keys = snap.sockets.column("key")
    return snap.connection_events.batch is not None and bool(keys) and isinstance(keys[0], int)


def born_time_wait(track: Any) -> bool:
    """A tracker.Track that was TIME_WAIT from the poll that first saw it (after tcpwatchd's start)."""
    t = track
    return bool(t.state == TcpState.TIME_WAIT and t.state_since == t.first_seen and not t.preexisting)
