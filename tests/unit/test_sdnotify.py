from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tcpwatchd.sdnotify import Notifier


def test_no_notify_socket_is_a_no_op() -> None:
    n = Notifier(env={})
    assert not n.enabled and n.watchdog_seconds is None
    n.ready("x")  # nothing to send to, nothing raised


def test_messages_reach_a_path_socket_and_newlines_cannot_inject_fields(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    try:
        n = Notifier(env={"NOTIFY_SOCKET": str(path)})
        n.ready("12 sockets\nREADY=0")
        assert listener.recv(4096).decode().split("\n") == ["READY=1", "STATUS=12 sockets READY=0"]
    finally:
        listener.close()


def test_abstract_socket() -> None:
    name = f"tcpwatchd-test-{os.getpid()}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind("\0" + name)
    try:
        Notifier(env={"NOTIFY_SOCKET": "@" + name}).watchdog()
        assert listener.recv(64) == b"WATCHDOG=1"
    finally:
        listener.close()


def test_a_manager_that_stops_reading_never_blocks_the_daemon(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    try:
        n = Notifier(env={"NOTIFY_SOCKET": str(path)})
        for _ in range(5000):  # far past the receive queue's length: sends are dropped, not blocked
            n.watchdog()
    finally:
        listener.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert Notifier(env=env).watchdog_seconds == expected
