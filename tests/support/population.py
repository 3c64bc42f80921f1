"""A known socket population for the attribution tests, run inside a private network namespace.

    python population.py

Forks named processes (PR_SET_NAME), builds listeners, established pairs (IPv4 and IPv6), CLOSE_WAIT
(the peer closed, the server never does), FIN_WAIT2 orphans (the client closed), TIME_WAIT, and a
listener shared by a pre-fork master and its worker. Prints READY, then holds everything until killed
(or 120 s pass). Loopback only.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import sys
import time

LIFETIME = 120
PR_SET_NAME = 15


def set_name(name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()), 0, 0, 0)


def listener(family: int, addr: str, port: int) -> socket.socket:
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(64)
    return s


def child(name: str, body: object) -> tuple[int, int]:
    """Fork a child that names itself, runs `body()`, reports on a pipe, then waits (bounded).

    Returns the pid and the pipe's read end, which yields one byte once `body()` has finished."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        set_name(name)
        keep = body()  # type: ignore[operator]  # noqa: F841 - sockets must stay referenced
        os.write(w, b"x")
        deadline = time.monotonic() + LIFETIME
        while time.monotonic() < deadline:
            time.sleep(1)
        os._exit(0)
    os.close(w)
    return pid, r


def main() -> None:
    signal.alarm(LIFETIME)
    alpha4 = listener(socket.AF_INET, "127.0.0.1", 7001)
    alpha6 = listener(socket.AF_INET6, "::1", 7002)
    gamma = listener(socket.AF_INET, "127.0.0.1", 7003)
    shared = listener(socket.AF_INET, "127.0.0.1", 7004)
    started: list[tuple[int, int]] = []

    def alpha() -> list[socket.socket]:
        # Accepts and never closes: the 2 peers that close leave CLOSE_WAIT here.
        return (
            [alpha4, alpha6] + [alpha4.accept()[0] for _ in range(5)] + [alpha6.accept()[0] for _ in range(3)]
        )

    def gamma_body() -> list[socket.socket]:
        out = [gamma]
        conn, _ = gamma.accept()
        conn.recv(1)  # EOF: the client closed first; closing here leaves the client in TIME_WAIT
        conn.close()
        return out

    started.append(child("srv-alpha", lambda: alpha()))
    started.append(child("srv-gamma", lambda: (gamma_body(), time.sleep(0.2))))
    master_pid = os.getpid()
    set_name("pf-master")
    started.append(child("pf-worker", lambda: [shared]))

    def beta() -> list[socket.socket]:
        v4 = [socket.create_connection(("127.0.0.1", 7001)) for _ in range(5)]
        v6 = [socket.create_connection(("::1", 7002)) for _ in range(3)]
        for s in v4[:2]:
            s.close()  # orphaned FIN_WAIT2 here, CLOSE_WAIT at srv-alpha
        socket.create_connection(("127.0.0.1", 7003)).close()
        pending = socket.create_connection(("127.0.0.1", 7004))  # waits in pf's accept queue
        time.sleep(0.5)
        return v4[2:] + v6 + [pending]

    started.append(child("cli-beta", beta))
    for s in (alpha4, alpha6, gamma):
        s.close()  # the parent keeps only `shared`, as the pre-fork master
    for _, r in started:
        assert os.read(r, 1) == b"x", "a child failed to start"
        os.close(r)
    pids = [pid for pid, _ in started]
    print(f"READY {master_pid} {' '.join(map(str, pids))}", flush=True)

    def stop(signum: int, frame: object) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGALRM, stop)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
