"""The dead-peer detection times, checked against the kernel's own arithmetic (net/ipv4/tcp_timer.c)."""

from __future__ import annotations

import doctest
from types import ModuleType

import pytest

from tcpwatchd.sysctl import audit, cli, derived, policy, procsys
from tcpwatchd.sysctl.derived import idle_detection_seconds, inflight_detection_seconds, model_timeout_ms


def _simulated_abort_ms(retries2: int, rto_max_ms: int) -> int:
    """Walk the retransmission timer as tcp_retransmit_timer() does, with the RTO starting at 200 ms.

    Each expiry checks retransmits_timed_out() (time since the segment was first sent >= the model's
    budget) before retransmitting and doubling the RTO, capped at rto_max; it is false while nothing was
    retransmitted yet (icsk_retransmits == 0). The abort is the first expiry at or past the budget: an
    independent route to the closed form.
    """
    budget, elapsed, rto = model_timeout_ms(retries2, 200, rto_max_ms), 0, 200
    for retransmits in range(10_000):
        elapsed += rto
        if retransmits > 0 and elapsed >= budget:
            return elapsed
        rto = min(rto * 2, rto_max_ms)
    raise AssertionError("no abort")


@pytest.mark.parametrize(
    ("retries2", "rto_max_ms", "ms", "abort_ms"),
    [
        (0, 120_000, 200, 600),  # the first expiry never aborts: nothing was retransmitted yet
        (1, 120_000, 600, 600),
        (3, 120_000, 3_000, 3_000),  # the tcp_retries1 default: ~3 s before asking for a new route
        (8, 120_000, 102_200, 102_200),  # ip-sysctl.rst: RFC 1122's "at least 100 seconds" is >= 8
        (9, 120_000, 204_600, 204_600),
        (10, 120_000, 324_600, 324_600),
        (15, 120_000, 924_600, 924_600),  # ip-sysctl.rst: "a hypothetical timeout of 924.6 seconds"
        (15, 1_000, 14_400, 14_400),  # tcp_rto_max_ms = 1000: thresh = ilog2(5) = 2, 7 * 200 + 13 * 1000
        (255, 120_000, 204_600 + 246 * 120_000, 204_600 + 246 * 120_000),
    ],
)
def test_model_timeout_matches_the_kernel(retries2: int, rto_max_ms: int, ms: int, abort_ms: int) -> None:
    assert model_timeout_ms(retries2, rto_max_ms=rto_max_ms) == ms
    assert _simulated_abort_ms(retries2, rto_max_ms) == abort_ms


def test_inflight_default_is_924_6_seconds() -> None:
    assert inflight_detection_seconds(15) == pytest.approx(924.6)
    assert inflight_detection_seconds(5, rto_max_ms=60_000) == pytest.approx(12.6)


@pytest.mark.parametrize(
    ("boundary", "base", "rto_max"), [(-1, 200, 120_000), (3, 0, 120_000), (3, 200, 100)]
)
def test_model_timeout_refuses_impossible_inputs(boundary: int, base: int, rto_max: int) -> None:
    with pytest.raises(ValueError):
        model_timeout_ms(boundary, base, rto_max)


@pytest.mark.parametrize(
    ("time", "intvl", "probes", "seconds"),
    [(7200, 75, 9, 7875), (600, 30, 5, 750), (1, 1, 1, 2)],
)
def test_idle_detection(time: int, intvl: int, probes: int, seconds: int) -> None:
    assert idle_detection_seconds(time, intvl, probes) == seconds


@pytest.mark.parametrize("module", [derived, policy, procsys, audit, cli])
def test_docstring_examples_hold(module: ModuleType) -> None:
    assert doctest.testmod(module).failed == 0
