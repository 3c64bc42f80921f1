"""Prometheus-style scrapes of tcpwatchd, one JSON line each: `python scraper.py PORT INTERVAL TIMEOUT`.

Runs inside the benchmark namespace until EOF on stdin. Each line: the scrape's latency (s), ok, and from
the exposition the poll-duration sum and count, the sockets counted, the last poll's timestamp, the
survived poll errors and the number of series. A failed or timed-out scrape has ok false.
"""

from __future__ import annotations

import json
import select
import sys
import time
import urllib.request

WANTED = (
    "tcpwatchd_poll_duration_seconds_sum",
    "tcpwatchd_poll_duration_seconds_count",
    "tcpwatchd_last_poll_timestamp_seconds",
)


def parse(text: str) -> dict[str, float]:
    out = {"sockets": 0.0, "series": 0.0, "poll_errors": 0.0}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        out["series"] += 1
        name, _, value = line.rpartition(" ")
        metric = name.split("{", 1)[0]
        if metric in WANTED:
            out[metric] = float(value)
        elif metric == "tcpwatchd_sockets":
            out["sockets"] += float(value)
        elif metric == "tcpwatchd_poll_errors_total":
            out["poll_errors"] += float(value)
    return out


def main() -> None:
    port, interval, timeout = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    url = f"http://127.0.0.1:{port}/metrics"
    while not (select.select([sys.stdin], [], [], 0)[0] and not sys.stdin.readline()):
        start = time.monotonic()
        row: dict[str, object] = {"t": time.time()}
        try:
            with urllib.request.urlopen(url, timeout=timeout) as answer:
                body = answer.read().decode()
            row.update(parse(body), ok=True, bytes=len(body))
        except OSError as e:
            row.update(ok=False, error=type(e).__name__)
        row["latency"] = time.monotonic() - start
        print(json.dumps(row), flush=True)
        time.sleep(max(0.0, interval - (time.monotonic() - start)))


if __name__ == "__main__":
    main()
