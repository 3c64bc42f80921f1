"""Phantom connections (half-open, superseded) and idle suspects.

A client that crashes or loses power sends no FIN: its server keeps an ESTABLISHED connection that will
never receive anything again, and without keepalive the kernel never probes it (RFC 9293 3.8.4 leaves
keepalive off by default). When the client comes back it connects afresh from the same address: the old
connection is then provably abandoned. DESIGN.md "Definitions" is the contract:

- idle: nothing received, neither data nor ACK, for `idle_seconds`, i.e. min(tcpi_last_data_recv,
  tcpi_last_ack_recv) (include/uapi/linux/tcp.h; only netlink sock_diag carries tcp_info);
- superseded: tcpwatchd saw a newer connection from the same peer address to the same local port,
  first seen in a later poll than the old one and after the old one's last received packet. The local
  port is a service port (listening, or where the opening history saw peers connect): our own outgoing
  connections share ephemeral ports across destinations and are never superseded. The order
  comes from tcpwatchd's own polls, so connections first seen in the same poll (or all open at its first
  poll) are never ordered, and a pool opened together is never a phantom of itself. The newer one is
  known only to the poll that saw it, so "after the last packet" is exact to one poll interval.
- an idle connection that is not superseded and has no timer armed (no keepalive; the retransmit and
  probe timers take precedence, see model.TimerKind) is a suspect, not a phantom.

Probing (`probe = "verify" | "reap"`, docs/probing.md, tcpwatchd/actions) settles them; its verdicts come
back as data (`Context.probed`, by cookie): a keepalive tcpwatchd armed does not hide a suspect, a
connection proven alive is not judged again until it has been idle for `idle_seconds` anew, and a proven
one says so in its finding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from operator import and_, gt, not_
from types import MappingProxyType
from typing import Literal

from pydantic import Field, field_validator, model_validator

from tcpwatchd.allowlist import parse_allowlist
from tcpwatchd.detectors.base import (
    Context,
    Detail,
    Finding,
    Kind,
    Outcome,
    mass_outcome,
    peer_address,
    row_finding,
)
from tcpwatchd.detectors.registry import DetectorSpec, KindSpec, register
from tcpwatchd.model import TcpState, TimerKind
from tcpwatchd.rowsets import FIRST_POLL, first_polls, idle_established, listening_ports, on_ports, tracks_of
from tcpwatchd.rowsets import services as services_of
from tcpwatchd.sections import DetectorSettings
from tcpwatchd.table import SocketTable
from tcpwatchd.tracker import TrackedPoll
from tcpwatchd.verdicts import Probed, Proof

PHANTOM = Kind("phantom")
IDLE_SUSPECT = Kind("idle_suspect")


class PhantomConfig(DetectorSettings):
    idle_seconds: float = Field(900.0, gt=0, le=86400)  # bounded: the tracker remembers this long
    # Probing (docs/probing.md): off changes nothing; verify restores the socket's options; reap also
    # destroys superseded phantoms that never answer.
    probe: Literal["off", "verify", "reap"] = "off"
    probe_allow: list[str] = Field(
        default_factory=list,
        description="Who may be probed: 'process:GLOB', 'unit:GLOB', 'pod:NS/NAME-GLOB'.",
    )
    # TCP_KEEPIDLE and TCP_KEEPINTVL accept 1..32767 s (MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL in net/tcp.h).
    probe_idle_seconds: int = Field(1, ge=1, le=32767)
    probe_interval_seconds: int = Field(1, ge=1, le=32767)
    # Unanswered probes that prove a peer unreachable; the armed TCP_KEEPCNT is 127 (the kernel's maximum),
    # so the kernel never gives up before tcpwatchd has judged.
    probe_budget: int = Field(5, ge=1, le=100)
    probe_max_per_poll: int = Field(8, ge=1, le=1024, description="New probes started per poll, host-wide.")
    probe_max_per_process: int = Field(2, ge=1, le=1024, description="Probes in flight at once per process.")
    probe_max_in_flight: int = Field(64, ge=1, le=4096, description="Probes in flight at once, host-wide.")
    dry_run: bool = False

    @field_validator("probe_allow")
    @classmethod
    def _allow_rules(cls, value: list[str]) -> list[str]:
        parse_allowlist(value)
        return value

    @model_validator(mode="after")
    def _probe_consistent(self) -> PhantomConfig:
        if self.probe == "off":
            return self
        if not self.probe_allow:
            raise ValueError(
                "probe is on but probe_allow is empty: list who may be probed ('process:*' for all)"
            )
        if self.probe_idle_seconds >= self.idle_seconds:
            raise ValueError(
                "probe_idle_seconds must be below idle_seconds, or a probe would wait for idleness"
            )
        if max(self.probe_max_per_poll, self.probe_max_per_process) > self.probe_max_in_flight:
            raise ValueError("probe_max_per_poll and probe_max_per_process cannot exceed probe_max_in_flight")
        return self


ServiceKey = tuple[int, str, int]  # (netns, peer address, local port): openings.PeerKey


@dataclass(frozen=True, slots=True)
class Sighting:
    """The newest connection tcpwatchd saw appear from one peer address at one local port."""

    poll: int
    at: float


def detect_phantom(tracked: TrackedPoll, cfg: PhantomConfig, ctx: Context) -> Outcome:
    limit_ms = cfg.idle_seconds * 1000.0
    table = tracked.snapshot.sockets
    data_ms = table.column("last_data_recv_ms")
    blind = 0
    # Some sockets carry no tcp_info (TIME_WAIT ones; all from /proc): -1. An unsigned array has none.
    if getattr(data_ms, "typecode", "q") not in _UNSIGNED and -1 in data_ms:
        blind = list(map(data_ms.__getitem__, table.rows_in(TcpState.ESTABLISHED))).count(-1)
    idle_rows = idle_established(table, limit_ms)  # usually few, often none
    degraded = ""
    if blind:
        degraded = (
            f"{blind} ESTABLISHED sockets carry no tcp_info (source {tracked.snapshot.source}): "
            "their idle time is unknown, so they are not judged"
        )
    if not idle_rows:
        return Outcome(degraded=degraded)
    verdicts, newest = _verdicts(tracked, cfg, ctx, idle_rows)

    def finding(kind: Kind) -> Callable[[int], Finding]:
        return lambda row: _finding(kind, tracked, row, newest, ctx)

    phantoms = mass_outcome(PHANTOM, tracked, verdicts[PHANTOM], finding(PHANTOM))
    suspects = mass_outcome(IDLE_SUSPECT, tracked, verdicts[IDLE_SUSPECT], finding(IDLE_SUSPECT))
    return Outcome(
        findings=phantoms.findings + suspects.findings,
        degraded=degraded,
        counts=MappingProxyType({**phantoms.counts, **suspects.counts}),
        rows=MappingProxyType({**phantoms.rows, **suspects.rows}),  # what probing starts from
    )


def _verdicts(
    tracked: TrackedPoll, cfg: PhantomConfig, ctx: Context, rows: Sequence[int]
) -> tuple[dict[Kind, list[int]], dict[ServiceKey, Sighting]]:
    """The idle rows judged phantom or suspect, from columns: a host full of idle pools has tens of
    thousands. Only rows with a newer sighting or a probe verdict take the per-row path."""
    table = tracked.snapshot.sockets
    keys, timers = table.column("key"), table.column("timer")
    # Only a connection to a service port can be superseded (a peer reconnects to the port it connected
    # to; our own outgoing connections' ports are ephemeral): the rest are judged by their timer alone.
    ports = _service_ports(tracked)
    served = on_ports(table, rows, ports)
    floor = min(first_polls(tracked, served), default=0)
    newest = _newest_sightings(tracked, served, ports, floor)
    # Only rows on a port with a newer sighting can be superseded (usually none): services for those alone.
    candidates = on_ports(table, served, {(netns, port) for netns, _peer, port in newest})
    services = services_of(table, candidates)
    firsts = first_polls(tracked, candidates)
    newest_polls = map({k: s.poll for k, s in newest.items()}.get, services, repeat(0))
    maybe = list(map(gt, newest_polls, firsts))
    service_of = dict(zip(compress(candidates, maybe), compress(services, maybe), strict=True))
    probed, off = ctx.probed, int(TimerKind.OFF)
    # The common case, in C: not superseded and no probe verdict, so the timer alone decides.
    suspects: list[int] = []
    if probed:
        slow = [(row, keys[row], service_of.get(row)) for row in rows]
    else:
        unarmed = map(off.__eq__, map(timers.__getitem__, rows))
        if service_of:
            unarmed = map(and_, map(not_, map(service_of.__contains__, rows)), unarmed)
        suspects = list(compress(rows, unarmed))
        slow = [(row, keys[row], service) for row, service in service_of.items()]
    verdicts: dict[Kind, list[int]] = {PHANTOM: [], IDLE_SUSPECT: suspects}
    for row, key, service in slow:
        verdict = probed.get(key) if isinstance(key, int) else None
        if _proven_alive_lately(verdict, tracked.now, cfg.idle_seconds):
            continue
        kind = _judge(tracked, row, service, timers[row], newest, verdict)
        if kind is not None:
            verdicts[kind].append(row)
    if slow and suspects:
        suspects.sort()  # table order, as listed
    return verdicts, newest


def _service_ports(tracked: TrackedPoll) -> set[tuple[int, int]]:
    """(netns, port) a peer connects to: listening now, or where the opening history saw it connect."""
    return listening_ports(tracked.snapshot.sockets) | {(ns, port) for ns, _p, port in tracked.openings.peers}


_UNSIGNED = frozenset("BHILQ")  # array typecodes that cannot hold -1
_CONNECTED = frozenset(set(TcpState) - {TcpState.LISTEN, TcpState.CLOSE})


def _idle_at(table: SocketTable, row: int) -> float:
    """Seconds since anything was received (both tcp_info figures are known for an idle row)."""
    received: int = min(table.column("last_data_recv_ms")[row], table.column("last_ack_recv_ms")[row])
    return received / 1000.0


def _proven_alive_lately(probed: Probed | None, now: float, idle_seconds: float) -> bool:
    """A peer that acknowledged a probe is not idle again until `idle_seconds` after the proof."""
    return probed is not None and probed.proof is Proof.ALIVE and now - probed.at < idle_seconds


def _judge(
    tracked: TrackedPoll,
    row: int,
    service: ServiceKey | None,  # None: not a connection to a service port
    timer: int,
    newest: dict[ServiceKey, Sighting],
    probed: Probed | None = None,
) -> Kind | None:
    track = tracked.track_at(row)
    data_ms, ack_ms = (
        tracked.snapshot.sockets.column("last_data_recv_ms"),
        tracked.snapshot.sockets.column("last_ack_recv_ms"),
    )
    idle = min(data_ms[row], ack_ms[row]) / 1000.0
    seen = newest.get(service) if service is not None else None
    if seen is not None and seen.poll > track.first_seen_poll and seen.at > tracked.now - idle:
        return PHANTOM
    # The keepalive timer of a probe in flight is tcpwatchd's, not the application's.
    ours = probed is not None and probed.proof is Proof.PROBING
    return IDLE_SUSPECT if timer == TimerKind.OFF or ours else None


def _finding(
    kind: Kind, tracked: TrackedPoll, row: int, newest: dict[ServiceKey, Sighting], ctx: Context
) -> Finding:
    """The finding for `row`, from columns (no Socket: see `_verdicts`)."""
    table = tracked.snapshot.sockets
    idle = _idle_at(table, row)
    key = table.column("key")[row]
    probed = ctx.probed.get(key) if isinstance(key, int) else None  # cookies (sock_diag) only
    proof = (Detail("probe", probed.proof.value),) if probed is not None else ()
    if kind == PHANTOM:
        remote = table.column("remote_address")[row]
        seen = newest[(table.column("netns")[row], peer_address(remote), table.column("local_port")[row])]
        keepalive = table.column("timer")[row] == TimerKind.KEEPALIVE
        details = (
            Detail("idle_seconds", round(idle, 1)),
            Detail("newer_connection_seen_seconds_ago", round(tracked.now - seen.at, 1)),
            Detail("keepalive", "on" if keepalive else "off"),
            *proof,
        )
        return row_finding(PHANTOM, tracked, row, idle, details)
    details = (Detail("idle_seconds", round(idle, 1)), *proof)
    return row_finding(IDLE_SUSPECT, tracked, row, idle, details)


def _newest_sightings(
    tracked: TrackedPoll, served: Sequence[int], ports: set[tuple[int, int]], floor: int
) -> dict[ServiceKey, Sighting]:
    """(namespace, peer address, service port) -> the newest connection tcpwatchd saw appear there after
    poll `floor` (the earliest first poll of the idle `served` rows: nothing older supersedes them), for
    the peers of those rows.

    Both the connections open now and the newest opening in the tracker's per-peer history (which may
    have closed since) count: a reconnect proves the peer came back even if it did not stay. Of the
    connections open now, only those first seen after `floor` (few) take a Python step.
    """
    newest: dict[ServiceKey, Sighting] = {}

    def see(key: ServiceKey, poll: int, at: float) -> None:
        if poll > floor and (key not in newest or newest[key].poll < poll):
            newest[key] = Sighting(poll, at)

    table = tracked.snapshot.sockets
    remotes = table.column("remote_address")
    peers = {peer_address(address) for address in set(map(remotes.__getitem__, served))}
    for key, history in tracked.openings.peers.items():
        if key[1] in peers:
            see(key, history.newest_poll, history.newest_at)
    # Only rows whose remote address is one of the peers' spellings (IPv4, or IPv4-mapped) are read.
    spellings = {address for address in set(remotes) if peer_address(address) in peers}
    states = table.column("state")
    rows = list(compress(range(len(table)), map(spellings.__contains__, remotes)))
    rows = on_ports(table, rows, ports)
    rows = list(compress(rows, map(_CONNECTED.__contains__, map(states.__getitem__, rows))))
    tracks = list(tracks_of(tracked, rows))
    after = list(map(floor.__lt__, map(FIRST_POLL, tracks)))
    recent = list(compress(tracks, after))
    for key, track in zip(services_of(table, list(compress(rows, after))), recent, strict=True):
        see(key, track.first_seen_poll, track.first_seen)
    return newest


SPEC = register(
    DetectorSpec(
        name="phantom",
        settings=PhantomConfig,
        detect=detect_phantom,
        kinds=(
            KindSpec(
                PHANTOM,
                "tcpwatchd_phantom_connections",
                "ESTABLISHED connections idle past detect.phantom.idle_seconds and superseded by a newer "
                "connection from the same peer address to the same local port.",
                "d72a45a215b448a891d2cf3e2409f4bf",
            ),
            KindSpec(
                IDLE_SUSPECT,
                "tcpwatchd_idle_suspect_connections",
                "ESTABLISHED connections idle past detect.phantom.idle_seconds, not superseded, "
                "keepalive off.",
                "fa4f4b4c2b7543f293f947ec4f410b9a",
            ),
        ),
        # A newer connection supersedes an idle one if it opened within the idle time.
        remembers_openings=lambda cfg: cfg.idle_seconds,
    )
)
