"""The ephemeral port range of a network namespace: net.ipv4.ip_local_port_range, less the reserved ports.

Both sysctls are per namespace and apply to IPv6 too (net/ipv4/inet_connection_sock.c
inet_get_local_port_range, inet_is_local_reserved_port). Read them from the namespace's /proc/sys.
"""

from __future__ import annotations

from tcpwatchd.errors import ParseError
from tcpwatchd.facts import PortRange

RANGE = "net/ipv4/ip_local_port_range"
RESERVED = "net/ipv4/ip_local_reserved_ports"
MAX_BYTES = 1 << 16  # the reserved list can be long ("1-65535" at worst is short, but a list is not)


def parse_port_range(text: str) -> tuple[int, int]:
    """'32768\\t60999\\n' -> (32768, 60999).

    >>> parse_port_range("32768\\t60999\\n")
    (32768, 60999)
    """
    fields = text.split()
    if len(fields) != 2 or not all(f.isdigit() for f in fields):
        raise ParseError(RANGE, 1, f"expected two ports, got {text.strip()!r}")
    low, high = int(fields[0]), int(fields[1])
    if not 0 < low <= high <= 65535:
        raise ParseError(RANGE, 1, f"not a port range: {low} {high}")
    return low, high


def parse_reserved_within(text: str, low: int, high: int) -> int:
    """How many ports of '8080,9000-9100' (ip_local_reserved_ports) fall in [low, high].

    >>> parse_reserved_within("8080,32768-32770,61000\\n", 32768, 60999)
    3
    """
    count = 0
    for item in text.strip().split(","):
        if not item:
            continue
        first, _, last = item.partition("-")
        if not first.isdigit() or (last and not last.isdigit()):
            raise ParseError(RESERVED, 1, f"not a port or a range: {item!r}")
        a, b = int(first), int(last or first)
        count += max(0, min(b, high) - max(a, low) + 1)
    return count


def read_port_range(sys_root: str = "/proc/sys") -> PortRange:
    """The namespace's range; a kernel without ip_local_reserved_ports (before 2.6.35) reserves none."""
    with open(f"{sys_root}/{RANGE}") as f:
        low, high = parse_port_range(f.read(MAX_BYTES))
    try:
        with open(f"{sys_root}/{RESERVED}") as f:
            reserved = parse_reserved_within(f.read(MAX_BYTES), low, high)
    except FileNotFoundError:
        reserved = 0
    return PortRange(low, high, reserved)
