"""CLOSE_WAIT leak: a socket the peer closed that the application never closes.

CLOSE_WAIT means our side received the peer's FIN and is waiting for the application to call close()
(RFC 9293 3.3.2). The kernel never times it out, so only the application can end it: a socket that stays
there is a leak, and its age matters more than how many there are (a healthy service leaves CLOSE_WAIT
within milliseconds). Ages come from the tracker: the first poll that saw the socket in CLOSE_WAIT.
"""

from __future__ import annotations

from types import MappingProxyType

from pydantic import Field

from tcpwatchd.detectors.base import (
    Context,
    Detail,
    Finding,
    Kind,
    Outcome,
    connection_finding,
    judged_rows,
    mass_outcome,
    owner_labels,
)
from tcpwatchd.detectors.registry import DetectorSpec, KindSpec, ValueGauge, register
from tcpwatchd.model import ProcessLabels, TcpState
from tcpwatchd.sections import DetectorSettings
from tcpwatchd.tracker import TrackedPoll

CLOSE_WAIT = Kind("close_wait")


class CloseWaitConfig(DetectorSettings):
    min_age_seconds: float = Field(300.0, ge=0)


def detect_close_wait(tracked: TrackedPoll, cfg: CloseWaitConfig, ctx: Context) -> Outcome:
    min_age = cfg.min_age_seconds
    table, now = tracked.snapshot.sockets, tracked.now
    rows = judged_rows(tracked, table.rows_in(TcpState.CLOSE_WAIT))
    since = [tracked.track_at(row).state_since for row in rows]
    oldest: dict[ProcessLabels, float] = {}
    for name, at in zip(owner_labels(tracked, rows), since, strict=True):
        oldest[name] = max(now - at, oldest.get(name, 0.0))
    leaked = [row for row, at in zip(rows, since, strict=True) if now - at >= min_age]

    def finding(row: int) -> Finding:
        track = tracked.track_at(row)
        # Already in CLOSE_WAIT at tcpwatchd's first poll: the real age is unknown and larger.
        lower_bound = track.preexisting and track.state_since == track.first_seen
        details = (Detail("age_is_lower_bound", "yes"),) if lower_bound else ()
        return connection_finding(CLOSE_WAIT, tracked, table.socket(row), now - track.state_since, details)

    outcome = mass_outcome(CLOSE_WAIT, tracked, leaked, finding)
    return Outcome(
        findings=outcome.findings,
        counts=outcome.counts,
        values=MappingProxyType({OLDEST_AGE: MappingProxyType(oldest)}),
    )


OLDEST_AGE = "oldest_age_seconds"

SPEC = register(
    DetectorSpec(
        name="close_wait",
        settings=CloseWaitConfig,
        detect=detect_close_wait,
        kinds=(
            KindSpec(
                CLOSE_WAIT,
                "tcpwatchd_close_wait_leaked_sockets",
                "CLOSE_WAIT sockets of the process older than detect.close_wait.min_age_seconds.",
                "8651c89853874c8f9fbfe9581f3ebf94",
            ),
        ),
        values=(
            ValueGauge(
                OLDEST_AGE,
                "tcpwatchd_close_wait_oldest_age_seconds",
                "Age in seconds of the process's oldest socket continuously in CLOSE_WAIT (0 when none).",
            ),
        ),
    )
)
