"""Slow and half-open HTTP clients from an unprivileged user: `python slow_clients.py PORT COUNT SECONDS`.

Drops to nobody (65534) first, then holds COUNT connections to 127.0.0.1:PORT: a third never send a
byte, a third send half a request line, a third trickle one header byte every half second; any the
server closes are reopened. Prints `READY <open>` once the first round is up, then runs for SECONDS.
"""

from __future__ import annotations

import encodings.idna  # noqa: F401  (imported before dropping privileges: the interpreter may live in /root)
import os
import resource
import socket
import sys
import time


def drop_privileges() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)


def open_one(port: int, kind: int) -> socket.socket | None:
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=1)
        s.setblocking(False)
        if kind >= 1:
            s.send(b"GET /metr")
        return s
    except OSError:
        return None


def main() -> None:
    port, count, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    drop_privileges()
    conns: list[socket.socket | None] = [open_one(port, i % 3) for i in range(count)]
    print(f"READY {sum(c is not None for c in conns)} uid={os.getuid()}", flush=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for i, s in enumerate(conns):
            try:
                if s is None:
                    raise OSError
                if i % 3 == 2:
                    s.send(b"X")
                elif s.recv(1, socket.MSG_PEEK) == b"":  # closed by the server: reopen
                    raise OSError
            except BlockingIOError:
                pass
            except OSError:
                if s is not None:
                    s.close()
                conns[i] = open_one(port, i % 3)
        time.sleep(0.5)


if __name__ == "__main__":
    main()
