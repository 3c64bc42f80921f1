"""CLOSE_WAIT leak: a socket the peer closed that the application never closes.

CLOSE_WAIT means our side received the peer's FIN and is waiting for the application to call close()
(RFC 9293 3.3.2). The kernel never times it out, so only the application can end it: a socket that stays
there is a leak, and its age matters more than how many there are (a healthy service leaves CLOSE_WAIT
within milliseconds). Ages come from the tracker: the first poll that saw the socket in CLOSE_WAIT.
"""

from __future__ import annotations

from itertools import compress
from operator import attrgetter
from types import MappingProxyType

from pydantic import Field

from tcpwatchd.detectors.base import (
    Context,
    Detail,
    Finding,
    Kind,
    Outcome,
    judged_rows,
    mass_outcome,
    row_finding,
)
from tcpwatchd.detectors.registry import DetectorSpec, KindSpec, ValueGauge, register
from tcpwatchd.model import TcpState
from tcpwatchd.rowsets import tracks_of
from tcpwatchd.sections import DetectorSettings
from tcpwatchd.snapshot import row_processes
from tcpwatchd.tracker import TrackedPoll

CLOSE_WAIT = Kind("close_wait")
_STATE_SINCE = attrgetter("state_since")


class CloseWaitConfig(DetectorSettings):
    min_age_seconds: float = Field(300.0, ge=0)


def detect_close_wait(tracked: TrackedPoll, cfg: CloseWaitConfig, ctx: Context) -> Outcome:
    min_age = cfg.min_age_seconds
    table, now = tracked.snapshot.sockets, tracked.now
    rows = judged_rows(tracked, table.rows_in(TcpState.CLOSE_WAIT))
    since = list(map(_STATE_SINCE, tracks_of(tracked, rows)))
    processes = row_processes(tracked.snapshot)
    # The oldest per process in C: sorted newest first, a dict keeps each process's last (oldest) value.
    order = sorted(range(len(rows)), key=since.__getitem__, reverse=True)
    codes = processes.codes_of(rows)
    first = dict(zip(map(codes.__getitem__, order), map(since.__getitem__, order), strict=True))
    oldest = {processes.labels[code]: now - at for code, at in first.items()}
    leaked = list(compress(rows, map((now - min_age).__ge__, since)))  # at least min_age old

    def finding(row: int) -> Finding:
        track = tracked.track_at(row)
        # Already in CLOSE_WAIT at tcpwatchd's first poll: the real age is unknown and larger.
        lower_bound = track.preexisting and track.state_since == track.first_seen
        details = (Detail("age_is_lower_bound", "yes"),) if lower_bound else ()
        return row_finding(CLOSE_WAIT, tracked, row, now - track.state_since, details)

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
