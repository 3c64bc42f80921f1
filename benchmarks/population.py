"""Build N loopback TCP connections across P processes inside the benchmark's namespace.

Half the processes are servers (`bsrv-NN`, each listening on 127.0.0.1 and ::1 on its own port, accepting in
a loop and never closing), half are clients (`bcli-NN`, connecting to every server in turn). About 20 % of
the connections go over ::1; about 5 % are closed by the client right away, so the server side sits in
CLOSE_WAIT and the client side becomes an orphaned FIN_WAIT2. Every child exits when its stdin closes, when
its parent dies (PR_SET_PDEATHSIG) or after `--lifetime` seconds, whichever comes first.

The worst case (`Spec.worst`, issue 12) adds two shares on top, so that every connection detector has mass
findings at once: 5 % of the connections send a few bytes the server never reads (a stopped reader: the
server's receive queue stays non-empty), and 2.5 % send them marked DSCP CS1 after the handshake, which a tc
filter on the namespace's `lo` throws away on receipt, so the client retransmits them with backoff until
the kernel gives up (after `tcp_retries2`, raised in the namespace to outlast the run).

Child usage (the driver starts these): `population.py server INDEX PORT FDS LIFETIME`,
`population.py client INDEX CONNECTIONS SERVERS LIFETIME [worst]`.
"""

from __future__ import annotations

import ctypes
import resource
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from nsutil import Namespace, read_line
from worst import Shares, dropped, install_drop, send_shares, unread, wait_shares

BASE_PORT = 20000
V4_SOURCES = 16  # clients connect from 127.0.0.1 .. 127.0.0.16 (IP_BIND_ADDRESS_NO_PORT)
IP_BIND_ADDRESS_NO_PORT = 24  # include/uapi/linux/in.h: pick the port at connect(), per 4-tuple
PR_SET_NAME, PR_SET_PDEATHSIG = 15, 1  # include/uapi/linux/prctl.h
CLIENT_STRIDE = 1_000_003  # connection ids: client INDEX's n-th connection is INDEX * CLIENT_STRIDE + n
FD_MARGIN = 256  # stdio, listeners, the selector, Python's own


@dataclass(frozen=True, slots=True)
class Spec:
    connections: int
    processes: int
    worst: bool = False  # add the unread and retransmitting shares (issue 12's worst-case rows)

    @property
    def servers(self) -> int:
        return max(1, self.processes // 2)

    @property
    def clients(self) -> int:
        return max(1, self.processes - self.servers)

    def per_client(self, index: int) -> int:
        base, extra = divmod(self.connections, self.clients)
        return base + (1 if index < extra else 0)

    @property
    def per_server(self) -> int:
        """The fds a server asks RLIMIT_NOFILE for (plus FD_MARGIN): twice its share, so that its fd table
        stays about half full (capped at the hard limit when that cannot be raised, see _prepare)."""
        return 2 * self.connections // self.servers + 64

    @property
    def max_accepted(self) -> int:
        """An upper bound on the connections one server accepts and keeps (CLOSE_WAIT included): each
        client spreads its connections round-robin over the servers (`connect`), so a server gets at
        most one more than an even share from each client."""
        return -(-self.connections // self.servers) + self.clients

    @property
    def fds_needed(self) -> int:
        """The file descriptors the busiest child cannot do without."""
        return max(self.max_accepted, self.per_client(0)) + FD_MARGIN

    @property
    def expected_sockets(self) -> int:
        """Every connection has two ends; every server has two listeners."""
        return 2 * self.connections + 2 * self.servers

    def count(self, share: Callable[[int], bool]) -> int:
        """How many connections of this population `share` picks (by connection id)."""
        return sum(
            1
            for index in range(self.clients)
            for n in range(self.per_client(index))
            if share(index * CLIENT_STRIDE + n)
        )

    @property
    def expected_unread(self) -> int:
        """Server sockets with unread data queued (worst case only)."""
        return self.count(unread) if self.worst else 0

    @property
    def expected_retransmitting(self) -> int:
        """Client sockets retransmitting into the drop filter (worst case only)."""
        return self.count(dropped) if self.worst else 0


@dataclass(frozen=True, slots=True)
class Population:
    spec: Spec
    build_seconds: float
    sockets_seen: int
    ready_at: float  # time.monotonic() when the last client had connected (and sent, in the worst case)


def is_ipv6(conn: int) -> bool:
    return conn % 5 == 0


def closes(conn: int) -> bool:
    """5 % of connections, half of them over IPv6 (conn % 40 == 0 is also conn % 5 == 0)."""
    return conn % 40 in (0, 1)


# --- children ---------------------------------------------------------------------------------------------


def _prepare(name: str, fds: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_NAME, name.encode(), 0, 0, 0)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(fds + FD_MARGIN, 1024)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):  # no CAP_SYS_RESOURCE (e.g. in a container): the hard limit is the cap
        # (the driver checked that what a child cannot do without fits: bench_poll._allow_fds)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))


def _wait_for_eof(deadline: float, extra: selectors.BaseSelector | None = None) -> None:
    """Block until stdin closes or the deadline passes; accept on `extra`'s listeners meanwhile."""
    sel = extra or selectors.DefaultSelector()
    sel.register(sys.stdin, selectors.EVENT_READ)
    while (left := deadline - time.monotonic()) > 0:
        for key, _ in sel.select(timeout=left):
            if key.data is None:  # stdin: the driver never writes, so readable means EOF
                if not sys.stdin.readline():
                    return
            else:
                key.data(key.fileobj)


def serve(index: int, port: int, fds: int, lifetime: float) -> None:
    _prepare(f"bsrv-{index:02d}", fds)
    accepted: list[socket.socket] = []

    def drain(listener: socket.socket) -> None:
        for _ in range(100_000):  # bounded: the queue never holds more than somaxconn
            try:
                conn, _peer = listener.accept()
            except BlockingIOError:
                return
            accepted.append(conn)

    sel = selectors.DefaultSelector()
    for family, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        lsock = socket.socket(family, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind((addr, port))
        lsock.listen(65535)
        lsock.setblocking(False)
        sel.register(lsock, selectors.EVENT_READ, drain)
    print("listening", flush=True)
    _wait_for_eof(time.monotonic() + lifetime, sel)


def connect(index: int, count: int, servers: int, lifetime: float, worst: bool = False) -> None:
    _prepare(f"bcli-{index:02d}", count)
    kept: list[tuple[int, socket.socket]] = []
    for n in range(count):
        conn = index * CLIENT_STRIDE + n  # spreads families, servers and sources across clients
        port = BASE_PORT + conn % servers
        if is_ipv6(conn):
            sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            sock.connect(("::1", port))
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((f"127.0.0.{1 + conn % V4_SOURCES}", 0))
            sock.connect(("127.0.0.1", port))
        if closes(conn):
            sock.close()  # the server never closes its end: CLOSE_WAIT
        else:
            kept.append((conn, sock))
    if worst:
        send_shares(kept)
    print(f"ready {count}", flush=True)
    _wait_for_eof(time.monotonic() + lifetime)


# --- the builder (runs in the driver, outside the namespace) ----------------------------------------------


def build(ns: Namespace, spec: Spec, lifetime: float, others: int = 0, timeout: float = 600) -> Population:
    """Start the servers, then the clients; return once `ss` sees the whole population, fully accepted.

    `others` counts the sockets already in the namespace (node_exporter's listener).
    """
    start = time.monotonic()
    deadline = start + timeout
    me, life = __file__, str(lifetime)
    if spec.worst:
        install_drop(ns)
    servers = [
        ns.spawn(sys.executable, me, "server", str(i), str(BASE_PORT + i), str(spec.per_server), life)
        for i in range(spec.servers)
    ]
    _expect(servers, "listening", deadline)
    tail = [str(spec.servers), life, *(["worst"] if spec.worst else [])]
    clients = [
        ns.spawn(sys.executable, me, "client", str(i), str(spec.per_client(i)), *tail)
        for i in range(spec.clients)
    ]
    _expect(clients, "ready", deadline)
    ready_at = time.monotonic()
    seen = _wait_settled(ns, spec.expected_sockets + others, min(deadline, ready_at + 300))
    if spec.worst:
        want = Shares(spec.expected_unread, spec.expected_retransmitting)
        wait_shares(ns, want, min(deadline, time.monotonic() + 120))
    return Population(spec, time.monotonic() - start, seen, ready_at)


def _expect(children: list[subprocess.Popen[str]], word: str, deadline: float) -> None:
    for child in children:
        line = read_line(child, deadline)
        if not line.startswith(word):
            raise RuntimeError(f"population child {child.pid} said {line!r}, not {word!r} (see the log)")


def _wait_settled(ns: Namespace, expected: int, deadline: float) -> int:
    """Poll `ss` until every socket exists and no listener has a connection waiting to be accepted."""
    seen = 0
    while time.monotonic() < deadline:
        seen = len(ns.run("ss", "-tanH", timeout=120).stdout.splitlines())
        listeners = ns.run("ss", "-tlnH").stdout.splitlines()
        waiting = sum(int(line.split()[1]) for line in listeners)  # Recv-Q of a listener: accept queue
        if seen == expected and waiting == 0:
            return seen
        time.sleep(0.5)
    raise RuntimeError(f"population never settled: ss sees {seen} sockets, expected {expected}")


def _child_main(argv: list[str]) -> None:
    role, *args = argv
    if role == "server":
        serve(int(args[0]), int(args[1]), int(args[2]), float(args[3]))
    elif role == "client":
        connect(int(args[0]), int(args[1]), int(args[2]), float(args[3]), args[4:] == ["worst"])
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    _child_main(sys.argv[1:])
