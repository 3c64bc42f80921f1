"""Probe verdicts as data: what tcpwatchd's active probes (tcpwatchd/actions) learnt about a connection,
handed to the detectors (detectors/base.py `Context.probed`) so that they stay pure functions.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Proof(enum.Enum):
    """What an active probe of a connection says so far (docs/probing.md)."""

    PROBING = "probing"  # a keepalive is armed by tcpwatchd, no verdict yet
    ALIVE = "alive"  # the peer acknowledged a probe
    DEAD = "dead"  # the peer answered with RST
    UNREACHABLE = "unreachable"  # the probe budget went unanswered


@dataclass(frozen=True, slots=True)
class Probed:
    """One connection's probe verdict, as data for the detectors: `at` is the monotonic time of the poll
    that armed (PROBING) or settled it, on the clock of `TrackedPoll.now`."""

    proof: Proof
    at: float
