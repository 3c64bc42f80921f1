"""TCP sockets from /proc/net/tcp and /proc/net/tcp6: the fallback source and the cross-check.

One line per socket, printed by net/ipv4/tcp_ipv4.c (get_tcp4_sock, get_openreq4, get_timewait4_sock) and
net/ipv6/tcp_ipv6.c (get_tcp6_sock, get_openreq6, get_timewait6_sock):

     0: 0100007F:1389 0100007F:1771 01 00000000:00000000 02:0000EA40 00000000     0        0 16123 ...
    sl  local        remote        st tx_queue:rx_queue tr:tm->when retrnsmt  uid  timeout inode

Addresses are the kernel's 32-bit words printed with %08X, so each word is in host byte order; ports,
state, queues, timer kind and `tm->when` are hex, uid, timeout (icsk_probes_out) and inode decimal.
`tm->when` is in clock ticks (jiffies_delta_to_clock_t: USER_HZ, sysconf(_SC_CLK_TCK)). For LISTEN,
rx_queue is the accept backlog (sk_ack_backlog), as netlink's idiag_rqueue; tx_queue is 0 there, where
netlink reports the maximum backlog. /proc has no socket cookie and no tcp_info.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from tcpwatchd.errors import ParseError, SourceUnavailable
from tcpwatchd.model import Family, Socket, TimerKind
from tcpwatchd.sources.codes import STATE_OF, TIMER_OF

MAX_READ_BYTES = 256 << 20  # ≈1.5M sockets of tcp6 text; /proc sizes (st_size 0) are never trusted
_CHUNK = 1 << 20
_FAMILY_FILES = ((Family.INET, "tcp"), (Family.INET6, "tcp6"))
# For the probe timers the kernel's own netlink idiag_retrans is icsk_probes_out (net/ipv4/inet_diag.c);
# /proc prints that in the `timeout` column, so take it from there to keep one meaning for Socket.retrans.
_PROBE_TIMERS = frozenset({TimerKind.KEEPALIVE, TimerKind.ZERO_WINDOW_PROBE})

ByteOrder = Literal["little", "big"]


@dataclass(frozen=True, slots=True)
class NetTcp:
    """The sockets of /proc/net/tcp{,6}; `skipped_lines` counts lines cut short or malformed."""

    sockets: tuple[Socket, ...]
    skipped_lines: int = 0
    notes: tuple[str, ...] = ()


def read_capped(path: str, cap: int = MAX_READ_BYTES) -> bytes:
    """Read at most `cap` bytes of a /proc file, whatever its st_size claims (0 for /proc)."""
    parts: list[bytes] = []
    size = 0
    with open(path, "rb", buffering=0) as f:
        while size < cap:
            part = f.read(min(_CHUNK, cap - size))
            if not part:
                break
            parts.append(part)
            size += len(part)
    return b"".join(parts)


def read_net_tcp(proc_root: str = "/proc", cap: int = MAX_READ_BYTES) -> NetTcp:
    """Both files under `proc_root`/net. A missing tcp6 (IPv6 disabled) is normal: no IPv6 sockets.

    Raises SourceUnavailable when /proc/net/tcp cannot be read, ParseError for a file we do not recognise.
    """
    sockets: list[Socket] = []
    skipped = 0
    notes: list[str] = []
    clk_tck = os.sysconf("SC_CLK_TCK")
    for family, name in _FAMILY_FILES:
        path = os.path.join(proc_root, "net", name)
        try:
            data = read_capped(path, cap)
        except FileNotFoundError:
            if family is Family.INET6:
                continue
            raise SourceUnavailable("procnet", f"no {path}") from None
        except OSError as e:
            raise SourceUnavailable("procnet", f"cannot read {path}: {e.strerror}") from e
        if len(data) >= cap:
            notes.append(f"{path} is larger than {cap} bytes: read the first {cap} only")
        result = parse_net_tcp(data.decode("ascii", "replace"), family, path=path, clk_tck=clk_tck)
        sockets += result.sockets
        skipped += result.skipped_lines
    return NetTcp(tuple(sockets), skipped, tuple(notes))


def parse_net_tcp(
    text: str,
    family: Family,
    *,
    path: str = "/proc/net/tcp",
    clk_tck: int = 100,
    byteorder: ByteOrder = sys.byteorder,
) -> NetTcp:
    """Parse the text of /proc/net/tcp (family INET) or tcp6 (INET6). `byteorder` is the kernel's.

    A line that is cut short (the last one, when the file changed or hit the read cap) or malformed is
    skipped and counted; a file without the known header raises ParseError.
    """
    lines = text.split("\n")
    _check_header(lines[0], path)
    body = lines[1:]
    skipped = 0
    if body and body[-1] == "":
        body.pop()
    elif body:
        body.pop()  # no final newline: the last line may be cut anywhere, even inside a number
        skipped += 1
    decode = _address_decoder(family, byteorder)
    sockets: list[Socket] = []
    for line in body:
        sock = _parse_line(line, family, decode, clk_tck)
        if sock is None:
            skipped += 1
        else:
            sockets.append(sock)
    return NetTcp(tuple(sockets), skipped)


def _check_header(line: str, path: str) -> None:
    fields = line.split()
    if fields[:2] != ["sl", "local_address"] or "inode" not in fields:
        raise ParseError(path, 1, f"not a /proc/net/tcp header: {line[:80]!r}")


def _address_decoder(family: Family, byteorder: ByteOrder) -> Callable[[str], str]:
    """hex → address string, cached: a host has few distinct addresses and many sockets.

    >>> _address_decoder(Family.INET6, "little")("0000000000000000FFFF00000100007F")
    '::ffff:127.0.0.1'
    """
    width = 8 if family is Family.INET else 32
    cache: dict[str, str] = {}

    def decode(hex_words: str) -> str:
        name = cache.get(hex_words)
        if name is None:
            if len(hex_words) != width:
                raise ValueError(f"address {hex_words!r} is not {width} hex digits")
            raw = b"".join(int(hex_words[i : i + 8], 16).to_bytes(4, byteorder) for i in range(0, width, 8))
            name = cache[hex_words] = socket.inet_ntop(family, raw)
        return name

    return decode


def _parse_line(line: str, family: Family, decode: Callable[[str], str], clk_tck: int) -> Socket | None:
    fields = line.split()
    if len(fields) < 10 or not fields[0].endswith(":"):
        return None
    try:
        local, lport = _endpoint(fields[1], decode)
        remote, rport = _endpoint(fields[2], decode)
        state, timer = STATE_OF.get(int(fields[3], 16)), TIMER_OF.get(int(fields[5].split(":")[0], 16))
        tx, rx = (int(v, 16) for v in fields[4].split(":"))
        when = int(fields[5].split(":")[1], 16)
        retrnsmt, uid, probes, inode = int(fields[6], 16), int(fields[7]), int(fields[8]), int(fields[9])
    except ValueError:
        return None
    if state is None or timer is None:
        return None
    return Socket(
        family=family,
        state=state,
        local_address=local,
        local_port=lport,
        remote_address=remote,
        remote_port=rport,
        rqueue=rx,
        wqueue=tx,
        uid=uid,
        inode=inode,
        timer=timer,
        timer_expires_ms=_ticks_to_ms(when, clk_tck),
        retrans=probes if timer in _PROBE_TIMERS else retrnsmt,
    )


def _endpoint(field: str, decode: Callable[[str], str]) -> tuple[str, int]:
    address, sep, port = field.partition(":")
    if not sep or len(port) != 4:
        raise ValueError(f"endpoint {field!r}")
    return decode(address), int(port, 16)


def _ticks_to_ms(ticks: int, clk_tck: int) -> int:
    # Printed as unsigned long: kernels before 4.x could print a negative delta (an overdue timer) as a
    # huge value; jiffies_delta_to_clock_t clamps it to 0 since, so do the same.
    if ticks >= 1 << 63:
        return 0
    return ticks * 1000 // clk_tck
