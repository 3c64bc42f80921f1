"""Connection churn on a constant socket table, plus an optional slowly growing CLOSE_WAIT leak.

`python loadgen.py --held N --rate R --leak-per-minute L --seconds S` (inside the benchmark namespace):
holds N loopback connections (client and server end in this process, so 2N sockets), and every second
replaces R of them (the oldest is closed with SO_LINGER 0 on both ends, so no TIME_WAIT piles up, and a
new one is opened), so the table stays the same size while R new connections/s are seen. Sources rotate
over 127.0.0.1-16 and 4 listening ports, as many peers as a small service sees. With L > 0, L
connections a minute are left in CLOSE_WAIT (the client closes, this server end never does). Prints
`READY <held>` when the table is full, then one `RATE <achieved per second>` line every 10 s; exits
after S seconds or on EOF on stdin.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import resource
import select
import socket
import struct
import sys
import time

LINGER_RST = struct.pack("ii", 1, 0)
PORTS = 4
SOURCES = 16


def _name(name: str) -> None:
    ctypes.CDLL(None).prctl(15, ctypes.c_char_p(name.encode()), 0, 0, 0)  # PR_SET_NAME


class Pairs:
    def __init__(self) -> None:
        self.listeners = [socket.create_server(("127.0.0.1", 0), backlog=4096) for _ in range(PORTS)]
        self.ports = [s.getsockname()[1] for s in self.listeners]
        self.held: collections.deque[tuple[socket.socket, socket.socket]] = collections.deque()
        self.leaked: list[socket.socket] = []
        self.n = 0

    def open(self) -> tuple[socket.socket, socket.socket]:
        self.n += 1
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        client.bind((f"127.0.0.{1 + self.n % SOURCES}", 0))
        client.connect(("127.0.0.1", self.ports[self.n % PORTS]))
        server, _ = self.listeners[self.n % PORTS].accept()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        return client, server

    def replace_oldest(self) -> None:
        client, server = self.held.popleft()
        client.close()
        server.close()
        self.held.append(self.open())

    def leak_one(self) -> None:
        client, server = self.open()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 0, 0))
        client.close()  # FIN to the server end, which never closes: CLOSE_WAIT
        self.leaked.append(server)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--held", type=int, required=True)
    p.add_argument("--rate", type=float, default=0.0)
    p.add_argument("--leak-per-minute", type=float, default=0.0)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--name", default="loadgen")
    a = p.parse_args()
    _name(a.name)
    want = 2 * a.held + 1000 + int(a.leak_per_minute * a.seconds / 60) + 64
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, 1024), max(hard, want)))
    pairs = Pairs()
    for _ in range(a.held):
        pairs.held.append(pairs.open())
    print(f"READY {len(pairs.held)}", flush=True)
    start = last_report = time.monotonic()
    replaced = leaked = replaced_at_report = 0
    while (now := time.monotonic()) - start < a.seconds:
        if select.select([sys.stdin], [], [], 0)[0] and not sys.stdin.readline():
            break
        due = int((now - start) * a.rate) - replaced
        for _ in range(min(due, max(1, int(a.rate)))):  # at most a second's worth per round
            pairs.replace_oldest()
            replaced += 1
        while leaked < int((now - start) * a.leak_per_minute / 60):
            pairs.leak_one()
            leaked += 1
        if now - last_report >= 10:
            print(f"RATE {(replaced - replaced_at_report) / (now - last_report):.0f}", flush=True)
            last_report, replaced_at_report = now, replaced
        time.sleep(0.002 if due > 0 else 0.01)


if __name__ == "__main__":
    main()
