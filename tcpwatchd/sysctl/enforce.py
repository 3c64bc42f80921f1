"""`SysctlPolicy`: what the daemon calls every poll — `check()` in audit mode, `enforce()` in enforce mode.

Enforcement validates the whole desired table first and writes nothing if any entry is refused. Then it
writes only the sysctls that drifted, logs each write at WARNING with the old and the new value, and
re-reads, so a value something else changed behind our back is set again within one poll. A write that
keeps failing (not root, read-only /proc/sys) is logged at ERROR once, then at DEBUG while it repeats, and
is always in the report's `errors`.
"""

from __future__ import annotations

import logging
from types import MappingProxyType

from tcpwatchd.config import SysctlConfig
from tcpwatchd.logs import FIELDS_ATTR, SYSCTL_DRIFT_MESSAGE_ID
from tcpwatchd.sysctl.audit import SysctlReport, SysctlWrite, WriteTotal, build_report
from tcpwatchd.sysctl.catalog import NAMES
from tcpwatchd.sysctl.policy import find_problems
from tcpwatchd.sysctl.procsys import Reading, describe_os_error, read_all, read_netns, write_sysctl

log = logging.getLogger("tcpwatchd.sysctl")


class SysctlPolicy:
    """Audit (and enforce) `cfg.desired` in the network namespace of this process.

    `proc_root` points at procfs; tests point it at a fake tree. The object keeps only write counters and
    the last failure per sysctl (to log a persistent failure once), so the daemon can keep one per config.
    """

    def __init__(
        self, cfg: SysctlConfig, proc_root: str = "/proc", names: tuple[str, ...] = NAMES, where: str = ""
    ) -> None:
        """`names`: the sysctls read (another namespace has no global ones); `where` names the network
        namespace in log lines when it is not tcpwatchd's own (actions/netns_sysctl.py)."""
        self._names, self._place = names, where
        self._where = f" in {where}" if where else ""
        self._problems = tuple(str(p) for p in find_problems(cfg.desired))
        wanted = cfg.desired if names == NAMES else {k: v for k, v in cfg.desired.items() if k in names}
        self._desired = MappingProxyType(dict(wanted))
        self._proc_root = proc_root
        self._succeeded: dict[str, int] = {}
        self._failed: dict[str, int] = {}
        self._last_failure: dict[str, str] = {}
        self._problems_logged = False

    def reconfigured(self, cfg: SysctlConfig) -> SysctlPolicy:
        """The policy for a reloaded config, with this one's write counters (counters only ever grow)."""
        policy = SysctlPolicy(cfg, self._proc_root, self._names, self._place)
        policy._succeeded, policy._failed = self._succeeded, self._failed
        policy._last_failure = self._last_failure
        return policy

    def check(self) -> SysctlReport:
        """Read every catalogued sysctl and compare; never raises for an unreadable file."""
        return self._report(read_all(self._names, self._proc_root), ())

    def enforce(self) -> SysctlReport:
        """Write the drifted desired values (all or nothing on validation), then re-read and compare."""
        before = read_all(self._names, self._proc_root)
        if self._problems:
            level = logging.DEBUG if self._problems_logged else logging.ERROR
            self._problems_logged = True
            log.log(level, "sysctl policy refused, nothing written: %s", "; ".join(self._problems))
            return self._report(before, ())
        writes = tuple(self._apply(r) for r in before if self._drifted(r))
        after = read_all(self._names, self._proc_root) if writes else before
        return self._report(after, writes)

    def _drifted(self, reading: Reading) -> bool:
        # An unreadable sysctl is not written blind: its entry is an error already.
        want = self._desired.get(reading.name)
        return want is not None and reading.value is not None and reading.value != want

    def _apply(self, reading: Reading) -> SysctlWrite:
        name, new = reading.name, self._desired[reading.name]
        assert reading.value is not None
        try:
            write_sysctl(name, new, self._proc_root)
        except OSError as e:
            return self._failure(SysctlWrite(name, reading.value, new, describe_os_error(e)))
        self._succeeded[name] = self._succeeded.get(name, 0) + 1
        self._last_failure.pop(name, None)
        log.warning(
            "set sysctl %s%s from %d to %d (enforcing the config)",
            name,
            self._where,
            reading.value,
            new,
            extra={FIELDS_ATTR: {"TCPWATCHD_FINDING": "sysctl_drift", "MESSAGE_ID": SYSCTL_DRIFT_MESSAGE_ID}},
        )
        return SysctlWrite(name, reading.value, new)

    def _failure(self, write: SysctlWrite) -> SysctlWrite:
        self._failed[write.name] = self._failed.get(write.name, 0) + 1
        level = logging.DEBUG if self._last_failure.get(write.name) == write.error else logging.ERROR
        self._last_failure[write.name] = write.error
        log.log(
            level,
            "cannot set sysctl %s%s from %d to %d: %s",
            write.name,
            self._where,
            write.old,
            write.new,
            write.error,
        )
        return write

    def _totals(self) -> tuple[WriteTotal, ...]:
        names = [n for n in self._names if n in self._succeeded or n in self._failed]
        return tuple(WriteTotal(n, self._succeeded.get(n, 0), self._failed.get(n, 0)) for n in names)

    def _report(self, readings: tuple[Reading, ...], writes: tuple[SysctlWrite, ...]) -> SysctlReport:
        return build_report(
            readings,
            self._desired,
            netns=read_netns(self._proc_root),
            problems=self._problems,
            writes=writes,
            write_totals=self._totals(),
        )
