"""How a per-process series is labelled: `process`, and where it runs (`namespace`, `pod`, `container`).

Every per-process family (sockets by state, each detector's gauges, the opened counter) is labelled the same
way, from the `ProcessLabels` the report keys its figures by. With the workload labels off
(`[namespaces] labels = false`), series that differ only in where they run are merged: counts add up,
ages take the largest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tcpwatchd.model import ProcessLabels

WORKLOAD_LABELS = ("namespace", "pod", "container")


@dataclass(frozen=True, slots=True)
class SeriesLabels:
    workload: bool = True  # add namespace, pod and container (Kubernetes names; "" outside a pod)

    @property
    def names(self) -> list[str]:
        return ["process", *WORKLOAD_LABELS] if self.workload else ["process"]

    def values(self, labels: ProcessLabels) -> tuple[str, ...]:
        return tuple(labels) if self.workload else (labels.process,)

    def merge(
        self,
        items: Iterable[tuple[ProcessLabels, float]],
        combine: Callable[[float, float], float] = float.__add__,
    ) -> dict[tuple[str, ...], float]:
        """Label values -> value, merging series that project to the same label values."""
        out: dict[tuple[str, ...], float] = {}
        for labels, value in items:
            key = self.values(labels)
            out[key] = combine(out[key], value) if key in out else value
        return out
