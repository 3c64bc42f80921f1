"""docs/runbook.md: a section per finding, the fixes the issue names, and links that resolve."""

from __future__ import annotations

import re

import pytest

from tcpwatchd.outputs.announce import message_ids
from tests.deploy.tools import RUNBOOK, github_anchor, runbook_anchors

# Finding kind -> the runbook section about it.
FINDING_SECTIONS = {
    "close_wait": "CLOSE_WAIT leak",
    "phantom": "Phantom connections",
    "idle_suspect": "Idle suspects",
    "reconnect_storm": "Reconnect storm",
    "keepalive_off": "Keepalive off",
    "stalled_receive": "Stalled receive",
    "unresponsive_peer": "Unresponsive peer",
    "sysctl_drift": "Sysctl drift",
    "listen_saturated": "Listener saturation",
    "fd_exhaustion": "fd exhaustion",
    "port_exhaustion": "Port exhaustion",
}
REQUIRED_ADVICE = (
    "tcpwatchd snapshot",
    "ss -tanpo",
    "SO_KEEPALIVE",
    "TCP_KEEPIDLE",
    "TCP_KEEPINTVL",
    "TCP_KEEPCNT",
    "shutdown(fd, SHUT_WR)",
    "lingering close",
    "SIGPIPE",
    "EPIPE",
    "ECONNRESET",
    "TCP_USER_TIMEOUT",
)


def test_every_finding_kind_has_a_section() -> None:
    assert set(FINDING_SECTIONS) == set(message_ids())
    for heading in FINDING_SECTIONS.values():
        assert github_anchor(heading) in runbook_anchors(), heading


@pytest.mark.parametrize("advice", REQUIRED_ADVICE)
def test_runbook_gives_the_advice(advice: str) -> None:
    assert advice in RUNBOOK.read_text(encoding="utf-8")


def test_links_inside_the_runbook_resolve() -> None:
    targets = re.findall(r"\]\(#([^)]+)\)", RUNBOOK.read_text(encoding="utf-8"))
    assert targets
    assert set(targets) <= runbook_anchors()
