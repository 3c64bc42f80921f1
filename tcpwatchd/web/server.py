"""An HTTP/1.1 server that a local user cannot exhaust: one selector thread and a fixed worker pool.

Threads are created once, at the first bind, never per connection. Every connection costs one fd and
its buffers; there are at most `max_connections` of them, and when full the connection idle the longest
(handshaking or waiting for a request) is closed to admit the new one, or the new one is closed at once.
A request head must arrive within `read_timeout` of the connection or the last response, is capped at
`max_head_bytes`, and an idle keep-alive connection is closed after `idle_timeout`. When accept() fails
for lack of fds (EMFILE, ENFILE) the listener is paused with a growing back-off instead of spinning.

One file because the selector loop, admission (the eviction of idle connections), the accept back-off and
the hand-over to workers all read and write the loop's connection table, which only the loop thread owns.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import queue
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from tcpwatchd.web.conn import Closed, Connection, Phase
from tcpwatchd.web.http import BadRequest, Request, Response, render
from tcpwatchd.web.routes import JsonHandler, RawHandler, Routes, Site
from tcpwatchd.web.tls import TLSContexts

log = logging.getLogger("tcpwatchd")

LISTEN_BACKLOG = 512  # a scrape burst waits in the kernel's queue, not in SYN retries (capped by somaxconn)
_FD_SHORTAGE = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


@dataclass(frozen=True, slots=True)
class Limits:
    workers: int = 2
    max_connections: int = 256
    max_head_bytes: int = 16384
    read_timeout: float = 10.0
    idle_timeout: float = 120.0  # above Prometheus' default 1 min scrape interval, so keep-alive works
    write_timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class _Job:
    conn_id: int
    request: Request | BadRequest
    site: Site


class WebServer:
    def __init__(self, limits: Limits = Limits()) -> None:
        self.limits = limits
        self.routes = Routes()
        self.site = Site()
        self.tls: TLSContexts | None = None
        self._sel = selectors.DefaultSelector()
        self._listener: socket.socket | None = None
        self._conns: dict[int, Connection] = {}
        self._next_id = 0
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._done: deque[tuple[int, bytes, bool]] = deque()
        self._calls: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._closed = False
        self._accept_paused_until = 0.0
        self._backoff = 0.0

    def route(self, path: str, handler: JsonHandler) -> None:
        """A JSON route: handler(query) -> (status, body). `server.route("/api/v1/snapshot", h)`."""
        self.routes.add_json(path, handler)

    def route_raw(self, path: str, handler: RawHandler) -> None:
        self.routes.add_raw(path, handler)

    @property
    def address(self) -> tuple[str, int] | None:
        sock = self._listener
        return None if sock is None else sock.getsockname()[:2]

    def listen(self, host: str, port: int) -> None:
        """Serve on host:port instead of the current address; OSError leaves the old one serving."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        new = socket.socket(family, socket.SOCK_STREAM)
        try:
            new.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                new.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            new.bind((host, port))
            new.listen(LISTEN_BACKLOG)
            new.setblocking(False)
        except OSError:
            new.close()
            raise
        self._start()
        self._in_loop(lambda: self._swap_listener(new))

    def stop_listening(self) -> None:
        self._in_loop(lambda: self._swap_listener(None))

    def close(self) -> None:
        """Stop the threads and close every socket; the server cannot be used afterwards."""
        if self._closed:
            return
        self._closed = True
        if self._threads:
            self._in_loop(self._shutdown)
            for _ in self._threads[1:]:
                self._jobs.put(None)
            for t in self._threads:
                t.join(timeout=5)
        else:
            self._shutdown()
        self._sel.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    # --- threads ---------------------------------------------------------------------------------------

    def _start(self) -> None:
        if self._threads:
            return
        self._threads.append(threading.Thread(target=self._loop, name="web-loop", daemon=True))
        for i in range(self.limits.workers):
            self._threads.append(threading.Thread(target=self._work, name=f"web-worker-{i}", daemon=True))
        for t in self._threads:
            t.start()

    def _in_loop(self, fn: Callable[[], None]) -> None:
        """Run fn on the selector thread (it owns the selector) and wait for it, bounded."""
        if not self._threads:
            fn()
            return
        done = threading.Event()
        failure: list[BaseException] = []

        def call() -> None:
            try:
                fn()
            except BaseException as e:  # handed back to the caller
                failure.append(e)
            finally:
                done.set()

        self._calls.put(call)
        self._wake()
        if not done.wait(timeout=10):
            raise OSError(errno.ETIMEDOUT, "the web server's thread did not answer")
        if failure:
            raise failure[0]

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"!")

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                data, close = self._answer(job)
            except Exception as e:  # never lose a worker: the pool is fixed
                log.error("web worker failed: %s: %s", type(e).__name__, e)
                data, close = (
                    render(
                        Response.text(500, "internal error\n"), keep_alive=False, head_only=False, extra=()
                    ),
                    True,
                )
            self._done.append((job.conn_id, data, close))
            self._wake()

    def _answer(self, job: _Job) -> tuple[bytes, bool]:
        req = job.request
        if isinstance(req, BadRequest):
            return render(req.response(), keep_alive=False, head_only=False, extra=job.site.headers), True
        resp = self.routes.answer(req, job.site)
        keep = req.keep_alive and not resp.close
        data = render(resp, keep_alive=keep, head_only=req.method == "HEAD", extra=job.site.headers)
        return data, not keep

    # --- the selector thread -----------------------------------------------------------------------------

    def _loop(self) -> None:
        next_sweep = 0.0
        while not self._stopping:
            now = time.monotonic()
            if self._accept_paused_until and now >= self._accept_paused_until:
                self._resume_accept()
            timeout = max(0.0, min(next_sweep, self._accept_paused_until or next_sweep) - now)
            for key, events in self._sel.select(timeout=min(timeout, 1.0)):
                if key.data == "wake":
                    self._drain_wake()
                elif key.data == "listener":
                    self._accept()
                else:
                    self._ready(key.data, events)
            now = time.monotonic()
            if now >= next_sweep:
                self._sweep(now)
                next_sweep = now + 0.5

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._wake_r, 4096)
        while True:
            try:
                self._calls.get_nowait()()
            except queue.Empty:
                break
        while self._done:
            conn_id, data, close = self._done.popleft()
            conn = self._conns.get(conn_id)
            if conn is not None:  # else it timed out or was evicted meanwhile
                conn.outbuf, conn.close_after, conn.phase = memoryview(data), close, Phase.WRITE
                conn.deadline = time.monotonic() + self.limits.write_timeout
                self._step(conn_id, conn)

    def _accept(self) -> None:
        assert self._listener is not None
        for _ in range(64):  # bounded per wake-up, so timeouts and answers keep flowing in a flood
            try:
                sock, _addr = self._listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as e:
                if e.errno in _FD_SHORTAGE:
                    self._pause_accept(e)
                    return
                log.warning("accept failed: %s", e)
                return
            self._backoff = 0.0
            self._admit(sock)

    def _admit(self, sock: socket.socket) -> None:
        if len(self._conns) >= self.limits.max_connections and not self._evict_one():
            sock.close()  # full of busy connections: refuse now rather than queue forever
            return
        now = time.monotonic()
        tls = self.tls.current() if self.tls is not None else None
        try:
            conn = Connection(sock, tls, now)
        except OSError:
            sock.close()
            return
        conn.deadline = now + self.limits.read_timeout
        self._next_id += 1
        self._conns[self._next_id] = conn
        self._sel.register(conn.sock, conn.want, self._next_id)

    def _evict_one(self) -> bool:
        idle = [(c.last_active, i) for i, c in self._conns.items() if c.idle]
        if not idle:
            return False
        self._drop(min(idle)[1])
        return True

    def _pause_accept(self, e: OSError) -> None:
        if not self._backoff:
            log.warning("cannot accept connections (%s): pausing the listener and retrying", e.strerror)
        self._backoff = min(max(self._backoff * 2, 0.05), 1.0)
        self._accept_paused_until = time.monotonic() + self._backoff
        if self._listener is not None:
            self._sel.unregister(self._listener)

    def _resume_accept(self) -> None:
        self._accept_paused_until = 0.0
        if self._listener is not None:
            self._sel.register(self._listener, selectors.EVENT_READ, "listener")

    def _ready(self, conn_id: int, events: int) -> None:
        conn = self._conns.get(conn_id)
        if conn is not None:
            conn.last_active = time.monotonic()
            self._step(conn_id, conn)

    def _step(self, conn_id: int, conn: Connection) -> None:
        """Advance a connection as far as it goes without blocking, then watch what it waits for."""
        try:
            if conn.phase is Phase.HANDSHAKE and not self._handshake(conn):
                return self._watch(conn_id, conn)
            if conn.phase is Phase.WRITE:
                if not conn.flush():
                    return self._watch(conn_id, conn)
                if conn.close_after:
                    return self._drop(conn_id)
                conn.phase = Phase.READ
                conn.deadline = time.monotonic() + self.limits.idle_timeout
            if conn.phase is Phase.READ:
                self._read(conn_id, conn)
        except Closed:
            return self._drop(conn_id)
        self._watch(conn_id, conn)

    def _handshake(self, conn: Connection) -> bool:
        if not conn.handshake():
            return False
        if self.site.allowed_sans and not _san_allowed(conn, self.site.allowed_sans):
            raise Closed("client certificate has no allowed SAN")
        conn.deadline = time.monotonic() + self.limits.read_timeout
        return True

    def _read(self, conn_id: int, conn: Connection) -> None:
        request = conn.next_request(self.limits.max_head_bytes)
        if request is None:
            conn.fill(self.limits.max_head_bytes + 4)
            request = conn.next_request(self.limits.max_head_bytes)
        if request is None:
            if conn.inbuf:  # a request has begun: it must be complete within the read timeout
                conn.deadline = min(conn.deadline, time.monotonic() + self.limits.read_timeout)
            return
        conn.phase = Phase.BUSY
        self._jobs.put(_Job(conn_id, request, self.site))

    def _watch(self, conn_id: int, conn: Connection) -> None:
        key = self._sel.get_map().get(conn.sock)
        if conn.phase is Phase.BUSY:
            if key is not None:
                self._sel.unregister(conn.sock)
        elif key is None:
            self._sel.register(conn.sock, conn.want, conn_id)
        elif key.events != conn.want:
            self._sel.modify(conn.sock, conn.want, conn_id)

    def _drop(self, conn_id: int) -> None:
        conn = self._conns.pop(conn_id, None)
        if conn is None:
            return
        if conn.sock in self._sel.get_map():
            self._sel.unregister(conn.sock)
        conn.close()

    def _sweep(self, now: float) -> None:
        expired = [i for i, c in self._conns.items() if c.phase is not Phase.BUSY and now > c.deadline]
        for conn_id in expired:
            self._drop(conn_id)

    def _swap_listener(self, new: socket.socket | None) -> None:
        old, self._listener = self._listener, new
        if old is not None:
            if old in self._sel.get_map():
                self._sel.unregister(old)
            old.close()
        if new is not None:
            self._accept_paused_until, self._backoff = 0.0, 0.0
            self._sel.register(new, selectors.EVENT_READ, "listener")

    def _shutdown(self) -> None:
        self._stopping = True
        self._swap_listener(None)
        for conn_id in list(self._conns):
            self._drop(conn_id)


def _san_allowed(conn: Connection, allowed: frozenset[str]) -> bool:
    """exporter-toolkit's client_allowed_sans: some DNS, IP, email or URI SAN of the client equals one."""
    peer = getattr(conn.sock, "getpeercert", lambda: None)()
    sans = peer.get("subjectAltName", ()) if isinstance(peer, dict) else ()
    return any(value in allowed for _kind, value in sans)
