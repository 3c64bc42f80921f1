"""Allowlist rules, the SOCK_DESTROY request bytes, errno refusals and the probe metric families."""

from __future__ import annotations

import errno
import socket
import struct

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector

from tcpwatchd.actions.outcome import Refusal, refusal_for
from tcpwatchd.actions.probe_types import ProbeSummary, Result
from tcpwatchd.actions.sockdestroy import destroy_request
from tcpwatchd.allowlist import AllowKind, AllowRule, first_match, parse_allowlist, parse_rule
from tcpwatchd.model import ProcessLabels
from tcpwatchd.outputs.probe_metrics import probe_families
from tcpwatchd.outputs.series import SeriesLabels


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("process:redis-server", AllowRule(AllowKind.PROCESS, "redis-server")),
        ("unit:app-*.service", AllowRule(AllowKind.UNIT, "app-*.service")),
        ("pod:shop/api-*", AllowRule(AllowKind.POD, "shop/api-*")),
        ("process:*", AllowRule(AllowKind.PROCESS, "*")),
    ],
)
def test_rules_parse(text: str, rule: AllowRule) -> None:
    assert parse_rule(text) == rule and str(rule) == text


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("redis-server", "kind:pattern"),
        ("host:db1", "kind:pattern"),
        ("process:", "empty"),
        ("process:a b", "whitespace"),
        ("process:a-very-long-process-name", "15 characters"),
        ("unit:redis", "suffix"),
        ("pod:api-*", "namespace/name"),
        ("pod:/api", "namespace/name"),
    ],
)
def test_bad_rules_say_why(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_rule(text)


def test_matching_by_process_unit_or_pod() -> None:
    rules = parse_allowlist(["process:redis-*", "unit:pg.service", "pod:shop/api-*"])
    assert first_match(rules, "redis-server", "", "") == rules[0]
    assert first_match(rules, "postgres", "pg.service", "") == rules[1]
    assert first_match(rules, "node", "", "shop/api-7f9c") == rules[2]
    assert first_match(rules, "node", "", "shop/web-1") is None
    assert first_match(parse_allowlist(["unit:*"]), "x", "", "") is None  # an unknown unit never matches


def test_destroy_request_is_inet_diag_req_v2_with_the_exact_socket() -> None:
    req = destroy_request(
        socket.AF_INET, ("198.18.1.1", 7100), ("198.18.1.2", 40000), (5 << 32) | 4097, seq=9
    )
    assert struct.unpack_from("=IHHII", req) == (72, 21, 0x5, 9, 0)  # SOCK_DESTROY, REQUEST|ACK
    assert struct.unpack_from("=BBBxI", req, 16) == (socket.AF_INET, socket.IPPROTO_TCP, 0, 0xFFFFFFFF)
    assert struct.unpack_from("!HH", req, 24) == (7100, 40000)
    assert req[28:32] == bytes([198, 18, 1, 1]) and req[32:44] == bytes(12)
    assert req[44:48] == bytes([198, 18, 1, 2])
    assert struct.unpack_from("=III", req, 60) == (0, 4097, 5)
    v6 = destroy_request(socket.AF_INET6, ("::ffff:198.18.1.1", 1), ("2001:db8::2", 2), 1)
    assert v6[28:44] == socket.inet_pton(socket.AF_INET6, "::ffff:198.18.1.1")


@pytest.mark.parametrize(
    ("err", "refusal", "hint"),
    [
        (errno.EPERM, Refusal.NO_PERMISSION, "CAP_SYS_PTRACE"),
        (errno.EACCES, Refusal.DENIED, "seccomp"),
        (errno.ENOSYS, Refusal.UNSUPPORTED, "5.6"),
        (errno.ESRCH, Refusal.PROCESS_EXITED, "exited"),
        (errno.EBADF, Refusal.FD_CLOSED, "Bad file descriptor"),
        (errno.EINVAL, Refusal.ERROR, "Invalid argument"),
    ],
)
def test_errnos_become_typed_refusals(err: int, refusal: Refusal, hint: str) -> None:
    failure = refusal_for(err, "pidfd_getfd")
    assert (
        failure.refusal is refusal and hint in failure.reason and failure.reason.startswith("pidfd_getfd: ")
    )


class _Families(Collector):
    def __init__(self, summary: ProbeSummary, series: SeriesLabels) -> None:
        self.summary = summary
        self.series = series

    def collect(self):  # type: ignore[no-untyped-def]
        return probe_families(self.summary, self.series)


REDIS = ProcessLabels("redis-server")
API_A = ProcessLabels("api", "shop", "api-a", "app")
API_B = ProcessLabels("api", "shop", "api-b", "app")


def _summary() -> ProbeSummary:
    return ProbeSummary.frozen(
        {(REDIS, Result.DEAD): 2, (REDIS, Result.ALIVE): 1, (API_A, Result.DEAD): 1, (API_B, Result.DEAD): 3},
        {REDIS: 1}, {REDIS: 1, API_B: 2}, 0, {},
    )  # fmt: skip


def test_metric_families_carry_the_series_labels() -> None:
    registry = CollectorRegistry()
    registry.register(_Families(_summary(), SeriesLabels(workload=True)))
    get = registry.get_sample_value
    host = {"process": "redis-server", "namespace": "", "pod": "", "container": ""}
    assert get("tcpwatchd_phantom_probes_total", {**host, "result": "dead"}) == 2
    assert get("tcpwatchd_phantom_probes_total", {**host, "result": "unreachable"}) == 0
    assert get("tcpwatchd_proven_phantom_connections", host) == 1
    assert get("tcpwatchd_reaped_connections_total", host) == 1
    pod_b = {"process": "api", "namespace": "shop", "pod": "api-b", "container": "app"}
    assert get("tcpwatchd_phantom_probes_total", {**pod_b, "result": "dead"}) == 3
    assert get("tcpwatchd_proven_phantom_connections", pod_b) == 2
    assert get("tcpwatchd_reaped_connections_total", pod_b) == 0


def test_metric_families_merge_pods_when_workload_labels_are_off() -> None:
    registry = CollectorRegistry()
    registry.register(_Families(_summary(), SeriesLabels(workload=False)))
    get = registry.get_sample_value
    assert get("tcpwatchd_phantom_probes_total", {"process": "api", "result": "dead"}) == 4
    assert get("tcpwatchd_proven_phantom_connections", {"process": "api"}) == 2
    assert get("tcpwatchd_phantom_probes_total", {"process": "redis-server", "result": "dead"}) == 2
