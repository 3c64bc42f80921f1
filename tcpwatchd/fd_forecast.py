"""When will a process run out of fds? A least-squares slope over its recent open-fd samples.

Pure: the caller records (monotonic seconds, open fds) per process each time it refreshes the facts,
in an FdHistory (a bounded ring), and asks `seconds_to_limit`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

Sample = tuple[float, int]  # (monotonic seconds, open fds)


@dataclass(frozen=True, slots=True)
class Forecast:
    rate_per_second: float  # fitted growth of open fds (negative: shrinking)
    seconds_to_limit: float  # math.inf when not growing; 0.0 at or past the limit


class FdHistory:
    """The last `size` samples of one process, and only those within `window_seconds` of the newest."""

    __slots__ = ("_samples", "window_seconds")

    def __init__(self, size: int = 64, window_seconds: float = 600.0) -> None:
        self._samples: deque[Sample] = deque(maxlen=size)
        self.window_seconds = window_seconds

    def add(self, at: float, open_fds: int) -> None:
        if self._samples and at <= self._samples[-1][0]:
            return  # a clock that did not advance adds nothing to a slope
        self._samples.append((at, open_fds))

    def window(self) -> list[Sample]:
        if not self._samples:
            return []
        newest = self._samples[-1][0]
        return [s for s in self._samples if newest - s[0] <= self.window_seconds]


def slope(samples: Sequence[Sample]) -> float:
    """Least-squares growth rate (fds per second); 0.0 with fewer than two distinct times.

    >>> slope([(0.0, 100), (10.0, 110), (20.0, 120)])
    1.0
    """
    n = len(samples)
    if n < 2:
        return 0.0
    mean_t = sum(t for t, _ in samples) / n
    mean_v = sum(v for _, v in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    if var == 0:
        return 0.0
    return sum((t - mean_t) * (v - mean_v) for t, v in samples) / var


def forecast(samples: Sequence[Sample], max_fds: int | None, min_samples: int = 3) -> Forecast:
    """Seconds until `max_fds` at the fitted rate, from the newest sample's count.

    Not growing (rate <= 0), too few samples, or no limit: +inf. Already at or over the limit: 0.

    >>> forecast([(0.0, 100), (60.0, 160), (120.0, 220)], max_fds=1024)
    Forecast(rate_per_second=1.0, seconds_to_limit=804.0)
    """
    if not samples:
        return Forecast(0.0, math.inf)
    current = samples[-1][1]
    if max_fds is not None and current >= max_fds:
        return Forecast(slope(samples), 0.0)
    if len(samples) < min_samples or max_fds is None:
        return Forecast(slope(samples), math.inf)
    rate = slope(samples)
    if rate <= 0:
        return Forecast(rate, math.inf)
    return Forecast(rate, (max_fds - current) / rate)


ProcessRef = tuple[int, float]  # (pid, start time): a recycled pid is another process


class FdTrends:
    """One FdHistory per process with sockets, fed the facts each poll; a gone process is dropped at
    once (its samples mean nothing for a new process on the same pid), so memory ∝ live processes."""

    def __init__(self, size: int = 64, window_seconds: float = 600.0) -> None:
        self._size, self._window = size, window_seconds
        self._histories: dict[ProcessRef, FdHistory] = {}
        self._frozen: dict[ProcessRef, tuple[Sample, ...]] = {}

    def update(self, samples: dict[ProcessRef, Sample]) -> dict[int, tuple[Sample, ...]]:
        """Add each process's newest (time, open fds); returns pid -> its samples in the window."""
        histories: dict[ProcessRef, FdHistory] = {}
        frozen: dict[ProcessRef, tuple[Sample, ...]] = {}
        out: dict[int, tuple[Sample, ...]] = {}
        for ref, (at, fds) in samples.items():
            history = self._histories.get(ref) or FdHistory(self._size, self._window)
            kept = self._frozen.get(ref)
            if not kept or at > kept[-1][0]:  # cached facts keep their time: nothing new to add
                history.add(at, fds)
                kept = tuple(history.window())
            histories[ref], frozen[ref] = history, kept
            out[ref[0]] = kept
        self._histories, self._frozen = histories, frozen
        return out
