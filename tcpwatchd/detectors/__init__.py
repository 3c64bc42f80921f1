"""The detectors: pure functions of the tracker's view and their config section, one module each.

Importing this package imports every module in it, and each detector module registers itself
(`SPEC = register(DetectorSpec(...))`, see registry.py): adding a detector is adding a file.
"""

import importlib
import pkgutil

from tcpwatchd.detectors.base import (
    LISTED_PER_PROCESS,
    Context,
    Detail,
    Finding,
    Kind,
    Outcome,
)
from tcpwatchd.detectors.registry import DetectorSpec, KindSpec, ValueGauge, register, registered

# Not detectors: the shared types and the registry itself.
INFRASTRUCTURE = frozenset({"base", "registry"})

for _module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _module.name not in INFRASTRUCTURE:
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "INFRASTRUCTURE",
    "LISTED_PER_PROCESS",
    "Context",
    "Detail",
    "DetectorSpec",
    "Finding",
    "Kind",
    "KindSpec",
    "Outcome",
    "ValueGauge",
    "register",
    "registered",
]
