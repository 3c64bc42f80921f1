"""The taker's side of the destroy events: subscribe once, drain after each dump, count what was lost.

Drained right after the dump, with `seen` = the cookies of this dump and the previous one, so that a
destroy event whose cookie no dump showed is a connection that opened and closed between two dumps.
Where subscribing fails (no sock_diag, a sandbox), `mode` is "polling", `error` says why, and one
warning is logged; nothing is retried (a kernel or policy that refuses will refuse again).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from tcpwatchd.facts import DESTROY_EVENTS, POLLING, ConnectionEvents
from tcpwatchd.model import TcpState
from tcpwatchd.sources.destroy_events import DestroyEventsUnavailable, DestroySubscriber
from tcpwatchd.sources.netlink import NetlinkError
from tcpwatchd.table import SocketTable

log = logging.getLogger(__name__)


class _Keys:
    """A table's key column as a set, built only if an event asks (most polls have none to check)."""

    __slots__ = ("_keys", "_set")

    def __init__(self, keys: list[object]) -> None:
        self._keys, self._set = keys, None

    def __contains__(self, key: object) -> bool:
        if self._set is None:
            self._set = set(self._keys)  # type: ignore[assignment]
        return key in self._set  # type: ignore[operator]


class _Either:
    __slots__ = ("_a", "_b")

    def __init__(self, a: _Keys, b: _Keys) -> None:
        self._a, self._b = a, b

    def __contains__(self, key: object) -> bool:
        return key in self._a or key in self._b


class _All:
    """Every cookie counts as seen: /proc keys are 4-tuples, so no event can be told unseen."""

    def __contains__(self, key: object) -> bool:
        return True


class ConnectionEventSource:
    """Owns the subscriber of tcpwatchd's own namespace; `subscribe` makes it (tests give a refusing one)."""

    def __init__(self, subscribe: Callable[[], DestroySubscriber] | None = DestroySubscriber) -> None:
        self._subscriber: DestroySubscriber | None = None
        self._state = ConnectionEvents(mode=POLLING, error="destroy events are off")
        self._previous = _Keys([])
        if subscribe is None:
            return
        try:
            self._subscriber = subscribe()
        except DestroyEventsUnavailable as e:
            self._state = ConnectionEvents(mode=POLLING, error=str(e))
            log.warning(
                "connection events unavailable (%s): connections shorter than a poll are not counted", e
            )
            return
        self._state = ConnectionEvents(mode=DESTROY_EVENTS)

    def close(self) -> None:
        if self._subscriber is not None:
            self._subscriber.close()
            self._subscriber = None

    def drain(self, table: SocketTable) -> ConnectionEvents:
        """What ended since the last drain; in polling mode the unchanged state (no batch)."""
        keys = table.column("key")
        current = _Keys(keys)
        seen, self._previous = _Either(current, self._previous), current
        if self._subscriber is None:
            return self._state
        ports = table.column("local_port")
        listening = frozenset(ports[row] for row in table.rows_in(TcpState.LISTEN))
        if keys and not isinstance(keys[0], int):
            seen = _All()  # type: ignore[assignment]
        try:
            batch = self._subscriber.drain(listening, seen)
        except (OSError, NetlinkError) as e:  # the socket broke: fall back for good, say so once
            log.warning("connection events failed (%s): falling back to polling alone", e)
            self.close()
            self._state = ConnectionEvents(mode=POLLING, error=str(e))
            return self._state
        s = self._state
        self._state = replace(
            s,
            events_total=s.events_total + batch.events,
            lost_total=s.lost_total + batch.lost,
            overruns_total=s.overruns_total + batch.overruns,
            overflow_total=s.overflow_total + batch.overflow_keys,
        )
        return replace(self._state, batch=batch)
