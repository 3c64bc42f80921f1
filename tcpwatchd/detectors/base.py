"""What every detector shares: the `Finding` it produces, the `Detector` protocol, and the registry.

A detector is a pure function of the tracker's view and the config: `(TrackedPoll, Context) -> Outcome`.
It is registered by name (the name is also its `[detect.<name>]` config section) with a default on/off,
in the style of node_exporter's collector registry (collector/collector.go).
"""

from __future__ import annotations

import enum
import ipaddress
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from tcpwatchd.config import DetectConfig
from tcpwatchd.model import Socket
from tcpwatchd.snapshot import row_owner_names
from tcpwatchd.tracker import TrackedPoll


class Kind(enum.StrEnum):
    """What a finding is. Each detector produces one kind, except phantom (phantom and idle_suspect)."""

    CLOSE_WAIT = "close_wait"
    PHANTOM = "phantom"
    IDLE_SUSPECT = "idle_suspect"
    RECONNECT_STORM = "reconnect_storm"
    KEEPALIVE_OFF = "keepalive_off"
    STALLED_RECEIVE = "stalled_receive"
    UNRESPONSIVE_PEER = "unresponsive_peer"


DetailValue = str | int | float


@dataclass(frozen=True, slots=True)
class Detail:
    """One fact a person needs to act on a finding, e.g. Detail("unread_bytes", 4096)."""

    key: str
    value: DetailValue


@dataclass(frozen=True, slots=True)
class Finding:
    """One pathology on one connection (or, for a reconnect storm, one peer address and local port).

    `local` and `remote` are `ss`-style endpoints ('10.0.0.1:80', '[::1]:80'); a storm has no single
    connection, so it names the service as '*:port' and the peer as 'address:*'. `peer` is the remote
    address alone. `process` is the owner's comm ("" for sockets no process holds), hostile input.
    """

    kind: Kind
    process: str
    pid: int
    unit: str
    local: str
    remote: str
    peer: str
    age_seconds: float  # how long the condition has held, as far as tcpwatchd has seen
    details: tuple[Detail, ...] = ()

    @property
    def identity(self) -> tuple[str, str, str]:
        """Stable across polls while the condition lasts: what `announce` diffs on."""
        return (self.kind.value, self.local, self.remote)

    def detail(self, key: str) -> DetailValue | None:
        return next((d.value for d in self.details if d.key == key), None)

    def describe(self) -> str:
        """One readable line, hostile strings escaped: "close_wait process='nginx' pid=12 ..."."""
        facts = " ".join(f"{d.key}={d.value}" for d in self.details)
        unit = f" unit={self.unit!r}" if self.unit else ""
        return (
            f"{self.kind.value} process={self.process!r} pid={self.pid}{unit} peer={self.peer} "
            f"age={self.age_seconds:.1f}s socket={self.local} -> {self.remote}"
            + (f" {facts}" if facts else "")
        )

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind.value,
            "process": self.process,
            "pid": self.pid,
            "unit": self.unit,
            "local": self.local,
            "remote": self.remote,
            "peer": self.peer,
            "age_seconds": round(self.age_seconds, 3),
            "details": {d.key: d.value for d in self.details},
        }


def _no_ages() -> Mapping[str, float]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one detector found in one poll.

    `degraded` says why the detector could not judge every socket ('' when it could). `oldest_age`
    maps a process to the age of its oldest socket in the detector's condition, including sockets still
    under the threshold (close_wait's oldest-age gauge needs it).
    """

    findings: tuple[Finding, ...] = ()
    degraded: str = ""
    oldest_age: Mapping[str, float] = field(default_factory=_no_ages)
    # Findings per (kind, process), when `findings` lists only some of them (see LISTED_PER_PROCESS);
    # None when `findings` is complete.
    counts: Mapping[tuple[Kind, str], int] | None = None


@dataclass(frozen=True, slots=True)
class Context:
    """Everything a detector may read besides the tracker: the config and the current sysctl values."""

    detect: DetectConfig
    sysctl: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))


# A host can hold tens of thousands of sockets in one condition (every connection without keepalive, a
# CLOSE_WAIT leak at its height). The gauges count them all; each poll names at most this many per kind and
# process (in socket table order), so that a poll, its log lines and `snapshot` stay readable and cheap.
LISTED_PER_PROCESS = 20


class Detector(Protocol):
    def __call__(self, tracked: TrackedPoll, ctx: Context, /) -> Outcome: ...


@dataclass(frozen=True, slots=True)
class Registered:
    name: str  # also the config section `[detect.<name>]`
    detect: Detector
    default_enabled: bool


_REGISTRY: dict[str, Registered] = {}


def register(name: str, default_enabled: bool = True) -> Callable[[Detector], Detector]:
    """Decorator: `@register("close_wait")` adds a detector to the registry under its config name."""

    def add(fn: Detector) -> Detector:
        if name in _REGISTRY:
            raise ValueError(f"detector {name!r} registered twice")
        _REGISTRY[name] = Registered(name, fn, default_enabled)
        return fn

    return add


def registered() -> tuple[Registered, ...]:
    """Every detector, in registration order."""
    return tuple(_REGISTRY.values())


def is_enabled(entry: Registered, detect: DetectConfig) -> bool:
    """The config's `enabled` for the detector's section, else the registry's default."""
    section = getattr(detect, entry.name, None)
    enabled = getattr(section, "enabled", None)
    return entry.default_enabled if enabled is None else bool(enabled)


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


def endpoint(address: str, port: int | str) -> str:
    """`ss`-style endpoint: ('198.18.0.2', '*') -> '198.18.0.2:*', ('::1', 80) -> '[::1]:80'."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def owner_names(tracked: TrackedPoll, rows: Iterable[int]) -> list[str]:
    """The counted owner's name for each row ("" when no process holds the socket)."""
    return list(map(row_owner_names(tracked.snapshot).__getitem__, rows))


def listed_rows(names: Sequence[str], rows: Sequence[int]) -> list[int]:
    """The first LISTED_PER_PROCESS rows of each process (`names[k]` is the owner of `rows[k]`)."""
    listed: list[int] = []
    per: dict[str, int] = {}
    full, processes = 0, len(set(names))
    for row, name in zip(rows, names, strict=True):
        n = per.get(name, 0)
        if n < LISTED_PER_PROCESS:
            per[name] = n + 1
            listed.append(row)
            if n + 1 == LISTED_PER_PROCESS:
                full += 1
                if full == processes:
                    break
    return listed


def mass_outcome(
    kind: Kind, tracked: TrackedPoll, rows: Sequence[int], finding: Callable[[int], Finding]
) -> Outcome:
    """Count every row under its process; build `finding(row)` only for the rows listed."""
    names = owner_names(tracked, rows)
    counts = {(kind, name): n for name, n in Counter(names).items()}
    listed = listed_rows(names, rows)
    return Outcome(findings=tuple(finding(row) for row in listed), counts=MappingProxyType(counts))


def connection_finding(
    kind: Kind, tracked: TrackedPoll, sock: Socket, age: float, details: tuple[Detail, ...] = ()
) -> Finding:
    """A finding about one socket, attributed to its counted owner."""
    owner = tracked.owner_of(sock)
    return Finding(
        kind=kind,
        process=owner.name if owner else "",
        pid=owner.pid if owner else 0,
        unit=(owner.unit or owner.container) if owner else "",
        local=sock.local,
        remote=sock.remote,
        peer=peer_address(sock.remote_address),
        age_seconds=max(0.0, age),
        details=details,
    )
