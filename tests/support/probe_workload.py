"""A server that holds idle connections without keepalive, and a client that stays connected, quietly.

Run inside a test's namespace (`NetNS.python("-m", "tests.support.probe_workload", ...)`).

    server 198.18.1.1 7200 --name pb-server     # prints READY, then ACCEPT <peer> per connection
    client 198.18.1.1 7200 --bind 198.18.1.2 --bind-port 40000 --name pb-client

The server answers commands on stdin about its own sockets, seen from inside the owner:
`opts` prints `OPTS <peer> <keepalive> <idle> <interval> <count>` per connection, and `recv` prints
`RECV <peer> <what>` where what is `again` (nothing to read, no error), `eof`, `data:<n>` or an errno name.
"""

from __future__ import annotations

import argparse
import errno
import selectors
import socket
import sys
import time


def name_self(name: str) -> None:
    with open("/proc/self/comm", "w", encoding="ascii") as f:
        f.write(name[:15])


def _peer(conn: socket.socket) -> str:
    host, port = conn.getpeername()[:2]
    return f"{host}:{port}"


def _opts(conn: socket.socket) -> str:
    ka = conn.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
    tcp = [
        conn.getsockopt(socket.IPPROTO_TCP, o)
        for o in (socket.TCP_KEEPIDLE, socket.TCP_KEEPINTVL, socket.TCP_KEEPCNT)
    ]
    return " ".join(str(v) for v in (int(bool(ka)), *tcp))


def _recv(conn: socket.socket) -> str:
    try:
        data = conn.recv(4096, socket.MSG_DONTWAIT)
    except BlockingIOError:
        return "again"
    except OSError as e:
        return errno.errorcode.get(e.errno or 0, str(e.errno))
    return f"data:{len(data)}" if data else "eof"


def serve(host: str, port: int) -> None:
    lsn = socket.create_server((host, port), backlog=16)
    conns: dict[str, socket.socket] = {}
    sel = selectors.DefaultSelector()
    sel.register(lsn, selectors.EVENT_READ, "accept")
    sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
    print("READY", flush=True)
    while True:
        for key, _ in sel.select():
            if key.data == "accept":
                conn, _addr = lsn.accept()
                conns[_peer(conn)] = conn
                print(f"ACCEPT {_peer(conn)}", flush=True)
                continue
            line = sys.stdin.readline().strip()
            if not line:
                return
            for peer, conn in conns.items():
                out = _opts(conn) if line == "opts" else _recv(conn)
                print(f"{line.upper()} {peer} {out}", flush=True)
            print(f"END {line}", flush=True)


def client(host: str, port: int, bind: str, bind_port: int) -> None:
    conn = socket.create_connection((host, port), timeout=5, source_address=(bind, bind_port))
    print(f"READY {conn.getsockname()[1]}", flush=True)
    sys.stdin.read()  # stay connected, silent, until stdin closes or we are killed
    time.sleep(0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("role", choices=("server", "client"))
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--bind", default="")
    ap.add_argument("--bind-port", type=int, default=0)
    ap.add_argument("--name", required=True)
    args = ap.parse_args()
    name_self(args.name)
    if args.role == "server":
        serve(args.host, args.port)
    else:
        client(args.host, args.port, args.bind, args.bind_port)


if __name__ == "__main__":
    main()
