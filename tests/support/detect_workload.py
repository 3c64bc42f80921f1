"""Workloads for the detector integration tests: small TCP servers and clients with chosen manners.

Run inside a test's own network namespace (`NetNS.python("-m", "tests.support.detect_workload", ...)`).
Each names itself (/proc/self/comm) so findings can be told apart by process, prints one `READY ...` line
when set up, and then serves until killed or until stdin closes. Addresses are the test's: loopback or
veth hosts in 198.18.0.0/15.

    server --port 7001 --mode hold --name cw-leaky
    client 127.0.0.1 7001 --count 3 --send 10 --close --name cw-client
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import sys
import threading
import time

# What a server does with an accepted connection:
#   hold:    never reads, never closes (a CLOSE_WAIT leak once the peer closes; a stalled receiver)
#   close:   reads until EOF, then closes (a service that closes promptly)
#   echo:    echoes what it reads, closes at EOF
#   drain:   reads and discards everything, closes at EOF
#   readonce: reads once, then never again (leaves only the peer's FIN unread)
#   reject:  closes at once (the server closes first and keeps TIME_WAIT)
#   kaflag:  reads one byte; b"K" turns SO_KEEPALIVE on; then holds
MODES = ("hold", "close", "echo", "drain", "readonce", "reject", "kaflag")


def name_self(name: str) -> None:
    with open("/proc/self/comm", "w", encoding="ascii") as f:
        f.write(name[:15])


def serve(host: str, port: int, mode: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    lsn = socket.create_server(
        (host, port), family=family, backlog=128, dualstack_ipv6=family == socket.AF_INET6
    )
    sel = selectors.DefaultSelector()
    sel.register(lsn, selectors.EVENT_READ, "accept")
    sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
    held: list[socket.socket] = []
    print(f"READY {port}", flush=True)
    while True:
        for key, _ in sel.select():
            if key.data == "accept":
                conn, _peer = lsn.accept()
                _accepted(sel, conn, mode, held)
            elif key.data == "stdin":
                if not _command(sys.stdin.readline(), held, sel):
                    return
            else:
                _readable(sel, key.fileobj, mode)  # type: ignore[arg-type]


def _accepted(sel: selectors.BaseSelector, conn: socket.socket, mode: str, held: list[socket.socket]) -> None:
    if mode == "reject":
        conn.close()
        return
    held.append(conn)
    if mode != "hold":
        sel.register(conn, selectors.EVENT_READ, "conn")


def _readable(sel: selectors.BaseSelector, conn: socket.socket, mode: str) -> None:
    try:
        data = conn.recv(1 if mode == "kaflag" else 65536)
    except ConnectionError:
        data = b""
    if mode in ("readonce", "kaflag"):
        sel.unregister(conn)
        if data == b"K":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return
    if not data:
        sel.unregister(conn)
        conn.close()
    elif mode == "echo":
        conn.sendall(data)


def _command(line: str, held: list[socket.socket], sel: selectors.BaseSelector) -> bool:
    """`close` closes every held connection; EOF on stdin ends the server."""
    if not line:
        return False
    if line.strip() == "close":
        for conn in held:
            if conn.fileno() >= 0:
                if conn in sel.get_map():
                    sel.unregister(conn)
                conn.close()
        held.clear()
        print("CLOSED", flush=True)
    return True


def _connect(args: argparse.Namespace, i: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    if args.keepalive:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if args.bind or args.bind_port:
        sock.bind(
            (
                args.bind or ("::" if family == socket.AF_INET6 else "0.0.0.0"),
                args.bind_port + i if args.bind_port else 0,
            )
        )
    sock.settimeout(10)
    sock.connect((args.host, args.port))
    if args.first:
        sock.sendall(args.first.encode())
    if args.send:
        sock.sendall(b"x" * args.send)
    if args.hello:
        sock.sendall(b"hello")
        _recv_exactly(sock, 5)
    return sock


def _recv_exactly(sock: socket.socket, n: int) -> None:
    got = 0
    while got < n:
        chunk = sock.recv(n - got)
        if not chunk:
            raise ConnectionError("peer closed")
        got += len(chunk)


def client(args: argparse.Namespace) -> None:
    held = []
    for i in range(args.count):
        sock = _connect(args, i)
        if args.wait_close:
            while sock.recv(65536):
                pass  # the server closes first (and keeps the TIME_WAIT)
            sock.close()
        elif args.close:
            sock.close()
        else:
            held.append(sock)
    print("READY " + ",".join(str(s.getsockname()[1]) for s in held), flush=True)
    sel = selectors.DefaultSelector()
    sel.register(sys.stdin, selectors.EVENT_READ)
    while True:
        if sel.select(timeout=args.talk or None):
            line = sys.stdin.readline()
            if not line:
                return
            if line.strip() == "close":
                for sock in held:
                    sock.close()
                held.clear()
                print("CLOSED", flush=True)
        for sock in held:  # talk: one small exchange per connection per period
            sock.sendall(b"ping")
            _recv_exactly(sock, 4)


def sender(args: argparse.Namespace) -> None:
    """Connects and writes without pause; blocks once the peer stops acking or reading."""
    sock = _connect(args, 0)
    sock.settimeout(None)  # block while the peer is silent: a send timeout would orphan the socket
    print(f"READY {sock.getsockname()[1]}", flush=True)
    threading.Thread(target=_exit_on_eof, daemon=True).start()
    chunk = b"y" * 65536
    while True:
        sock.sendall(chunk)
        time.sleep(0.01)


def _exit_on_eof() -> None:
    sys.stdin.read()
    os._exit(0)


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    srv = sub.add_parser("server")
    srv.add_argument("--host", default="0.0.0.0")
    srv.add_argument("--port", type=int, required=True)
    srv.add_argument("--mode", choices=MODES, required=True)
    for name in ("client", "send"):
        c = sub.add_parser(name)
        c.add_argument("host")
        c.add_argument("port", type=int)
        c.add_argument("--count", type=int, default=1)
        c.add_argument("--bind", default="")
        c.add_argument("--bind-port", type=int, default=0)
        c.add_argument("--keepalive", action="store_true")
        c.add_argument("--first", default="")
        c.add_argument("--send", type=int, default=0)
        c.add_argument("--hello", action="store_true", help="exchange one echo, then go quiet")
        c.add_argument("--close", action="store_true", help="close each connection at once")
        c.add_argument("--wait-close", action="store_true", help="close each connection after the server did")
        c.add_argument("--talk", type=float, default=0.0, help="exchange a ping every this many seconds")
    for c in sub.choices.values():
        c.add_argument("--name", required=True)
    args = p.parse_args()
    name_self(args.name)
    if args.cmd == "server":
        serve(args.host, args.port, args.mode)
    elif args.cmd == "client":
        client(args)
    else:
        sender(args)


if __name__ == "__main__":
    main()
