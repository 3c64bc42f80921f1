"""`tcpwatchd top` in a real terminal (tmux) against a fixture API server: what a person sees.

The lead runs the same scenario against the real daemon; here the server answers the fixture
document of docs/api.md, so these tests need neither root nor a daemon.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.support.api_fixture import ApiFixture
from tests.support.tmux import PROMPT, Tmux, require_tmux

TOP = f"{shlex.quote(sys.executable)} -m tcpwatchd top"


@pytest.fixture
def api() -> Iterator[ApiFixture]:
    server = ApiFixture(interval=1.0)
    try:
        yield server
    finally:
        server.stop()


def _tmux(width: int, height: int) -> Iterator[Tmux]:
    require_tmux()
    term = Tmux(width, height, env={"PYTHONPATH": os.getcwd()})
    try:
        yield term
    finally:
        term.close()


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    yield from _tmux(110, 24)


@pytest.fixture
def narrow() -> Iterator[Tmux]:
    yield from _tmux(40, 10)


def first_row_after_header(screen: str) -> str:
    lines = screen.split("\n")
    header = next(i for i, line in enumerate(lines) if line.lstrip().startswith(("PROCESS", "KIND")))
    return lines[header + 1]


def test_a_person_sees_the_leak_first_opens_it_filters_and_quits(api: ApiFixture, tmux: Tmux) -> None:
    tmux.run(f"{TOP} --url {api.url}")
    screen = tmux.wait_for(lambda s: "java-leaky" in s and "poll #" in s, "the process list")
    assert tmux.alternate_on()
    assert first_row_after_header(screen).startswith("java-leaky"), screen
    assert "20m50s" in first_row_after_header(screen)  # the oldest CLOSE_WAIT
    assert "evil\\e[2J\\e[3" in screen, screen  # the hostile name, escaped visibly, on one line
    assert "\x1b[31m" not in tmux.screen(escapes=True)  # ...and its colour never reached the terminal

    tmux.send("Enter")
    screen = tmux.wait_for(lambda s: "127.0.0.1:51230" in s, "java-leaky's findings")
    assert first_row_after_header(screen).split()[:3] == ["close_wait", "20m50s", "127.0.0.1:51230"]
    assert "payments-api" in screen and "age_is_lower_bound=no" in screen
    assert "java-leaky" in screen.split("\n")[0]

    tmux.send("Escape")
    tmux.wait_for(lambda s: "PROCESS" in s and "KIND" not in s, "the list again")
    tmux.type("/ngi")
    tmux.send("Enter")
    screen = tmux.wait_for(lambda s: "filter: ngi" in s and "java-leaky" not in s, "the filter applied")
    assert first_row_after_header(screen).startswith("nginx"), screen

    api.stop()
    screen = tmux.wait_for(lambda s: "daemon unreachable" in s, "the unreachable banner", timeout=15)
    assert "retrying in" in screen and "[stale]" in screen
    assert "nginx" in screen  # the last data stays

    tmux.type("q")
    screen = tmux.wait_for(lambda s: "poll #" not in s and PROMPT.strip() in s, "the shell back")
    assert not tmux.alternate_on()
    tmux.run("echo rc=$?")
    tmux.wait_for(lambda s: "rc=0" in s, "the exit status")


def test_a_narrow_terminal_and_a_resize_never_break_the_screen(api: ApiFixture, narrow: Tmux) -> None:
    narrow.run(f"{TOP} --url {api.url}")
    screen = narrow.wait_for(lambda s: "java-leaky" in s, "the list on 40x10")
    assert first_row_after_header(screen).startswith("java-leaky"), screen
    assert "q quit" in screen.split("\n")[9]  # the footer on the last of 10 lines: nothing wrapped
    narrow.resize(100, 20)
    screen = narrow.wait_for(lambda s: "TREND" in s, "the wider columns after a resize")
    narrow.resize(20, 4)
    narrow.wait_for(lambda s: "java-leaky"[:6] in s or "java" in s, "a 20x4 screen")
    narrow.type("q")
    narrow.wait_for(lambda s: "poll #" not in s and PROMPT.strip() in s, "the shell back")
    narrow.run("echo rc=$?")
    narrow.wait_for(lambda s: "rc=0" in s, "the exit status")


def test_dumb_terminal_prints_one_frame_and_exits_0(api: ApiFixture, tmux: Tmux) -> None:
    tmux.run(f"TERM=dumb {TOP} --url {api.url}; echo rc=$?")
    screen = tmux.wait_for(lambda s: "\nrc=" in s, "the frame and the exit status")
    assert "\nrc=0\n" in screen and not tmux.alternate_on()
    assert first_row_after_header(screen).startswith("java-leaky"), screen


def _top(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tcpwatchd", "top", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "COLUMNS": "100", **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def test_a_pipe_gets_one_plain_frame_and_exit_0(api: ApiFixture) -> None:
    done = _top("--url", api.url)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("tcpwatchd top · http://127.0.0.1:") and "poll #42" in lines[0]
    assert first_row_after_header(done.stdout).startswith("java-leaky")
    assert "\x1b" not in done.stdout and all(len(line) <= 100 for line in lines)
    assert any(line.startswith("shop/api-7d9f") for line in lines)  # the pods table follows
    assert len([p for p in api.requests if p.startswith("/api/v1/snapshot")]) == 1


def test_an_unreachable_daemon_in_a_pipe_says_why_and_exits_1(api: ApiFixture) -> None:
    url = api.url
    api.stop()
    done = _top("--url", url)
    assert done.returncode == 1
    assert "daemon unreachable: Connection refused" in done.stderr


def test_basic_auth_401_is_explained_and_the_password_comes_from_the_environment() -> None:
    api = ApiFixture(user="ops", password="s3cret")
    try:
        refused = _top("--url", api.url)
        assert refused.returncode == 1
        assert "unauthorized (HTTP 401)" in refused.stderr and "TCPWATCHD_PASSWORD" in refused.stderr
        wrong = _top("--url", api.url, "--user", "ops", env={"TCPWATCHD_PASSWORD": "nope"})
        assert "refused this user and password" in wrong.stderr
        ok = _top("--url", api.url, "--user", "ops", env={"TCPWATCHD_PASSWORD": "s3cret"})
        assert ok.returncode == 0 and "java-leaky" in ok.stdout
        in_url = _top("--url", api.url.replace("//", "//ops:s3cret@"))
        assert in_url.returncode == 2 and "no password in the URL" in in_url.stderr
    finally:
        api.stop()


def test_local_polls_in_this_process_and_prints_one_frame() -> None:
    """`--local` uses tcpwatchd.outputs.api.local_document_source: a real poll here, no daemon."""
    done = _top("--local")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("tcpwatchd top · local poll") and "poll #1" in lines[0], lines[0]
    assert any(line.lstrip().startswith("PROCESS") for line in lines)
