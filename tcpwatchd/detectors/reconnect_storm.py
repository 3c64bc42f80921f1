"""Reconnect storm: one peer address opening many new connections to one local port in a short window.

A client stuck in a connect/fail/reconnect loop (a crash loop, a misconfigured pool, a health check gone
wild) shows up as a burst of short-lived connections. A connection counts as opened when tcpwatchd first
sees it after its own start, in any state but LISTEN (one that opened and closed between two polls is
first seen in TIME_WAIT, and still counts), so a restart of tcpwatchd never looks like a storm.

The tracker keeps openings for its history window (`Tracker.set_history`), which the poller sets to at
least `window_seconds`. A storm is reported under the process that listens on the port (the local
service); without a visible listener, under the newest opening's owner.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tcpwatchd.detectors.base import Context, Detail, Finding, Kind, Outcome, endpoint, peer_address, register
from tcpwatchd.model import Owner, TcpState
from tcpwatchd.tracker import Opened, TrackedPoll


@dataclass(frozen=True, slots=True)
class Burst:
    """The openings from one peer address to one local port inside the window."""

    peer: str
    local_port: int
    count: int
    first_at: float
    process: str  # the newest opening's owner, "" when none was seen
    pid: int


@register("reconnect_storm")
def detect_reconnect_storm(tracked: TrackedPoll, ctx: Context) -> Outcome:
    cfg = ctx.detect.reconnect_storm
    horizon = tracked.now - cfg.window_seconds
    listeners = _listeners(tracked)
    findings = []
    for burst in _bursts(o for o in tracked.recent_opened if o.at > horizon):
        if burst.count >= cfg.min_new_connections:
            findings.append(_finding(tracked, burst, listeners.get(burst.local_port), cfg.window_seconds))
    return Outcome(findings=tuple(findings))


def _bursts(openings: Iterable[Opened]) -> list[Burst]:
    bursts: dict[tuple[str, int], Burst] = {}
    for o in openings:  # oldest first
        key = (peer_address(o.remote_address), o.local_port)
        prev = bursts.get(key)
        process, pid = (o.process, o.pid) if o.process or prev is None else (prev.process, prev.pid)
        bursts[key] = Burst(
            peer=key[0],
            local_port=o.local_port,
            count=(prev.count if prev else 0) + 1,
            first_at=prev.first_at if prev else o.at,
            process=process,
            pid=pid,
        )
    return list(bursts.values())


def _listeners(tracked: TrackedPoll) -> dict[int, Owner]:
    """Local port -> the owner of a LISTEN socket on it (the service a storm hits)."""
    owners: dict[int, Owner] = {}
    table = tracked.snapshot.sockets
    for row in table.rows_in(TcpState.LISTEN):
        sock = table.socket(row)
        owner = tracked.owner_of(sock)
        if owner is not None:
            owners.setdefault(sock.local_port, owner)
    return owners


def _finding(tracked: TrackedPoll, burst: Burst, listener: Owner | None, window: float) -> Finding:
    return Finding(
        kind=Kind.RECONNECT_STORM,
        process=listener.name if listener else burst.process,
        pid=listener.pid if listener else burst.pid,
        unit=(listener.unit or listener.container) if listener else "",
        local=endpoint("*", burst.local_port),
        remote=endpoint(burst.peer, "*"),
        peer=burst.peer,
        age_seconds=max(0.0, tracked.now - burst.first_at),
        details=(Detail("new_connections", burst.count), Detail("window_seconds", window)),
    )
