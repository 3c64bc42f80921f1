"""`[[override]]` and `[ignore]` applied to one poll: which settings judge which sockets.

Every row of the poll's table gets a code: 0 for the `[detect]` defaults, N for the Nth override (the
first whose `match` fits the row's owner: process name, unit, workload; a socket no process holds gets
the defaults), IGNORED for a socket `[ignore]` leaves out (local port, remote network, process glob).
For each detector the report then runs one pass per settings group (the defaults, and each override that
changes that detector), each with a `Scope` of the rows of its group (scope.py); the state counts never
see any of this.

Cost: one run of a detector per group that touches it (a config without overrides runs each once, as
before); the codes are one pass over the table per poll, with owners and remote addresses cached.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

from tcpwatchd.config import Config
from tcpwatchd.detectors.base import peer_address
from tcpwatchd.detectors.registry import DetectorSpec
from tcpwatchd.model import Owner
from tcpwatchd.rules_config import IgnoreConfig, OverrideRule, matches
from tcpwatchd.scope import Scope
from tcpwatchd.sections import DetectorSettings, DetectSections
from tcpwatchd.tracker import TrackedPoll

DEFAULTS = 0
IGNORED = 255  # row codes are bytes: rules are numbered 1..254 (config.MAX_RULES is lower)
_ADDRESS_CACHE = 1 << 17  # distinct peer addresses remembered between polls (bounded memory)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")  # IPv4-mapped IPv6 addresses (RFC 4291 2.5.5.2)


@dataclass(frozen=True, slots=True)
class Run:
    """One pass of a detector: the settings, the rule they come from ("" for defaults), the scope."""

    rule: str
    settings: DetectorSettings
    scope: Scope | None  # None: every socket (no override, nothing ignored)


def _networks(texts: Sequence[str]) -> tuple[Network, ...]:
    """Parsed networks; an IPv4-mapped IPv6 network (::ffff:10.0.0.0/104) also as its IPv4 network."""
    out: list[Network] = []
    for text in texts:
        net = ipaddress.ip_network(text)
        out.append(net)
        if isinstance(net, ipaddress.IPv6Network) and net.subnet_of(_MAPPED) and net.prefixlen >= 96:
            base = ipaddress.IPv4Address(int(net.network_address) & 0xFFFFFFFF)
            out.append(ipaddress.IPv4Network(f"{base}/{net.prefixlen - 96}"))
    return tuple(out)


Masks = tuple[tuple[int, int], ...]  # (network address, netmask) as integers


def _masks(networks: Sequence[Network], version: int) -> Masks:
    return tuple((int(n.network_address), int(n.netmask)) for n in networks if n.version == version)


def _in_networks(address: str, v4: Masks, v6: Masks) -> bool:
    """inet_pton and integer masks: ten times cheaper than ipaddress per new peer."""
    text = peer_address(address)
    try:
        if ":" in text:
            ip, masks = int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big"), v6
        else:
            ip, masks = int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big"), v4
    except OSError:
        return False
    return any(ip & mask == net for net, mask in masks)


def _owner_value(owner: Owner, key: str) -> str:
    w = owner.workload
    values = {
        "process": owner.name,
        "unit": owner.unit or owner.container,
        "namespace": w.namespace,
        "pod": w.pod,
        "container": w.container,
    }
    return values[key]


class Rules:
    """The compiled `[[override]]` list and `[ignore]` section of one config (rebuilt on reload)."""

    def __init__(self, overrides: Sequence[OverrideRule] = (), ignore: IgnoreConfig | None = None) -> None:
        self.overrides = tuple(overrides)
        ignore = ignore or IgnoreConfig()
        self._ports = frozenset(ignore.local_ports)
        self._networks = _networks(ignore.remote_networks)
        self._v4, self._v6 = _masks(self._networks, 4), _masks(self._networks, 6)
        self._globs = tuple(ignore.processes)
        self._remote_ignored: dict[str, bool] = {}
        self._owner_codes: dict[Owner, int] = {}  # owners are frozen: a process keeps its code
        self._settings: dict[tuple[str, int], DetectorSettings] = {}

    @classmethod
    def of(cls, cfg: Config) -> Rules:
        return cls(cfg.override, cfg.ignore)

    @property
    def ignores(self) -> bool:
        return bool(self._ports or self._networks or self._globs)

    @property
    def active(self) -> bool:
        return bool(self.overrides) or self.ignores

    # ---- per socket ----------------------------------------------------------------------------------
    def owner_code(self, owner: Owner | None) -> int:
        """DEFAULTS, the position of the first override that fits `owner`, or IGNORED (process glob)."""
        if owner is None:
            return DEFAULTS
        found = self._owner_codes.get(owner)
        if found is None:
            if len(self._owner_codes) >= _ADDRESS_CACHE:
                self._owner_codes.clear()
            found = self._owner_codes[owner] = self._match(owner)
        return found

    def _match(self, owner: Owner) -> int:
        if any(matches(g, owner.name) for g in self._globs):
            return IGNORED
        for position, rule in enumerate(self.overrides, 1):
            if all(matches(pattern, _owner_value(owner, key)) for key, pattern in rule.match.given()):
                return position
        return DEFAULTS

    def remote_ignored(self, address: str) -> bool:
        """Whether a peer address lies in an ignored network (cached: a host sees few distinct peers)."""
        if not self._networks or not address:
            return False
        found = self._remote_ignored.get(address)
        if found is None:
            if len(self._remote_ignored) >= _ADDRESS_CACHE:
                self._remote_ignored.clear()
            found = self._remote_ignored[address] = _in_networks(address, self._v4, self._v6)
        return found

    def code(self, owner: Owner | None, local_port: int, remote_address: str) -> int:
        if local_port in self._ports or self.remote_ignored(remote_address):
            return IGNORED
        return self.owner_code(owner)

    def row_codes(self, tracked: TrackedPoll) -> bytes:
        """The code of every row of the poll's table (see the module docstring)."""
        snap = tracked.snapshot
        table = snap.sockets
        get = snap.owners.get
        codes = bytearray(map(self.owner_code, map(get, table.column("inode"), repeat(None))))
        if self._ports or self._networks:
            ports, remotes = table.column("local_port"), table.column("remote_address")
            # Distinct peers are judged once (set() runs in C); rows are then two set lookups each.
            bad = {a for a in set(remotes) if self.remote_ignored(a)} if self._networks else set()
            wanted = self._ports
            for row in [
                i for i, (p, a) in enumerate(zip(ports, remotes, strict=True)) if p in wanted or a in bad
            ]:
                codes[row] = IGNORED
        return bytes(codes)

    # ---- per detector --------------------------------------------------------------------------------
    def settings(self, spec: DetectorSpec[Any], detect: DetectSections, position: int) -> DetectorSettings:
        """The detector's settings under override `position` (0: the defaults), merged onto [detect]."""
        base: DetectorSettings = spec.settings_in(detect)
        changes = self.overrides[position - 1].settings_for(spec.name) if position else {}
        if not changes:
            return base
        key = (spec.name, position)
        if key not in self._settings:  # validated whole when the config was loaded
            merged: DetectorSettings = spec.settings.model_validate({**base.model_dump(), **changes})
            self._settings[key] = merged
        return self._settings[key]

    def variants(self, spec: DetectorSpec[Any], detect: DetectSections) -> list[DetectorSettings]:
        """Every settings a detector runs with (for the tracker's history: the longest window wins)."""
        return [self.settings(spec, detect, p) for p in range(len(self.overrides) + 1)]

    def runs(self, spec: DetectorSpec[Any], detect: DetectSections, codes: bytes | None) -> list[Run]:
        """The passes of one detector in this poll: the defaults, then each override that changes it.

        Every group runs even when no socket of it is open now: a reconnect storm is judged on openings
        of connections that may all have closed."""
        touching = [
            p for p in range(1, len(self.overrides) + 1) if self.overrides[p - 1].settings_for(spec.name)
        ]
        if codes is None or (not touching and not self.ignores):
            return [Run("", spec.settings_in(detect), None)]
        groups = {DEFAULTS: [c for c in range(IGNORED) if c not in touching]}
        groups.update({p: [p] for p in touching})
        return [
            Run(
                self.overrides[position - 1].label(position) if position else "",
                self.settings(spec, detect, position),
                self._scope(codes, members),
            )
            for position, members in groups.items()
        ]

    def _scope(self, codes: bytes, members: list[int]) -> Scope:
        table = bytes(int(c in members) for c in range(256))
        allowed = frozenset(members)
        return Scope(codes.translate(table), lambda o, port, remote: self.code(o, port, remote) in allowed)
