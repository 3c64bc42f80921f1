"""memory.pin_mmap_threshold: glibc accepts it (the CI and the container image are Debian), twice."""

from __future__ import annotations

import platform

import pytest

from tcpwatchd.memory import pin_mmap_threshold


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_the_threshold_is_pinned_and_pinning_again_is_harmless() -> None:
    assert pin_mmap_threshold() is True
    assert pin_mmap_threshold() is True
