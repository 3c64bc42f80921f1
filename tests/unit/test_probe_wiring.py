"""Probing in the poll, on hand-built snapshots: verdicts reach the phantom detector as data, candidates
come from the report's rows with their owner's identity, probe = "off" never touches a socket, the
config keys validate, and the journal gets one line per proof and one per failure reason."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from tcpwatchd.actions.outcome import Failure
from tcpwatchd.actions.probe_types import Action, ProbeEvent, Result
from tcpwatchd.actions.probing import ProbeStage, candidates
from tcpwatchd.actions.sockops import KeepaliveOptions, SocketStatus, Target
from tcpwatchd.config import ConfigError, parse_config
from tcpwatchd.detectors.phantom import IDLE_SUSPECT
from tcpwatchd.model import Socket, TimerKind, Workload
from tcpwatchd.outputs.probe_log import FAILED_MESSAGE_ID, PROOF_MESSAGE_ID, ProbeLog
from tcpwatchd.report import Report, build_report
from tcpwatchd.verdicts import Probed, Proof
from tests.support.builders import owner
from tests.support.detect_snapshots import Scenario, conn, detect_config, info

CFG = detect_config(phantom={"idle_seconds": 60})
COOKIE = 4242
POD_OWNER = dataclasses.replace(owner("api", 77), workload=Workload("shop", "api-7f", "app"))


def _idle(timer: TimerKind = TimerKind.OFF, idle_s: float = 100.0) -> Socket:
    sock = conn("198.18.0.2", 40001, tcp_info=info(int(idle_s * 1000)), timer=timer)
    return dataclasses.replace(sock, cookie=COOKIE, netns=3)


def _report(sock: Socket, probed: dict[int, Probed] | None = None, at: float = 1000.0) -> Report:
    tracked = Scenario().poll(at, [sock], {sock: POD_OWNER})
    return build_report(tracked, CFG, None, probed=probed)


def _suspects(report: Report) -> list[dict[str, object]]:
    return [dict((d.key, d.value) for d in f.details) for f in report.of_kind(IDLE_SUSPECT)]


@pytest.mark.parametrize(
    ("timer", "probed", "expected"),
    [
        pytest.param(TimerKind.OFF, None, [{"idle_seconds": 100.0}], id="no-probe"),
        pytest.param(TimerKind.OFF, Probed(Proof.ALIVE, 990.0), [], id="alive-lately-not-again"),
        pytest.param(
            TimerKind.OFF, Probed(Proof.ALIVE, 930.0), [{"idle_seconds": 100.0, "probe": "alive"}],
            id="idle-anew-after-the-proof",
        ),
        pytest.param(TimerKind.KEEPALIVE, None, [], id="own-keepalive-not-a-suspect"),
        pytest.param(
            TimerKind.KEEPALIVE, Probed(Proof.PROBING, 995.0), [{"idle_seconds": 100.0, "probe": "probing"}],
            id="our-keepalive-still-a-suspect",
        ),
        pytest.param(
            TimerKind.OFF, Probed(Proof.UNREACHABLE, 995.0),
            [{"idle_seconds": 100.0, "probe": "unreachable"}],
            id="proven-says-so",
        ),
    ],
)  # fmt: skip
def test_the_detector_reads_verdicts_as_data(
    timer: TimerKind, probed: Probed | None, expected: list[dict[str, object]]
) -> None:
    report = _report(_idle(timer), {COOKIE: probed} if probed else None)
    assert _suspects(report) == expected


def test_candidates_come_from_every_row_with_the_owners_identity() -> None:
    sock = _idle()
    tracked = Scenario().poll(1000.0, [sock], {sock: POD_OWNER})
    report = build_report(tracked, CFG)
    assert list(report.rows[IDLE_SUSPECT]) == [0]
    (cand,) = candidates(tracked, report)
    assert (cand.pid, cand.process, cand.pod, cand.netns, cand.superseded) == (
        77,
        "api",
        "shop/api-7f",
        3,
        False,
    )
    assert tuple(cand.labels) == ("api", "shop", "api-7f", "app")
    assert candidates(tracked, report, skip=frozenset({COOKIE})) == []


class Untouchable:
    """ProbeOps that fail the test on any use: probe = "off" must not read or set any socket."""

    def read_status(self, target: Target) -> SocketStatus | Failure:
        raise AssertionError("read_status with probing off")

    def set_keepalive(self, target: Target, wanted: KeepaliveOptions) -> SocketStatus | Failure:
        raise AssertionError("set_keepalive with probing off")

    def destroy(self, target: Target, sock: Socket) -> Failure | None:
        raise AssertionError("destroy with probing off")

    def holds(self, target: Target) -> bool:
        raise AssertionError("holds with probing off")


def test_probe_off_is_no_stage_at_all() -> None:
    cfg = parse_config("[detect.phantom]\nidle_seconds = 60\n")
    stage = ProbeStage(cfg.detect, ops=Untouchable())
    sock = _idle()
    tracked = Scenario().poll(1000.0, [sock], {sock: POD_OWNER})
    assert not stage.active and stage.verdicts() == {}
    assert stage.step(tracked, build_report(tracked, cfg.detect)) is None
    assert stage.close() == ()


def test_probe_keys_validate() -> None:
    cfg = parse_config(
        '[detect.phantom]\nprobe = "reap"\nprobe_allow = ["pod:shop/api-*", "unit:redis.service"]\n'
    )
    assert cfg.detect.phantom.probe == "reap"  # type: ignore[attr-defined]
    for bad, says in [
        ('probe = "verify"', "probe_allow is empty"),
        ('probe = "verify"\nprobe_allow = ["pod:api"]', "namespace/name"),
        ('probe = "verify"\nprobe_allow = ["process:*"]\nidle_seconds = 1', "probe_idle_seconds"),
        ('probe = "sometimes"', "probe"),
    ]:
        with pytest.raises(ConfigError) as err:
            parse_config(f"[detect.phantom]\n{bad}\n")
        assert says in " ".join(err.value.problems), bad


def _event(result: Result | None, reason: str = "", action: Action = Action.RESOLVED) -> ProbeEvent:
    return ProbeEvent(
        action, result, "redis-server", 812, "198.18.1.1:6379", "198.18.1.2:40000", COOKIE, True, 950.0,
        answered="RST" if result is Result.DEAD else "", reason=reason,
    )  # fmt: skip


def test_the_log_has_one_line_per_proof_and_per_failure_reason(caplog: pytest.LogCaptureFixture) -> None:
    log = ProbeLog(logging.getLogger("test.probe"))
    with caplog.at_level(logging.INFO, logger="test.probe"):
        log.log([_event(Result.DEAD), _event(None, action=Action.ARMED)])
        for pid in (812, 813):
            log.log([_event(Result.FAILED, f"pidfd_getfd: Operation not permitted (pid {pid})")])
    fields = [r.tcpwatchd_fields for r in caplog.records]  # type: ignore[attr-defined]
    assert [f["TCPWATCHD_PROBE"] for f in fields] == ["dead", "armed", "failed"]
    assert fields[0]["MESSAGE_ID"] == PROOF_MESSAGE_ID and fields[0]["TCPWATCHD_ANSWERED"] == "RST"
    assert fields[2]["MESSAGE_ID"] == FAILED_MESSAGE_ID
    assert "probe dead: redis-server[812]" in caplog.records[0].getMessage()
