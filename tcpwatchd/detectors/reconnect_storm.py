"""Reconnect storm: a peer opening connections to one port far above its own baseline, or abandoning them.

What a storm looks like is a client stuck in a loop (a crash loop, a pool that reconnects on every
error, a reboot storm). What it must not look like is a healthy periodic client: a health check every
second, a proxy without upstream keepalive at a steady rate, Prometheus scraping every 1, 5 or 15 s.
Those open many connections too, but at their usual rate. So a peer (address, to one local port, in one
network namespace) is storming when either

- rate: it opened at least `min_new_connections` in the last `window_seconds`, at a rate at least
  `rate_factor` times its own baseline, and never below `rate_factor` x `min_baseline_per_second`. The
  baseline is the median of its rates over the coarse buckets of the `baseline_seconds` before the window
  (tracker, openings.py) that tcpwatchd observed: a rate that has held for half that span is the new
  normal, and a new peer (or a new tcpwatchd) is judged against the floor alone;
- abandoned: at least `min_abandoned` of its ESTABLISHED connections to the port have received nothing
  for `abandoned_idle_seconds` and are superseded by a newer opening from it (the phantom shape: it went
  away without closing, came back, and does so again).

Openings include the connections that opened and closed between two polls when destroy events are
available (tcpwatchd_connection_events_source), so a crash loop is seen whichever side closes first. A
storm is reported under the process that listens on the port; without a visible one, under the owner of
the peer's newest opening.
"""

from __future__ import annotations

from collections import Counter
from itertools import compress, repeat
from operator import gt
from types import MappingProxyType

from pydantic import Field

from tcpwatchd.detectors.base import (
    Context,
    Detail,
    Finding,
    Kind,
    Outcome,
    endpoint,
    judged_rows,
    judges_opening,
    owned_finding,
)
from tcpwatchd.detectors.registry import DetectorSpec, KindSpec, register
from tcpwatchd.model import NOBODY, Owner
from tcpwatchd.openings import PeerKey
from tcpwatchd.rowsets import first_polls, idle_established, on_ports, services
from tcpwatchd.sections import DetectorSettings
from tcpwatchd.snapshot import listener_owners, pod_labels
from tcpwatchd.tracker import TrackedPoll

RECONNECT_STORM = Kind("reconnect_storm")


class ReconnectStormConfig(DetectorSettings):
    window_seconds: float = Field(60.0, gt=0, le=3600)
    baseline_seconds: float = Field(3600.0, gt=0, le=86400)
    min_new_connections: int = Field(30, ge=2)
    rate_factor: float = Field(5.0, gt=1)
    min_baseline_per_second: float = Field(1.0, gt=0)
    abandoned_idle_seconds: float = Field(300.0, gt=0, le=86400)
    min_abandoned: int = Field(3, ge=1)


def detect_reconnect_storm(tracked: TrackedPoll, cfg: ReconnectStormConfig, ctx: Context) -> Outcome:
    view = tracked.openings
    findings: list[Finding] = []
    for key in view.active(cfg.window_seconds):
        recent = view.recent(key, cfg.window_seconds)
        if recent < cfg.min_new_connections or not _judged(tracked, key):
            continue
        baseline = view.baseline_per_second(key)
        rate = recent / cfg.window_seconds
        if rate >= cfg.rate_factor * max(baseline or 0.0, cfg.min_baseline_per_second):
            details = (
                Detail("reason", "rate"),
                Detail("new_connections", recent),
                Detail("window_seconds", cfg.window_seconds),
                Detail("rate_per_second", round(rate, 2)),
                Detail("baseline_per_second", -1.0 if baseline is None else round(baseline, 3)),
            )
            findings.append(_finding(tracked, key, details))
    for key, n in _abandoned(tracked, cfg).items():
        if n >= cfg.min_abandoned and not any(_same(f, key) for f in findings):
            why = (Detail("reason", "abandoned"), Detail("abandoned_connections", n))
            findings.append(_finding(tracked, key, why))
    # The gauge counts storming peers per process; one peer can storm several ports of one process.
    peers = Counter(labels for labels, _, _peer in {(f.labels, f.netns, f.peer) for f in findings})
    counts = {(RECONNECT_STORM, process): n for process, n in peers.items()}
    return Outcome(findings=tuple(findings), counts=MappingProxyType(counts))


def _abandoned(tracked: TrackedPoll, cfg: ReconnectStormConfig) -> Counter[PeerKey]:
    """Per peer: ESTABLISHED connections idle past abandoned_idle_seconds and superseded by a newer
    opening. A host full of idle pools has tens of thousands of idle rows: they are narrowed in C to those
    first seen before their peer's newest opening, and only those take a Python step."""
    out: Counter[PeerKey] = Counter()
    peers = tracked.openings.peers
    if not peers:
        return out
    table = tracked.snapshot.sockets
    rows = judged_rows(tracked, idle_established(table, cfg.abandoned_idle_seconds * 1000.0))
    rows = on_ports(table, rows, {(netns, port) for netns, _peer, port in peers})  # where peers opened
    keys = services(table, rows)
    newest_polls = map({key: peer.newest_poll for key, peer in peers.items()}.get, keys, repeat(0))
    firsts = first_polls(tracked, rows)
    data_ms, ack_ms = table.column("last_data_recv_ms"), table.column("last_ack_recv_ms")
    for row, key in compress(zip(rows, keys, strict=True), map(gt, newest_polls, firsts)):
        idle = min(data_ms[row], ack_ms[row]) / 1000.0
        if peers[key].newest_at > tracked.now - idle:
            out[key] += 1
    return out


def _local(key: PeerKey) -> str:
    return endpoint("*", key[2])


def _same(finding: Finding, key: PeerKey) -> bool:
    return finding.netns == key[0] and finding.peer == key[1] and finding.local == _local(key)


def _owner(tracked: TrackedPoll, key: PeerKey) -> Owner | None:
    """Who a storm on `key` is reported under: the port's listener in the peer's namespace, else the peer's
    newest opening's owner."""
    listener = listener_owners(tracked.snapshot).get((key[0], key[2]))
    peer = tracked.openings.newest(key)
    return listener or (peer.owner if peer else None)


def _judged(tracked: TrackedPoll, key: PeerKey) -> bool:
    """Whether this run (an [[override]] group, [ignore]; see scope.py) judges the peer's openings."""
    return judges_opening(tracked, _owner(tracked, key), key[2], key[1])


def _finding(tracked: TrackedPoll, key: PeerKey, details: tuple[Detail, ...]) -> Finding:
    age = tracked.now - tracked.openings.first_recent(key)
    return owned_finding(
        RECONNECT_STORM,
        _owner(tracked, key),
        _local(key),
        endpoint(key[1], "*"),
        key[1],
        age,
        details,
        netns=key[0],
        nobody=pod_labels(tracked.snapshot).get(key[0], NOBODY),
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
                "Peer addresses opening connections to one of the process's ports far above their own "
                "baseline rate (detect.reconnect_storm), or abandoning them without closing.",
                "6fed03c2347d443b83a9e164d1461048",
            ),
        ),
        remembers_openings=lambda cfg: max(cfg.window_seconds, cfg.abandoned_idle_seconds),
        opening_windows=lambda cfg: (cfg.window_seconds, cfg.baseline_seconds),
    )
)
