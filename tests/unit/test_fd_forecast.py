"""The fd-exhaustion forecast on hand-made series."""

from __future__ import annotations

import math
import random

import pytest

from tcpwatchd.fd_forecast import FdHistory, forecast, slope


def series(rate: float, start: int = 100, n: int = 10, step: float = 30.0) -> list[tuple[float, int]]:
    return [(i * step, start + round(rate * i * step)) for i in range(n)]


def test_growing_at_one_fd_a_second() -> None:
    f = forecast(series(1.0), max_fds=1024)
    assert f.rate_per_second == pytest.approx(1.0)
    assert f.seconds_to_limit == pytest.approx(1024 - 370)  # newest count 100 + 270


@pytest.mark.parametrize("rate", [0.0, -0.5])
def test_flat_or_shrinking_never_runs_out(rate: float) -> None:
    assert forecast(series(rate, start=500), max_fds=1024).seconds_to_limit == math.inf


def test_noisy_growth_is_fitted_within_a_tenth() -> None:
    rng = random.Random(7)
    samples = [(i * 10.0, 200 + int(0.5 * i * 10) + rng.randint(-20, 20)) for i in range(60)]
    f = forecast(samples, max_fds=4096)
    assert f.rate_per_second == pytest.approx(0.5, rel=0.1)
    assert f.seconds_to_limit == pytest.approx((4096 - samples[-1][1]) / f.rate_per_second)


def test_noise_around_a_flat_count_does_not_forecast_a_near_end() -> None:
    samples = [(i * 10.0, 1000 + (15 if i % 2 else -15)) for i in range(30)]
    f = forecast(samples, max_fds=1024)
    assert abs(f.rate_per_second) < 0.1
    assert f.seconds_to_limit > 600 or f.seconds_to_limit == math.inf


@pytest.mark.parametrize("current", [1024, 1030])
def test_at_or_over_the_limit_is_zero(current: int) -> None:
    samples = [(0.0, 1000), (10.0, 1010), (20.0, current)]
    assert forecast(samples, max_fds=1024).seconds_to_limit == 0.0


def test_too_few_samples_or_no_limit_is_inf() -> None:
    assert forecast([(0.0, 10), (1.0, 20)], max_fds=100).seconds_to_limit == math.inf
    assert forecast(series(1.0), max_fds=None).seconds_to_limit == math.inf
    assert forecast([], max_fds=100).seconds_to_limit == math.inf


def test_slope_of_one_time_is_zero() -> None:
    assert slope([(5.0, 1), (5.0, 100)]) == 0.0


def test_history_is_a_bounded_window_of_the_newest_samples() -> None:
    h = FdHistory(size=5, window_seconds=25.0)
    for i in range(10):
        h.add(i * 10.0, i)
    h.add(90.0, 999)  # the clock did not advance: ignored
    assert h.window() == [(70.0, 7), (80.0, 8), (90.0, 9)]
