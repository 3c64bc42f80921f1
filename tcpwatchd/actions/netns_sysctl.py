"""The sysctl audit of every other network namespace, and enforce where the config opts a namespace in.

Keepalive and the other per-namespace sysctls start at the kernel's defaults in every new network namespace
(tcp_sk_init, net/ipv4/tcp_ipv4.c): tuning the host changes nothing for its containers. So each poll reads
them in every watched namespace (one visit of the namespace thread each) and compares them with
`[sysctl.desired]`. Writing is another matter: a pod's sysctls belong to its owner (Kubernetes lets a pod
set net.ipv4.tcp_keepalive_* itself, as safe namespaced sysctls), so enforce writes another namespace only
when `[sysctl] enforce_namespaces` selects it ("pod:<namespace>/<pod>" globs, or "*"); docs/sysctl.md.

    >>> audit = NamespaceSysctls(cfg.sysctl)                               # doctest: +SKIP
    >>> [(r.pod, r.report.entry("net.ipv4.tcp_keepalive_time").current) for r in audit.run(...)]
    [('web-7d4b9', 7200)]                                                # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase

from tcpwatchd.config import SysctlConfig
from tcpwatchd.model import WatchedNetns
from tcpwatchd.sources.foreign import ForeignNamespaces
from tcpwatchd.sysctl.audit import SysctlReport, build_report
from tcpwatchd.sysctl.catalog import CATALOG, NAMES, Scope
from tcpwatchd.sysctl.enforce import SysctlPolicy
from tcpwatchd.sysctl.procsys import Reading

PER_NETNS: tuple[str, ...] = tuple(n for n in NAMES if CATALOG[n].scope is Scope.PER_NETNS)


@dataclass(frozen=True, slots=True)
class NamespaceSysctl:
    """One other namespace's audit (and writes, where enforced)."""

    netns: int
    label: str  # "net:[4026532281]"
    namespace: str  # its pod's, "" when it is not a pod's
    pod: str
    report: SysctlReport
    enforced: bool = False


def selected(selectors: Sequence[str], ns: WatchedNetns) -> bool:
    """Whether `[sysctl] enforce_namespaces` opts `ns` in.

    >>> selected(["pod:kube-system/*"], WatchedNetns(3, "net:[1]", "sockdiag", "kube-system", "dns-1"))
    True
    """
    for selector in selectors:
        if selector == "*":
            return True
        namespace, _, pod = selector.removeprefix("pod:").partition("/")
        if ns.pod and fnmatchcase(ns.namespace, namespace) and fnmatchcase(ns.pod, pod):
            return True
    return False


class NamespaceSysctls:
    """Audits (and, where opted in, enforces) the per-namespace sysctls of every other namespace."""

    def __init__(self, cfg: SysctlConfig, proc_root: str = "/proc") -> None:
        self._cfg = cfg
        self._proc_root = proc_root
        self._desired = {k: v for k, v in cfg.desired.items() if k in PER_NETNS}
        self._policies: dict[int, SysctlPolicy] = {}  # write counters per enforced namespace

    def reconfigured(self, cfg: SysctlConfig) -> NamespaceSysctls:
        """The audit for a reloaded config, with this one's write counters (counters only ever grow)."""
        audit = NamespaceSysctls(cfg, self._proc_root)
        audit._policies = {netns: p.reconfigured(cfg) for netns, p in self._policies.items()}
        return audit

    def run(
        self, foreign: ForeignNamespaces | None, namespaces: Sequence[WatchedNetns]
    ) -> tuple[NamespaceSysctl, ...]:
        if foreign is None or not namespaces or self._cfg.mode == "off":
            return ()
        by_id = {ns.netns: ns for ns in namespaces}
        enforced = self._enforced(foreign, namespaces) if self._cfg.mode == "enforce" else {}
        out: list[NamespaceSysctl] = []
        for netns, readings in foreign.read_sysctls(PER_NETNS):
            ns = by_id.get(netns)
            if ns is None:
                continue
            report = enforced.get(netns) or build_report(readings, self._desired, netns=ns.label)
            out.append(NamespaceSysctl(netns, ns.label, ns.namespace, ns.pod, report, netns in enforced))
        return tuple(out)

    def _enforced(
        self, foreign: ForeignNamespaces, namespaces: Sequence[WatchedNetns]
    ) -> dict[int, SysctlReport]:
        chosen = {ns.netns: ns for ns in namespaces if selected(self._cfg.enforce_namespaces, ns)}
        self._policies = {k: v for k, v in self._policies.items() if k in chosen}
        for netns, ns in chosen.items():
            if netns not in self._policies:
                where = f"{ns.label} (pod {ns.namespace}/{ns.pod})" if ns.pod else ns.label
                self._policies[netns] = SysctlPolicy(self._cfg, self._proc_root, PER_NETNS, where)
        reports: dict[int, SysctlReport] = {}
        for netns, answer in foreign.inside(chosen.keys(), lambda i: self._policies[i].enforce()):
            label = chosen[netns].label
            if isinstance(answer, SysctlReport):
                reports[netns] = replace(answer, netns=label)
            else:
                unread = tuple(Reading(n, None, f"cannot enter {label}: {answer}") for n in PER_NETNS)
                reports[netns] = build_report(unread, self._desired, netns=label)
        return reports
