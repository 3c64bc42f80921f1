"""What the prober takes in and gives out: candidates, settings, events and the per-poll summary."""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol

from tcpwatchd.actions.outcome import Failure
from tcpwatchd.actions.sockops import MAX_TCP_KEEPCNT, KeepaliveOptions, SocketStatus, Target
from tcpwatchd.allowlist import AllowRule, parse_allowlist
from tcpwatchd.model import NO_WORKLOAD, ProcessLabels, Socket, Workload

if TYPE_CHECKING:
    from tcpwatchd.detectors.phantom import PhantomConfig


class Result(enum.Enum):
    """The `result` label of tcpwatchd_phantom_probes_total."""

    DEAD = "dead"  # the peer answered the probe with RST: it had forgotten the connection
    ALIVE = "alive"  # the peer acknowledged the probe
    UNREACHABLE = "unreachable"  # `budget` probes went unanswered
    FAILED = "failed"  # the probe could not be done or finished (reason in the event)


class Action(enum.Enum):
    ARMED = "armed"  # keepalive armed on the owner's socket (before/after options in the event)
    RESOLVED = "resolved"  # a result was reached (and the options restored where needed)
    DESTROYED = "destroyed"  # reap: SOCK_DESTROY removed an unreachable phantom
    WOULD_ARM = "would_arm"  # dry run: what would have been armed


@dataclass(frozen=True, slots=True)
class Candidate:
    """A phantom or idle suspect of this poll, with its owner. `socket` must carry a cookie."""

    socket: Socket
    pid: int
    process: str
    unit: str = ""
    workload: Workload = NO_WORKLOAD  # where the owner runs (Owner.workload)
    superseded: bool = False  # a phantom; False: an idle suspect
    netns: int = 0  # the socket's network namespace id (Socket.netns), for the log (0: tcpwatchd's own)

    @property
    def pod(self) -> str:
        """'namespace/name' of the owner's pod, what `pod:` allow rules match ('' outside a pod)."""
        w = self.workload
        return f"{w.namespace}/{w.pod}" if w.pod else ""

    @property
    def labels(self) -> ProcessLabels:
        """The per-process series the probe counts under (the same identity as every detector gauge)."""
        return self.workload.labels(self.process)


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    """The probe keys of [detect.phantom], resolved; `reprobe_after_seconds` is its idle_seconds."""

    reap: bool
    allow: tuple[AllowRule, ...]
    idle_seconds: int = 1
    interval_seconds: int = 1
    budget: int = 5
    max_per_poll: int = 8
    max_per_process: int = 2
    max_in_flight: int = 64
    dry_run: bool = False
    reprobe_after_seconds: float = 900.0
    own_pid: int = field(default_factory=os.getpid)

    @classmethod
    def from_config(cls, cfg: PhantomConfig) -> ProbeSettings | None:
        """None when probing is off."""
        if cfg.probe == "off":
            return None
        return cls(
            reap=cfg.probe == "reap",
            allow=parse_allowlist(cfg.probe_allow),
            idle_seconds=cfg.probe_idle_seconds,
            interval_seconds=cfg.probe_interval_seconds,
            budget=cfg.probe_budget,
            max_per_poll=cfg.probe_max_per_poll,
            max_per_process=cfg.probe_max_per_process,
            max_in_flight=cfg.probe_max_in_flight,
            dry_run=cfg.dry_run,
            reprobe_after_seconds=cfg.idle_seconds,
        )

    @property
    def armed(self) -> KeepaliveOptions:
        # The largest count, so that the kernel never aborts on its own before tcpwatchd judged.
        return KeepaliveOptions(True, self.idle_seconds, self.interval_seconds, MAX_TCP_KEEPCNT)

    @property
    def max_seconds(self) -> float:
        """How long a probe may take before it is given up: the first probe, the budget, and slack."""
        return self.idle_seconds + self.interval_seconds * (self.budget + 2) + 5.0


@dataclass(frozen=True, slots=True)
class ProbeEvent:
    """One thing the prober did or found, with its evidence, for the journal and the counters."""

    action: Action
    result: Result | None  # set when action is RESOLVED
    process: str
    pid: int
    local: str
    peer: str
    cookie: int
    superseded: bool
    idle_seconds: float  # how long the connection had been idle when it was armed
    answered: str = ""  # what answered the probe, or what the kernel reported
    reason: str = ""  # why it failed, or why the restore or destroy failed
    before: KeepaliveOptions | None = None  # the application's options
    after: KeepaliveOptions | None = None  # read back after arming or restoring
    unit: str = ""
    pod: str = ""
    netns: int = 0

    def message(self) -> str:
        """'probe dead: redis-server[812] 198.18.1.1:6379 -> 198.18.1.2:40000 idle 950s: RST ...'."""
        what = self.result.value if self.result else self.action.value
        who = f"{self.process}[{self.pid}] {self.local} -> {self.peer}"
        text = f"probe {what}: {who} idle {self.idle_seconds:.0f}s"
        extra = "; ".join(part for part in (self.answered, self.reason) if part)
        return f"{text}: {extra}" if extra else text


@dataclass(frozen=True, slots=True)
class ProbeSummary:
    """The prober's counters after a poll, for metrics (probe_metrics.probe_families)."""

    probes_total: Mapping[tuple[ProcessLabels, Result], int]  # (owner, result) -> probes resolved since start
    reaped_total: Mapping[ProcessLabels, int]  # owner -> connections destroyed since start
    proven: Mapping[ProcessLabels, int]  # owner -> proven dead or unreachable connections still held
    in_flight: int
    skipped: Mapping[str, int]  # reason -> candidates not probed this poll

    @staticmethod
    def frozen(
        probes: dict[tuple[ProcessLabels, Result], int],
        reaped: dict[ProcessLabels, int],
        proven: dict[ProcessLabels, int],
        in_flight: int,
        skipped: dict[str, int],
    ) -> ProbeSummary:
        return ProbeSummary(
            MappingProxyType(dict(probes)),
            MappingProxyType(dict(reaped)),
            MappingProxyType(proven),
            in_flight,
            MappingProxyType(skipped),
        )


@dataclass(frozen=True, slots=True)
class StepResult:
    events: tuple[ProbeEvent, ...]
    summary: ProbeSummary


class ProbeOps(Protocol):
    """The I/O the prober needs; `sockops.SystemOps` is the real one, tests pass a fake."""

    def read_status(self, target: Target) -> SocketStatus | Failure: ...

    def set_keepalive(self, target: Target, wanted: KeepaliveOptions) -> SocketStatus | Failure: ...

    def destroy(self, target: Target, sock: Socket) -> Failure | None: ...

    def holds(self, target: Target) -> bool: ...
