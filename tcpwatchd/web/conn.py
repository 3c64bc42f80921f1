"""One client connection as a small state machine on a non-blocking socket (plain or TLS).

The server's selector thread owns every Connection: it calls `step()` when the socket is ready and reads
`want` (which selector events to wait for) and `deadline` back. Parsing and answering happen elsewhere.
"""

from __future__ import annotations

import contextlib
import enum
import selectors
import socket
import ssl

from tcpwatchd.web.http import HEAD_END, BadRequest, Request, parse_head

READ_CHUNK = 65536


class Phase(enum.Enum):
    HANDSHAKE = "handshake"  # TLS handshake in progress
    READ = "read"  # waiting for (the rest of) a request head
    BUSY = "busy"  # a worker is answering; the socket is not watched
    WRITE = "write"  # sending a response
    CLOSED = "closed"


class Closed(Exception):
    """The peer went away, the handshake failed, or the socket errored: drop the connection."""


class Connection:
    __slots__ = ("close_after", "deadline", "inbuf", "last_active", "outbuf", "phase", "sock", "want")

    def __init__(self, sock: socket.socket, tls: ssl.SSLContext | None, now: float) -> None:
        sock.setblocking(False)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        self.sock = sock
        self.phase = Phase.HANDSHAKE if tls is not None else Phase.READ
        self.want = selectors.EVENT_READ
        self.inbuf = bytearray()
        self.outbuf = memoryview(b"")
        self.close_after = False
        self.last_active = now
        self.deadline = now

    @property
    def idle(self) -> bool:
        """Not answering and not sending: a candidate for eviction when the server is full."""
        return self.phase in (Phase.HANDSHAKE, Phase.READ)

    def handshake(self) -> bool:
        """Advance the TLS handshake; True when done."""
        assert isinstance(self.sock, ssl.SSLSocket)
        try:
            self.sock.do_handshake()
        except ssl.SSLWantReadError:
            self.want = selectors.EVENT_READ
            return False
        except ssl.SSLWantWriteError:
            self.want = selectors.EVENT_WRITE
            return False
        except (ssl.SSLError, OSError, ValueError) as e:
            raise Closed(f"TLS handshake: {e}") from None
        self.phase, self.want = Phase.READ, selectors.EVENT_READ
        return True

    def fill(self, limit: int) -> None:
        """Read what has arrived (at most past `limit` bytes buffered); Closed on EOF or error.

        A TLS socket is read until it would block: decrypted data kept inside OpenSSL does not make the
        fd readable again, so leaving any would stall the connection.
        """
        while len(self.inbuf) <= limit:
            try:
                chunk = self.sock.recv(READ_CHUNK)
            except (BlockingIOError, ssl.SSLWantReadError):
                self.want = selectors.EVENT_READ
                return
            except ssl.SSLWantWriteError:
                self.want = selectors.EVENT_WRITE
                return
            except (ssl.SSLError, OSError) as e:
                raise Closed(f"read: {e}") from None
            if not chunk:
                raise Closed("peer closed")
            self.inbuf += chunk

    def next_request(self, max_head: int) -> Request | BadRequest | None:
        """The next complete request head in the buffer (removed from it), a refusal, or None for more."""
        end = self.inbuf.find(HEAD_END, 0, max_head + len(HEAD_END))
        if end < 0:
            if len(self.inbuf) > max_head:
                return BadRequest(431, f"request head over {max_head} bytes")
            return None
        head = bytes(self.inbuf[:end])
        del self.inbuf[: end + len(HEAD_END)]
        try:
            return parse_head(head.lstrip(b"\r\n"))  # RFC 9112 2.2: ignore empty lines before a request
        except BadRequest as e:
            return e

    def flush(self) -> bool:
        """Send what the socket takes; True when the whole response is out."""
        while self.outbuf:
            try:
                sent = self.sock.send(self.outbuf)
            except (BlockingIOError, ssl.SSLWantWriteError):
                self.want = selectors.EVENT_WRITE
                return False
            except ssl.SSLWantReadError:
                self.want = selectors.EVENT_READ
                return False
            except (ssl.SSLError, OSError) as e:
                raise Closed(f"write: {e}") from None
            self.outbuf = self.outbuf[sent:]
        return True

    def close(self) -> None:
        self.phase = Phase.CLOSED
        with contextlib.suppress(OSError):
            self.sock.close()
