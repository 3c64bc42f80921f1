"""Kernel TCP counters from /proc/net/netstat and /proc/net/snmp, as one flat mapping.

Both files are pairs of lines per group, a header and its values (net/ipv4/proc.c, netstat_seq_show and
snmp_seq_show):

    TcpExt: SyncookiesSent SyncookiesRecv ... TCPAbortOnClose ...
    TcpExt: 0 0 ... 3 ...
    Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens ...
    Tcp: 1 200 120000 -1 10 ...

→ {"TcpExt.TCPAbortOnClose": 3, "Tcp.MaxConn": -1, "Tcp.ActiveOpens": 10, ...}. Counters come and go
with kernel versions, so a missing one is simply absent. Values can be negative (Tcp MaxConn is -1).
"""

from __future__ import annotations

import os

from tcpwatchd.errors import ParseError
from tcpwatchd.sources.procnet import read_capped

KSTATS_FILES = ("netstat", "snmp")
MAX_KSTATS_BYTES = 1 << 20  # both files are a few KiB


def parse_kstats(text: str, path: str = "/proc/net/netstat") -> dict[str, int]:
    """Pairs of 'Group: names' / 'Group: values' lines → {'Group.Name': value}.

    >>> parse_kstats("Tcp: RtoMin MaxConn\\nTcp: 200 -1\\n")
    {'Tcp.RtoMin': 200, 'Tcp.MaxConn': -1}

    A header whose values line is missing, belongs to another group or has another length, or a
    value that is not an integer, raises ParseError with the path and line.
    """
    counters: dict[str, int] = {}
    lines = [(n, line) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]
    for i in range(0, len(lines), 2):
        header_no, header = lines[i]
        group, names = _split(header, path, header_no)
        if i + 1 >= len(lines):
            raise ParseError(path, header_no, f"{group}: a header without its values line")
        values_no, values_line = lines[i + 1]
        values_group, values = _split(values_line, path, values_no)
        if values_group != group:
            raise ParseError(path, values_no, f"expected the values of {group}, found {values_group}")
        if len(values) != len(names):
            raise ParseError(path, values_no, f"{group}: {len(names)} names but {len(values)} values")
        try:
            counters.update((f"{group}.{name}", int(v)) for name, v in zip(names, values, strict=True))
        except ValueError as e:
            raise ParseError(path, values_no, f"{group}: not an integer ({e})") from e
    return counters


def _split(line: str, path: str, line_no: int) -> tuple[str, list[str]]:
    group, sep, rest = line.partition(":")
    if not sep or not group or " " in group.strip():
        raise ParseError(path, line_no, f"not a 'Group: ...' line: {line[:80]!r}")
    return group.strip(), rest.split()


def read_kstats(proc_root: str = "/proc") -> dict[str, int]:
    """Counters of `proc_root`/net/netstat then snmp. A missing file adds nothing (some sandboxes hide
    one); other read errors (OSError) and ParseError propagate, for the caller to mark the source failed.
    """
    counters: dict[str, int] = {}
    for name in KSTATS_FILES:
        path = os.path.join(proc_root, "net", name)
        try:
            data = read_capped(path, MAX_KSTATS_BYTES)
        except FileNotFoundError:
            continue
        counters.update(parse_kstats(data.decode("ascii", "replace"), path))
    return counters
