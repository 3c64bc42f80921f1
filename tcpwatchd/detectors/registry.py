"""The detector registry: a detector declares everything about itself in one place, its `DetectorSpec`.

In the style of node_exporter's collector registry (collector/collector.go), where a collector is one file:
a detector module ends with `SPEC = register(DetectorSpec(...))`, naming

- `name`: the detector, and its config section `[detect.<name>]` (config.py builds the `[detect]` table
  from the registry, so the section exists as soon as the module does);
- `settings`: its section's model (a `DetectorSettings`: `enabled` plus its thresholds);
- `detect`: the pure function `(TrackedPoll, settings, Context) -> Outcome`;
- `kinds`: the kinds of finding it produces, each with its per-process gauge, help text and journal
  MESSAGE_ID (outputs/ render and log them from here);
- `values`: extra per-process figures it exports (e.g. close_wait's oldest age);
- `remembers_openings`: how long the tracker must remember a quiet peer's openings for it, if at all;
- `opening_windows`: (window, baseline) seconds the tracker's per-peer opening buckets must cover for it.

Every module of the `tcpwatchd.detectors` package is imported by the package itself, so a new file is
enough: nothing else lists detectors (tests/unit/test_registry.py fails on a module that registers none).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from tcpwatchd.detectors.base import Context, Kind, Outcome
from tcpwatchd.sections import DetectorSettings, DetectSections
from tcpwatchd.tracker import TrackedPoll

S = TypeVar("S", bound=DetectorSettings)


@dataclass(frozen=True, slots=True)
class KindSpec:
    """One kind of finding: counted per process in `gauge`, announced in the journal with `message_id`."""

    kind: Kind
    gauge: str  # tcpwatchd_<what>_<unit>, labelled by process
    help: str  # a full sentence
    message_id: str  # 128-bit hex, as journald's MESSAGE_ID wants (systemd.journal-fields(7))

    def __post_init__(self) -> None:
        if len(self.message_id) != 32 or not all(c in "0123456789abcdef" for c in self.message_id):
            raise ValueError(f"{self.kind}: message_id must be 32 lowercase hex digits")


@dataclass(frozen=True, slots=True)
class ValueGauge:
    """An extra per-process figure a detector exports: `Outcome.values[key][process]`, 0 when absent.

    With `per_port`, the figure is per (process, port) instead (`Outcome.port_values[key]`), labelled
    `port` as well: only for ports of listeners, which are few by nature (port "" when the detector
    folds them, e.g. when its per-port labels are configured off).
    """

    key: str
    gauge: str
    help: str
    per_port: bool = False


@dataclass(frozen=True, slots=True)
class DetectorSpec(Generic[S]):
    name: str
    settings: type[S]
    detect: Callable[[TrackedPoll, S, Context], Outcome]
    kinds: tuple[KindSpec, ...]
    values: tuple[ValueGauge, ...] = ()
    remembers_openings: Callable[[S], float] | None = None
    opening_windows: Callable[[S], tuple[float, float]] | None = None

    def settings_in(self, detect: DetectSections) -> S:
        """This detector's section of a validated `[detect]` table."""
        section = getattr(detect, self.name, None)
        if not isinstance(section, self.settings):
            raise LookupError(
                f"[detect.{self.name}] is missing from this config (built before registration?)"
            )
        return section

    def run(self, tracked: TrackedPoll, detect: DetectSections, ctx: Context) -> Outcome:
        return self.detect(tracked, self.settings_in(detect), ctx)

    def enabled(self, detect: DetectSections) -> bool:
        return self.settings_in(detect).enabled

    def history_seconds(self, detect: DetectSections) -> float:
        """How long the tracker must remember openings for this detector (0: it reads none)."""
        if self.remembers_openings is None:
            return 0.0
        return self.remembers_openings(self.settings_in(detect))

    def windows(self, detect: DetectSections) -> tuple[float, float] | None:
        """The (window, baseline) the tracker's opening buckets must cover for this detector, if any."""
        if self.opening_windows is None:
            return None
        return self.opening_windows(self.settings_in(detect))


_REGISTRY: dict[str, DetectorSpec[Any]] = {}
_KINDS: dict[Kind, tuple[KindSpec, str]] = {}  # kind -> (its spec, the detector producing it)
_generation = itertools.count(1)
_current = 0


def register(spec: DetectorSpec[S]) -> DetectorSpec[S]:
    """Add a detector; a name or kind used twice is an import-time error."""
    global _current
    if spec.name in _REGISTRY:
        raise ValueError(f"detector {spec.name!r} registered twice")
    taken = [k.kind for k in spec.kinds if k.kind in _KINDS]
    if taken or not spec.kinds:
        raise ValueError(f"detector {spec.name!r}: kinds {taken or 'missing'} (each kind has one detector)")
    _REGISTRY[spec.name] = spec
    for k in spec.kinds:
        _KINDS[k.kind] = (k, spec.name)
    _current = next(_generation)
    return spec


def unregister(name: str) -> None:
    """Remove a detector (tests that register a toy one clean up with this)."""
    global _current
    spec = _REGISTRY.pop(name)
    for k in spec.kinds:
        del _KINDS[k.kind]
    _current = next(_generation)


def registered() -> tuple[DetectorSpec[Any], ...]:
    """Every detector, in registration order (module name order: see __init__.py)."""
    return tuple(_REGISTRY.values())


def generation() -> int:
    """Changes whenever the registry does (config.py rebuilds its `[detect]` model on a change)."""
    return _current


def kinds() -> Iterator[KindSpec]:
    for spec in _REGISTRY.values():
        yield from spec.kinds


def kind_spec(kind: str) -> KindSpec | None:
    entry = _KINDS.get(Kind(kind))
    return entry[0] if entry else None


def detector_of(kind: str) -> str:
    """The name of the detector that produces `kind` ("" for a kind nobody registered)."""
    entry = _KINDS.get(Kind(kind))
    return entry[1] if entry else ""
