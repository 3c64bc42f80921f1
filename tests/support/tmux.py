"""A private tmux server (its own socket, so a developer's tmux is never touched) driving one pane.

Every wait is bounded; `close()` kills only this server (`tmux -L <our socket> kill-server`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable

import pytest

PROMPT = "top-test$ "


def require_tmux() -> None:
    if shutil.which("tmux") is not None:
        return
    reason = "needs tmux (scripts/bootstrap.sh --test installs it)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"terminal test cannot run under CI: {reason}", pytrace=False)
    pytest.skip(reason)


class Tmux:
    def __init__(self, width: int, height: int, env: dict[str, str] | None = None) -> None:
        self.socket = f"tcpwatchd-top-{uuid.uuid4().hex[:12]}"
        shell_env = {"PS1": PROMPT, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", **(env or {})}
        assignments = [f"{k}={v}" for k, v in shell_env.items()]
        self._tmux(
            "-f", "/dev/null", "new-session", "-d", "-s", "top", "-x", str(width), "-y", str(height),
            "env", "-u", "COLUMNS", "-u", "LINES", *assignments, "sh", "-i",
        )  # fmt: skip
        self.resize(width, height)
        self.wait_for(lambda screen: PROMPT.strip() in screen, "the shell prompt")

    def _tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10, check=True
        )
        return done.stdout

    def send(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "top", *keys)

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-t", "top", "-l", text)

    def run(self, command: str) -> None:
        self.type(command)
        self.send("Enter")

    def screen(self, escapes: bool = False) -> str:
        return self._tmux("capture-pane", "-p", "-t", "top", *(["-e"] if escapes else []))

    def lines(self) -> list[str]:
        return self.screen().split("\n")

    def alternate_on(self) -> bool:
        return self._tmux("display-message", "-p", "-t", "top", "#{alternate_on}").strip() == "1"

    def resize(self, width: int, height: int) -> None:
        """Sets the window's size (a detached session may start at tmux's default 80x24) and waits for it."""
        self._tmux("resize-window", "-t", "top", "-x", str(width), "-y", str(height))
        want = f"{width}x{height}"
        deadline = time.monotonic() + 5
        while (
            self._tmux("display-message", "-p", "-t", "top", "#{pane_width}x#{pane_height}").strip() != want
        ):
            if time.monotonic() > deadline:
                raise AssertionError(f"tmux did not resize to {want}")
            time.sleep(0.05)

    def wait_for(self, ready: Callable[[str], bool], what: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if ready(screen):
                return screen
            time.sleep(0.1)
        raise AssertionError(f"waited {timeout:g}s for {what}; the screen:\n{screen}")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=10)
