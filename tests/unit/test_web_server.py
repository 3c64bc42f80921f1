"""The web server on loopback, in-process: bounded threads and connections, timeouts, caps, keep-alive."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter

from tcpwatchd.web.routes import metrics_handler
from tcpwatchd.web.server import Limits, WebServer

LIMITS = Limits(workers=2, max_connections=20, max_head_bytes=1024, read_timeout=0.5, idle_timeout=1.0)


@pytest.fixture
def server() -> Iterator[WebServer]:
    registry = CollectorRegistry()
    Counter("tcpwatchd_test", "A counter.", registry=registry).inc()
    srv = WebServer(LIMITS)
    srv.route_raw("/metrics", metrics_handler(registry))
    srv.route("/api/v1/echo", lambda q: (400, {"error": "bad"}) if "bad" in q else (200, q))
    srv.listen("127.0.0.1", 0)
    yield srv
    srv.close()


def connect(srv: WebServer) -> socket.socket:
    assert srv.address is not None
    return socket.create_connection(srv.address, timeout=5)


def exchange(sock: socket.socket, request: bytes) -> bytes:
    """Send one request and read one response (by Content-Length)."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(ln.split(b":")[1] for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length"))
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def get(srv: WebServer, path: str = "/metrics", extra: bytes = b"") -> bytes:
    with connect(srv) as s:
        return exchange(s, b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n" + extra + b"\r\n")


def closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_metrics_and_json_routes(server: WebServer) -> None:
    assert b"tcpwatchd_test_total 1.0" in get(server)
    assert b'{"a":"1"}' in get(server, "/api/v1/echo?a=1")
    assert get(server, "/api/v1/echo?bad=1").startswith(b"HTTP/1.1 400")
    assert get(server, "/api/v1/echo?a=1&a=2").startswith(b"HTTP/1.1 400")
    assert get(server, "/nope").startswith(b"HTTP/1.1 404")
    gz = get(server, extra=b"Accept-Encoding: gzip\r\n")
    assert b"Content-Encoding: gzip" in gz
    om = get(server, extra=b"Accept: application/openmetrics-text; version=1.0.0\r\n")
    assert b"application/openmetrics-text" in om and b"# EOF" in om


def test_keep_alive_serves_many_requests_on_one_connection(server: WebServer) -> None:
    with connect(server) as s:
        for _ in range(5):
            resp = exchange(s, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
            assert resp.startswith(b"HTTP/1.1 200") and b"Connection: keep-alive" in resp
        resp = exchange(s, b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert b"Connection: close" in resp
        assert closed_by_server(s, 2)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n", b"405"),
        (b"GET /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello", b"413"),
        (b"GET /metrics HTTP/2.0\r\n\r\n", b"505"),
        (b"GET http://x/metrics HTTP/1.1\r\n\r\n", b"400"),
        (b"GET /metrics HTTP/1.1\r\n folded: x\r\n\r\n", b"400"),
        (b"GET /metrics HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 2000 + b"\r\n\r\n", b"431"),
    ],
)
def test_bad_requests_are_answered_and_closed(server: WebServer, request_bytes: bytes, status: bytes) -> None:
    with connect(server) as s:
        assert exchange(s, request_bytes).startswith(b"HTTP/1.1 " + status)
        assert closed_by_server(s, 2)


def test_a_silent_connection_is_closed_after_the_read_timeout(server: WebServer) -> None:
    with connect(server) as s:
        s.sendall(b"GET /metr")  # half a request, then nothing (slowloris)
        assert closed_by_server(s, 3)


def test_full_server_evicts_idle_connections_and_keeps_threads(server: WebServer) -> None:
    threads = threading.active_count()
    slow = [connect(server) for _ in range(100)]  # five times the cap, all silent
    try:
        for s in slow[::7]:
            s.sendall(b"GET /")  # some half-sent requests too
        t0 = time.monotonic()
        assert get(server).startswith(b"HTTP/1.1 200")  # admitted by evicting the oldest idle one
        assert time.monotonic() - t0 < 2
        assert threading.active_count() == threads
        assert sum(closed_by_server(s, 0.01) for s in slow) >= 100 - LIMITS.max_connections
    finally:
        for s in slow:
            s.close()


def test_accept_backs_off_when_fds_run_out() -> None:
    """With RLIMIT_NOFILE exhausted, a pending connection makes accept() fail with EMFILE forever:
    the loop must sleep, not spin (the old server burned a whole core here)."""
    script = textwrap.dedent(
        """
        import os, resource, socket, time
        from tcpwatchd.web.server import WebServer
        srv = WebServer(); srv.listen("127.0.0.1", 0)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        hog = []
        try:
            while True:
                hog.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            pass
        os.close(hog.pop())  # one fd left: the client's socket
        client = socket.create_connection(srv.address)
        time.sleep(0.5)
        t0 = time.process_time(); time.sleep(2.0); used = time.process_time() - t0
        print(f"cpu {used:.3f}")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    used = float(done.stdout.split()[-1])
    assert used < 0.3, f"{used:.2f} s of CPU in 2 s while accept() fails"
    assert "cannot accept connections" in done.stderr
