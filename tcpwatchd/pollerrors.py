"""Polls that raised and were survived: counted per stage, logged once per streak.

A poll can fail for reasons outside our code: no thread can be started under a pids limit
(RuntimeError), memory runs out (MemoryError), a kernel interface changes. The daemon must keep its
loop, its listener and its last good result, and say so: `tcpwatchd_poll_errors_total{stage}`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("tcpwatchd")

STAGES = ("poll",)  # exported at 0 from the start, so rate() and alerts work before the first failure


class PollErrors(Collector):
    """`failed(stage, error)` after a poll raised; `succeeded()` after one worked."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(STAGES, 0)
        self._streak = 0

    def failed(self, stage: str, error: BaseException) -> None:
        with self._lock:
            self._counts[stage] = self._counts.get(stage, 0) + 1
            self._streak += 1
            first = self._streak == 1
        if first:  # once per streak: a poll every second must not log every second
            log.error(
                "poll failed (%s): %s: %s; keeping the last result and retrying",
                stage,
                type(error).__name__,
                error,
            )

    def succeeded(self) -> None:
        with self._lock:
            streak, self._streak = self._streak, 0
        if streak:
            log.info("polls work again after %d failed", streak)

    def count(self, stage: str) -> int:
        with self._lock:
            return self._counts.get(stage, 0)

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "tcpwatchd_poll_errors",
            "Polls that raised an error and were survived (the last good result stays exported), by stage.",
            labels=["stage"],
        )
        with self._lock:
            counts = sorted(self._counts.items())
        for stage, n in counts:
            family.add_metric([stage], float(n))
        yield family
