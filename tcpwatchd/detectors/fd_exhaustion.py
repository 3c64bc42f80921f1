"""fd exhaustion, forecast: a process whose open fds grow toward its soft RLIMIT_NOFILE.

When a process reaches its soft limit, accept() and connect() fail with EMFILE: the service is up but
serves nobody. The usual cause here is a socket leak (CLOSE_WAIT sockets pile up, each holding an fd).
The taker reads each process's open fds and soft limit from /proc (sources/process_facts.py, cached:
re-read every 30 s, no per-fd cost on a steady poll) and the tracker keeps a short history per process
(fd_forecast.FdTrends); the time to the limit is a least-squares fit over it. A process is flagged when
that time is under `min_seconds_left`, or when its open fds are already `max_fill` of the limit.
"""

from __future__ import annotations

import math
from operator import attrgetter
from types import MappingProxyType

from pydantic import Field

from tcpwatchd.detectors.base import Context, Detail, Kind, Outcome, listed_outcome, owned_finding
from tcpwatchd.detectors.registry import DetectorSpec, KindSpec, ValueGauge, register
from tcpwatchd.fd_forecast import forecast
from tcpwatchd.model import ProcessLabels, TcpState
from tcpwatchd.sections import DetectorSettings
from tcpwatchd.snapshot import holders, row_processes
from tcpwatchd.tracker import TrackedPoll

FD_EXHAUSTION = Kind("fd_exhaustion")
OPEN_FDS, MAX_FDS, SECONDS_LEFT = "open_fds", "max_fds", "fd_exhaustion_seconds"


class FdExhaustionConfig(DetectorSettings):
    min_seconds_left: float = Field(3600.0, gt=0, le=7 * 86400)
    max_fill: float = Field(0.9, gt=0, le=1)


def detect_fd_exhaustion(tracked: TrackedPoll, cfg: FdExhaustionConfig, ctx: Context) -> Outcome:
    snap = tracked.snapshot
    owners = holders(snap)
    by_pid = dict(zip(map(attrgetter("pid"), owners), owners, strict=True))
    processes = row_processes(snap)
    close_wait = processes.counted(processes.codes_of(snap.sockets.rows_in(TcpState.CLOSE_WAIT)))
    opened: dict[ProcessLabels, float] = {}
    limits: dict[ProcessLabels, float] = {}
    left: dict[ProcessLabels, float] = dict.fromkeys(processes.labels, math.inf)
    findings = []
    for pid, facts in snap.process_facts.items():
        owner = by_pid.get(pid)
        if owner is None:
            continue
        labels = owner.labels
        cast = forecast(tracked.fd_samples.get(pid, ()), facts.max_fds)
        opened[labels] = max(opened.get(labels, 0.0), float(facts.open_fds))
        limits[labels] = math.inf if facts.max_fds is None else float(facts.max_fds)
        left[labels] = min(left.get(labels, math.inf), cast.seconds_to_limit)
        full = facts.max_fds is not None and facts.open_fds >= cfg.max_fill * facts.max_fds
        if cast.seconds_to_limit < cfg.min_seconds_left or full:
            details = (
                Detail("open_fds", facts.open_fds),
                Detail("max_fds", facts.max_fds if facts.max_fds is not None else "unlimited"),
                Detail("fds_per_minute", round(cast.rate_per_second * 60.0, 2)),
                Detail("seconds_to_limit", round(cast.seconds_to_limit, 1)),
                Detail("close_wait_sockets", close_wait.get(labels, 0)),
            )
            findings.append(owned_finding(FD_EXHAUSTION, owner, "*", "*", "", 0.0, details))
    outcome = listed_outcome(findings)
    return Outcome(
        findings=outcome.findings,
        counts=outcome.counts,
        values=MappingProxyType({OPEN_FDS: opened, MAX_FDS: limits, SECONDS_LEFT: left}),
    )


SPEC = register(
    DetectorSpec(
        name="fd_exhaustion",
        settings=FdExhaustionConfig,
        detect=detect_fd_exhaustion,
        kinds=(
            KindSpec(
                FD_EXHAUSTION,
                "tcpwatchd_fd_exhaustion_processes",
                "1 when the process will reach its soft fd limit within detect.fd_exhaustion."
                "min_seconds_left at its current growth, or already uses max_fill of it.",
                "d35bced2f5b84640ad0a9edc8e8c23dd",
            ),
        ),
        values=(
            ValueGauge(OPEN_FDS, "tcpwatchd_process_open_fds", "Open file descriptors of the process."),
            ValueGauge(
                MAX_FDS,
                "tcpwatchd_process_max_fds",
                "The process's soft RLIMIT_NOFILE (+Inf when unlimited).",
            ),
            ValueGauge(
                SECONDS_LEFT,
                "tcpwatchd_fd_exhaustion_seconds",
                "Estimated seconds until the process reaches its soft fd limit at its current growth "
                "(+Inf when its fds are not growing).",
            ),
        ),
    )
)
