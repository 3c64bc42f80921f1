"""Whether this machine can run the integration tests, and the CI rule that they must."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

import pytest


@functools.cache
def why_no_netns() -> str:
    """'' when we are root and can make network namespaces, else the reason we cannot."""
    if os.geteuid() != 0:
        return "needs root (creates network namespaces)"
    for tool in ("ip", "ss", "unshare"):
        if shutil.which(tool) is None:
            return f"needs `{tool}` (iproute2 / util-linux)"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True, timeout=10)
    if probe.returncode != 0:
        return f"cannot create a network namespace: {probe.stderr.strip()}"
    return ""


def require_netns() -> None:
    """Skip with the reason; under CI=true a missing capability is a failure, never a skip."""
    reason = why_no_netns()
    if not reason:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"integration test cannot run under CI: {reason}", pytrace=False)
    pytest.skip(reason)
