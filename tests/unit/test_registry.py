"""A detector is one file: its registration alone brings its config section, gauges and journal id."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from types import MappingProxyType

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from pydantic import Field

import tcpwatchd.detectors as detectors
from tcpwatchd.config import ConfigError, config_model, parse_config
from tcpwatchd.detectors import Context, DetectorSpec, Kind, KindSpec, Outcome, ValueGauge, register
from tcpwatchd.detectors.base import Finding, connection_finding, mass_outcome
from tcpwatchd.detectors.registry import detector_of, registered, unregister
from tcpwatchd.model import ProcessLabels, TcpState
from tcpwatchd.outputs.announce import message_ids
from tcpwatchd.outputs.detector_metrics import detector_metrics
from tcpwatchd.poller import _history_seconds
from tcpwatchd.report import Report, build_report
from tcpwatchd.sections import DetectorSettings
from tcpwatchd.tracker import TrackedPoll
from tests.support.builders import NO_POD, owner
from tests.support.detect_snapshots import Scenario, conn

TOY = Kind("toy_listener")


class ToyConfig(DetectorSettings):
    enabled: bool = False  # off by default, as a new detector may be
    min_port: int = Field(1024, ge=1, le=65535)


def detect_toy(tracked: TrackedPoll, cfg: ToyConfig, ctx: Context) -> Outcome:
    """Listeners on a port of at least `min_port`, and each process's highest such port."""
    table = tracked.snapshot.sockets
    ports = table.column("local_port")
    rows = [r for r in table.rows_in(TcpState.LISTEN) if ports[r] >= cfg.min_port]
    outcome = mass_outcome(TOY, tracked, rows, lambda r: _finding(tracked, r))
    highest: dict[ProcessLabels, float] = {}
    for f in outcome.findings:
        highest[f.labels] = max(highest.get(f.labels, 0.0), float(f.local.split(":")[1]))
    return Outcome(outcome.findings, outcome.counts, values=MappingProxyType({"highest_port": highest}))


def _finding(tracked: TrackedPoll, row: int) -> Finding:
    return connection_finding(TOY, tracked, tracked.snapshot.sockets.socket(row), 0.0)


TOY_SPEC = DetectorSpec(
    name="toy",
    settings=ToyConfig,
    detect=detect_toy,
    kinds=(
        KindSpec(
            TOY, "tcpwatchd_toy_listeners", "Listeners on high ports.", "0123456789abcdef0123456789abcdef"
        ),
    ),
    values=(ValueGauge("highest_port", "tcpwatchd_toy_highest_port", "The highest listening port."),),
    remembers_openings=lambda cfg: 7200.0,
)


@pytest.fixture
def toy() -> Iterator[DetectorSpec[ToyConfig]]:
    register(TOY_SPEC)
    try:
        yield TOY_SPEC
    finally:
        unregister("toy")


class _Collect(Collector):
    def __init__(self, report: Report) -> None:
        self.report = report

    def collect(self) -> Iterator[Metric]:
        yield from detector_metrics(self.report)


def test_a_registered_toy_detector_gets_its_section_gauges_and_journal_id(
    toy: DetectorSpec[ToyConfig],
) -> None:
    cfg = parse_config("[detect.toy]\nenabled = true\nmin_port = 8000\n")
    assert toy.settings_in(cfg.detect) == ToyConfig(enabled=True, min_port=8000)
    with pytest.raises(ConfigError, match=r"detect\.toy\.min_port"):
        parse_config("[detect.toy]\nmin_port = 0\n")
    assert message_ids()["toy_listener"] == "0123456789abcdef0123456789abcdef"
    assert detector_of("toy_listener") == "toy"
    assert _history_seconds(cfg) >= 7200.0

    app, low = owner("app", 1), owner("low", 2)
    high_l = conn("0.0.0.0", 0, local="0.0.0.0", local_port=8080, state=TcpState.LISTEN)
    low_l = conn("0.0.0.0", 0, local="0.0.0.0", local_port=80, state=TcpState.LISTEN)
    report = Scenario().report(0, [high_l, low_l], {high_l: app, low_l: low}, cfg.detect)
    reg = CollectorRegistry()
    reg.register(_Collect(report))
    assert reg.get_sample_value("tcpwatchd_toy_listeners", {"process": "app", **NO_POD}) == 1.0
    assert reg.get_sample_value("tcpwatchd_toy_listeners", {"process": "low", **NO_POD}) == 0.0
    assert reg.get_sample_value("tcpwatchd_toy_highest_port", {"process": "app", **NO_POD}) == 8080.0
    assert [f.kind for f in report.findings if f.kind == TOY] == [TOY]


def test_a_detector_off_by_default_runs_only_when_enabled(toy: DetectorSpec[ToyConfig]) -> None:
    tracked = Scenario().poll(0, [], {})
    default = config_model()()
    assert "toy" not in {run.name for run in build_report(tracked, default.detect).detectors}
    assert _history_seconds(default) < 7200.0  # a disabled detector asks the tracker for nothing


def test_after_unregistering_the_section_is_unknown_again() -> None:
    register(TOY_SPEC)
    unregister("toy")
    with pytest.raises(ConfigError, match=r"detect\.toy: unknown key"):
        parse_config("[detect.toy]\nenabled = true\n")


def test_names_and_kinds_are_registered_once() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        register(registered()[0])
    clash = DetectorSpec(
        name="other",
        settings=ToyConfig,
        detect=detect_toy,
        kinds=(KindSpec(Kind("close_wait"), "x", "x", "0" * 32),),
    )
    with pytest.raises(ValueError, match="each kind has one detector"):
        register(clash)
    with pytest.raises(ValueError, match="32 lowercase hex"):
        KindSpec(TOY, "x", "x", "not-an-id")


def test_every_module_of_the_package_registers_a_detector_and_every_section_has_one() -> None:
    names = {spec.name for spec in registered()}
    for module in pkgutil.iter_modules(detectors.__path__):
        if module.name in detectors.INFRASTRUCTURE:
            continue
        mod = importlib.import_module(f"tcpwatchd.detectors.{module.name}")
        spec = getattr(mod, "SPEC", None)
        assert isinstance(spec, DetectorSpec) and spec.name in names, f"{module.name} registers no detector"
    assert set(config_model().model_fields["detect"].annotation.model_fields) == names  # type: ignore[union-attr]


def test_every_kind_has_a_distinct_gauge_and_message_id() -> None:
    kinds = [k for spec in registered() for k in spec.kinds]
    assert len({k.gauge for k in kinds}) == len(kinds)
    assert len({k.message_id for k in kinds}) == len(kinds)
    assert all(k.gauge.startswith("tcpwatchd_") and k.help.endswith(".") for k in kinds)
