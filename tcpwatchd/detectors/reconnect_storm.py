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

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from types import MappingProxyType

from pydantic import Field

from tcpwatchd.detectors.base import (
    Context,
    Detail,
    Finding,
    Kind,
    Outcome,
    endpoint,
    owned_finding,
    peer_address,
)
from tcpwatchd.detectors.registry import DetectorSpec, KindSpec, register
from tcpwatchd.model import NOBODY, Owner
from tcpwatchd.sections import DetectorSettings
from tcpwatchd.snapshot import listener_owners, pod_labels
from tcpwatchd.tracker import Opened, TrackedPoll

RECONNECT_STORM = Kind("reconnect_storm")


class ReconnectStormConfig(DetectorSettings):
    window_seconds: float = Field(300.0, gt=0)
    min_new_connections: int = Field(10, ge=2)


@dataclass(frozen=True, slots=True)
class Burst:
    """The openings from one peer address to one local port inside the window."""

    peer: str
    local_port: int
    netns: int  # the network namespace of the local port (model.Socket.netns)
    count: int
    first_at: float
    owner: Owner | None  # the newest opening's owner, None when none was seen


def detect_reconnect_storm(tracked: TrackedPoll, cfg: ReconnectStormConfig, ctx: Context) -> Outcome:
    horizon = tracked.now - cfg.window_seconds
    listeners = listener_owners(tracked.snapshot)
    findings = []
    for burst in _bursts(o for o in tracked.recent_opened if o.at > horizon):
        if burst.count >= cfg.min_new_connections:
            listener = listeners.get((burst.netns, burst.local_port))
            findings.append(_finding(tracked, burst, listener, cfg.window_seconds))
    # The gauge counts storming peers per process; one peer can storm several ports of one process.
    peers = Counter(labels for labels, _, _peer in {(f.labels, f.netns, f.peer) for f in findings})
    counts = {(RECONNECT_STORM, process): n for process, n in peers.items()}
    return Outcome(findings=tuple(findings), counts=MappingProxyType(counts))


def _bursts(openings: Iterable[Opened]) -> list[Burst]:
    bursts: dict[tuple[str, int, int], Burst] = {}
    for o in openings:  # oldest first
        key = (peer_address(o.remote_address), o.local_port, o.netns)
        prev = bursts.get(key)
        owner = o.owner if o.owner or prev is None else prev.owner
        bursts[key] = Burst(
            peer=key[0],
            local_port=o.local_port,
            netns=o.netns,
            count=(prev.count if prev else 0) + 1,
            first_at=prev.first_at if prev else o.at,
            owner=owner,
        )
    return list(bursts.values())


def _finding(tracked: TrackedPoll, burst: Burst, listener: Owner | None, window: float) -> Finding:
    return owned_finding(
        RECONNECT_STORM,
        listener or burst.owner,
        endpoint("*", burst.local_port),
        endpoint(burst.peer, "*"),
        burst.peer,
        tracked.now - burst.first_at,
        (Detail("new_connections", burst.count), Detail("window_seconds", window)),
        netns=burst.netns,
        nobody=pod_labels(tracked.snapshot).get(burst.netns, NOBODY),
    )


SPEC = register(
    DetectorSpec(
        name="reconnect_storm",
        settings=ReconnectStormConfig,
        detect=detect_reconnect_storm,
        kinds=(
            KindSpec(
                RECONNECT_STORM,
                "tcpwatchd_reconnect_storm_peers",
                "Peer addresses that opened at least detect.reconnect_storm.min_new_connections connections "
                "to one of the process's ports within detect.reconnect_storm.window_seconds.",
                "6fed03c2347d443b83a9e164d1461048",
            ),
        ),
        remembers_openings=lambda cfg: cfg.window_seconds,
    )
)
