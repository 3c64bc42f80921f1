"""A healthy periodic client: connect, wait for the server to answer and close, close, every PERIOD
seconds (a health checker, a proxy without upstream keepalive at a steady rate, a scraper).

    python -m tests.support.periodic_client HOST PORT PERIOD COUNT

Prints READY before the first connection and DONE after the last; each connection waits for the
server to close (the server keeps the TIME_WAIT, as an HTTP/1.0 server does).
"""

from __future__ import annotations

import socket
import sys
import time


def main() -> int:
    host, port, period, count = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    print("READY", flush=True)
    for _ in range(count):
        start = time.monotonic()
        with socket.create_connection((host, port), timeout=5) as sock:
            while sock.recv(4096):  # the server answers and closes first (its side keeps the TIME_WAIT)
                pass
        time.sleep(max(0.0, period - (time.monotonic() - start)))
    print("DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
