"""The sysctls tcpwatchd knows: kernel default, the range the policy accepts, the unit, and the scope.

Only names in this catalog can be audited or written; that static list (with the strict name pattern in
`policy`) is what keeps a config from steering a write anywhere else under /proc/sys.

Sources: Documentation/networking/ip-sysctl.rst for meanings and defaults; the sysctl tables in
net/ipv4/sysctl_net_ipv4.c and net/core/sysctl_net_core.c for what the kernel itself accepts. Where the
kernel accepts nonsense (tcp_keepalive_time takes 0 and negative numbers: proc_dointvec_jiffies has no
bounds), the policy range is the one the kernel enforces on the matching socket option instead
(MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL, MAX_TCP_KEEPCNT in include/net/tcp.h).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

INT_MAX = 2**31 - 1
# proc_dointvec_jiffies refuses values above INT_MAX / HZ; at the largest HZ (1000) that is 2147483 s.
JIFFIES_SECONDS_MAX = INT_MAX // 1000
U8_MAX = 255  # proc_dou8vec_minmax: the sysctl is stored in a u8


class Unit(enum.Enum):
    SECONDS = "seconds"
    MILLISECONDS = "milliseconds"
    COUNT = "count"


class Scope(enum.Enum):
    """Which network namespace a value belongs to (see docs/sysctl.md)."""

    PER_NETNS = "per-netns"  # one value per network namespace, a new namespace starts at the kernel default
    GLOBAL = "global"  # one value for the host, visible only from the initial network namespace


@dataclass(frozen=True, slots=True)
class SysctlSpec:
    name: str  # dotted, as sysctl(8) spells it
    minimum: int
    maximum: int
    unit: Unit
    kernel_default: int
    scope: Scope
    meaning: str  # one line, for the docs and the CLI

    def accepts(self, value: int) -> bool:
        return self.minimum <= value <= self.maximum


# fmt: off
_SPECS: tuple[SysctlSpec, ...] = (
    # tcp_keepalive_*: net/ipv4/tcp_ipv4.c tcp_sk_init() sets the defaults per namespace (TCP_KEEPALIVE_TIME,
    # _INTVL, _PROBES in include/net/tcp.h); MAX_TCP_KEEPIDLE/KEEPINTVL = 32767, MAX_TCP_KEEPCNT = 127.
    SysctlSpec(
        "net.ipv4.tcp_keepalive_time", 1, 32767, Unit.SECONDS, 7200, Scope.PER_NETNS,
        "idle time before the first keepalive probe (on sockets with SO_KEEPALIVE)",
    ),
    SysctlSpec(
        "net.ipv4.tcp_keepalive_intvl", 1, 32767, Unit.SECONDS, 75, Scope.PER_NETNS,
        "time between keepalive probes",
    ),
    SysctlSpec(
        "net.ipv4.tcp_keepalive_probes", 1, 127, Unit.COUNT, 9, Scope.PER_NETNS,
        "unanswered keepalive probes before the connection is aborted",
    ),
    # tcp_retries2, tcp_orphan_retries: u8 sysctls (proc_dou8vec_minmax), so 0..255.
    SysctlSpec(
        "net.ipv4.tcp_retries2", 0, U8_MAX, Unit.COUNT, 15, Scope.PER_NETNS,
        "retransmission budget (as modelled exponential backoff) before an ESTABLISHED connection is aborted",
    ),
    SysctlSpec(
        "net.ipv4.tcp_fin_timeout", 1, JIFFIES_SECONDS_MAX, Unit.SECONDS, 60, Scope.PER_NETNS,
        "time an orphaned connection may stay in FIN_WAIT2 before it is aborted",
    ),
    SysctlSpec(
        "net.ipv4.tcp_orphan_retries", 0, U8_MAX, Unit.COUNT, 0, Scope.PER_NETNS,
        "retransmission budget for orphaned (closed by the application) connections; 0 means 8",
    ),
    # tcp_max_orphans lives in ipv4_table, registered for init_net only: absent in other namespaces.
    SysctlSpec(
        "net.ipv4.tcp_max_orphans", 0, INT_MAX, Unit.COUNT, 0, Scope.GLOBAL,
        "orphaned connections the host keeps before resetting new ones (default scales with memory)",
    ),
    # somaxconn: net/core/sysctl_net_core.c, proc_dointvec_minmax with extra1 = SYSCTL_ZERO.
    SysctlSpec(
        "net.core.somaxconn", 0, INT_MAX, Unit.COUNT, 4096, Scope.PER_NETNS,
        "upper limit of a listen() backlog",
    ),
    # tcp_rto_max_ms (Linux 6.15+): proc_dointvec_minmax, 1000..TCP_RTO_MAX_SEC * 1000. It moves the
    # in-flight detection time (tcp_model_timeout() uses tcp_rto_max(sk)); absent on older kernels.
    SysctlSpec(
        "net.ipv4.tcp_rto_max_ms", 1000, 120000, Unit.MILLISECONDS, 120000, Scope.PER_NETNS,
        "ceiling of the retransmission timeout (Linux 6.15 and later)",
    ),
)
# fmt: on

CATALOG: Mapping[str, SysctlSpec] = MappingProxyType({s.name: s for s in _SPECS})
# The order every report, table and metric uses.
NAMES: tuple[str, ...] = tuple(CATALOG)


def spec_of(name: str) -> SysctlSpec | None:
    return CATALOG.get(name)
