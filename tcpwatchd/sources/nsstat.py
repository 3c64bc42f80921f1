"""Small per-namespace /proc/<pid>/net files read on every poll of another namespace: pure parsers and
their readers (each reader takes `<proc_root>/<pid>`, which shows that process's network namespace).
"""

from __future__ import annotations

import os
import socket


def tcp_families(sockstat: str, sockstat6: str) -> tuple[int, ...]:
    """The families a namespace has TCP sockets of, from its /proc/net/sockstat and sockstat6.

    A sock_diag dump walks the kernel's one established hash of every namespace (inet_diag_dump_icsk,
    net/ipv4/inet_diag.c), so a dump of a family the namespace has no socket of costs as much as any.
    `inuse` counts the hashed sockets of one family in this namespace (sock_prot_inuse_get: listeners,
    connections, orphans until they end); `tw` its TIME_WAIT sockets of both families (the namespace's
    tcp_death_row): with any, both are dumped. Request sockets need a listener, which counts.

    >>> tcp_families("TCP: inuse 3 orphan 0 tw 0 alloc 4 mem 1\n", "TCP6: inuse 0\n") == (socket.AF_INET,)
    True
    """
    v4 = _fields(sockstat, "TCP:")
    v6 = _fields(sockstat6, "TCP6:")
    tw = v4.get("tw", 1)
    wanted = []
    if v4.get("inuse", 1) or tw:
        wanted.append(socket.AF_INET)
    if v6.get("inuse", 1) or tw:
        wanted.append(socket.AF_INET6)
    return tuple(wanted)


def _fields(text: str, prefix: str) -> dict[str, int]:
    for line in text.splitlines():
        if line.startswith(prefix):
            words = line[len(prefix) :].split()
            return {k: int(v) for k, v in zip(words[::2], words[1::2], strict=False) if v.isdigit()}
    return {}


def sockstat_families(root: str) -> tuple[int, ...]:
    texts = []
    for name in ("sockstat", "sockstat6"):
        with open(os.path.join(root, "net", name), "rb") as f:
            texts.append(f.read(4096).decode("ascii", "replace"))
    return tcp_families(*texts)


def abort_counters(netstat: str) -> dict[str, int]:
    """The TcpExt TCPAbort* counters of a /proc/net/netstat text (see sources.kstats for the format).

    >>> abort_counters("TcpExt: SyncookiesSent TCPAbortOnClose\nTcpExt: 0 3\n")
    {'TcpExt.TCPAbortOnClose': 3}
    """
    lines = [line for line in netstat.splitlines() if line.startswith("TcpExt:")]
    if len(lines) != 2:
        return {}
    names, values = lines[0].split()[1:], lines[1].split()[1:]
    return {
        f"TcpExt.{n}": int(v)
        for n, v in zip(names, values, strict=False)
        if n.startswith("TCPAbort") and v.lstrip("-").isdigit()
    }


def read_aborts(root: str) -> dict[str, int]:
    with open(os.path.join(root, "net", "netstat"), "rb") as f:
        return abort_counters(f.read(1 << 16).decode("ascii", "replace"))
