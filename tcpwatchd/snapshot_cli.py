"""`tcpwatchd snapshot`: the last poll per process (sockets by state, findings by kind) and its findings.

It reads the running daemon's API (docs/api.md) at the config's `[exporter]` address, so it needs no
root and starts no second poller; `--local` (or `--interval`) polls in this process instead, and when
no daemon answers it says so and polls locally. Either way it holds the same document: `--json` prints
it as the API serves it, the table renders it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

from tcpwatchd.config import Config
from tcpwatchd.model import STATE_LABELS
from tcpwatchd.outputs.api import MAX_PER_PAGE, QueryError, build_document, parse_query
from tcpwatchd.poller import Poller
from tcpwatchd.top.source import HttpSource, SourceError, default_url

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def local_document(cfg: Config, query: Mapping[str, str], interval: float = 0.0) -> dict[str, Any]:
    """One poll here (two, `interval` seconds apart, so that ages and openings show)."""
    q = parse_query(query)
    poller = Poller(cfg)
    try:
        result = poller.poll()
        if interval > 0:
            time.sleep(interval)
            result = poller.poll()
    finally:
        poller.close()  # the other namespaces' sockets and thread, the destroy-event subscription
    return build_document(result, q)


def fetch_document(
    cfg: Config, query: Mapping[str, str], local: bool, interval: float, err: TextIO
) -> tuple[dict[str, Any], str]:
    """(document, where it came from). Raises SourceError when the daemon answers but refuses."""
    if local or interval > 0:
        return local_document(cfg, query, interval), "local poll"
    source = HttpSource(default_url(cfg))
    try:
        return source.fetch(query), f"daemon {source.url}"
    except SourceError as e:
        if not str(e).startswith("daemon unreachable"):
            raise
        print(f"tcpwatchd snapshot: no daemon answers at {source.url} ({e}); polling locally", file=err)
        return local_document(cfg, query), f"local poll (no daemon answered at {source.url})"


def snapshot_command(
    cfg: Config,
    as_json: bool,
    interval: float = 0.0,
    out: TextIO | None = None,
    local: bool = False,
    filters: Mapping[str, str] | None = None,
    err: TextIO | None = None,
) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    query = {k: v for k, v in (filters or {}).items() if v} | {"per_page": str(MAX_PER_PAGE)}
    try:
        parse_query(query)  # a bad --kind is refused before any poll or request
        doc, where = fetch_document(cfg, query, local, interval, err)
    except QueryError as e:
        print(f"tcpwatchd snapshot: {e}", file=err)
        return EXIT_USAGE
    except SourceError as e:
        print(f"tcpwatchd snapshot: {e} (--local polls here instead)", file=err)
        return EXIT_FAILED
    if as_json:
        json.dump(doc, out, indent=2, ensure_ascii=True)
        out.write("\n")
    else:
        out.write(render_table(doc, where))
    return EXIT_OK


def _safe(text: str) -> str:
    """Names are hostile: one row per process whatever characters the name holds."""
    return text if text.isprintable() else text.encode("unicode_escape", "backslashreplace").decode("ascii")


WHERE = ("namespace", "pod", "container")


def render_table(doc: Mapping[str, Any], where: str = "") -> str:
    """Processes by state (namespace/pod/container columns only when some process has them), then the
    listed findings by kind."""
    procs: list[Mapping[str, Any]] = doc.get("processes", [])
    states = [s for s in STATE_LABELS if any(p["sockets"].get(s) for p in procs)]
    places = [w for w in WHERE if any(p[w] for p in procs)]
    header = ["PROCESS", *[w.upper() for w in places], *[s.upper() for s in states], "TOTAL", "FINDINGS"]
    rows = [header]
    for p in sorted(procs, key=lambda p: (-p["findings_total"], -p["sockets_total"], p["process"])):
        rows.append(
            [
                _safe(p["process"]) or "(no process)",
                *[_safe(p[w]) or "-" for w in places],
                *[str(p["sockets"].get(s, 0)) for s in states],
                str(p["sockets_total"]),
                " ".join(f"{k}={n}" for k, n in p["findings"].items()) or "-",
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    poll = doc.get("poll", {})
    total = sum(p["sockets_total"] for p in procs)
    lines += ["", f"{total} sockets, {len(procs)} processes, poll #{poll.get('number', 0)} via "
              f"{poll.get('source', '?')} in {poll.get('duration_seconds', 0) * 1000:.0f} ms"
              + (f"; from {where}" if where else "")]  # fmt: skip
    active = {k: v for k, v in doc.get("filters", {}).items() if v}
    if active:
        lines.append("filters: " + " ".join(f"{k}={_safe(v)!r}" for k, v in active.items()))
    return "\n".join(lines + _findings_lines(doc)) + "\n"


def _findings_lines(doc: Mapping[str, Any]) -> list[str]:
    findings: list[Mapping[str, Any]] = doc.get("findings", [])
    counted = sum(p["findings_total"] for p in doc.get("processes", []))
    if not findings:
        return ["", "No findings." if not counted else f"{counted} findings counted, none listed."]
    lines = ["", f"{counted} findings counted, {doc['page']['total_items']} listed:"]
    kind = None
    for f in findings:
        if f["kind"] != kind:
            kind = f["kind"]
            lines.append(f"{kind}:")
        pod = f" pod={f['namespace']}/{f['pod']}" if f["pod"] else ""
        facts = "".join(f" {k}={v}" for k, v in f["details"].items())
        rule = f" rule={f['rule']}" if f["rule"] else ""
        age = f"{f['age_seconds']:.1f}s" if f["age_seconds"] is not None else "?"
        line = (
            f"  {f['process'] or '(no process)'} pid={f['pid']}{pod} {f['local']} -> {f['remote']} "
            f"age={age}{facts}{rule}"
        )
        lines.append(_safe(line))
    if doc["page"]["total_pages"] > 1:
        lines.append(f"(first {len(findings)} of {doc['page']['total_items']}: narrow with --process/--kind)")
    return lines
