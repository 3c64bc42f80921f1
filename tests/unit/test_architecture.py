"""The one-way flow, in the imports: no circles, and no module importing a later stage.

Layers (docs/design.md "Where to add what"): each module may import its own layer and the ones before it.
`config` stands outside the flow: anyone may read it, and it gathers the detectors' sections from the
registry (the one listed exception).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "tcpwatchd"

# Module prefix -> layer; the longest matching prefix wins.
LAYERS: dict[str, int] = {
    "tcpwatchd.errors": 0,
    "tcpwatchd.model": 0,
    "tcpwatchd.sections": 0,
    "tcpwatchd.frozen": 0,
    "tcpwatchd.logs": 0,
    "tcpwatchd.sdnotify": 0,
    "tcpwatchd.saferead": 0,
    "tcpwatchd.verdicts": 0,
    "tcpwatchd.rules_config": 0,
    "tcpwatchd.allowlist": 0,  # pure rule parsing: config validates [detect.phantom] probe_allow with it
    "tcpwatchd.facts": 0,
    "tcpwatchd.memory": 0,  # process-wide allocator settings the entry points apply
    "tcpwatchd.columns": 1,
    "tcpwatchd.table": 1,
    "tcpwatchd.snapshot": 2,
    "tcpwatchd.sources": 3,
    "tcpwatchd.sysctl": 3,
    "tcpwatchd.tracker": 4,
    "tcpwatchd.scope": 4,
    "tcpwatchd.openings": 4,  # the tracker's per-peer opening history
    "tcpwatchd.conncounts": 4,  # the tracker's connection counters
    "tcpwatchd.readers": 4,  # the tracker's slow-or-stopped reader memory
    "tcpwatchd.rekey": 4,  # the tracker across a change of socket source
    "tcpwatchd.fd_forecast": 4,  # the tracker's per-process fd history
    "tcpwatchd.rowsets": 4,  # row selections the detectors share (in C over columns)
    "tcpwatchd.detectors": 5,
    "tcpwatchd.report": 6,
    "tcpwatchd.rules": 6,
    "tcpwatchd.sysctl.enforce": 7,  # an action: writes what the audit (layer 3) read
    "tcpwatchd.actions": 7,
    "tcpwatchd.poller": 8,
    "tcpwatchd.outputs": 9,
    "tcpwatchd.pollerrors": 9,
    "tcpwatchd.web": 10,
    "tcpwatchd.daemon": 11,
    "tcpwatchd.snapshot_cli": 11,
    "tcpwatchd.sysctl.cli": 11,
    "tcpwatchd.top": 11,
    "tcpwatchd.cli": 12,
    "tcpwatchd.__main__": 13,
}
PACKAGE_ROOT = "tcpwatchd"  # the package itself (__version__): layer 0, matched exactly
OUTSIDE_THE_FLOW = "tcpwatchd.config"
# config builds [detect] from the registry (the detectors declare their own sections, design.md), and
# checks [sysctl.desired] names against the static sysctl catalog.
EXCEPTIONS = {
    ("tcpwatchd.config", "tcpwatchd.detectors"),
    ("tcpwatchd.config", "tcpwatchd.detectors.registry"),
    ("tcpwatchd.config", "tcpwatchd.sysctl.policy"),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tcpwatchd"):
            found.add(node.module)
            for alias in node.names:  # `from tcpwatchd.detectors import close_wait` imports a module
                if (
                    (PACKAGE.parent / (node.module + "." + alias.name).replace(".", "/"))
                    .with_suffix(".py")
                    .exists()
                ):
                    found.add(f"{node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("tcpwatchd"))
    return found


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def _layer(module: str) -> int:
    if module == PACKAGE_ROOT:
        return 0
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[best]


def test_every_module_has_a_layer() -> None:
    for module in _graph():
        if module not in (OUTSIDE_THE_FLOW, PACKAGE_ROOT):
            assert any(module == p or module.startswith(p + ".") for p in LAYERS), module


def test_no_module_imports_a_later_stage() -> None:
    wrong = []
    for module, imported in _graph().items():
        for target in imported:
            if OUTSIDE_THE_FLOW in (target,) or (module, target) in EXCEPTIONS:
                continue
            if module == OUTSIDE_THE_FLOW:
                if _layer(target) > LAYERS["tcpwatchd.sections"]:
                    wrong.append(f"{module} -> {target}")
                continue
            if _layer(target) > _layer(module):
                wrong.append(f"{module} (layer {_layer(module)}) -> {target} (layer {_layer(target)})")
    assert wrong == []


def test_no_import_cycles() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if target not in graph:
                continue
            if state.get(target) == 1:
                pytest.fail("import cycle: " + " -> ".join([*path, module, target]))
            if target not in state:
                visit(target, [*path, module])
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module, [])


def test_modules_stay_small_or_say_why() -> None:
    """~300 lines a module; a longer one says at its top why it is one file."""
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > 320:
            assert "One file because" in text[:2000], f"{path.name}: {text.count(chr(10))} lines"
