"""Build a known TCP population in this network namespace, print `READY`, hold it until stdin closes.

Run it inside a private namespace (tests.support.netns) only: it binds fixed ports on loopback. Every
client binds a fixed port too, so the population (and a fixture recorded from it) is fully predictable:

    5001  127.0.0.1 listener; its clients:
          6001 keepalive on (client side only)     6002 1000 bytes the server never reads
          6003 client close() -> orphan FIN_WAIT2 / server CLOSE_WAIT
          6004 client shutdown(SHUT_WR) -> FIN_WAIT2 with a file / server CLOSE_WAIT
          6005 server closes first -> server-side TIME_WAIT     6006 never accepted (backlog 1)
    5002  TCP_DEFER_ACCEPT listener; client 6007 -> a request socket (SYN-RECV) on the server side
    5003  listen(0) with one pending connection (6008); client 6009 stays in SYN_SENT (SYN dropped)
    5004  [::1] listener (v6only); client 6010 with 7 unread bytes
    5005  [::] dual-stack listener; IPv4 client 127.0.0.1:6011 -> a ::ffff:127.0.0.1 server socket
    5006  0.0.0.0 listener
    5007  (--persist) a receiver that never reads; client 6012 fills its window and closes -> FIN_WAIT1
          with the zero-window probe timer
"""

from __future__ import annotations

import select
import socket
import sys
import time

V4, V6 = socket.AF_INET, socket.AF_INET6
HOLD_SECONDS = 300  # a bound, in case the parent never closes our stdin

# (state name, local endpoint, remote endpoint, receive queue) of every socket, as tcpwatchd.model.Socket
# spells them (`Socket.local`, `Socket.remote`); the receive queue of a LISTEN socket is its accept backlog,
# an unread FIN counts 1 (CLOSE_WAIT).
EXPECTED: tuple[tuple[str, str, str, int], ...] = (
    ("LISTEN", "127.0.0.1:5001", "0.0.0.0:0", 1),
    ("ESTABLISHED", "127.0.0.1:6001", "127.0.0.1:5001", 0),
    ("ESTABLISHED", "127.0.0.1:5001", "127.0.0.1:6001", 0),
    ("ESTABLISHED", "127.0.0.1:6002", "127.0.0.1:5001", 0),
    ("ESTABLISHED", "127.0.0.1:5001", "127.0.0.1:6002", 1000),
    ("FIN_WAIT2", "127.0.0.1:6003", "127.0.0.1:5001", 0),
    ("CLOSE_WAIT", "127.0.0.1:5001", "127.0.0.1:6003", 1),
    ("FIN_WAIT2", "127.0.0.1:6004", "127.0.0.1:5001", 0),
    ("CLOSE_WAIT", "127.0.0.1:5001", "127.0.0.1:6004", 1),
    ("TIME_WAIT", "127.0.0.1:5001", "127.0.0.1:6005", 0),
    ("ESTABLISHED", "127.0.0.1:6006", "127.0.0.1:5001", 0),
    ("ESTABLISHED", "127.0.0.1:5001", "127.0.0.1:6006", 0),
    ("LISTEN", "127.0.0.1:5002", "0.0.0.0:0", 0),
    ("ESTABLISHED", "127.0.0.1:6007", "127.0.0.1:5002", 0),
    ("SYN_RECV", "127.0.0.1:5002", "127.0.0.1:6007", 0),
    ("LISTEN", "127.0.0.1:5003", "0.0.0.0:0", 1),
    ("ESTABLISHED", "127.0.0.1:6008", "127.0.0.1:5003", 0),
    ("ESTABLISHED", "127.0.0.1:5003", "127.0.0.1:6008", 0),
    ("SYN_SENT", "127.0.0.1:6009", "127.0.0.1:5003", 0),
    ("LISTEN", "[::1]:5004", "[::]:0", 0),
    ("ESTABLISHED", "[::1]:6010", "[::1]:5004", 7),
    ("ESTABLISHED", "[::1]:5004", "[::1]:6010", 0),
    ("LISTEN", "[::]:5005", "[::]:0", 0),
    ("ESTABLISHED", "127.0.0.1:6011", "127.0.0.1:5005", 0),
    ("ESTABLISHED", "[::ffff:127.0.0.1]:5005", "[::ffff:127.0.0.1]:6011", 0),
    ("LISTEN", "0.0.0.0:5006", "0.0.0.0:0", 0),
)
KEEPALIVE_ON = ("127.0.0.1:6001", "127.0.0.1:5001")  # (local, remote): SO_KEEPALIVE, TCP_KEEPIDLE 600 s
KEEPALIVE_OFF = ("127.0.0.1:5001", "127.0.0.1:6001")  # its peer, which never set SO_KEEPALIVE


def listener(family: int, host: str, port: int, backlog: int = 16, **opts: int) -> socket.socket:
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == V6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, opts.pop("v6only", 1))
    for name, value in opts.items():
        level = socket.SOL_SOCKET if name.startswith("SO_") else socket.IPPROTO_TCP
        s.setsockopt(level, getattr(socket, name), value)
    s.bind((host, port))
    s.listen(backlog)
    return s


def client(family: int, host: str, port: int, to: tuple[str, int], block: bool = True) -> socket.socket:
    c = socket.socket(family, socket.SOCK_STREAM)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    c.bind((host, port))
    if block:
        c.connect(to)
    else:
        c.setblocking(False)
        c.connect_ex(to)
    return c


def pair(lst: socket.socket, family: int, host: str, port: int) -> tuple[socket.socket, socket.socket]:
    c = client(family, host, port, lst.getsockname()[:2])
    s, _ = lst.accept()
    return c, s


def build(persist: bool) -> list[socket.socket]:
    keep: list[socket.socket] = []
    lst = listener(V4, "127.0.0.1", 5001)
    c, s = pair(lst, V4, "127.0.0.1", 6001)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 600)
    keep += [c, s]
    c, s = pair(lst, V4, "127.0.0.1", 6002)
    c.sendall(b"x" * 1000)
    keep += [c, s]
    c, s = pair(lst, V4, "127.0.0.1", 6003)
    c.close()
    keep.append(s)
    c, s = pair(lst, V4, "127.0.0.1", 6004)
    c.shutdown(socket.SHUT_WR)
    keep += [c, s]
    c, s = pair(lst, V4, "127.0.0.1", 6005)
    s.close()
    time.sleep(0.05)  # let the client see the FIN before it closes in turn
    c.close()
    keep += [lst, client(V4, "127.0.0.1", 6006, ("127.0.0.1", 5001))]
    keep += _special_listeners()
    keep += _ipv6()
    keep.append(listener(V4, "0.0.0.0", 5006))
    if persist:
        keep += _zero_window()
    time.sleep(0.2)  # FINs, ACKs and TIME_WAIT transitions settle on loopback
    return keep


def _special_listeners() -> list[socket.socket]:
    defer = listener(V4, "127.0.0.1", 5002, TCP_DEFER_ACCEPT=30)
    full = listener(V4, "127.0.0.1", 5003, backlog=0)
    pending = client(V4, "127.0.0.1", 6008, ("127.0.0.1", 5003))
    syn_sent = client(V4, "127.0.0.1", 6009, ("127.0.0.1", 5003), block=False)
    return [defer, client(V4, "127.0.0.1", 6007, ("127.0.0.1", 5002)), full, pending, syn_sent]


def _ipv6() -> list[socket.socket]:
    lst6 = listener(V6, "::1", 5004)
    c, s = pair(lst6, V6, "::1", 6010)
    s.sendall(b"y" * 7)
    dual = listener(V6, "::", 5005, v6only=0)
    c4 = client(V4, "127.0.0.1", 6011, ("127.0.0.1", 5005))
    s4, _ = dual.accept()
    return [lst6, c, s, dual, c4, s4]


def _zero_window() -> list[socket.socket]:
    lst = listener(V4, "127.0.0.1", 5007, SO_RCVBUF=4096)
    c = client(V4, "127.0.0.1", 6012, ("127.0.0.1", 5007))
    s, _ = lst.accept()
    c.setblocking(False)
    for _ in range(10_000):  # bounded: stops as soon as the peer's window and our buffer are full
        try:
            c.send(b"z" * 4096)
        except BlockingIOError:
            break
    c.close()  # unsent data: the FIN waits behind it, in FIN_WAIT1, probing the zero window
    return [lst, s]


def main() -> int:
    keep = build(persist="--persist" in sys.argv)
    print(f"READY {len(keep)}", flush=True)
    select.select([sys.stdin], [], [], HOLD_SECONDS)
    for s in keep:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
