"""Many short-lived processes with distinct names, from an unprivileged user:
`python name_churn.py COUNT PER_SECOND`.

Drops to nobody (65534), listens on 127.0.0.1 (a thread accepts and closes), then forks COUNT children
at PER_SECOND: child i names itself `churn<i>` (PR_SET_NAME), connects, holds the connection 0.5 s and
exits. At most 200 children live at once; each is reaped by its own pid. Prints `READY` before the first
fork and `DONE <forked>` at the end.
"""

from __future__ import annotations

import ctypes
import encodings.idna  # noqa: F401  (imported before dropping privileges: the interpreter may live in /root)
import os
import socket
import sys
import threading
import time

PR_SET_NAME = 15
libc = ctypes.CDLL(None)


def accept_forever(listener: socket.socket) -> None:
    while True:
        conn, _ = listener.accept()
        conn.close()


def child(i: int, port: int) -> None:
    libc.prctl(PR_SET_NAME, ctypes.c_char_p(f"churn{i}".encode()), 0, 0, 0)
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        time.sleep(0.5)
        s.close()
    finally:
        os._exit(0)


def main() -> None:
    count, rate = int(sys.argv[1]), float(sys.argv[2])
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
    listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
    port = listener.getsockname()[1]
    threading.Thread(target=accept_forever, args=(listener,), daemon=True).start()
    print(f"READY uid={os.getuid()}", flush=True)
    live: set[int] = set()
    start = time.monotonic()
    for i in range(count):
        time.sleep(max(0.0, start + i / rate - time.monotonic()))
        while len(live) >= 200:
            live.discard(os.waitpid(min(live), 0)[0])
        pid = os.fork()
        if pid == 0:
            child(i, port)
        live.add(pid)
        for p in list(live):
            if os.waitpid(p, os.WNOHANG)[0]:
                live.discard(p)
    for p in live:
        os.waitpid(p, 0)
    print(f"DONE {count}", flush=True)


if __name__ == "__main__":
    main()
