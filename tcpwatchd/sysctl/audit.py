"""Current values against desired ones: the frozen `SysctlReport` the CLI, the metrics and the daemon read.

`build_report` is pure: it takes readings already made (see `procsys.read_all`) and the desired table.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from tcpwatchd.sysctl.catalog import CATALOG
from tcpwatchd.sysctl.derived import TCP_RTO_MAX_MS, idle_detection_seconds, inflight_detection_seconds
from tcpwatchd.sysctl.procsys import Reading

EXIT_COMPLIANT = 0
EXIT_DRIFT = 1
EXIT_ERROR = 2


class Status(enum.Enum):
    OK = "ok"  # current == desired
    DRIFT = "drift"  # current != desired
    REPORTED = "report-only"  # no desired value: read and exported, never written
    ABSENT = "absent"  # report-only and not present in this kernel or network namespace
    ERROR = "error"  # could not be read (or a desired sysctl does not exist here)


@dataclass(frozen=True, slots=True)
class SysctlEntry:
    name: str
    current: int | None
    desired: int | None
    status: Status
    unit: str
    error: str = ""  # why `current` is None, for ERROR and ABSENT

    @property
    def compliant(self) -> bool | None:
        """None when there is no desired value; False when the current value is unknown."""
        return None if self.desired is None else self.status is Status.OK


@dataclass(frozen=True, slots=True)
class SysctlWrite:
    """One write tcpwatchd attempted; `error` is '' when it succeeded."""

    name: str
    old: int
    new: int
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass(frozen=True, slots=True)
class WriteTotal:
    """Writes one `SysctlPolicy` made to one sysctl since it was created (a counter)."""

    name: str
    succeeded: int
    failed: int


@dataclass(frozen=True, slots=True)
class SysctlReport:
    entries: tuple[SysctlEntry, ...]
    idle_detection_seconds: float | None  # keepalive: time + intvl * probes; None when one is unreadable
    inflight_detection_seconds: float | None  # tcp_model_timeout(tcp_retries2); None when unreadable
    netns: str = ""  # the network namespace read, e.g. "net:[4026531840]"; '' when unknown
    problems: tuple[str, ...] = ()  # refused [sysctl.desired] entries: when any, nothing was written
    writes: tuple[SysctlWrite, ...] = ()  # attempted by this call
    write_totals: tuple[WriteTotal, ...] = ()

    def entry(self, name: str) -> SysctlEntry | None:
        return next((e for e in self.entries if e.name == name), None)

    def values(self) -> Mapping[str, int]:
        """Current values by dotted name, for detectors; unreadable and absent sysctls are left out."""
        return MappingProxyType({e.name: e.current for e in self.entries if e.current is not None})

    @property
    def ok(self) -> bool:
        """The audit worked (drift is a finding, not a failure): nothing unreadable, refused or failed."""
        return not self.errors

    def error_summary(self) -> str:
        """All errors on one line, '' when `ok`."""
        return "; ".join(self.errors)

    @property
    def errors(self) -> tuple[str, ...]:
        """Everything that makes the audit exit 2, each naming its sysctl."""
        unread = tuple(f"{e.name}: {e.error}" for e in self.entries if e.status is Status.ERROR)
        failed = tuple(f"{w.name}: cannot write {w.new}: {w.error}" for w in self.writes if not w.ok)
        return self.problems + unread + failed

    @property
    def drifted(self) -> tuple[SysctlEntry, ...]:
        return tuple(e for e in self.entries if e.status is Status.DRIFT)

    @property
    def exit_code(self) -> int:
        if self.errors:
            return EXIT_ERROR
        return EXIT_DRIFT if self.drifted else EXIT_COMPLIANT


def compare(reading: Reading, desired: int | None) -> SysctlEntry:
    spec = CATALOG[reading.name]
    unit = spec.unit.value
    if reading.value is None:
        absent_ok = reading.missing and desired is None
        status = Status.ABSENT if absent_ok else Status.ERROR
        return SysctlEntry(reading.name, None, desired, status, unit, reading.error)
    if desired is None:
        return SysctlEntry(reading.name, reading.value, None, Status.REPORTED, unit)
    status = Status.OK if reading.value == desired else Status.DRIFT
    return SysctlEntry(reading.name, reading.value, desired, status, unit)


def _value(readings: Mapping[str, Reading], name: str) -> int | None:
    reading = readings.get(name)
    return None if reading is None else reading.value


def _idle(readings: Mapping[str, Reading]) -> float | None:
    time, intvl, probes = (
        _value(readings, f"net.ipv4.tcp_keepalive_{n}") for n in ("time", "intvl", "probes")
    )
    if time is None or intvl is None or probes is None or min(time, intvl, probes) < 0:
        return None  # unreadable, or a negative value the kernel accepted but no model covers
    return float(idle_detection_seconds(time, intvl, probes))


def _inflight(readings: Mapping[str, Reading]) -> float | None:
    retries2 = _value(readings, "net.ipv4.tcp_retries2")
    rto_max = readings.get("net.ipv4.tcp_rto_max_ms")
    # Before Linux 6.15 there is no tcp_rto_max_ms: the ceiling is the constant TCP_RTO_MAX.
    if rto_max is None or (rto_max.value is None and rto_max.missing):
        rto_max_ms: int | None = TCP_RTO_MAX_MS
    else:
        rto_max_ms = rto_max.value
    if retries2 is None or rto_max_ms is None or retries2 < 0 or rto_max_ms < 1000:
        return None
    return inflight_detection_seconds(retries2, rto_max_ms)


def build_report(
    readings: tuple[Reading, ...],
    desired: Mapping[str, int],
    *,
    netns: str = "",
    problems: tuple[str, ...] = (),
    writes: tuple[SysctlWrite, ...] = (),
    write_totals: tuple[WriteTotal, ...] = (),
) -> SysctlReport:
    """Compare each reading with its desired value (readings of uncatalogued names are ignored)."""
    by_name = {r.name: r for r in readings if r.name in CATALOG}
    entries = tuple(compare(r, desired.get(r.name)) for r in by_name.values())
    return SysctlReport(
        entries=entries,
        idle_detection_seconds=_idle(by_name),
        inflight_detection_seconds=_inflight(by_name),
        netns=netns,
        problems=problems,
        writes=writes,
        write_totals=write_totals,
    )
