"""Workloads for the issue-13 integration tests (tests/integration/test_detect_round_two.py).

Run inside a test's own network namespace (`NetNS.python("-m", "tests.support.round_two_workload", ...)`).
Each names itself (/proc/self/comm), prints one `READY ...` line when set up, and exits when its stdin
closes (or is killed by pid). Addresses are the test's: loopback or veth hosts in 198.18.0.0/15.

    acceptor 7700 --backlog 8 --stop --name ls-stuck      a listener that never accepts
    flood 127.0.0.1 7700 --count 40 --name ls-flood       40 non-blocking connects, held
    listener 7710 --nofile 256 --fds 0 --name fd-leaky    accepts and never closes (RLIMIT_NOFILE 256)
    loop 127.0.0.1 7710 --rate 10 --name fd-client        connect + close, 10 a second
    hammer 127.0.0.1 7720 --count 150 --name pe-hammer    connect + close (client first: TIME_WAIT)
    reader 7730 --every 0.1 --chunk 512 --name sr-slow    reads a little, often (or never: --every 0)
    scrape 127.0.0.2 127.0.0.1 9814 --every 5 --seconds 30   GET /metrics from a chosen source address
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.client import HTTPConnection


def _name_self(name: str) -> None:
    with open("/proc/self/comm", "w", encoding="ascii") as f:
        f.write(name[:15])


def _exit_on_eof() -> None:
    sys.stdin.read()
    os._exit(0)


def _ready(rest: str = "") -> None:
    print(f"READY {rest}".rstrip(), flush=True)
    _exit_on_eof()


def _background(target: Callable[[], None]) -> None:
    threading.Thread(target=target, daemon=True).start()


def acceptor(args: argparse.Namespace) -> None:
    """A listener with a small backlog; with --stop it never calls accept() (a stuck acceptor), else it
    accepts and closes at once (a busy one that keeps up)."""
    lsn = socket.socket()
    lsn.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsn.bind(("127.0.0.1", args.port))
    lsn.listen(args.backlog)
    if not args.stop:

        def serve() -> None:
            while True:
                conn, _ = lsn.accept()
                conn.close()

        _background(serve)
    _ready(str(args.port))


def flood(args: argparse.Namespace) -> None:
    """Opens --count connections without waiting for any (a full queue drops handshakes), and holds them."""
    held = []
    for _ in range(args.count):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((args.host, args.port))
        held.append(s)
        time.sleep(args.pause)
    _ready(str(len(held)))


def listener(args: argparse.Namespace) -> None:
    """A server under a chosen soft RLIMIT_NOFILE holding --fds extra fds; accepted connections are held
    and never closed (each peer's close leaves a CLOSE_WAIT that holds an fd: the leak)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, hard))
    extra = [os.open("/dev/null", os.O_RDONLY) for _ in range(args.fds)]
    lsn = socket.create_server(("127.0.0.1", args.port), backlog=128)
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                held.append(lsn.accept()[0])
            except OSError:  # EMFILE: the end state the forecast warns of
                time.sleep(0.05)

    _background(serve)
    _ready(str(len(extra)))


def loop(args: argparse.Namespace) -> None:
    """Connects and closes at --rate a second until stdin closes."""

    def run() -> None:
        while True:
            with socket.create_connection((args.host, args.port), timeout=5):
                pass
            time.sleep(1.0 / args.rate)

    _background(run)
    _ready()


def hammer(args: argparse.Namespace) -> None:
    """--count connections to one upstream, each closed by us first (our side keeps TIME_WAIT and its
    port for 60 s); the last one stays open, so the destination has an owner."""
    last = None
    for _ in range(args.count):
        if last is not None:
            last.close()
        last = socket.create_connection((args.host, args.port), timeout=5)
    _ready(str(args.count))


def reader(args: argparse.Namespace) -> None:
    """A server that reads --chunk bytes every --every seconds (0: never reads: a stopped reader)."""
    lsn = socket.create_server(("127.0.0.1", args.port), backlog=16)

    def serve() -> None:
        conn, _ = lsn.accept()
        while args.every > 0:
            conn.recv(args.chunk)
            time.sleep(args.every)
        time.sleep(3600)

    _background(serve)
    _ready(str(args.port))


def scrape(args: argparse.Namespace) -> None:
    """GET /metrics every --every seconds from --source for --seconds, each on a new connection as
    Prometheus does with an HTTP/1.0 server; prints DONE <scrapes>."""
    n, end = 0, time.monotonic() + args.seconds
    while time.monotonic() < end:
        started = time.monotonic()
        conn = HTTPConnection(args.host, args.port, timeout=5, source_address=(args.source, 0))
        conn.request("GET", "/metrics", headers={"Accept": "text/plain"})
        body = conn.getresponse().read()
        conn.close()
        assert b"tcpwatchd_build_info" in body
        n += 1
        time.sleep(max(0.0, args.every - (time.monotonic() - started)))
    print(f"DONE {n}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("acceptor")
    a.add_argument("port", type=int)
    a.add_argument("--backlog", type=int, default=8)
    a.add_argument("--stop", action="store_true")
    f = sub.add_parser("flood")
    f.add_argument("host")
    f.add_argument("port", type=int)
    f.add_argument("--count", type=int, default=40)
    f.add_argument("--pause", type=float, default=0.01)
    s = sub.add_parser("listener")
    s.add_argument("port", type=int)
    s.add_argument("--nofile", type=int, required=True)
    s.add_argument("--fds", type=int, default=0)
    c = sub.add_parser("loop")
    c.add_argument("host")
    c.add_argument("port", type=int)
    c.add_argument("--rate", type=float, default=10.0)
    h = sub.add_parser("hammer")
    h.add_argument("host")
    h.add_argument("port", type=int)
    h.add_argument("--count", type=int, default=150)
    r = sub.add_parser("reader")
    r.add_argument("port", type=int)
    r.add_argument("--every", type=float, default=0.0)
    r.add_argument("--chunk", type=int, default=512)
    g = sub.add_parser("scrape")
    g.add_argument("source")
    g.add_argument("host")
    g.add_argument("port", type=int)
    g.add_argument("--every", type=float, required=True)
    g.add_argument("--seconds", type=float, required=True)
    for parser in sub.choices.values():
        parser.add_argument("--name", required=True)
    args = p.parse_args()
    _name_self(args.name)
    {
        "acceptor": acceptor,
        "flood": flood,
        "listener": listener,
        "loop": loop,
        "hammer": hammer,
        "reader": reader,
        "scrape": scrape,
    }[args.cmd](args)


if __name__ == "__main__":
    main()
